//! The enclave as a state machine: requests in, responses (with log records to persist) out.
//! Its state is one `Phase` value: unbooted, restoring (between `Boot` and `Start`) or
//! serving. No sockets and no clock here: the link server passes the enclave's own clock
//! reading (`now_ms`, Unix ms) with each request, so every flow is testable in memory. The
//! one call that may do I/O, sealing at `Boot`, is split out ([`Enclave::boot_secrets`]) so
//! the server runs it without the enclave's lock.
//!
//! The flows: `boot.rs` (start-up), `intake.rs` (lead submission), `market.rs` (bids, closes,
//! releases); checkpoints, attestation and status here.

mod autobid;
mod boot;
mod intake;
mod market;

pub use boot::BootSecrets;

use leadgate_verifier::anchor;
use leadgate_verifier::auction::{Pricing, TokenAmount};
use leadgate_verifier::event::AuctionTerms;
use leadgate_verifier::intake::AuctionRequest;
use leadgate_verifier::merkle::Hash;
use serde_bytes::ByteBuf;

use crate::attest::AttestationProvider;
use crate::auctions::AuctionBook;
use crate::dedup::EmailTags;
use crate::error::EnclaveError;
use crate::journal::Journal;
use crate::log::{Log, SignedTree};
use crate::replay::{ReplayGuard, SealedBidFilter};
use crate::restore::Restore;
use crate::sealing::Sealer;
use crate::secrets::Secrets;
use crate::sellers::SellerKeys;
use leadgate_protocol::{
    AnchorTarget, BidOutcome, CloseOutcome, JournalEntry, JournalRecord, Request, Response, Status,
    SubmitOutcome, WireAppended, MAX_JOURNAL_BYTES, MAX_JOURNAL_ENTRIES,
};

/// An enclave option out of range (see [`EnclaveConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("enclave option {option}: {why}")]
pub struct ConfigError {
    /// The option's field name.
    pub option: &'static str,
    /// What is wrong with it.
    pub why: String,
}

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
    /// How long after close a winner may ask for its lead, ms (default 7 days). The enclave
    /// keeps nothing per sale: a release proves the sale from the log.
    pub release_window_ms: u64,
    /// Appends after which a sealed state is due (default 50,000): a restart replays at most
    /// about this many leaves (plus what the host had not stored yet) after the state.
    pub state_interval_entries: u64,
    /// Sealed-bid replay filter size per generation, log2 bits (default 24 = 2 MiB; see
    /// [`crate::replay::SealedBidFilter`]).
    pub bid_filter_bits_log2: u32,
    /// Most sellers' decompressed keys kept (default 4,096; see [`crate::sellers`]).
    pub seller_cache_capacity: usize,
    /// Most appended entries kept until the host confirms them durable (default 4,096).
    pub journal_max_entries: usize,
    /// Most bytes kept for those entries (default 32 MiB); see [`crate::journal`].
    pub journal_max_bytes: usize,
    /// Where a freshly started enclave learns the newest tree the log signed before it signs
    /// anything (see [`crate::floor`]); none: from the host's tip alone.
    pub floor_sources: Vec<crate::floor::FloorSource>,
    /// The escrow this gateway settles sales on (`docs/settlement.md`); none: auctions close
    /// without a settlement and nothing is paid on chain.
    pub settlement: Option<SettlementConfig>,
    /// Where a settling enclave reads its escrow (required with [`EnclaveConfig::settlement`]):
    /// the fee terms and withdrawal delay at boot, each bidder's deposit, `settled` before a
    /// release. See [`crate::chain`].
    pub escrow_chain: Option<EscrowReader>,
    /// How long after an auction closes its settlement is expected to be paid, ms (default 1
    /// hour). The escrow's withdrawal delay must exceed the longest auction plus this plus
    /// the deposit read age, or the enclave refuses to boot: money backing a bid cannot leave
    /// before the sale is paid.
    pub settlement_window_ms: u64,
    /// Bounds of the deposit book ([`crate::deposits`]): most buyers tracked (default
    /// 65,536), most unpaid wins tracked in all (default 262,144), longest a deposit read is
    /// reused, ms (default 2,000).
    pub deposit_max_accounts: usize,
    /// See [`EnclaveConfig::deposit_max_accounts`].
    pub deposit_max_unpaid: usize,
    /// See [`EnclaveConfig::deposit_max_accounts`].
    pub deposit_max_age_ms: u64,
    /// Most buyers with an active auto-bid rule set, or a cancellation within the replay
    /// window (default 8,192; see [`crate::autobid`]).
    pub rule_book_capacity: usize,
}

/// The escrow reads of a settling enclave: [`crate::chain::RpcEscrow`] in the binary.
#[derive(Clone)]
pub struct EscrowReader(pub std::sync::Arc<dyn crate::chain::EscrowChain>);

impl std::fmt::Debug for EscrowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EscrowReader")
    }
}

/// The `LeadEscrow` deployment a gateway settles on: its chain, address and fee terms, which
/// must be the contract's (they are part of every signed settlement). Part of the enclave's
/// settings, so of its measured image on Nitro.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettlementConfig {
    /// Chain id and escrow address.
    pub domain: leadgate_verifier::settlement::EscrowDomain,
    /// The escrow's fee: basis points and recipient.
    pub fee: leadgate_verifier::settlement::FeeTerms,
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
            state_interval_entries: 50_000,
            bid_filter_bits_log2: crate::replay::BID_FILTER_BITS_LOG2,
            seller_cache_capacity: crate::sellers::DEFAULT_CAPACITY,
            journal_max_entries: crate::journal::DEFAULT_MAX_ENTRIES,
            journal_max_bytes: crate::journal::DEFAULT_MAX_BYTES,
            floor_sources: Vec::new(),
            settlement: None,
            escrow_chain: None,
            settlement_window_ms: 3_600_000,
            deposit_max_accounts: crate::deposits::DEFAULT_MAX_ACCOUNTS,
            deposit_max_unpaid: crate::deposits::DEFAULT_MAX_UNPAID,
            deposit_max_age_ms: crate::deposits::DEFAULT_MAX_AGE_MS,
            rule_book_capacity: crate::autobid::DEFAULT_CAPACITY,
        }
    }

    /// Checks the options once, at start (`leadgate-enclave` refuses to start otherwise), so
    /// that no request meets a configuration that cannot work.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first option out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |option: &'static str, why: String| Err(ConfigError { option, why });
        let any_key = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]).verifying_key();
        if leadgate_verifier::note::NoteVerifier::new(&self.origin, any_key).is_err() {
            return bad(
                "origin",
                format!("{:?} is not a signed-note key name", self.origin),
            );
        }
        for (option, bits) in [
            ("replay_filter_bits_log2", self.replay_filter_bits_log2),
            ("tag_filter_bits_log2", self.tag_filter_bits_log2),
            ("bid_filter_bits_log2", self.bid_filter_bits_log2),
        ] {
            if !(crate::bloom::MIN_BITS_LOG2..=crate::bloom::MAX_BITS_LOG2).contains(&bits) {
                return bad(
                    option,
                    format!(
                        "{bits} is outside {}..={}",
                        crate::bloom::MIN_BITS_LOG2,
                        crate::bloom::MAX_BITS_LOG2
                    ),
                );
            }
        }
        for (option, ms) in [
            ("checkpoint_interval_ms", self.checkpoint_interval_ms),
            ("replay_window_ms", self.replay_window_ms),
            ("min_duration_ms", self.min_duration_ms),
            ("release_window_ms", self.release_window_ms),
        ] {
            if ms == 0 {
                return bad(option, "must be above 0".into());
            }
        }
        if !(self.min_duration_ms..=self.max_duration_ms).contains(&self.default_duration_ms) {
            return bad(
                "default_duration_ms",
                format!(
                    "{} is outside min_duration_ms..=max_duration_ms ({}..={})",
                    self.default_duration_ms, self.min_duration_ms, self.max_duration_ms
                ),
            );
        }
        if self.workers == 0 {
            return bad("workers", "must be at least 1".into());
        }
        if self.state_interval_entries == 0 {
            return bad("state_interval_entries", "must be above 0".into());
        }
        if self.rule_book_capacity == 0 {
            return bad("rule_book_capacity", "must be at least 1".into());
        }
        if self.seller_cache_capacity == 0 {
            return bad("seller_cache_capacity", "must be at least 1".into());
        }
        if let Some(s) = &self.settlement {
            if self.escrow_chain.is_none() {
                return bad(
                    "escrow_chain",
                    "a settling enclave reads deposits from the chain: give the escrow's RPC"
                        .into(),
                );
            }
            if s.domain.escrow == [0u8; 20] {
                return bad("settlement", "the escrow is the zero address".into());
            }
            if !s.fee.is_valid() {
                return bad(
                    "settlement",
                    format!(
                        "fee of {} bps to {}: at most 10,000 bps, and a recipient exactly when the fee is above 0",
                        s.fee.fee_bps,
                        leadgate_verifier::anchor::address_hex(&s.fee.fee_recipient)
                    ),
                );
            }
        }
        if self.journal_max_entries == 0 || self.journal_max_bytes == 0 {
            return bad(
                "journal_max_entries",
                "the journal bounds must be above 0".into(),
            );
        }
        Ok(())
    }

    /// The auction a lead accepted at `now_ms` opens, from the seller's request and the
    /// defaults. An instant auction closes at `now_ms`, in the same request.
    ///
    /// # Errors
    /// [`EnclaveError::BadTerms`] for a duration out of bounds, or given to an instant
    /// auction.
    fn auction_terms(
        &self,
        asked: Option<&AuctionRequest>,
        now_ms: u64,
    ) -> Result<AuctionTerms, EnclaveError> {
        let asked = asked.copied().unwrap_or_default();
        let bad = || EnclaveError::BadTerms {
            min_ms: self.min_duration_ms,
            max_ms: self.max_duration_ms,
        };
        let closes_at = match (asked.instant, asked.duration_ms) {
            (true, None) => now_ms,
            (true, Some(_)) => return Err(EnclaveError::InstantWithDuration),
            (false, d) => {
                let duration = d.unwrap_or(self.default_duration_ms);
                if !(self.min_duration_ms..=self.max_duration_ms).contains(&duration) {
                    return Err(bad());
                }
                now_ms.checked_add(duration).ok_or_else(bad)?
            }
        };
        Ok(AuctionTerms {
            reserve: asked.reserve.unwrap_or(self.default_reserve),
            closes_at,
            pricing: asked.pricing.unwrap_or(Pricing::FirstPrice),
            payout: asked.payout,
            off_site: asked.off_site,
            instant: asked.instant,
        })
    }
}

struct Running {
    secrets: Secrets,
    log: Log,
    tags: EmailTags,
    replay: ReplayGuard,
    bids: SealedBidFilter,
    sellers: SellerKeys,
    book: AuctionBook,
    /// Buyers' auto-bid rule sets and budgets.
    rules: crate::autobid::RuleBook,
    /// Appends the host has not confirmed durable.
    journal: Journal,
    /// The log size of the state whose parts are being handed out (see [`crate::state`]),
    /// with the unpaid wins as they were at part 0 (a chain read may drop some before the
    /// last part, with no append).
    sealing: Option<(u64, Vec<crate::deposits::UnpaidWin>)>,
    /// The log size of the state sealed last (or restored from).
    sealed_size: u64,
    /// What each bidder has committed against its deposit (settling gateways).
    deposits: crate::deposits::Deposits,
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

/// Where the enclave is in the start-up sequence (`leadgate_protocol`'s crate docs): one
/// state, so no request can see a half-started enclave.
// One per enclave, so the size of its largest variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Phase {
    /// Waiting for `Boot` (at first, after `Reset`, and after a failed replay or `Start`).
    Unbooted,
    /// Booted: `LoadState` and `Replay` rebuild what the log implies, until `Start`.
    Restoring {
        /// The state being rebuilt.
        running: Box<Running>,
        /// The replay in progress, from its first chunk (or the loaded state) on.
        restore: Option<Restore>,
        /// Sealed state parts received so far.
        loading: Option<crate::state::StateLoad>,
        /// On a settling gateway: the open auctions whose logged bids the host gave back
        /// (`LoadBids`) and `deposits` counts, with how many.
        bids_loaded: std::collections::HashMap<crate::auctions::AuctionKey, u32>,
    },
    /// Started (`log.epoch` appended): serves every other request.
    Serving(Box<Running>),
}

impl Phase {
    fn serving(&mut self) -> Option<&mut Running> {
        match self {
            Phase::Serving(r) => Some(r),
            _ => None,
        }
    }

    fn restoring(&mut self) -> Option<Restoring<'_>> {
        match self {
            Phase::Restoring {
                running,
                restore,
                loading,
                bids_loaded,
            } => Some(Restoring {
                running,
                restore,
                loading,
                bids_loaded,
            }),
            _ => None,
        }
    }
}

/// The parts of [`Phase::Restoring`], borrowed.
struct Restoring<'a> {
    running: &'a mut Running,
    restore: &'a mut Option<Restore>,
    loading: &'a mut Option<crate::state::StateLoad>,
    bids_loaded: &'a mut std::collections::HashMap<crate::auctions::AuctionKey, u32>,
}

/// The enclave.
pub struct Enclave {
    config: EnclaveConfig,
    sealer: std::sync::Arc<dyn Sealer>,
    attestor: Box<dyn AttestationProvider>,
    phase: Phase,
    /// The newest tree this process signed before its running state was dropped (`Reset`),
    /// or learned at its first boot from the floor sources: every later `Boot` must bring a
    /// tip that extends it. While serving, the log itself is the newest signed tree.
    floor: Option<SignedTree>,
}

fn err(e: impl Into<EnclaveError>) -> Response {
    Response::Error(e.into().into())
}

/// 32-byte hashes from the wire; `None` if any is another length.
fn hashes(bufs: &[ByteBuf]) -> Option<Vec<Hash>> {
    bufs.iter().map(|b| b.as_slice().try_into().ok()).collect()
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
            sealer: sealer.into(),
            attestor,
            phase: Phase::Unbooted,
            floor: None,
        }
    }

    /// Handles one request at enclave time `now_ms`.
    pub fn handle(&mut self, request: Request, now_ms: u64) -> Response {
        match request {
            Request::Boot {
                sealed_secrets,
                tip,
                aws_credentials,
            } => {
                if self.is_booted() {
                    return err(EnclaveError::AlreadyBooted);
                }
                let secrets = Self::boot_secrets(
                    self.sealer.as_ref(),
                    sealed_secrets.as_deref().map(|b| b.as_slice()),
                    tip.is_some(),
                    aws_credentials.as_ref(),
                    self.floor_sources(),
                );
                self.boot(secrets, tip, now_ms)
            }
            Request::LoadState { part } => self.load_state(part),
            Request::Restore { from, leaves } => self.restore(from, leaves),
            Request::LoadRules { sets } => self.load_rules(&sets),
            Request::LoadBids { auctions } => self.load_bids(&auctions),
            Request::Start => {
                let resp = self.start(now_ms);
                if let (Response::Started { appended }, Some(r)) = (&resp, self.phase.serving()) {
                    r.journal(appended, JournalRecord::None);
                }
                resp
            }
            Request::Attest { nonce } => self.attest(nonce, now_ms),
            Request::Submit { leads } => {
                if let Some(full) = self.journal_full() {
                    let wire = leadgate_protocol::WireError::from(full);
                    return Response::Submitted {
                        results: leads
                            .iter()
                            .map(|_| SubmitOutcome::Refused(wire.clone()))
                            .collect(),
                        bids: Vec::new(),
                    };
                }
                let resp = self.submit(&leads, now_ms);
                if let (Response::Submitted { results, bids }, Some(r)) =
                    (&resp, self.phase.serving())
                {
                    // In log order: the leads, the bids made under rule sets, the instant
                    // auctions' closes.
                    for (lead, result) in leads.into_iter().zip(results) {
                        if let SubmitOutcome::Logged { appended, .. } = result {
                            r.journal(appended, JournalRecord::Lead(lead));
                        }
                    }
                    for b in bids {
                        r.journal(&b.appended, JournalRecord::Bid(b.sealed.clone()));
                    }
                    for result in results {
                        if let SubmitOutcome::Logged { sale: Some(s), .. } = result {
                            r.journal(s, JournalRecord::None);
                        }
                    }
                }
                resp
            }
            Request::Bid { bids } => {
                if let Some(full) = self.journal_full() {
                    let wire = leadgate_protocol::WireError::from(full);
                    return Response::Bids {
                        results: bids
                            .iter()
                            .map(|_| BidOutcome::Refused(wire.clone()))
                            .collect(),
                    };
                }
                let resp = self.bid(&bids, now_ms);
                if let (Response::Bids { results }, Some(r)) = (&resp, self.phase.serving()) {
                    for (bid, result) in bids.into_iter().zip(results) {
                        if let BidOutcome::Logged { appended, .. } = result {
                            r.journal(appended, JournalRecord::Bid(bid));
                        }
                    }
                }
                resp
            }
            Request::SetRules { rules } => {
                if let Some(full) = self.journal_full() {
                    return err(full);
                }
                let resp = self.set_rules(&rules, now_ms);
                if let (Response::RulesLogged { appended }, Some(r)) = (&resp, self.phase.serving())
                {
                    r.journal(appended, JournalRecord::Rules(rules));
                }
                resp
            }
            Request::CancelRules { cancel } => {
                if let Some(full) = self.journal_full() {
                    return err(full);
                }
                let resp = self.cancel_rules(&cancel, now_ms);
                if let (Response::RulesLogged { appended }, Some(r)) = (&resp, self.phase.serving())
                {
                    r.journal(appended, JournalRecord::None);
                }
                resp
            }
            Request::Tick => self.tick(now_ms),
            Request::Close { auctions } => {
                if let Some(full) = self.journal_full() {
                    let wire = leadgate_protocol::WireError::from(full);
                    return Response::Closed {
                        results: auctions
                            .iter()
                            .map(|_| CloseOutcome::Refused(wire.clone()))
                            .collect(),
                    };
                }
                let resp = self.close(auctions, now_ms);
                if let (Response::Closed { results }, Some(r)) = (&resp, self.phase.serving()) {
                    for result in results {
                        if let CloseOutcome::Logged(appended) = result {
                            r.journal(appended, JournalRecord::None);
                        }
                    }
                }
                resp
            }
            Request::Release {
                request,
                lead,
                proof,
            } => {
                if let Some(full) = self.journal_full() {
                    return err(full);
                }
                let resp = self.release(request, lead, proof, now_ms);
                if let (Response::Released { released, appended }, Some(r)) =
                    (&resp, self.phase.serving())
                {
                    r.journal(appended, JournalRecord::Release(released.clone()));
                }
                resp
            }
            Request::Checkpoint { force, anchor } => self.checkpoint(force, anchor, now_ms),
            Request::SealState { part, force } => self.seal_state(part, force),
            Request::Status => self.status(),
            Request::Durable { size } => match self.phase.serving() {
                Some(r) => {
                    r.journal.confirm(size);
                    Response::Ok
                }
                None => err(EnclaveError::NotReady),
            },
            Request::Journal { from } => match self.phase.serving() {
                Some(r) => match r.journal.read(from, MAX_JOURNAL_ENTRIES, MAX_JOURNAL_BYTES) {
                    Ok(entries) => Response::Journal { entries },
                    Err(gap) => err(gap),
                },
                None => err(EnclaveError::NotReady),
            },
            Request::Reset => self.reset(),
        }
    }

    /// The newest tree this enclave signed (or learned of at boot), which every tree it signs
    /// from now on extends; none before its first boot.
    pub fn newest_signed(&self) -> Option<SignedTree> {
        match &self.phase {
            Phase::Serving(r) => Some(r.log.signed_tree()),
            _ => self.floor.clone(),
        }
    }

    /// The host's `Reset`: drops the running state, keeping the newest signed tree as the
    /// floor the next `Boot`'s tip must reach. Refused while the journal holds entries the
    /// host has not confirmed durable: they may be the only copy of acknowledged entries.
    fn reset(&mut self) -> Response {
        if let Phase::Serving(r) = &self.phase {
            let (held, _) = r.journal.usage();
            if held > 0 {
                return err(EnclaveError::ResetRefused {
                    first: r.journal.first(),
                    end: r.journal.end(),
                });
            }
            self.floor = Some(r.log.signed_tree());
        }
        if !matches!(
            std::mem::replace(&mut self.phase, Phase::Unbooted),
            Phase::Unbooted
        ) {
            tracing::warn!(
                "running state dropped at the host's request; next boot starts a new epoch"
            );
        }
        Response::Ok
    }

    /// `journal.full` while the unconfirmed tail is at its bound (see [`crate::journal`]).
    fn journal_full(&mut self) -> Option<EnclaveError> {
        let r = self.phase.serving()?;
        r.journal.is_full().then(|| {
            let (entries, bytes) = r.journal.usage();
            EnclaveError::JournalFull { entries, bytes }
        })
    }

    /// Entries and bytes the journal holds now (see [`crate::journal`]); zeros before boot.
    pub fn journal_usage(&self) -> (usize, usize) {
        match &self.phase {
            Phase::Unbooted => (0, 0),
            Phase::Restoring { running, .. } | Phase::Serving(running) => running.journal.usage(),
        }
    }

    /// Whether a `Boot` has been taken (the enclave is restoring or serving).
    pub fn is_booted(&self) -> bool {
        !matches!(self.phase, Phase::Unbooted)
    }

    /// The floor sources still to ask: all of them until the floor is known (the first boot
    /// of this process), then none.
    pub fn floor_sources(&self) -> &[crate::floor::FloorSource] {
        if self.floor.is_some() {
            &[]
        } else {
            &self.config.floor_sources
        }
    }

    /// The sealer, for [`Enclave::boot_secrets`] outside the enclave's lock.
    pub fn sealer(&self) -> std::sync::Arc<dyn Sealer> {
        self.sealer.clone()
    }

    fn attest(&mut self, nonce: Option<ByteBuf>, now_ms: u64) -> Response {
        let origin = self.config.origin.clone();
        let Some(r) = self.phase.serving() else {
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

    fn checkpoint(&mut self, force: bool, anchor: Option<AnchorTarget>, now_ms: u64) -> Response {
        let interval = self.config.checkpoint_interval_ms;
        let origin = self.config.origin.clone();
        let domain = match anchor.map(|t| anchor_domain(&t)).transpose() {
            Ok(d) => d,
            Err(()) => return err(EnclaveError::BadAnchorTarget),
        };
        let Some(r) = self.phase.serving() else {
            return err(EnclaveError::NotReady);
        };
        if !force && !r.log.checkpoint_due(now_ms, interval) {
            return Response::Checkpoint {
                note: None,
                anchor_signature: None,
            };
        }
        let note = r
            .log
            .checkpoint(r.secrets.log_key(), now_ms, !force || domain.is_some());
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

    /// Part `part` of the sealed state: part 0 starts a new state when one is due (or
    /// `force`), the later parts follow at the same log size. A later part asked after an
    /// append, or beyond the state, is `boot.state_invalid` (the host asks again from part 0).
    fn seal_state(&mut self, part: u32, force: bool) -> Response {
        let origin = self.config.origin.clone();
        let interval = self.config.state_interval_entries;
        let Some(r) = self.phase.serving() else {
            return err(EnclaveError::NotReady);
        };
        let size = r.log.size();
        if part == 0 {
            let due = size.saturating_sub(r.sealed_size) >= interval;
            if !(force || due) {
                r.sealing = None;
                return Response::SealedState { part: None };
            }
            r.sealing = Some((size, r.deposits.unpaid_wins()));
            r.sealed_size = size;
        }
        let started = std::time::Instant::now();
        let sealed = match r.sealing.as_ref().filter(|(at, _)| *at == size) {
            Some((_, unpaid)) => {
                let state = crate::state::Snapshot {
                    frontier: r.log.frontier(),
                    book: &r.book,
                    rules: &r.rules,
                    unpaid,
                    tags: &r.tags,
                };
                let count = crate::state::part_count(&state);
                (part < count).then(|| {
                    (
                        crate::state::seal_part(&r.secrets.state_key(), &origin, &state, part),
                        count,
                    )
                })
            }
            None => None,
        };
        let Some((sealed, count)) = sealed else {
            r.sealing = None;
            return err(EnclaveError::StateInvalid(
                "no such part of the state being sealed; ask again from part 0".into(),
            ));
        };
        if part + 1 == count {
            r.sealing = None;
        }
        tracing::debug!(
            size,
            part,
            count,
            open = r.book.open_count(),
            ms = started.elapsed().as_millis() as u64,
            "state part sealed"
        );
        Response::SealedState { part: Some(sealed) }
    }

    fn status(&mut self) -> Response {
        let origin = self.config.origin.clone();
        let Some(r) = self.phase.serving() else {
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
    fn config_is_checked_once_with_the_option_named() {
        assert_eq!(EnclaveConfig::new("leadgate.test/log").validate(), Ok(()));
        type Spoil = fn(&mut EnclaveConfig);
        let cases: [(&str, Spoil); 7] = [
            ("origin", |c| c.origin = "has space".into()),
            ("origin", |c| c.origin = String::new()),
            ("tag_filter_bits_log2", |c| c.tag_filter_bits_log2 = 40),
            ("replay_window_ms", |c| c.replay_window_ms = 0),
            ("default_duration_ms", |c| {
                c.default_duration_ms = c.max_duration_ms + 1
            }),
            ("workers", |c| c.workers = 0),
            ("journal_max_entries", |c| c.journal_max_bytes = 0),
        ];
        for (option, spoil) in cases {
            let mut c = EnclaveConfig::new("leadgate.test/log");
            spoil(&mut c);
            assert_eq!(c.validate().map_err(|e| e.option), Err(option));
        }
    }
}
