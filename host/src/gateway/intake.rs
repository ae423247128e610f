//! The submit pipeline: submissions queued by the API are batched (group commit), sent to
//! the enclave ([`Gateway::send_batch`], stage one) and stored before anyone is answered
//! ([`Gateway::store_batch`], stage two), in order, with up to three batches in flight.

use leadgate_verifier::ErrorCode;
use std::sync::atomic::Ordering;

use leadgate_protocol::{Request, Response, SubmitOutcome, WireAppended, WireError};
use leadgate_verifier::intake::SealedLead;

use std::sync::Arc;

use leadgate_protocol::MAX_BATCH;
use tokio::sync::{mpsc, oneshot};

use super::{stored_answer, Gateway, LinkError};
use crate::error::ApiError;
use crate::link::{self, Answer};
use crate::storage::{LeadRecord, StoredSubmission};

/// A submission queued for the enclave.
#[derive(Clone)]
pub struct Job {
    /// The sealed lead.
    pub lead: SealedLead,
    /// The request body as received (stored as the ciphertext record).
    pub sealed_json: String,
    /// SHA-256(enc || ciphertext), hex.
    pub ciphertext_sha256: String,
}

/// A batch sent to the enclave, to be finished by [`Gateway::store_batch`].
pub struct SentBatch {
    answer: Answer,
    /// Per job: the stored answer of a retried submission (not sent), or `None`.
    stored: Vec<Option<SubmitOutcome>>,
    epoch: u64,
}

/// The original answer of a stored submission.
fn original_answer(rec: &LeadRecord) -> SubmitOutcome {
    SubmitOutcome::Logged {
        lead_id: rec.lead_id.clone(),
        accepted: rec.verdict == leadgate_verifier::api::Verdict::Accepted,
        reason: rec.reason.clone(),
        score: rec.score,
        email_tag: None,
        appended: stored_answer(rec.index, rec.receipt.clone()),
        sale: None,
    }
}

fn replayed() -> SubmitOutcome {
    SubmitOutcome::Refused(WireError::new(
        ErrorCode::SubmissionReplayed,
        "this submission was already received",
    ))
}

impl Gateway {
    /// Stage 1 of a submission batch: writes it to the enclave and returns at once. The batch
    /// must then go to [`Gateway::store_batch`] (in the order batches were sent), which waits
    /// for the answer and stores it before anyone is answered.
    ///
    /// A retry of a stored submission (the same sealed request) is answered here with the
    /// stored answer and receipt, and not sent: the enclave's replay memory does not survive
    /// its restarts. The same ciphertext under another signature or seller is refused as
    /// `submission.replayed`. Repeats within the batch, or of a batch not yet stored, go to
    /// the enclave, which checks each signature before its replay memory (an unsigned copy
    /// sent first must not shadow the genuine submission); [`Gateway::store_batch`] answers
    /// the genuine retry among them from the store.
    ///
    /// # Errors
    /// [`LinkError::Unavailable`] (nothing was sent), storage errors.
    pub async fn send_batch(&self, jobs: &[Job]) -> Result<SentBatch, LinkError> {
        // Looked up before the link is taken: a query under the link lock would serialize
        // every batch behind it. An original stored after this look-up is caught as a race
        // in `store_batch`.
        let looking = std::time::Instant::now();
        let stored = self.submission_originals(jobs).await?;
        let looked = looking.elapsed();
        let mut link = self.link().await;
        if link.conn.is_none() {
            return Err(LinkError::Unavailable);
        }
        let req = Request::Submit {
            leads: jobs
                .iter()
                .zip(&stored)
                .filter(|(_, r)| r.is_none())
                .map(|(j, _)| j.lead.clone())
                .collect(),
        };
        self.confirm_durable(&mut link, false).await;
        let sent = match link.conn.as_mut() {
            Some(c) => c.send(&req).await,
            None => Err(LinkError::Unavailable),
        };
        let answer = match sent {
            Ok(a) => a,
            Err(e) => {
                link.conn = None;
                return Err(e);
            }
        };
        link.sent += 1;
        tracing::debug!(
            jobs = jobs.len(),
            lookup_us = looked.as_micros() as u64,
            send_us = (looking.elapsed() - looked).as_micros() as u64,
            "batch sent"
        );
        Ok(SentBatch {
            answer,
            stored,
            epoch: link.epoch,
        })
    }

    /// Per job: the stored answer if a submission with its ciphertext was stored (the
    /// original when the sealed request is the same, else `submission.replayed`), or `None`.
    async fn submission_originals(
        &self,
        jobs: &[Job],
    ) -> Result<Vec<Option<SubmitOutcome>>, LinkError> {
        let hashes: Vec<&str> = jobs.iter().map(|j| j.ciphertext_sha256.as_str()).collect();
        let stored = self.store.submission_answers(&hashes).await?;
        Ok(jobs
            .iter()
            .map(|j| {
                let (json, rec) = stored.get(&j.ciphertext_sha256)?;
                let same = serde_json::from_str::<SealedLead>(json).is_ok_and(|l| l == j.lead);
                Some(if same {
                    original_answer(rec)
                } else {
                    replayed()
                })
            })
            .collect())
    }

    /// Stage 2: waits for a sent batch's answer, stores every append (one transaction) and
    /// returns the outcomes to answer with, one per job. Batches must be stored in the order
    /// they were sent.
    ///
    /// # Errors
    /// The enclave's refusal of the whole batch; [`LinkError::Unavailable`] if the link
    /// closed before the answer, or for a batch sent after one that failed on the same link
    /// (it is discarded: storing it would leave a gap); protocol and storage errors (these
    /// fail the link: it is dropped, and the host catches up from the enclave's journal).
    pub async fn store_batch(
        &self,
        jobs: &[Job],
        batch: SentBatch,
    ) -> Result<Vec<SubmitOutcome>, LinkError> {
        let epoch = batch.epoch;
        let result = self.store_batch_inner(jobs, batch).await;
        if matches!(result, Err(LinkError::Protocol(_) | LinkError::Store(_))) {
            self.failed_epoch.store(epoch, Ordering::Release);
        }
        self.stored.send_modify(|n| *n += 1);
        result
    }

    async fn store_batch_inner(
        &self,
        jobs: &[Job],
        batch: SentBatch,
    ) -> Result<Vec<SubmitOutcome>, LinkError> {
        let waited = std::time::Instant::now();
        let response = link::answer(batch.answer).await;
        let answered = waited.elapsed();
        if self.failed_epoch.load(Ordering::Acquire) == batch.epoch {
            return Err(LinkError::Unavailable);
        }
        let fresh = batch.stored.iter().filter(|r| r.is_none()).count();
        let (fresh_results, ruled) = match response? {
            Response::Submitted { results, bids } if results.len() == fresh => (results, bids),
            Response::Error(e) => return Err(LinkError::Enclave(e)),
            other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
        };
        let mut fresh_results = fresh_results.into_iter();
        // (outcome, whether this batch stores it): stored answers are not stored again.
        let outcomes: Vec<(SubmitOutcome, bool)> = batch
            .stored
            .into_iter()
            .map(|r| match r {
                Some(stored) => (stored, false),
                None => (fresh_results.next().unwrap_or_else(replayed), true),
            })
            .collect();
        // In log order: the batch's leads, the bids made under buyers' rule sets, the instant
        // auctions' closes.
        let appends: Vec<&WireAppended> = outcomes
            .iter()
            .filter_map(|(r, new)| match r {
                SubmitOutcome::Logged { appended, .. } if *new => Some(appended),
                _ => None,
            })
            .chain(ruled.iter().map(|b| &b.appended))
            .chain(outcomes.iter().filter_map(|(r, new)| match r {
                SubmitOutcome::Logged {
                    sale: Some(sale), ..
                } if *new => Some(sale),
                _ => None,
            }))
            .collect();
        let ruled_json: Vec<(String, String)> = ruled
            .iter()
            .map(|b| {
                let commitment = b
                    .sealed
                    .decode()
                    .map(|d| hex::encode(d.commitment))
                    .map_err(|e| LinkError::Protocol(format!("a rule set's bid: {e}")))?;
                let json = serde_json::to_string(&b.sealed)
                    .map_err(|e| LinkError::Protocol(e.to_string()))?;
                Ok((commitment, json))
            })
            .collect::<Result<_, LinkError>>()?;
        let ruled_rows: Vec<crate::storage::StoredBid<'_>> = ruled
            .iter()
            .zip(&ruled_json)
            .map(|(b, (commitment, json))| crate::storage::StoredBid {
                index: b.appended.index,
                auction_id: &b.auction_id,
                buyer: &b.sealed.buyer,
                commitment,
                sealed_json: json,
            })
            .collect();
        let subs: Vec<StoredSubmission<'_>> = jobs
            .iter()
            .zip(&outcomes)
            .filter(|(_, (_, new))| *new)
            .map(|(j, (outcome, _))| StoredSubmission {
                seller: &j.lead.seller,
                ciphertext_sha256: &j.ciphertext_sha256,
                sealed_json: &j.sealed_json,
                outcome,
            })
            .collect();
        let storing = std::time::Instant::now();
        self.store
            .store_appends(&appends, &subs, &ruled_rows, crate::clock::now_ms())
            .await?;
        tracing::debug!(
            jobs = jobs.len(),
            answer_us = answered.as_micros() as u64,
            store_us = storing.elapsed().as_micros() as u64,
            "batch stored"
        );
        if let Some(last) = appends.last() {
            self.stored_to(last.index + 1);
        }
        let mut outcomes: Vec<SubmitOutcome> = outcomes.into_iter().map(|(o, _)| o).collect();
        // A retry that raced its original to the enclave is refused there as a replay; the
        // original's batch is stored by now, so answer with it.
        let raced: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(
                |(_, o)| matches!(o, SubmitOutcome::Refused(e) if e.code == ErrorCode::SubmissionReplayed),
            )
            .map(|(i, _)| i)
            .collect();
        if !raced.is_empty() {
            let retried: Vec<Job> = raced.iter().map(|&i| jobs[i].clone()).collect();
            for (&i, o) in raced.iter().zip(self.submission_originals(&retried).await?) {
                if let Some(o) = o {
                    outcomes[i] = o;
                }
            }
        }
        Ok(outcomes)
    }
}

/// A job with its reply channel.
pub type QueuedJob = (Job, oneshot::Sender<Result<SubmitOutcome, ApiError>>);

type Replies = Vec<tokio::sync::oneshot::Sender<Result<SubmitOutcome, ApiError>>>;

/// Batches queued submissions (group commit: one enclave call and one transaction per batch)
/// and runs them through the two stages of [`Gateway`]: this task sends batches to the
/// enclave, a second one waits for each answer, stores it and answers the submitters, in
/// order. Up to three batches are in flight (one being stored, one queued, one being sent),
/// so the enclave works while earlier batches commit.
pub async fn run_pipeline(
    gateway: Arc<Gateway>,
    mut rx: mpsc::Receiver<QueuedJob>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let (to_store, mut sent) = mpsc::channel::<(Vec<Job>, Replies, SentBatch)>(1);
    let storer = gateway.clone();
    tokio::spawn(async move {
        while let Some((jobs, replies, batch)) = sent.recv().await {
            let result = storer.store_batch(&jobs, batch).await;
            answer(replies, result);
        }
    });
    while let Some(first) = rx.recv().await {
        let (jobs, replies): (Vec<_>, Vec<_>) =
            drain_batch(&mut rx, first, MAX_BATCH).into_iter().unzip();
        metrics.submit_batch.observe(jobs.len() as f64);
        match gateway.send_batch(&jobs).await {
            Ok(batch) => {
                if let Err(mpsc::error::SendError((_, replies, _))) =
                    to_store.send((jobs, replies, batch)).await
                {
                    answer(replies, Err(LinkError::Unavailable));
                }
            }
            Err(e) => answer(replies, Err(e)),
        }
    }
}

/// Sends each reply its outcome, or every reply the batch's error.
pub(super) fn answer<T>(
    replies: Vec<tokio::sync::oneshot::Sender<Result<T, ApiError>>>,
    result: Result<Vec<T>, LinkError>,
) {
    match result {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            let err: ApiError = e.into();
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

/// `first` and whatever else is already queued, up to `max` items.
pub(super) fn drain_batch<T>(rx: &mut mpsc::Receiver<T>, first: T, max: usize) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(j) => batch.push(j),
            Err(_) => break,
        }
    }
    batch
}
