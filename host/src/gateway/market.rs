//! Bids, auction closes and releases: the enclave exchanges of the market, each stored
//! before it is answered.

use leadgate_verifier::ErrorCode;

use leadgate_protocol::MAX_CLOSES_PER_TICK;
use leadgate_protocol::{BidOutcome, Request, Response, WireAppended, WireError};
use leadgate_verifier::bid::SealedBid;
use leadgate_verifier::release::{ReleaseRequest, ReleasedLead};
use serde_bytes::ByteBuf;

use std::sync::Arc;

use leadgate_protocol::MAX_BIDS;
use tokio::sync::{mpsc, oneshot};

use super::intake::{answer, drain_batch};
use super::{stored_answer, Gateway, LinkError};
use crate::error::ApiError;
use crate::storage::{StoreError, StoredBid};

impl Gateway {
    /// Sends sealed bids (with their JSON as received) to the enclave and stores every
    /// `bid.sealed` with its sealed bid before anyone is answered.
    ///
    /// # Errors
    /// [`LinkError`]s; a storage failure also drops the link.
    pub async fn place_bids(
        &self,
        bids: &[(SealedBid, String)],
    ) -> Result<Vec<BidOutcome>, LinkError> {
        // A retry of a stored bid (the same sealed bytes) gets its original answer.
        let commitments: Vec<Option<String>> = bids
            .iter()
            .map(|(b, _)| b.decode().ok().map(|d| hex::encode(d.commitment)))
            .collect();
        let originals = self.bid_originals(bids, &commitments).await?;
        let fresh: Vec<&(SealedBid, String)> = bids
            .iter()
            .zip(&originals)
            .filter(|(_, o)| o.is_none())
            .map(|(b, _)| b)
            .collect();
        let mut fresh_results = if fresh.is_empty() {
            Vec::new()
        } else {
            self.place_fresh_bids(&fresh).await?
        }
        .into_iter();
        let mut results: Vec<BidOutcome> = originals
            .into_iter()
            .map(|o| o.or_else(|| fresh_results.next()))
            .collect::<Option<_>>()
            .ok_or_else(|| LinkError::Protocol("bid answers do not match the bids".into()))?;
        // A retry that raced its original to the enclave is refused there as a replay; the
        // original is stored by now (batches are stored in order), so answer with it.
        let replayed: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(
                |(_, r)| matches!(r, BidOutcome::Refused(e) if e.code == ErrorCode::BidReplayed),
            )
            .map(|(i, _)| i)
            .collect();
        if !replayed.is_empty() {
            let again: Vec<(SealedBid, String)> =
                replayed.iter().map(|&i| bids[i].clone()).collect();
            let again_c: Vec<Option<String>> =
                replayed.iter().map(|&i| commitments[i].clone()).collect();
            for (&i, o) in replayed
                .iter()
                .zip(self.bid_originals(&again, &again_c).await?)
            {
                if let Some(o) = o {
                    results[i] = o;
                }
            }
        }
        Ok(results)
    }

    /// The stored answer of each bid whose exact sealed bytes were stored, else `None`.
    async fn bid_originals(
        &self,
        bids: &[(SealedBid, String)],
        commitments: &[Option<String>],
    ) -> Result<Vec<Option<BidOutcome>>, LinkError> {
        let keys: Vec<&str> = commitments.iter().flatten().map(String::as_str).collect();
        let stored = self.store.bid_answers(&keys).await?;
        Ok(bids
            .iter()
            .zip(commitments)
            .map(|((bid, _), c)| {
                let c = c.as_deref()?;
                let (json, index, receipt) = stored.get(c)?;
                let original: SealedBid = serde_json::from_str(json).ok()?;
                let commitment = ByteBuf::from(hex::decode(c).ok()?);
                (original == *bid).then(|| BidOutcome::Logged {
                    auction_id: bid.auction_id.clone(),
                    commitment,
                    appended: stored_answer(*index, receipt.clone()),
                })
            })
            .collect())
    }

    async fn place_fresh_bids(
        &self,
        bids: &[&(SealedBid, String)],
    ) -> Result<Vec<BidOutcome>, LinkError> {
        let req = Request::Bid {
            bids: bids.iter().map(|(b, _)| b.clone()).collect(),
        };
        let (mut link, resp) = self.exchange_appending(&req).await?;
        let results = match resp {
            Response::Bids { results } if results.len() == bids.len() => results,
            Response::Error(e) => return Err(LinkError::Enclave(e)),
            other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
        };
        let mut appends = Vec::new();
        let mut stored = Vec::new();
        let hexes: Vec<String> = results
            .iter()
            .map(|r| match r {
                BidOutcome::Logged { commitment, .. } => hex::encode(commitment),
                BidOutcome::Refused(_) => String::new(),
            })
            .collect();
        for ((r, (bid, json)), commitment) in results.iter().zip(bids.iter().copied()).zip(&hexes) {
            if let BidOutcome::Logged { appended, .. } = r {
                appends.push(appended);
                stored.push(StoredBid {
                    index: appended.index,
                    auction_id: &bid.auction_id,
                    buyer: &bid.buyer,
                    commitment,
                    sealed_json: json,
                });
            }
        }
        if let Err(e) = self.store.store_bids(&appends, &stored).await {
            link.conn = None;
            return Err(e.into());
        }
        if let Some(last) = appends.last() {
            self.stored_to(last.index + 1);
        }
        Ok(results)
    }

    /// Asks the enclave to close every auction due by its clock, and stores the closes.
    /// Returns how many closed.
    ///
    /// # Errors
    /// [`LinkError`]s; a storage failure also drops the link.
    pub async fn tick(&self) -> Result<usize, LinkError> {
        let mut total = 0;
        loop {
            let (mut link, resp) = self.exchange_appending(&Request::Tick).await?;
            let closed = match resp {
                Response::Ticked { closed } => closed,
                Response::Error(e) => return Err(LinkError::Enclave(e)),
                other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
            };
            let appends: Vec<&WireAppended> = closed.iter().collect();
            if let Err(e) = self.store.store_closes(&appends).await {
                link.conn = None;
                return Err(e.into());
            }
            if let Some(last) = appends.last() {
                self.stored_to(last.index + 1);
            }
            total += closed.len();
            if closed.len() < MAX_CLOSES_PER_TICK {
                if total > 0 {
                    tracing::info!(closed = total, "auctions closed");
                }
                return Ok(total);
            }
        }
    }

    /// Forwards a buyer's release request with the stored sealed lead; stores the
    /// `lead.released` append and the envelope before answering.
    ///
    /// # Errors
    /// The enclave's refusal (`release.*`), [`LinkError`]s.
    pub async fn release(
        &self,
        request: ReleaseRequest,
    ) -> Result<(ReleasedLead, WireAppended), LinkError> {
        let Some(sealed) = self.store.sealed_lead(&request.lead_id).await? else {
            return Err(LinkError::Enclave(WireError::new(
                ErrorCode::ReleaseNotSold,
                "no accepted lead with this id",
            )));
        };
        let lead = serde_json::from_str(&sealed)
            .map_err(|e| LinkError::Store(StoreError::Inconsistent(e.to_string())))?;
        let (lead_id, buyer) = (request.lead_id.clone(), request.buyer.clone());
        let (mut link, resp) = self
            .exchange_appending(&Request::Release { request, lead })
            .await?;
        let (released, appended) = match resp {
            Response::Released { released, appended } => (released, appended),
            Response::Error(e) => return Err(LinkError::Enclave(e)),
            other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
        };
        let json =
            serde_json::to_string(&released).map_err(|e| LinkError::Protocol(e.to_string()))?;
        if let Err(e) = self
            .store
            .store_release(&appended, &lead_id, &buyer, &json)
            .await
        {
            link.conn = None;
            return Err(e.into());
        }
        self.stored_to(appended.index + 1);
        Ok((released, appended))
    }
}

/// A sealed bid (and its JSON as stored) with its reply channel.
pub type QueuedBid = (
    SealedBid,
    String,
    oneshot::Sender<Result<BidOutcome, ApiError>>,
);

/// Batches queued bids: one enclave exchange and one transaction per batch of up to
/// [`MAX_BIDS`].
pub async fn run_bids(
    gateway: Arc<Gateway>,
    mut rx: mpsc::Receiver<QueuedBid>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    while let Some(first) = rx.recv().await {
        let (bids, replies): (Vec<_>, Vec<_>) = drain_batch(&mut rx, first, MAX_BIDS)
            .into_iter()
            .map(|(b, j, r)| ((b, j), r))
            .unzip();
        metrics.bid_batch.observe(bids.len() as f64);
        answer(replies, gateway.place_bids(&bids).await);
    }
}
