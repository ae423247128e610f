//! Start-up: `Boot` (the secrets, the host's tip checked against them), `LoadState` and
//! `Replay` (rebuilding what the log implies: a sealed state, then the leaves after it),
//! `Start` (`log.epoch`). The sealing half of `Boot` ([`Enclave::boot_secrets`]) is the only
//! I/O, and runs outside the enclave's lock.

use leadgate_verifier::checkpoint::verify_checkpoint;
use leadgate_verifier::event::{EpochPcrs, Event, LogEpoch};
use leadgate_verifier::merkle::{self, Frontier};
use serde_bytes::ByteBuf;

use crate::auctions::AuctionBook;
use crate::dedup::EmailTags;
use crate::error::EnclaveError;
use crate::floor::{FloorFound, FloorReport, FloorSource};
use crate::journal::Journal;
use crate::log::{Log, SignedTree};
use crate::replay::{ReplayGuard, SealedBidFilter};
use crate::restore::Restore;
use crate::sealing::Sealer;
use crate::secrets::Secrets;
use crate::sellers::SellerKeys;
use crate::state::StateLoad;
use leadgate_protocol::{Response, StatePart, Tip, MAX_RESTORE_ENTRIES};

use super::{err, hashes, Enclave, Phase, Restoring, Running};

/// The secrets a `Boot` brings up: unsealed from the host's blob, or generated and sealed on
/// a first start. Made by [`Enclave::boot_secrets`], which may call KMS over the network, so
/// that the link server can run it without holding the enclave's lock.
pub struct BootSecrets {
    secrets: Secrets,
    sealed: Vec<u8>,
    /// The floor sources' answers (none once the floor is known).
    floor: Vec<FloorReport>,
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

impl Enclave {
    /// The sealing half of `Boot`: unseals `sealed` (the blob the host stored), or on a first
    /// start (no blob and no log tip) generates the secrets and seals them. With the KMS
    /// sealer this is one KMS call through the vsock proxy (up to
    /// [`crate::kms::CALL_TIMEOUT`]), so the link server runs it without the enclave's lock.
    ///
    /// # Errors
    /// [`EnclaveError::NoSecrets`] (a log tip without a blob), [`EnclaveError::Sealing`],
    /// [`EnclaveError::SecretsMalformed`].
    pub fn boot_secrets(
        sealer: &dyn Sealer,
        sealed: Option<&[u8]>,
        has_tip: bool,
        aws_credentials: Option<&leadgate_protocol::AwsCredentials>,
        floor_sources: &[FloorSource],
    ) -> Result<BootSecrets, EnclaveError> {
        let (secrets, sealed) = match sealed {
            None if has_tip => return Err(EnclaveError::NoSecrets),
            None => {
                let secrets = Secrets::generate();
                let sealed = sealer.seal(&secrets.to_bytes(), aws_credentials)?;
                (secrets, sealed)
            }
            Some(blob) => {
                let plain = sealer.unseal(blob, aws_credentials)?;
                let secrets =
                    Secrets::from_bytes(&plain).map_err(EnclaveError::SecretsMalformed)?;
                (secrets, blob.to_vec())
            }
        };
        Ok(BootSecrets {
            secrets,
            sealed,
            floor: crate::floor::fetch_blocking(floor_sources),
        })
    }

    /// The newest tree the floor sources know of, each checked (a checkpoint against the log
    /// key); `None` if they know of none.
    fn floor_from(
        &self,
        secrets: &Secrets,
        reports: Vec<FloorReport>,
    ) -> Result<Option<SignedTree>, EnclaveError> {
        let origin = &self.config.origin;
        let verifier = secrets
            .public_keys(origin)
            .note_verifier()
            .map_err(EnclaveError::BadOrigin)?;
        let mut newest: Option<SignedTree> = None;
        for report in reports {
            let unavailable =
                |why: String| EnclaveError::FloorUnavailable(format!("{}: {why}", report.source));
            let tree = match report.found.map_err(unavailable)? {
                FloorFound::Nothing | FloorFound::Tree { size: 0, .. } => continue,
                FloorFound::Tree { size, root } => SignedTree {
                    size,
                    root,
                    source: report.source.clone(),
                },
                FloorFound::Note(note) => {
                    let cp = verify_checkpoint(&note, &verifier, origin)
                        .map_err(|e| unavailable(format!("checkpoint: {e}")))?;
                    SignedTree {
                        size: cp.checkpoint().size,
                        root: cp.checkpoint().root,
                        source: report.source.clone(),
                    }
                }
            };
            match &newest {
                Some(n) if n.size == tree.size && n.root != tree.root => {
                    return Err(EnclaveError::Fork(format!(
                        "{} and {} name different trees of {} entries",
                        n.source, tree.source, tree.size
                    )))
                }
                Some(n) if n.size >= tree.size => {}
                _ => newest = Some(tree),
            }
        }
        Ok(newest)
    }

    /// A settling enclave's escrow must be the one it signs for: its `feeBps` and
    /// `feeRecipient` the configured ones (they are in every signed settlement), and its
    /// `withdrawalDelay` longer than the longest auction plus the settlement window plus the
    /// deposit read age, so money that backs a bid cannot leave before the sale is paid.
    fn check_escrow(&self) -> Result<(), EnclaveError> {
        let (Some(cfg), Some(chain)) = (&self.config.settlement, &self.config.escrow_chain) else {
            return Ok(());
        };
        let terms = chain
            .0
            .terms()
            .map_err(|e| EnclaveError::ChainUnavailable(format!("escrow terms: {e}")))?;
        let escrow = leadgate_verifier::anchor::address_hex(&cfg.domain.escrow);
        if terms.fee_bps != cfg.fee.fee_bps || terms.fee_recipient != cfg.fee.fee_recipient {
            return Err(EnclaveError::EscrowMismatch(format!(
                "the escrow {escrow} takes {} bps for {}; this enclave signs {} bps for {}",
                terms.fee_bps,
                leadgate_verifier::anchor::address_hex(&terms.fee_recipient),
                cfg.fee.fee_bps,
                leadgate_verifier::anchor::address_hex(&cfg.fee.fee_recipient)
            )));
        }
        let needed_ms = self
            .config
            .max_duration_ms
            .saturating_add(self.config.settlement_window_ms)
            .saturating_add(self.config.deposit_max_age_ms);
        if terms.withdrawal_delay_s.saturating_mul(1_000) <= needed_ms {
            return Err(EnclaveError::EscrowMismatch(format!(
                "the escrow {escrow}'s withdrawal delay of {} s does not exceed the longest auction, the settlement window and the deposit read age ({needed_ms} ms): a buyer could withdraw what backs a bid before the sale is paid",
                terms.withdrawal_delay_s
            )));
        }
        tracing::info!(%escrow, fee_bps = terms.fee_bps, withdrawal_delay_s = terms.withdrawal_delay_s, "escrow terms checked");
        Ok(())
    }

    /// The rest of `Boot`, after [`Enclave::boot_secrets`]: checks the host's tip against
    /// the secrets and enters the restoring phase. No I/O.
    pub fn boot(
        &mut self,
        secrets: Result<BootSecrets, EnclaveError>,
        tip: Option<Tip>,
        now_ms: u64,
    ) -> Response {
        if self.is_booted() {
            return err(EnclaveError::AlreadyBooted);
        }
        let BootSecrets {
            secrets,
            sealed,
            floor,
        } = match secrets {
            Ok(s) => s,
            Err(e) => return err(e),
        };
        // A fresh process learns the floor before it signs anything, and keeps it.
        if self.floor.is_none() && !self.config.floor_sources.is_empty() {
            match self.floor_from(&secrets, floor) {
                Ok(Some(tree)) => {
                    tracing::info!(size = tree.size, source = %tree.source, "floor learned");
                    self.floor = Some(tree);
                }
                Ok(None) => {}
                Err(e) => return err(e),
            }
        }
        if let Err(e) = self.check_escrow() {
            return err(e);
        }
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
        // Never a tree that does not extend the newest one signed: a tip behind it is missing
        // entries (refused until they are back), one of its size must be it, and a longer one
        // must pass through it (checked as the leaves are replayed).
        if let Some(floor) = &self.floor {
            if frontier.size() < floor.size {
                return err(EnclaveError::Rollback {
                    tip: frontier.size(),
                    signed: floor.size,
                    known_from: floor.source.clone(),
                });
            }
            if frontier.size() == floor.size && frontier.root() != floor.root {
                return err(EnclaveError::Fork(format!(
                    "the host's tip of {} entries has another root than the tree {} signed",
                    floor.size, floor.source
                )));
            }
        }
        let keys = secrets.public_keys(&origin).to_user_data();
        let journal = Journal::new(
            frontier.size(),
            self.config.journal_max_entries,
            self.config.journal_max_bytes,
        );
        self.phase = Phase::Restoring {
            restore: None,
            loading: None,
            running: Box::new(Running {
                journal,
                log: Log::new(&origin, epoch, frontier, now_ms),
                secrets,
                tags: EmailTags::new(self.config.tag_filter_bits_log2),
                sellers: SellerKeys::new(self.config.seller_cache_capacity),
                book: AuctionBook::default(),
                rules: crate::autobid::RuleBook::new(
                    self.config.rule_book_capacity,
                    self.config.replay_window_ms,
                ),
                replay: ReplayGuard::new(
                    self.config.replay_window_ms,
                    self.config.replay_filter_bits_log2,
                    now_ms,
                ),
                bids: SealedBidFilter::new(self.config.bid_filter_bits_log2),
                sealing: None,
                sealed_size: 0,
                deposits: crate::deposits::Deposits::new(
                    self.config.deposit_max_accounts,
                    self.config.deposit_max_unpaid,
                    self.config.deposit_max_age_ms,
                    self.config.settlement_window_ms,
                ),
            }),
            bids_loaded: std::collections::HashMap::new(),
        };
        Response::Booted {
            sealed_secrets: ByteBuf::from(sealed),
            keys: ByteBuf::from(keys),
            dev_root_pem: self.config.dev_root_pem.clone(),
            settling: self.config.settlement.is_some(),
        }
    }

    /// Takes one part of a sealed state ([`crate::state`]); the last part replaces the empty
    /// book and email filter and sets where the replay starts. A part that does not open or
    /// is out of order drops the parts taken so far and changes nothing else, so the host may
    /// restore from leaf 0 instead.
    pub(super) fn load_state(&mut self, part: StatePart) -> Response {
        let origin = self.config.origin.clone();
        let bits = self.config.tag_filter_bits_log2;
        let floor = self.floor.clone();
        let Some(Restoring {
            running: r,
            restore,
            loading,
            ..
        }) = self.phase.restoring()
        else {
            return err(EnclaveError::BadState(
                "a sealed state is loaded between Boot and Start",
            ));
        };
        if restore.is_some() {
            return err(EnclaveError::BadState(
                "a sealed state is loaded before the replay",
            ));
        }
        let key = r.secrets.state_key();
        let load = match StateLoad::add(loading.take(), &part, &key, &origin) {
            Ok(l) => l,
            Err(e) => return err(EnclaveError::StateInvalid(e.to_string())),
        };
        if !load.complete() {
            *loading = Some(load);
            return Response::Ok;
        }
        match load.finish(bits) {
            Ok(state) => {
                tracing::info!(
                    size = state.frontier.size(),
                    open = state.book.open_count(),
                    "sealed state restored"
                );
                r.book = state.book;
                r.tags = state.tags;
                for record in state.rules {
                    r.rules.insert_record(record);
                }
                for (account, auction, price, closed_at) in state.unpaid {
                    r.deposits.won(account, auction, price, closed_at);
                }
                r.sealed_size = state.frontier.size();
                match Restore::new(state.frontier).expecting(floor) {
                    Ok(rs) => {
                        *restore = Some(rs);
                        Response::Ok
                    }
                    Err(e) => err(e),
                }
            }
            Err(e) => err(EnclaveError::StateInvalid(e.to_string())),
        }
    }

    /// Rebuilds the auction book and the email filter from replayed leaves (see
    /// [`crate::restore`]).
    pub(super) fn restore(&mut self, from: u64, leaves: Vec<ByteBuf>) -> Response {
        let floor = self.floor.clone();
        let settling = self.config.settlement.is_some();
        let Some(Restoring {
            running: r,
            restore: slot,
            loading,
            ..
        }) = self.phase.restoring()
        else {
            return err(EnclaveError::BadState(
                "leaves are replayed between Boot and Start",
            ));
        };
        if leaves.len() > MAX_RESTORE_ENTRIES {
            return err(EnclaveError::TooManyEntries);
        }
        *loading = None;
        let mut restore = match slot.take() {
            Some(rs) => rs,
            None => match Restore::new(Frontier::new()).expecting(floor) {
                Ok(rs) => rs,
                Err(e) => return err(e),
            },
        };
        if restore.next_index() != from {
            let want = restore.next_index();
            *slot = Some(restore);
            return err(EnclaveError::RestoreInvalid(format!(
                "replay chunk starts at {from}; the next leaf is {want}"
            )));
        }
        let deposits = settling.then_some(&mut r.deposits);
        if let Err(e) = restore.apply(&leaves, &mut r.book, &mut r.tags, &mut r.rules, deposits) {
            // The book may be half-built: only a new boot may continue.
            self.phase = Phase::Unbooted;
            return err(e);
        }
        *slot = Some(restore);
        Response::Ok
    }

    /// Takes the sealed rule sets the host stored for the active rule sets the replayed log
    /// names: each is opened and kept if its commitment is its buyer's active one. One that
    /// is not, or does not open, is refused (`boot.rules_missing`) and the others of the
    /// request are kept.
    pub(super) fn load_rules(
        &mut self,
        sets: &[leadgate_verifier::autobid::SealedRuleSet],
    ) -> Response {
        let origin = self.config.origin.clone();
        let Some(Restoring { running: r, .. }) = self.phase.restoring() else {
            return err(EnclaveError::BadState(
                "rule sets are loaded between Boot and Start",
            ));
        };
        if sets.len() > leadgate_protocol::MAX_RULE_SETS_PER_LOAD {
            return err(EnclaveError::BatchTooLarge {
                max: leadgate_protocol::MAX_RULE_SETS_PER_LOAD,
                what: "rule sets",
            });
        }
        let mut refused = Vec::new();
        for (i, sealed) in sets.iter().enumerate() {
            // The signature was checked when `rules.set` was appended; the commitment binds it.
            let opened = sealed.decode().and_then(|d| {
                let rules =
                    leadgate_verifier::autobid::open_rules(r.secrets.intake_key(), &origin, &d)?;
                Ok((d, rules))
            });
            match opened {
                Ok((d, rules)) => {
                    if !r.rules.supply(&d.buyer, &d.commitment, rules) {
                        refused.push(format!("rule set {i} is not its buyer's active one"));
                    }
                }
                Err(e) => refused.push(format!("rule set {i}: {e}")),
            }
        }
        if refused.is_empty() {
            Response::Ok
        } else {
            err(EnclaveError::RulesMissing(refused.join("; ")))
        }
    }

    pub(super) fn start(&mut self, now_ms: u64) -> Response {
        let origin = self.config.origin.clone();
        let settling = self.config.settlement.is_some();
        let Some(Restoring {
            running: r,
            restore: slot,
            bids_loaded,
            ..
        }) = self.phase.restoring()
        else {
            return err(EnclaveError::BadState("Start follows Boot, once"));
        };
        // Every active rule set must be back, or the enclave would skip its buyer's bids.
        let missing = r.rules.missing();
        if !missing.is_empty() {
            return err(EnclaveError::RulesMissing(format!(
                "{} active rule sets were not given, e.g. {}",
                missing.len(),
                hex::encode(missing[0])
            )));
        }
        // A settling enclave counts every open bid against its bidder's deposit: each open
        // auction's bids must be back, as logged up to the tip.
        if settling {
            let mut missing = r
                .book
                .iter()
                .filter(|(key, a)| a.bids > 0 && bids_loaded.get(*key) != Some(&a.bids));
            if let Some((key, a)) = missing.next() {
                return err(EnclaveError::BidsMissing(format!(
                    "the bids of {} open auctions were not given as logged, e.g. auction {} with {} bids",
                    1 + missing.count(),
                    hex::encode(key),
                    a.bids
                )));
            }
        }
        // With a tip, the state must have been rebuilt up to it.
        let replay_from = match slot.take() {
            Some(rs) => match rs.finish(r.log.frontier()) {
                Ok(()) => rs.from(),
                Err(e) => {
                    self.phase = Phase::Unbooted;
                    return err(e);
                }
            },
            None if r.log.size() == 0 => 0,
            None => {
                self.phase = Phase::Unbooted;
                return err(EnclaveError::RestoreInvalid(
                    "a log with a tip must be restored before Start".into(),
                ));
            }
        };
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
            replay_from,
            pcrs: Some(pcrs),
        });
        let appended = match r.log.append(r.secrets.log_key(), &event) {
            Ok(a) => a,
            Err(e) => return err(e),
        };
        tracing::info!(
            epoch = r.log.epoch(),
            size = r.log.size(),
            "log epoch started"
        );
        if let Phase::Restoring { running, .. } =
            std::mem::replace(&mut self.phase, Phase::Unbooted)
        {
            self.phase = Phase::Serving(running);
        }
        Response::Started {
            appended: appended.into(),
        }
    }
}
