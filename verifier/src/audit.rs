//! The auditor's red flags: every check `leadgate audit` runs, as named results.
//!
//! An audit is a list of [`Check`]s, each `pass`, `fail` or `skip` (not applicable: say, no
//! chain was given) with a one-line detail. A [`Report`] passes only if no check failed. The
//! checks that need only bytes live here ([`attestation_checks`], [`key_binding_check`],
//! [`checkpoint_signature_check`], [`consistency_check`], [`epochs_check`], [`voided_by`]); the CLI adds the ones that need a
//! gateway or a chain with the same [`Check`] type.
//!
//! Check names are stable (`attestation.signature`, `attestation.chain`, `attestation.nonce`,
//! `attestation.pcr0`, `attestation.debug`, `keys.binding`, `checkpoint.signature`,
//! `checkpoint.consistency`, `log.epochs`, `log.settlements`, `anchor.registration`,
//! `anchor.consistency`, `receipts`): scripts match on them.

use crate::attestation::{verify_attestation, AttestationError, AttestationPolicy};
use crate::attestation::{AttestationDocument, VerifiedAttestation};
use crate::checkpoint::{verify_checkpoint, Checkpoint};
use crate::event::LogEpoch;
use crate::keys::EnclaveKeys;
use crate::merkle::{self, Hash};
use crate::note::Note;
use crate::receipt::VerifiedReceipt;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The property holds.
    Pass,
    /// The property does not hold: a red flag.
    Fail,
    /// Not applicable to this audit (the input it needs was not given).
    Skip,
}

impl Status {
    /// `pass`, `fail` or `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// One named check and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Stable check name, e.g. `attestation.pcr0`.
    pub name: &'static str,
    /// The outcome.
    pub status: Status,
    /// One line for a human: what was compared, or why it failed.
    pub detail: String,
}

impl Check {
    /// A passing check.
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Pass,
            detail: detail.into(),
        }
    }
    /// A failing check.
    pub fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Fail,
            detail: detail.into(),
        }
    }
    /// A check that does not apply.
    pub fn skip(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Skip,
            detail: detail.into(),
        }
    }
}

/// Every check of one audit, in the order run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// True if no check failed (skipped checks do not fail an audit).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// The check named `name`, if it ran.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// One line per check: `PASS name  detail`, then a verdict line.
    pub fn to_text(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{:<4} {:<width$}  {}\n",
                c.status.as_str().to_uppercase(),
                c.name,
                c.detail
            ));
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        out.push_str(&if failed == 0 {
            "audit passed\n".to_owned()
        } else {
            format!("audit FAILED: {failed} red flag(s)\n")
        });
        out
    }

    /// `{"passed": bool, "checks": [{"name", "status", "detail"}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "passed": self.passed(),
            "checks": self.checks.iter().map(|c| serde_json::json!({
                "name": c.name, "status": c.status.as_str(), "detail": c.detail,
            })).collect::<Vec<_>>(),
        })
    }
}

/// What the auditor expects of an attestation document.
#[derive(Debug, Clone, Copy)]
pub struct AttestationExpectations<'a> {
    /// Verification time, Unix ms.
    pub now_unix_ms: u64,
    /// Trusted root, DER; `None` = the AWS Nitro root G1.
    pub root_der: Option<&'a [u8]>,
    /// The published PCR0 (48 bytes) of the image the auditor trusts, if given.
    pub expected_pcr0: Option<&'a [u8]>,
    /// Accept a debug-mode (all-zero PCR0) enclave.
    pub allow_debug: bool,
    /// The nonce the auditor sent, if the document was fetched fresh.
    pub nonce: Option<&'a [u8]>,
}

/// The attestation checks: `attestation.signature` (COSE_Sign1 ES384 by the leaf certificate),
/// `attestation.chain` (leaf and `cabundle` to the pinned root, each valid at
/// `now_unix_ms`), `attestation.nonce`, `attestation.pcr0` and `attestation.debug`. Returns
/// the verified document when signature and chain hold (the policy checks do not gate it: the
/// report says which of them failed).
pub fn attestation_checks(
    document: &[u8],
    exp: &AttestationExpectations<'_>,
) -> (Vec<Check>, Option<VerifiedAttestation>) {
    // Signature and chain only; the policy is checked below, one line each.
    let lenient = AttestationPolicy {
        now_unix_ms: exp.now_unix_ms,
        root_der: exp.root_der,
        expected_pcr0: None,
        allow_debug: true,
        expected_nonce: None,
    };
    let root_name = if exp.root_der.is_some() {
        "the given root"
    } else {
        "the AWS Nitro root G1"
    };
    let verified = match verify_attestation(document, &lenient) {
        Ok(v) => v,
        Err(e) => {
            let why = format!("{}: {e}", e.code());
            let not_checked = "not checked: the document did not verify";
            // verify_attestation checks the COSE signature before the chain.
            let (sig, chain) = match e {
                AttestationError::TooLarge
                | AttestationError::Malformed(_)
                | AttestationError::UnsupportedAlgorithm(_)
                | AttestationError::SignatureInvalid => (
                    Check::fail("attestation.signature", why),
                    Check::fail("attestation.chain", not_checked),
                ),
                _ => (
                    Check::pass(
                        "attestation.signature",
                        "COSE_Sign1 ES384 signature by the leaf certificate",
                    ),
                    Check::fail("attestation.chain", why),
                ),
            };
            let mut checks = vec![sig, chain];
            for name in ["attestation.nonce", "attestation.pcr0", "attestation.debug"] {
                checks.push(Check::fail(name, not_checked));
            }
            return (checks, None);
        }
    };
    let doc = verified.document();
    let mut checks = vec![
        Check::pass(
            "attestation.signature",
            "COSE_Sign1 ES384 signature by the leaf certificate",
        ),
        Check::pass(
            "attestation.chain",
            format!(
                "{} CA certificate(s) and the leaf chain to {root_name}, all valid at {} (Unix ms); module {}",
                doc.cabundle.len(),
                exp.now_unix_ms,
                doc.module_id
            ),
        ),
    ];
    checks.push(match exp.nonce {
        None => Check::skip("attestation.nonce", "no nonce sent (a saved document)"),
        Some(n) if doc.nonce.as_deref() == Some(n) => Check::pass(
            "attestation.nonce",
            format!("fresh: echoes our {}-byte random nonce", n.len()),
        ),
        Some(_) => Check::fail(
            "attestation.nonce",
            "the document does not carry the nonce we sent (a replayed document?)",
        ),
    });
    let pcr0 = doc.pcrs.get(&0).map(hex::encode).unwrap_or_default();
    checks.push(match exp.expected_pcr0 {
        None => Check::skip(
            "attestation.pcr0",
            format!("no --pcr0 given; PCR0 is {pcr0}"),
        ),
        Some(e) if doc.pcrs.get(&0).map(Vec::as_slice) == Some(e) => Check::pass(
            "attestation.pcr0",
            format!("PCR0 {pcr0} is the expected image"),
        ),
        Some(e) => Check::fail(
            "attestation.pcr0",
            format!("PCR0 {pcr0} is not the expected {}", hex::encode(e)),
        ),
    });
    checks.push(debug_check(doc, exp.allow_debug));
    (checks, Some(verified))
}

fn debug_check(doc: &AttestationDocument, allow_debug: bool) -> Check {
    match (doc.is_debug(), allow_debug) {
        (false, _) => Check::pass("attestation.debug", "not debug mode (PCR0/1/2 non-zero)"),
        (true, true) => Check::pass(
            "attestation.debug",
            "DEBUG MODE (PCR0/1/2 all zero), allowed by --allow-debug: the host can read this enclave's memory",
        ),
        (true, false) => Check::fail(
            "attestation.debug",
            "debug mode: PCR0/1/2 are all zero, so the host can read the enclave's memory",
        ),
    }
}

/// `keys.binding`: the attestation binds leadgate keys (`public_key` equals the intake key in
/// `user_data`), and the checkpoint note carries a signature by exactly the attested log key
/// (C2SP signed-note key name = the origin, key ID = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[..4]).
/// Returns the attested keys when they decode.
pub fn key_binding_check(
    attested: &VerifiedAttestation,
    checkpoint_note: &[u8],
) -> (Check, Option<EnclaveKeys>) {
    const NAME: &str = "keys.binding";
    let keys = match attested.enclave_keys() {
        Ok(k) => k,
        Err(e) => return (Check::fail(NAME, format!("{}: {e}", e.code())), None),
    };
    let verifier = match keys.note_verifier() {
        Ok(v) => v,
        Err(e) => {
            return (
                Check::fail(NAME, format!("attested log key: {e}")),
                Some(keys),
            )
        }
    };
    let note = match Note::parse(checkpoint_note) {
        Ok(n) => n,
        Err(e) => {
            return (
                Check::fail(NAME, format!("checkpoint note: {}: {e}", e.code())),
                Some(keys),
            )
        }
    };
    let signers: Vec<String> = note
        .signatures
        .iter()
        .map(|s| format!("{} {}", s.name, hex::encode(s.key_id)))
        .collect();
    let bound = note
        .signatures
        .iter()
        .any(|s| s.name == verifier.name() && s.key_id == verifier.key_id());
    let check = if bound {
        Check::pass(
            NAME,
            format!(
                "the checkpoint is signed by the attested log key {} (id {}); public_key is the attested intake key",
                verifier.name(),
                hex::encode(verifier.key_id())
            ),
        )
    } else {
        Check::fail(
            NAME,
            format!(
                "the attested log key {} (id {}) did not sign the checkpoint (signed by: {})",
                verifier.name(),
                hex::encode(verifier.key_id()),
                signers.join(", ")
            ),
        )
    };
    (check, Some(keys))
}

/// `checkpoint.signature`: the checkpoint verifies under the attested log key for its origin.
pub fn checkpoint_signature_check(
    keys: &EnclaveKeys,
    checkpoint_note: &[u8],
) -> (Check, Option<Checkpoint>) {
    const NAME: &str = "checkpoint.signature";
    let verifier = match keys.note_verifier() {
        Ok(v) => v,
        Err(e) => return (Check::fail(NAME, format!("attested log key: {e}")), None),
    };
    match verify_checkpoint(checkpoint_note, &verifier, &keys.origin) {
        Ok(v) => {
            let cp = v.checkpoint().clone();
            (
                Check::pass(
                    NAME,
                    format!(
                        "origin {} size {} root {}",
                        cp.origin,
                        cp.size,
                        hex::encode(cp.root)
                    ),
                ),
                Some(cp),
            )
        }
        Err(e) => (Check::fail(NAME, format!("{}: {e}", e.code())), None),
    }
}

/// `checkpoint.consistency`: the served checkpoint (`size`, `root`) and the one this auditor
/// saw before (`seen`) are the same log: RFC 9162 §2.1.4.2 consistency proof from the smaller
/// to the larger (a smaller served size is a rollback, still proven or flagged). `proof` is
/// `None` when there was no earlier checkpoint.
pub fn consistency_check(
    seen: Option<(u64, Hash)>,
    current: (u64, Hash),
    proof: Option<&[Hash]>,
) -> Check {
    const NAME: &str = "checkpoint.consistency";
    let Some((m, rm)) = seen else {
        return Check::skip(
            NAME,
            format!("no earlier checkpoint seen; remembering size {}", current.0),
        );
    };
    let (n, rn) = current;
    let result = if m == n {
        if rm == rn {
            Ok(())
        } else {
            Err("same size, different root".to_owned())
        }
    } else {
        let (a, b, ra, rb) = if m < n {
            (m, n, rm, rn)
        } else {
            (n, m, rn, rm)
        };
        merkle::verify_consistency(a, b, proof.unwrap_or(&[]), &ra, &rb)
            .map_err(|e| e.code().as_str().to_owned())
    };
    match result {
        Ok(()) if n >= m => Check::pass(
            NAME,
            format!("size {n} extends the previously seen size {m}"),
        ),
        Ok(()) => Check::fail(
            NAME,
            format!("ROLLBACK: served size {n} is smaller than the previously seen {m}"),
        ),
        Err(why) => Check::fail(
            NAME,
            format!("FORK: size {n} is not consistent with the previously seen size {m}: {why}"),
        ),
    }
}

/// `log.epochs`: the log's own history of the images that signed it. `epochs` holds
/// (leaf index, entry) for every `log.epoch` in the checkpoint, ascending by index, each
/// already proved included. Fails if:
/// - none is listed, or the epoch numbers are not 1, 2, 3, … in index order (an epoch left
///   out of the listing, or one listed twice);
/// - `allowed` is non-empty and an epoch records no PCRs (it was written before enclaves
///   recorded them, so which code ran is not in the log), or its PCR0 (48 bytes) is not in
///   `allowed`; an all-zero PCR0 (dev mode) passes only with `allow_debug`.
///
/// With `allowed` empty it passes and names each distinct PCR0 with the epochs that ran it.
/// An epoch after the newest one listed is caught by the next audit (its number then skips).
pub fn epochs_check(epochs: &[(u64, LogEpoch)], allowed: &[Vec<u8>], allow_debug: bool) -> Check {
    const NAME: &str = "log.epochs";
    if epochs.is_empty() {
        return Check::fail(NAME, "the gateway lists no log.epoch in the checkpoint");
    }
    let zero = "00".repeat(48);
    let mut runs: Vec<(String, Vec<u64>)> = Vec::new();
    let mut bad = Vec::new();
    for (k, (index, e)) in epochs.iter().enumerate() {
        if e.epoch != k as u64 + 1 {
            return Check::fail(
                NAME,
                format!(
                    "entry {index} is epoch {} where epoch {} was due: the listing leaves an epoch out",
                    e.epoch,
                    k + 1
                ),
            );
        }
        let pcr0 = e.pcrs.as_ref().map(|p| p.pcr0.to_ascii_lowercase());
        let label = pcr0.clone().unwrap_or_else(|| "not recorded".to_owned());
        match runs.iter_mut().find(|(p, _)| *p == label) {
            Some((_, list)) => list.push(e.epoch),
            None => runs.push((label, vec![e.epoch])),
        }
        if allowed.is_empty() {
            continue;
        }
        let ok = match &pcr0 {
            None => false,
            Some(p) if *p == zero => allow_debug,
            Some(p) => allowed.iter().any(|a| hex::encode(a) == *p),
        };
        if !ok {
            bad.push(format!(
                "epoch {} (entry {index}) ran PCR0 {}",
                e.epoch,
                pcr0.as_deref().unwrap_or("(not recorded)")
            ));
        }
    }
    let summary = runs
        .iter()
        .map(|(p, list)| format!("PCR0 {p}: epoch(s) {list:?}"))
        .collect::<Vec<_>>()
        .join("; ");
    if !bad.is_empty() {
        return Check::fail(NAME, format!("{}, not an allowed image", bad.join(", ")));
    }
    let n = epochs.len();
    if allowed.is_empty() {
        Check::pass(
            NAME,
            format!("{n} epoch(s), numbered without a gap; no --pcr0 given; {summary}"),
        )
    } else {
        Check::pass(
            NAME,
            format!("{n} epoch(s), numbered without a gap, each ran an allowed image; {summary}"),
        )
    }
}

/// `log.epoch_keys`: every epoch was written by an enclave holding the keys the gateway's
/// enclave attests now. The keys are the enclave's sealed secrets: they survive restarts and
/// image upgrades only through the sealing (on Nitro, a KMS data key that KMS releases only
/// to an attested image whose PCR0 the key policy lists), so one log key across every epoch
/// means no epoch was written by a process that could not unseal them. `epochs` as for
/// [`epochs_check`]; fails naming the first epoch whose `log_key`, `intake_key` or
/// `anchor_key` differs from `attested`, or whose origin is another.
///
/// This is what an auditor checks of a past epoch in place of that epoch's attestation
/// document, which no one keeps: its `pcrs` say which image it ran (judged by
/// [`epochs_check`]), and its keys tie it to the enclave attested now.
pub fn epoch_keys_check(epochs: &[(u64, LogEpoch)], attested: &crate::keys::EnclaveKeys) -> Check {
    const NAME: &str = "log.epoch_keys";
    let vkey = match crate::note::NoteVerifier::new(&attested.origin, attested.log_key) {
        Ok(v) => v.to_vkey_string(),
        Err(e) => return Check::fail(NAME, format!("attested log key: {e}")),
    };
    let (intake, anchor) = (
        hex::encode(attested.intake_key),
        hex::encode(attested.anchor_key),
    );
    for (index, e) in epochs {
        let differs = [
            ("origin", e.origin == attested.origin),
            ("log_key", e.log_key == vkey),
            ("intake_key", e.intake_key == intake),
            ("anchor_key", e.anchor_key == anchor),
        ]
        .into_iter()
        .find(|(_, same)| !same);
        if let Some((field, _)) = differs {
            return Check::fail(
                NAME,
                format!(
                    "epoch {} (entry {index}) has another {field} than the attested enclave",
                    e.epoch
                ),
            );
        }
    }
    Check::pass(
        NAME,
        format!(
            "{} epoch(s), each with the attested log, intake and anchor keys",
            epochs.len()
        ),
    )
}

/// Whether a `log.epoch` event publicly voids a receipt (DESIGN: recovery): the enclave that
/// signed the receipt in epoch `e` restarted, and epoch `e + 1` began at `previous_size`, so
/// the receipt's index is at or past where epoch `e` ended. Such a receipt's event may be
/// missing from the log, and the log says so publicly.
pub fn voided_by(receipt: &VerifiedReceipt, origin: &str, epoch: &LogEpoch) -> bool {
    epoch.origin == origin
        && epoch.epoch == receipt.epoch.saturating_add(1)
        && receipt.index >= epoch.previous_size
}

/// `log.settlements`, read in one pass over the log's entries in order ([`Self::observe`] each,
/// then [`Self::check`]): every settlement an `auction.closed` carries must be signed by the
/// anchor key of the epoch that logged it, for exactly the close's auction and price, and must
/// pay the payout address the seller named in the lead's `lead.accepted`. Memory: one payout
/// address per open auction that named one.
#[derive(Debug, Default)]
pub struct SettlementAudit {
    anchor: Option<crate::anchor::Address>,
    payouts: std::collections::HashMap<String, crate::settlement::EthAddress>,
    settled: u64,
    unsettled_sales: u64,
    failure: Option<String>,
}

impl SettlementAudit {
    /// Takes the entry at `index`.
    pub fn observe(&mut self, index: u64, event: &crate::event::Event) {
        use crate::event::Event;
        if self.failure.is_some() {
            return;
        }
        match event {
            Event::LogEpoch(e) => {
                self.anchor = hex::decode(&e.anchor_key)
                    .ok()
                    .and_then(|k| crate::anchor::address_of_sec1(&k));
            }
            Event::LeadAccepted(a) => {
                if let Some(p) = a.auction.payout {
                    self.payouts.insert(a.lead_id.clone(), p);
                }
            }
            Event::AuctionUnsold(u) => {
                self.payouts.remove(&u.auction_id);
            }
            Event::AuctionClosed(c) => {
                let payout = self.payouts.remove(&c.auction_id);
                let Some(s) = &c.settlement else {
                    self.unsettled_sales += 1;
                    return;
                };
                let mut id = [0u8; 16];
                if hex::decode_to_slice(&c.auction_id, &mut id).is_err() {
                    self.failure = Some(format!("entry {index}: auction id is not 16 bytes"));
                    return;
                }
                let why = match (payout, s.signer(id, c.price.units()), self.anchor) {
                    (None, _, _) => Some("the lead named no payout address".to_owned()),
                    (Some(p), _, _) if p != s.seller => Some(format!(
                        "it pays {}, not the lead's payout address {p}",
                        s.seller
                    )),
                    (_, Err(e), _) => Some(e.to_string()),
                    (_, Ok(_), None) => Some("no log.epoch with an anchor key precedes it".into()),
                    (_, Ok(signer), Some(anchor)) if signer != anchor => Some(format!(
                        "signed by {}, not the epoch's anchor key {}",
                        crate::anchor::address_hex(&signer),
                        crate::anchor::address_hex(&anchor)
                    )),
                    _ => None,
                };
                match why {
                    Some(why) => {
                        self.failure = Some(format!(
                            "entry {index}: the settlement of auction {}: {why}",
                            c.auction_id
                        ))
                    }
                    None => self.settled += 1,
                }
            }
            _ => {}
        }
    }

    /// The check, over every entry observed.
    pub fn check(self) -> Check {
        const NAME: &str = "log.settlements";
        if let Some(f) = self.failure {
            return Check::fail(NAME, f);
        }
        if self.settled == 0 {
            return Check::skip(
                NAME,
                format!(
                    "no sale carries a settlement ({} sales without one): the gateway does not settle on chain",
                    self.unsettled_sales
                ),
            );
        }
        Check::pass(
            NAME,
            format!(
                "{} settlements, each signed by its epoch's anchor key for its close's auction \
                 and price, paying the lead's payout address; {} sales without one",
                self.settled, self.unsettled_sales
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, leaf_hash, root_from_leaf_hashes};

    fn tree(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn consistency_passes_forks_and_rollbacks_fail() {
        let leaves = tree(20);
        let r = |n: usize| root_from_leaf_hashes(&leaves[..n]);
        let proof = consistency_proof(leaves.as_slice(), 7, 20).unwrap();
        assert_eq!(
            consistency_check(Some((7, r(7))), (20, r(20)), Some(&proof)).status,
            Status::Pass
        );
        assert_eq!(
            consistency_check(None, (20, r(20)), None).status,
            Status::Skip
        );
        assert_eq!(
            consistency_check(Some((20, r(20))), (20, r(20)), None).status,
            Status::Pass
        );
        // Same size, another root: a fork.
        let c = consistency_check(Some((20, r(20))), (20, r(19)), None);
        assert!(c.status == Status::Fail && c.detail.starts_with("FORK"));
        // A proof against another tree.
        let mut other = leaves.clone();
        other[3] = leaf_hash(b"rewritten");
        let c = consistency_check(
            Some((7, root_from_leaf_hashes(&other[..7]))),
            (20, r(20)),
            Some(&proof),
        );
        assert!(c.status == Status::Fail && c.detail.starts_with("FORK"));
        // Served smaller than seen, consistently: a rollback.
        let c = consistency_check(Some((20, r(20))), (7, r(7)), Some(&proof));
        assert!(c.status == Status::Fail && c.detail.starts_with("ROLLBACK"));
    }

    #[test]
    fn a_receipt_is_void_only_past_where_its_epoch_ended() {
        let r = VerifiedReceipt {
            epoch: 3,
            index: 100,
            leaf_hash: [1; 32],
            root: [2; 32],
            time: 0,
        };
        let e = |epoch, previous_size, origin: &str| LogEpoch {
            time: 0,
            epoch,
            previous_size,
            previous_root: String::new(),
            origin: origin.into(),
            log_key: String::new(),
            intake_key: String::new(),
            anchor_key: String::new(),
            replay_from: 0,
            pcrs: None,
        };
        assert!(voided_by(&r, "o", &e(4, 100, "o")));
        assert!(voided_by(&r, "o", &e(4, 90, "o")));
        // Epoch 3 ended after the receipt's index: the event must be in the log.
        assert!(!voided_by(&r, "o", &e(4, 101, "o")));
        // Another epoch, another log.
        assert!(!voided_by(&r, "o", &e(5, 90, "o")));
        assert!(!voided_by(&r, "o", &e(3, 90, "o")));
        assert!(!voided_by(&r, "o", &e(4, 90, "other")));
    }

    #[test]
    fn report_passes_only_without_failures() {
        let mut r = Report {
            checks: vec![Check::pass("a", "x"), Check::skip("b", "y")],
        };
        assert!(r.passed());
        assert!(r.to_text().ends_with("audit passed\n"));
        r.checks.push(Check::fail("c", "z"));
        assert!(!r.passed());
        assert!(r.to_text().contains("FAIL c  z"));
        assert_eq!(r.to_json()["checks"][2]["status"], "fail");
        assert_eq!(r.get("b").map(|c| c.status), Some(Status::Skip));
    }

    fn epoch(n: u64, pcr0: Option<&str>) -> LogEpoch {
        LogEpoch {
            time: 0,
            epoch: n,
            previous_size: 0,
            previous_root: String::new(),
            origin: "o".into(),
            log_key: String::new(),
            intake_key: String::new(),
            anchor_key: String::new(),
            replay_from: 0,
            pcrs: pcr0.map(|p| crate::event::EpochPcrs {
                pcr0: p.to_owned(),
                pcr1: "11".repeat(48),
                pcr2: "22".repeat(48),
            }),
        }
    }

    #[test]
    fn epochs_name_the_one_that_ran_other_code() {
        let (a, b, zero) = ("aa".repeat(48), "bb".repeat(48), "00".repeat(48));
        let allowed = [hex::decode(&a).unwrap()];
        let log = vec![
            (0, epoch(1, Some(&a))),
            (7, epoch(2, Some(&b))),
            (9, epoch(3, Some(&a))),
        ];
        let c = epochs_check(&log, &allowed, false);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("epoch 2 (entry 7)"), "{}", c.detail);
        // Both images allowed: passes, and says which epochs ran which.
        let both = [hex::decode(&a).unwrap(), hex::decode(&b).unwrap()];
        let c = epochs_check(&log, &both, false);
        assert_eq!(c.status, Status::Pass, "{}", c.detail);
        assert!(
            c.detail.contains(&format!("PCR0 {a}: epoch(s) [1, 3]")),
            "{}",
            c.detail
        );
        // No PCR0 given: passes with the history.
        assert_eq!(epochs_check(&log, &[], false).status, Status::Pass);
        // Dev mode (all zeros) only with allow_debug; an epoch without PCRs never passes a policy.
        let dev = vec![(0, epoch(1, Some(&zero)))];
        assert_eq!(epochs_check(&dev, &allowed, false).status, Status::Fail);
        assert_eq!(epochs_check(&dev, &allowed, true).status, Status::Pass);
        let old = vec![(0, epoch(1, None))];
        assert_eq!(epochs_check(&old, &allowed, true).status, Status::Fail);
        assert_eq!(epochs_check(&old, &[], false).status, Status::Pass);
    }

    #[test]
    fn an_epoch_with_other_keys_than_the_attested_enclave_fails() {
        let log_key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        let attested = crate::keys::EnclaveKeys {
            origin: "o".into(),
            log_key,
            intake_key: [2; 32],
            anchor_key: [3; 33],
        };
        let with_keys = |n: u64, log_key: ed25519_dalek::VerifyingKey| {
            let mut e = epoch(n, None);
            e.log_key = crate::note::NoteVerifier::new("o", log_key)
                .unwrap()
                .to_vkey_string();
            e.intake_key = "02".repeat(32);
            e.anchor_key = "03".repeat(33);
            e
        };
        let good = vec![(0, with_keys(1, log_key)), (5, with_keys(2, log_key))];
        let c = epoch_keys_check(&good, &attested);
        assert_eq!(c.status, Status::Pass, "{}", c.detail);
        let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
        let forged = vec![(0, with_keys(1, log_key)), (5, with_keys(2, other))];
        let c = epoch_keys_check(&forged, &attested);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.detail.contains("epoch 2 (entry 5) has another log_key"),
            "{}",
            c.detail
        );
        let mut anchor = good.clone();
        anchor[0].1.anchor_key = "04".repeat(33);
        let c = epoch_keys_check(&anchor, &attested);
        assert!(
            c.detail
                .contains("epoch 1 (entry 0) has another anchor_key"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn an_epoch_left_out_of_the_listing_fails() {
        let a = "aa".repeat(48);
        let gap = vec![(0, epoch(1, Some(&a))), (9, epoch(3, Some(&a)))];
        let c = epochs_check(&gap, &[], false);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("epoch 2 was due"), "{}", c.detail);
        let twice = vec![(0, epoch(1, Some(&a))), (0, epoch(1, Some(&a)))];
        assert_eq!(epochs_check(&twice, &[], false).status, Status::Fail);
        assert_eq!(epochs_check(&[], &[], false).status, Status::Fail);
    }

    /// A sale's events: the epoch with `key`'s anchor key, the lead naming `payout`, and its
    /// close at `price` carrying a settlement to `seller` signed by `signer`.
    fn sale(
        key: &k256::ecdsa::SigningKey,
        signer: &k256::ecdsa::SigningKey,
        payout: Option<crate::settlement::EthAddress>,
        seller: crate::settlement::EthAddress,
        price: u64,
        signed_price: u64,
    ) -> Vec<crate::event::Event> {
        use crate::auction::{Pricing, TokenAmount};
        use crate::event::{AuctionClosed, AuctionTerms, Event, LeadAccepted, Listing};
        use crate::settlement::{EscrowDomain, EthAddress, FeeTerms, Settlement, SignedSettlement};
        let mut ep = epoch(1, None);
        ep.anchor_key = hex::encode(key.verifying_key().to_encoded_point(true).as_bytes());
        let id = [0x42u8; 16];
        let lead_id = hex::encode(id);
        let accepted = LeadAccepted {
            time: 1,
            lead_id: lead_id.clone(),
            seller: "11".repeat(32),
            ciphertext_sha256: "22".repeat(32),
            score: 50,
            reasons: vec![],
            listing: Listing {
                industry: "i".into(),
                sub_industry: "s".into(),
                region: "r".into(),
                role: "o".into(),
                company_type: None,
                ownership_type: None,
                number_of_locations: None,
                founded_year: None,
            },
            email_tag: "33".repeat(32),
            auction: AuctionTerms {
                reserve: TokenAmount::new(0).unwrap(),
                closes_at: 2,
                pricing: Pricing::FirstPrice,
                payout,
                off_site: false,
                instant: false,
            },
        };
        let domain = EscrowDomain {
            chain_id: 31337,
            escrow: [0xe5; 20],
        };
        let statement = Settlement {
            auction_id: id,
            buyer: [0xb0; 20],
            seller: seller.0,
            price: signed_price,
            fee: FeeTerms::default(),
        };
        let closed = AuctionClosed {
            time: 3,
            auction_id: lead_id,
            winner: "44".repeat(32),
            winning_commitment: "55".repeat(32),
            winner_hpke: "66".repeat(32),
            price: TokenAmount::new(price).unwrap(),
            reserve: TokenAmount::new(0).unwrap(),
            pricing: Pricing::FirstPrice,
            bids: 1,
            commitments_root: "77".repeat(32),
            seed: "88".repeat(64),
            settlement: Some(SignedSettlement {
                chain_id: 31337,
                escrow: EthAddress([0xe5; 20]),
                buyer: EthAddress([0xb0; 20]),
                seller,
                fee_bps: 0,
                fee_recipient: EthAddress([0; 20]),
                signature: hex::encode(domain.sign(signer, &statement).unwrap()),
            }),
        };
        vec![
            Event::LogEpoch(ep),
            Event::LeadAccepted(accepted),
            Event::AuctionClosed(closed),
        ]
    }

    fn audit_settlements(events: &[crate::event::Event]) -> Check {
        let mut a = SettlementAudit::default();
        for (i, e) in events.iter().enumerate() {
            a.observe(i as u64, e);
        }
        a.check()
    }

    #[test]
    fn a_settlement_passes_only_signed_by_the_epoch_for_the_logged_sale_and_payout() {
        use crate::settlement::EthAddress;
        let key = k256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        let other = k256::ecdsa::SigningKey::from_slice(&[8; 32]).unwrap();
        let (payout, thief) = (EthAddress([0x5e; 20]), EthAddress([0x66; 20]));
        let ok = audit_settlements(&sale(&key, &key, Some(payout), payout, 900, 900));
        assert_eq!(ok.status, Status::Pass, "{}", ok.detail);
        for (events, why) in [
            (
                sale(&key, &other, Some(payout), payout, 900, 900),
                "not the epoch's anchor key",
            ),
            (
                sale(&key, &key, Some(payout), payout, 900, 901),
                "not the epoch's anchor key",
            ),
            (
                sale(&key, &key, Some(payout), thief, 900, 900),
                "not the lead's payout address",
            ),
            (
                sale(&key, &key, None, payout, 900, 900),
                "named no payout address",
            ),
        ] {
            let c = audit_settlements(&events);
            assert_eq!(c.status, Status::Fail, "{why}");
            assert!(c.detail.contains(why), "{} / {why}", c.detail);
        }
        // A log without settlements: not applicable, not a pass.
        let mut plain = sale(&key, &key, Some(payout), payout, 900, 900);
        if let crate::event::Event::AuctionClosed(c) = &mut plain[2] {
            c.settlement = None;
        }
        assert_eq!(audit_settlements(&plain).status, Status::Skip);
    }
}
