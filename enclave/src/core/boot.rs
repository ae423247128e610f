//! Start-up: `Boot` (the secrets, the host's tip checked against them), `LoadTags` and
//! `Replay` (rebuilding what the log implies), `Start` (`log.epoch`). The sealing half of
//! `Boot` ([`Enclave::boot_secrets`]) is the only I/O, and runs outside the enclave's lock.

use leadgate_verifier::checkpoint::verify_checkpoint;
use leadgate_verifier::event::{EpochPcrs, Event, LogEpoch};
use leadgate_verifier::merkle::{self, Frontier};
use serde_bytes::ByteBuf;

use crate::auctions::AuctionBook;
use crate::dedup::EmailTags;
use crate::error::EnclaveError;
use crate::journal::Journal;
use crate::log::Log;
use crate::replay::ReplayGuard;
use crate::restore::Restore;
use crate::sealing::Sealer;
use crate::secrets::Secrets;
use crate::sellers::SellerKeys;
use leadgate_protocol::{
    Response, RestoreBase, RestoreEntry, Tip, MAX_RESTORE_ENTRIES, MAX_TAGS_PER_FRAME,
};

use super::{err, hashes, Enclave, Phase, Running};

/// The secrets a `Boot` brings up: unsealed from the host's blob, or generated and sealed on
/// a first start. Made by [`Enclave::boot_secrets`], which may call KMS over the network, so
/// that the link server can run it without holding the enclave's lock.
pub struct BootSecrets {
    secrets: Secrets,
    sealed: Vec<u8>,
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
    ) -> Result<BootSecrets, EnclaveError> {
        match sealed {
            None if has_tip => Err(EnclaveError::NoSecrets),
            None => {
                let secrets = Secrets::generate();
                let sealed = sealer.seal(&secrets.to_bytes(), aws_credentials)?;
                Ok(BootSecrets { secrets, sealed })
            }
            Some(blob) => {
                let plain = sealer.unseal(blob, aws_credentials)?;
                let secrets =
                    Secrets::from_bytes(&plain).map_err(EnclaveError::SecretsMalformed)?;
                Ok(BootSecrets {
                    secrets,
                    sealed: blob.to_vec(),
                })
            }
        }
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
        let BootSecrets { secrets, sealed } = match secrets {
            Ok(s) => s,
            Err(e) => return err(e),
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
        self.phase = Phase::Restoring {
            restore: None,
            running: Box::new(Running {
                journal,
                log: Log::new(&origin, epoch, frontier, now_ms),
                secrets,
                tags: EmailTags::new(self.config.tag_filter_bits_log2),
                sellers: SellerKeys::new(crate::sellers::DEFAULT_CAPACITY),
                book: AuctionBook::default(),
                replay: ReplayGuard::new(
                    self.config.replay_window_ms,
                    self.config.replay_filter_bits_log2,
                    now_ms,
                ),
            }),
        };
        Response::Booted {
            sealed_secrets: ByteBuf::from(sealed),
            keys: ByteBuf::from(keys),
            dev_root_pem: self.config.dev_root_pem.clone(),
        }
    }

    pub(super) fn load_tags(&mut self, tags: Vec<ByteBuf>) -> Response {
        let Some((r, _)) = self.phase.restoring() else {
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
    pub(super) fn restore(
        &mut self,
        from: u64,
        base: Option<RestoreBase>,
        entries: Vec<RestoreEntry>,
    ) -> Response {
        let origin = self.config.origin.clone();
        let Some((r, slot)) = self.phase.restoring() else {
            return err(EnclaveError::BadState(
                "leaves are replayed between Boot and Start",
            ));
        };
        if entries.len() > MAX_RESTORE_ENTRIES {
            return err(EnclaveError::TooManyEntries);
        }
        let mut restore = match slot.take() {
            Some(rs) if rs.next_index() == from && base.is_none() => rs,
            Some(_) => {
                self.phase = Phase::Unbooted;
                return err(EnclaveError::RestoreInvalid(
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
            self.phase = Phase::Unbooted;
            return err(e);
        }
        *slot = Some(restore);
        Response::Ok
    }

    pub(super) fn start(&mut self, now_ms: u64) -> Response {
        let origin = self.config.origin.clone();
        let release_window_ms = self.config.release_window_ms;
        let Some((r, slot)) = self.phase.restoring() else {
            return err(EnclaveError::BadState("Start follows Boot, once"));
        };
        // With a tip, the auction book must have been rebuilt from a complete replay.
        if r.log.size() > 0 {
            let checked = match slot.take() {
                Some(rs) => rs.finish(r.log.frontier()),
                None => Err(EnclaveError::RestoreInvalid(
                    "a log with a tip must be replayed before Start".into(),
                )),
            };
            if let Err(e) = checked {
                self.phase = Phase::Unbooted;
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
