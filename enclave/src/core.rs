//! The enclave as a state machine: requests in, responses (with log records to persist) out.
//! No sockets and no clock here: the transport passes the enclave's own clock reading
//! (`now_ms`, Unix ms) with each request, so every flow is testable in memory.

mod market;

use leadgate_verifier::anchor;
use leadgate_verifier::auction::{Pricing, TokenAmount};
use leadgate_verifier::checkpoint::verify_checkpoint;
use leadgate_verifier::event::{
    AuctionTerms, EpochPcrs, Event, LeadAccepted, LeadRejected, LogEpoch,
};
use leadgate_verifier::intake::{
    open_lead, AuctionRequest, SealedLead, VerifiedSubmission, MAX_LEAD_BYTES,
};
use leadgate_verifier::merkle::{self, Frontier, Hash};
use serde_bytes::ByteBuf;

use crate::attest::AttestationProvider;
use crate::auctions::AuctionBook;
use crate::dedup::EmailTags;
use crate::error::EnclaveError;
use crate::journal::Journal;
use crate::log::{Log, UnsignedAppend};
use crate::parallel::par_map;
use crate::replay::{ReplayGuard, ReplayVerdict};
use crate::restore::Restore;
use crate::rules::{check_lead, CheckedLead, RejectReason};
use crate::sealing::Sealer;
use crate::secrets::Secrets;
use crate::sellers::SellerKeys;
use leadgate_protocol::{
    AnchorTarget, BidOutcome, JournalEntry, JournalRecord, ReplayBase, ReplayEntry, Request,
    Response, Status, SubmitOutcome, Tip, WireAppended, WireError, MAX_BATCH, MAX_JOURNAL_BYTES,
    MAX_JOURNAL_ENTRIES, MAX_REPLAY_ENTRIES, MAX_TAGS_PER_FRAME,
};

/// Enclave options. Build with [`EnclaveConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct EnclaveConfig {
    /// Log origin and note key name, e.g. `leadgate.dev/log`.
    pub origin: String,
    /// Periodic checkpoint interval, ms (default 1 hour).
    pub checkpoint_interval_ms: u64,
    /// How old a submission's `issued_at_ms` may be, ms (default 10 min). Replays are detected
    /// within this window; outside it a submission is stale.
    pub replay_window_ms: u64,
    /// Replay filter size per generation, log2 bits (default 26 = 8 MiB).
    pub replay_filter_bits_log2: u32,
    /// Duplicate-email filter size, log2 bits (default 27 = 16 MiB).
    pub tag_filter_bits_log2: u32,
    /// The dev attestation root (PEM), reported to the host in dev mode.
    pub dev_root_pem: Option<String>,
    /// Threads that verify and open the leads of one batch (default: the available CPUs, at
    /// most 8). Appending stays on one thread, in order.
    pub workers: usize,
    /// Reserve of an auction whose seller names none, smallest token units (default 0).
    pub default_reserve: TokenAmount,
    /// Auction duration when the seller names none, ms (default 1 hour).
    pub default_duration_ms: u64,
    /// Shortest auction a seller may ask for, ms (default 1 s).
    pub min_duration_ms: u64,
    /// Longest auction a seller may ask for, ms (default 7 days).
    pub max_duration_ms: u64,
    /// How long after close a winner may ask for its lead, ms (default 7 days). Restarts
    /// replay the log back to the oldest sale still in this window.
    pub release_window_ms: u64,
    /// Most appended entries kept until the host confirms them durable (default 4,096).
    pub journal_max_entries: usize,
    /// Most bytes kept for those entries (default 32 MiB); see [`crate::journal`].
    pub journal_max_bytes: usize,
}

impl EnclaveConfig {
    /// Defaults for `origin`.
    pub fn new(origin: &str) -> Self {
        Self {
            origin: origin.to_owned(),
            checkpoint_interval_ms: 3_600_000,
            replay_window_ms: crate::replay::DEFAULT_WINDOW_MS,
            replay_filter_bits_log2: crate::replay::GENERATION_BITS_LOG2,
            tag_filter_bits_log2: crate::dedup::DEFAULT_BITS_LOG2,
            dev_root_pem: None,
            workers: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8),
            default_reserve: TokenAmount::default(),
            default_duration_ms: 3_600_000,
            min_duration_ms: 1_000,
            max_duration_ms: 7 * 86_400_000,
            release_window_ms: 7 * 86_400_000,
            journal_max_entries: crate::journal::DEFAULT_MAX_ENTRIES,
            journal_max_bytes: crate::journal::DEFAULT_MAX_BYTES,
        }
    }

    /// The auction a lead accepted at `now_ms` opens, from the seller's request and the
    /// defaults; `None` if the request is out of bounds.
    fn auction_terms(&self, asked: Option<&AuctionRequest>, now_ms: u64) -> Option<AuctionTerms> {
        let asked = asked.copied().unwrap_or_default();
        let duration = asked.duration_ms.unwrap_or(self.default_duration_ms);
        if !(self.min_duration_ms..=self.max_duration_ms).contains(&duration) {
            return None;
        }
        Some(AuctionTerms {
            reserve: asked.reserve.unwrap_or(self.default_reserve),
            closes_at: now_ms.checked_add(duration)?,
            pricing: asked.pricing.unwrap_or(Pricing::FirstPrice),
        })
    }
}

struct Running {
    secrets: Secrets,
    log: Log,
    tags: EmailTags,
    started: bool,
    replay: ReplayGuard,
    sellers: SellerKeys,
    book: AuctionBook,
    /// The boot replay in progress (between Boot and Start).
    restore: Option<Restore>,
    /// Appends the host has not confirmed durable.
    journal: Journal,
}

impl Running {
    /// Keeps an append (and what goes with it) until the host confirms it.
    fn journal(&mut self, appended: &WireAppended, record: JournalRecord) {
        self.journal.push(
            appended.index,
            JournalEntry {
                leaf: appended.leaf.clone(),
                receipt: appended.receipt.clone(),
                record,
            },
        );
    }
}

/// Rule verdict of an opened lead: checked lead and its email tag, or the rule that failed.
type RuleVerdict = Result<(CheckedLead, [u8; 32]), RejectReason>;

/// Stage 1's result for one lead.
enum Opened {
    /// Not decodable, not signed by its seller, or asking for terms out of bounds: refused
    /// before anything else.
    BadSubmission(WireError),
    /// Signed by its seller. `verdict` is the rules' verdict, or the refusal if the ciphertext
    /// did not open to JSON (given only after the replay check, as for one lead at a time).
    Signed(Box<SignedLead>),
}

/// Stage 2's result for one lead.
enum Logged {
    /// Refused; nothing appended.
    Refused(WireError),
    /// Appended; the receipt is signed in stage 3.
    Appended(Box<PendingOutcome>),
}

/// An appended lead waiting for its receipt signature.
struct PendingOutcome {
    lead_id: String,
    accepted: bool,
    reason: Option<String>,
    score: Option<u8>,
    email_tag: Option<[u8; 32]>,
    unsigned: UnsignedAppend,
}

impl PendingOutcome {
    /// Signs the receipt.
    fn finish(self, log_key: &ed25519_dalek::SigningKey) -> SubmitOutcome {
        SubmitOutcome::Logged {
            lead_id: self.lead_id,
            accepted: self.accepted,
            reason: self.reason,
            score: self.score,
            email_tag: self.email_tag.map(|t| ByteBuf::from(t.to_vec())),
            appended: self.unsigned.sign(log_key).into(),
        }
    }
}

/// A lead with a valid seller signature, opened and checked.
struct SignedLead {
    sub: VerifiedSubmission,
    /// The auction it opens if accepted.
    terms: AuctionTerms,
    /// The rules' verdict, or the refusal if the ciphertext did not open to JSON.
    verdict: Result<RuleVerdict, WireError>,
}

/// Verifies, opens and checks one lead. Touches no mutable state.
fn open_one(
    config: &EnclaveConfig,
    secrets: &Secrets,
    sellers: &SellerKeys,
    lead: &SealedLead,
    now_ms: u64,
) -> Opened {
    let origin = config.origin.as_str();
    let year = year_of(now_ms);
    let verified = lead.decode().and_then(|d| match sellers.get(&d.seller) {
        Some(key) => d.verify_with_key(origin, key),
        None => d.verify(origin),
    });
    let sub = match verified {
        Ok(s) => s,
        Err(e) => return Opened::BadSubmission(EnclaveError::from(e).into()),
    };
    let Some(terms) = config.auction_terms(sub.auction.as_ref(), now_ms) else {
        return Opened::BadSubmission(
            EnclaveError::BadTerms {
                min_ms: config.min_duration_ms,
                max_ms: config.max_duration_ms,
            }
            .into(),
        );
    };
    let verdict = match open_lead(secrets.intake_key(), origin, &sub) {
        Err(e) => Err(EnclaveError::from(e).into()),
        Ok(p) if p.len() > MAX_LEAD_BYTES => {
            drop(zeroize::Zeroizing::new(p));
            Err(EnclaveError::LeadTooLarge.into())
        }
        Ok(p) => {
            let plaintext = zeroize::Zeroizing::new(p);
            match serde_json::from_slice::<serde_json::Value>(&plaintext) {
                Err(_) => Err(EnclaveError::LeadMalformedJson.into()),
                Ok(value) => Ok(check_lead(&value, year).map(|c| {
                    let tag = secrets.email_tag(&c.normalised_email);
                    (c, tag)
                })),
            }
        }
    };
    Opened::Signed(Box::new(SignedLead {
        sub,
        terms,
        verdict,
    }))
}

/// The enclave.
pub struct Enclave {
    config: EnclaveConfig,
    sealer: Box<dyn Sealer>,
    attestor: Box<dyn AttestationProvider>,
    running: Option<Running>,
}

fn err(e: impl Into<EnclaveError>) -> Response {
    Response::Error(e.into().into())
}

/// PCR0/1/2 from this enclave's own attestation document (`attestation.provider_failed` if
/// the provider returned a document without them).
fn own_pcrs(document: &[u8]) -> Result<EpochPcrs, EnclaveError> {
    let (_, doc) = leadgate_verifier::attestation::parse_attestation(document)
        .map_err(|e| EnclaveError::OwnDocument(e.to_string()))?;
    let pcr = |i: u8| {
        doc.pcrs
            .get(&i)
            .map(hex::encode)
            .ok_or_else(|| EnclaveError::OwnDocument(format!("no PCR{i}")))
    };
    Ok(EpochPcrs {
        pcr0: pcr(0)?,
        pcr1: pcr(1)?,
        pcr2: pcr(2)?,
    })
}

/// 32-byte hashes from the wire; `None` if any is another length.
fn hashes(bufs: &[ByteBuf]) -> Option<Vec<Hash>> {
    bufs.iter().map(|b| b.as_slice().try_into().ok()).collect()
}

/// Civil year of a Unix ms timestamp (for the `founded_year` plausibility check).
fn year_of(now_ms: u64) -> u64 {
    // Days since 1970-01-01 to civil year (Howard Hinnant's algorithm).
    let z = (now_ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2)) as u64
}

impl Enclave {
    /// A not-yet-booted enclave.
    pub fn new(
        config: EnclaveConfig,
        sealer: Box<dyn Sealer>,
        attestor: Box<dyn AttestationProvider>,
    ) -> Self {
        Self {
            config,
            sealer,
            attestor,
            running: None,
        }
    }

    /// Handles one request at enclave time `now_ms`.
    pub fn handle(&mut self, request: Request, now_ms: u64) -> Response {
        match request {
            Request::Boot {
                sealed_secrets,
                tip,
                aws_credentials,
            } => self.boot(sealed_secrets, tip, aws_credentials.as_ref(), now_ms),
            Request::LoadTags { tags } => self.load_tags(tags),
            Request::Replay {
                from,
                base,
                entries,
            } => self.replay(from, base, entries),
            Request::Start => {
                let resp = self.start(now_ms);
                if let (Response::Started { appended }, Some(r)) = (&resp, self.running.as_mut()) {
                    r.journal(appended, JournalRecord::None);
                }
                resp
            }
            Request::Attest { nonce } => self.attest(nonce, now_ms),
            Request::Submit { leads } => {
                let resp = self.submit(&leads, now_ms);
                if let (Response::Submitted { results }, Some(r)) = (&resp, self.running.as_mut()) {
                    for (lead, result) in leads.into_iter().zip(results) {
                        if let SubmitOutcome::Logged { appended, .. } = result {
                            r.journal(appended, JournalRecord::Lead(lead));
                        }
                    }
                }
                resp
            }
            Request::Bid { bids } => {
                let resp = self.bid(&bids, now_ms);
                if let (Response::Bids { results }, Some(r)) = (&resp, self.running.as_mut()) {
                    for (bid, result) in bids.into_iter().zip(results) {
                        if let BidOutcome::Logged { appended, .. } = result {
                            r.journal(appended, JournalRecord::Bid(bid));
                        }
                    }
                }
                resp
            }
            Request::Tick => {
                let resp = self.tick(now_ms);
                if let (Response::Ticked { closed }, Some(r)) = (&resp, self.running.as_mut()) {
                    for appended in closed {
                        r.journal(appended, JournalRecord::None);
                    }
                }
                resp
            }
            Request::Release { request, lead } => {
                let resp = self.release(request, lead, now_ms);
                if let (Response::Released { released, appended }, Some(r)) =
                    (&resp, self.running.as_mut())
                {
                    r.journal(appended, JournalRecord::Release(released.clone()));
                }
                resp
            }
            Request::Checkpoint { force, anchor } => self.checkpoint(force, anchor, now_ms),
            Request::Status => self.status(),
            Request::Durable { size } => match self.ready() {
                Some(r) => {
                    r.journal.confirm(size);
                    Response::Ok
                }
                None => err(EnclaveError::NotReady),
            },
            Request::Journal { from } => match self.ready() {
                Some(r) => match r.journal.read(from, MAX_JOURNAL_ENTRIES, MAX_JOURNAL_BYTES) {
                    Ok(entries) => Response::Journal { entries },
                    Err(gap) => err(gap),
                },
                None => err(EnclaveError::NotReady),
            },
            Request::Reset => {
                if self.running.take().is_some() {
                    tracing::warn!(
                        "running state dropped at the host's request; next boot starts a new epoch"
                    );
                }
                Response::Ok
            }
        }
    }

    /// Entries and bytes the journal holds now (see [`crate::journal`]); zeros before boot.
    pub fn journal_usage(&self) -> (usize, usize) {
        self.running.as_ref().map_or((0, 0), |r| r.journal.usage())
    }

    fn boot(
        &mut self,
        sealed: Option<ByteBuf>,
        tip: Option<Tip>,
        aws_credentials: Option<&leadgate_protocol::AwsCredentials>,
        now_ms: u64,
    ) -> Response {
        if self.running.is_some() {
            return err(EnclaveError::AlreadyBooted);
        }
        let (secrets, sealed) = match sealed {
            None if tip.is_some() => return err(EnclaveError::NoSecrets),
            None => {
                let s = Secrets::generate();
                match self.sealer.seal(&s.to_bytes(), aws_credentials) {
                    Ok(blob) => (s, blob),
                    Err(e) => return err(e),
                }
            }
            Some(blob) => {
                let plain = match self.sealer.unseal(&blob, aws_credentials) {
                    Ok(p) => p,
                    Err(e) => return err(e),
                };
                match Secrets::from_bytes(&plain) {
                    Ok(s) => (s, blob.into_vec()),
                    Err(e) => return err(EnclaveError::SecretsMalformed(e)),
                }
            }
        };
        let origin = self.config.origin.clone();
        let (epoch, frontier) = match tip {
            None => (1, Frontier::new()),
            Some(tip) => {
                // The tip must be ours: our receipt, a frontier that hashes to its root, and a
                // checkpoint (if any) signed by us at or below that size.
                let receipt = match tip
                    .receipt
                    .verify(&secrets.log_key().verifying_key(), &origin)
                {
                    Ok(r) => r,
                    Err(e) => return err(EnclaveError::TipInvalid(format!("tip receipt: {e}"))),
                };
                let frontier =
                    match hashes(&tip.peaks).map(|p| Frontier::from_parts(receipt.index + 1, p)) {
                        Some(Ok(f)) if f.root() == receipt.root => f,
                        _ => {
                            return err(EnclaveError::TipInvalid(
                                "frontier does not match the tip receipt's root".into(),
                            ))
                        }
                    };
                if let Some(note) = &tip.checkpoint {
                    let verifier = match secrets.public_keys(&origin).note_verifier() {
                        Ok(v) => v,
                        Err(e) => return err(EnclaveError::BadOrigin(e)),
                    };
                    let cp = match verify_checkpoint(note, &verifier, &origin) {
                        Ok(c) if c.checkpoint().size <= frontier.size() => c,
                        Ok(_) => {
                            return err(EnclaveError::TipInvalid(
                                "checkpoint is beyond the tip".into(),
                            ))
                        }
                        Err(e) => return err(EnclaveError::TipInvalid(format!("checkpoint: {e}"))),
                    };
                    // The tip must extend the checkpoint we signed (RFC 9162 §2.1.4.2).
                    let consistent = hashes(&tip.checkpoint_consistency).is_some_and(|p| {
                        merkle::verify_consistency(
                            cp.checkpoint().size,
                            frontier.size(),
                            &p,
                            &cp.checkpoint().root,
                            &frontier.root(),
                        )
                        .is_ok()
                    });
                    if !consistent {
                        return err(EnclaveError::TipInvalid(
                            "tip is not consistent with the checkpoint".into(),
                        ));
                    }
                }
                (receipt.epoch + 1, frontier)
            }
        };
        let keys = secrets.public_keys(&origin).to_user_data();
        let journal = Journal::new(
            frontier.size(),
            self.config.journal_max_entries,
            self.config.journal_max_bytes,
        );
        self.running = Some(Running {
            journal,
            log: Log::new(&origin, epoch, frontier, now_ms),
            secrets,
            tags: EmailTags::new(self.config.tag_filter_bits_log2),
            started: false,
            sellers: SellerKeys::new(crate::sellers::DEFAULT_CAPACITY),
            book: AuctionBook::default(),
            restore: None,
            replay: ReplayGuard::new(
                self.config.replay_window_ms,
                self.config.replay_filter_bits_log2,
                now_ms,
            ),
        });
        Response::Booted {
            sealed_secrets: ByteBuf::from(sealed),
            keys: ByteBuf::from(keys),
            dev_root_pem: self.config.dev_root_pem.clone(),
        }
    }

    fn load_tags(&mut self, tags: Vec<ByteBuf>) -> Response {
        let Some(r) = self.running.as_mut().filter(|r| !r.started) else {
            return err(EnclaveError::BadState(
                "tags are loaded between Boot and Start",
            ));
        };
        if tags.len() > MAX_TAGS_PER_FRAME {
            return err(EnclaveError::TooManyTags);
        }
        let parsed: Option<Vec<[u8; 32]>> =
            tags.iter().map(|t| t.as_slice().try_into().ok()).collect();
        let Some(parsed) = parsed else {
            return err(EnclaveError::MalformedTag);
        };
        for t in &parsed {
            r.tags.record(t);
        }
        Response::Ok
    }

    /// Rebuilds the auction book from replayed leaves (see [`crate::restore`]).
    fn replay(
        &mut self,
        from: u64,
        base: Option<ReplayBase>,
        entries: Vec<ReplayEntry>,
    ) -> Response {
        let origin = self.config.origin.clone();
        let Some(r) = self.running.as_mut().filter(|r| !r.started) else {
            return err(EnclaveError::BadState(
                "leaves are replayed between Boot and Start",
            ));
        };
        if entries.len() > MAX_REPLAY_ENTRIES {
            return err(EnclaveError::TooManyEntries);
        }
        let mut restore = match r.restore.take() {
            Some(rs) if rs.next_index() == from && base.is_none() => rs,
            Some(_) => {
                self.running = None;
                return err(EnclaveError::ReplayInvalid(
                    "replay chunks must follow on; boot again".into(),
                ));
            }
            None => match Restore::begin(from, base, &r.secrets.log_key().verifying_key(), &origin)
            {
                Ok(rs) => rs,
                Err(e) => return err(e),
            },
        };
        if let Err(e) = restore.apply(&entries, &mut r.book, r.secrets.intake_key(), &origin) {
            // The book may be half-built: only a new boot may continue.
            self.running = None;
            return err(e);
        }
        r.restore = Some(restore);
        Response::Ok
    }

    fn start(&mut self, now_ms: u64) -> Response {
        let origin = self.config.origin.clone();
        let release_window_ms = self.config.release_window_ms;
        let Some(r) = self.running.as_mut().filter(|r| !r.started) else {
            return err(EnclaveError::BadState("Start follows Boot, once"));
        };
        // With a tip, the auction book must have been rebuilt from a complete replay.
        if r.log.size() > 0 {
            let checked = match r.restore.take() {
                Some(rs) => rs.finish(r.log.frontier()),
                None => Err(EnclaveError::ReplayInvalid(
                    "a log with a tip must be replayed before Start".into(),
                )),
            };
            if let Err(e) = checked {
                self.running = None;
                return err(e);
            }
        }
        r.book.expire_sales(now_ms, release_window_ms);
        let keys = r.secrets.public_keys(&origin);
        let log_key = match keys.note_verifier() {
            Ok(v) => v.to_vkey_string(),
            Err(e) => return err(EnclaveError::BadOrigin(e)),
        };
        // The image's own measurements, as its attestation documents report them.
        let pcrs = match self
            .attestor
            .attest(now_ms, None, &keys.to_user_data(), &keys.intake_key)
            .map_err(EnclaveError::from)
            .and_then(|doc| own_pcrs(&doc))
        {
            Ok(p) => p,
            Err(e) => return err(e),
        };
        let event = Event::LogEpoch(LogEpoch {
            time: now_ms,
            epoch: r.log.epoch(),
            previous_size: r.log.size(),
            previous_root: hex::encode(r.log.root()),
            origin,
            log_key,
            intake_key: hex::encode(keys.intake_key),
            anchor_key: hex::encode(keys.anchor_key),
            replay_from: r.book.replay_from(r.log.size()),
            pcrs: Some(pcrs),
        });
        match r.log.append(r.secrets.log_key(), &event) {
            Ok(a) => {
                r.started = true;
                tracing::info!(
                    epoch = r.log.epoch(),
                    size = r.log.size(),
                    "log epoch started"
                );
                Response::Started { appended: a.into() }
            }
            Err(e) => err(e),
        }
    }

    fn ready(&mut self) -> Option<&mut Running> {
        self.running.as_mut().filter(|r| r.started)
    }

    fn attest(&mut self, nonce: Option<ByteBuf>, now_ms: u64) -> Response {
        let origin = self.config.origin.clone();
        let Some(r) = self.ready() else {
            return err(EnclaveError::NotReady);
        };
        let keys = r.secrets.public_keys(&origin);
        match self.attestor.attest(
            now_ms,
            nonce.as_deref().map(|n| n.as_slice()),
            &keys.to_user_data(),
            &keys.intake_key,
        ) {
            Ok(doc) => Response::Attestation {
                document: ByteBuf::from(doc),
            },
            Err(e) => err(e),
        }
    }

    fn submit(&mut self, leads: &[SealedLead], now_ms: u64) -> Response {
        if leads.len() > MAX_BATCH {
            return err(EnclaveError::BatchTooLarge {
                max: MAX_BATCH,
                what: "leads",
            });
        }
        let workers = self.config.workers;
        let config = &self.config;
        let Some(r) = self.running.as_mut().filter(|r| r.started) else {
            return err(EnclaveError::NotReady);
        };
        // Stage 1, in parallel: signature, HPKE open, rules. Stage 2, in order: replay memory,
        // duplicate emails, the log. Refusal codes are the same as checking one lead at a time.
        r.sellers.warm(leads.iter().map(|l| l.seller.as_str()));
        let opened = par_map(leads.iter().collect(), workers, |l| {
            open_one(config, &r.secrets, &r.sellers, l, now_ms)
        });
        let logged: Vec<Logged> = opened
            .into_iter()
            .map(|o| Self::log_one(r, o, now_ms))
            .collect();
        // Stage 3, in parallel: the receipts' signatures (the tree is already final).
        let key = r.secrets.log_key();
        let results = par_map(logged, workers, |l| match l {
            Logged::Appended(p) => p.finish(key),
            Logged::Refused(e) => SubmitOutcome::Refused(e),
        });
        Response::Submitted { results }
    }

    fn log_one(r: &mut Running, opened: Opened, now_ms: u64) -> Logged {
        Self::log_one_inner(r, opened, now_ms).unwrap_or_else(Logged::Refused)
    }

    /// Stage 2 for one lead: replay memory, duplicate emails, the tree. `Err` is a refusal.
    fn log_one_inner(r: &mut Running, opened: Opened, now_ms: u64) -> Result<Logged, WireError> {
        let (sub, terms, verdict) = match opened {
            Opened::BadSubmission(e) => return Err(e),
            Opened::Signed(signed) => (signed.sub, signed.terms, signed.verdict),
        };
        match r
            .replay
            .check(&sub.ciphertext_sha256, sub.issued_at_ms, now_ms)
        {
            ReplayVerdict::Fresh => {}
            ReplayVerdict::Stale => return Err(EnclaveError::SubmissionStale.into()),
            ReplayVerdict::Replayed => return Err(EnclaveError::SubmissionReplayed.into()),
        }
        let verdict = verdict?;
        r.replay.record(&sub.ciphertext_sha256);
        let lead_id = sub.lead_id();
        let seller = hex::encode(sub.seller);
        let ciphertext_sha256 = hex::encode(sub.ciphertext_sha256);
        let verdict = verdict.and_then(|(c, tag)| {
            if r.tags.seen(&tag) {
                Err(RejectReason::DuplicateEmail)
            } else {
                Ok((c, tag))
            }
        });
        let (event, accepted, reason, score, email_tag) = match verdict {
            Ok((c, tag)) => (
                Event::LeadAccepted(LeadAccepted {
                    time: now_ms,
                    lead_id: lead_id.clone(),
                    seller,
                    ciphertext_sha256,
                    score: c.score,
                    reasons: c.reasons,
                    listing: c.listing,
                    email_tag: hex::encode(tag),
                    auction: terms,
                }),
                true,
                None,
                Some(c.score),
                Some(tag),
            ),
            Err(reason) => (
                Event::LeadRejected(LeadRejected {
                    time: now_ms,
                    lead_id: lead_id.clone(),
                    seller,
                    ciphertext_sha256,
                    reason: reason.code().to_owned(),
                }),
                false,
                Some(reason.code().to_owned()),
                None,
                None,
            ),
        };
        let unsigned = r.log.append_unsigned(&event).map_err(EnclaveError::from)?;
        if let Some(tag) = &email_tag {
            r.tags.record(tag);
            r.book.open(
                lead_id.clone(),
                unsigned.index(),
                sub.ciphertext_sha256,
                terms,
            );
        }
        Ok(Logged::Appended(Box::new(PendingOutcome {
            lead_id,
            accepted,
            reason,
            score,
            email_tag,
            unsigned,
        })))
    }

    fn checkpoint(&mut self, force: bool, anchor: Option<AnchorTarget>, now_ms: u64) -> Response {
        let interval = self.config.checkpoint_interval_ms;
        let origin = self.config.origin.clone();
        let domain = match anchor.map(|t| anchor_domain(&t)).transpose() {
            Ok(d) => d,
            Err(()) => return err(EnclaveError::BadAnchorTarget),
        };
        let Some(r) = self.ready() else {
            return err(EnclaveError::NotReady);
        };
        if !force && !r.log.checkpoint_due(now_ms, interval) {
            return Response::Checkpoint {
                note: None,
                anchor_signature: None,
            };
        }
        let note = r.log.checkpoint(r.secrets.log_key(), now_ms);
        let anchor_signature = match domain {
            None => None,
            Some(d) => {
                let digest = d.checkpoint_digest(&origin, r.log.size(), &r.log.root());
                let key = k256::ecdsa::SigningKey::from(r.secrets.anchor_key());
                match anchor::sign_digest(&key, &digest) {
                    Ok(sig) => Some(ByteBuf::from(sig.to_vec())),
                    Err(e) => return err(e),
                }
            }
        };
        Response::Checkpoint {
            note: Some(ByteBuf::from(note.to_bytes())),
            anchor_signature,
        }
    }

    fn status(&mut self) -> Response {
        let origin = self.config.origin.clone();
        let Some(r) = self.ready() else {
            return err(EnclaveError::NotReady);
        };
        Response::Status(Status {
            size: r.log.size(),
            root: ByteBuf::from(r.log.root().to_vec()),
            epoch: r.log.epoch(),
            keys: ByteBuf::from(r.secrets.public_keys(&origin).to_user_data()),
            origin,
        })
    }
}

/// The EIP-712 domain of an anchor target; an error unless the contract is 20 bytes.
fn anchor_domain(t: &AnchorTarget) -> Result<anchor::AnchorDomain, ()> {
    let contract: [u8; 20] = t.contract.as_slice().try_into().map_err(|_| ())?;
    Ok(anchor::AnchorDomain {
        chain_id: t.chain_id,
        contract,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_year() {
        assert_eq!(year_of(0), 1970);
        assert_eq!(year_of(1_700_000_000_000), 2023);
        assert_eq!(year_of(1_798_761_599_000), 2026); // 2026-12-31T23:59:59Z
        assert_eq!(year_of(1_798_761_600_000), 2027);
    }
}
