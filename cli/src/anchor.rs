//! `verify anchor`: compares what a gateway serves with what is anchored on chain.
//!
//! Reads the contract over plain JSON-RPC ([`crate::chain::Rpc`]: `eth_chainId`, `eth_call`,
//! `eth_getLogs`), with the ABI from `alloy-sol-types`; no chain client or async runtime.

use alloy_primitives::Address;
use alloy_sol_types::{sol, SolEvent};
use anyhow::{anyhow, bail, Context as _};
use leadgate_verifier::anchor::{address_hex, address_of_sec1, parse_address};
use leadgate_verifier::attestation::{
    parse_attestation, verify_attestation, AttestationPolicy, VerifiedAttestation,
};
use leadgate_verifier::checkpoint::verify_checkpoint;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle::{self, Hash};
use sha2::{Digest as _, Sha256};

use crate::chain::Rpc;
use crate::http::{agent, attest_gateway, check_trust, root_der, TrustArgs};
use crate::verify::source::{log_source, LogSource};

sol! {
    function latest() external view returns (uint64 size, bytes32 root);
    function rootAt(uint64 size) external view returns (bytes32 root);
    function enclaveKey() external view returns (address key);
    function origin() external view returns (string origin);
    event EnclaveKeyRegistered(address indexed key, bytes32 indexed attestationSha256, bytes pcr0);
    event CheckpointAnchored(uint64 indexed size, bytes32 root);
}

/// Verifies an attestation document at the time it was made (its certificates are short-lived)
/// under the trust options, and returns the keys it binds.
fn verify_document_at_its_time(
    doc: &[u8],
    trust: &TrustArgs,
) -> anyhow::Result<(VerifiedAttestation, EnclaveKeys)> {
    let (_, parsed) =
        parse_attestation(doc).map_err(|e| anyhow!("registration document: {}: {e}", e.code()))?;
    let pcr0 = check_trust(trust)?;
    let root = root_der(trust)?;
    let policy = AttestationPolicy {
        now_unix_ms: parsed.timestamp_ms,
        root_der: root.as_deref(),
        expected_pcr0: pcr0.as_deref(),
        allow_debug: trust.allow_debug,
        expected_nonce: None,
    };
    let verified = verify_attestation(doc, &policy)
        .map_err(|e| anyhow!("registration document rejected: {}: {e}", e.code()))?;
    let keys = verified
        .enclave_keys()
        .map_err(|e| anyhow!("registration document rejected: {}: {e}", e.code()))?;
    Ok((verified, keys))
}

/// Options of `verify anchor`.
pub struct AnchorArgs<'a> {
    /// JSON-RPC URL.
    pub rpc: &'a str,
    /// Contract address.
    pub contract: &'a str,
    /// Gateway: attestation, the served checkpoint and consistency proofs.
    pub gateway: Option<&'a str>,
    /// The log's C2SP tlog-tiles URL prefix: the served checkpoint and consistency proofs
    /// from the tiles (the bucket or any static copy) instead of the gateway's API.
    pub tiles: Option<&'a str>,
    /// A checkpoint note file to check instead of the gateway's current one (without a
    /// gateway, its log key comes from the registration document).
    pub checkpoint: Option<&'a std::path::Path>,
    /// The registered attestation document, to check against its registered SHA-256.
    pub registration: Option<&'a std::path::Path>,
    /// Trust options for the attestation.
    pub trust: &'a TrustArgs,
}

/// What the chain says about one CheckpointAnchor deployment.
pub struct ChainView {
    /// Contract address.
    pub contract: Address,
    /// `eth_chainId`.
    pub chain_id: u64,
    /// The contract's log origin.
    pub origin: String,
    /// Every anchored (size, root), from the `CheckpointAnchored` events, each checked against
    /// `rootAt` and growing.
    pub history: Vec<(u64, Hash)>,
    /// `latest()`: (0, zero) before the first anchor.
    pub latest: (u64, Hash),
    /// The active enclave key (zero address if none).
    pub active: Address,
    /// The active key's latest registration, if it has one.
    pub registration: Option<EnclaveKeyRegistered>,
}

impl ChainView {
    /// Reads the anchored history and the registrations of `contract` over `rpc_url`.
    ///
    /// # Errors
    /// RPC failures, or a contract whose events disagree with its storage.
    pub fn read(http: &ureq::Agent, rpc_url: &str, contract: &str) -> anyhow::Result<Self> {
        let mut rpc = Rpc::new(http, rpc_url);
        rpc.pin()?;
        let contract = Address::from(parse_address(contract).context("--contract")?);
        let chain_id = rpc.chain_id().context("eth_chainId")?;
        let origin = rpc.eth_call(&contract, &originCall {})?;
        let mut history: Vec<(u64, Hash)> = Vec::new();
        for log in rpc.logs(&contract, &[Some(CheckpointAnchored::SIGNATURE_HASH)])? {
            let e = CheckpointAnchored::decode_raw_log(log.topics, &log.data)
                .map_err(|e| anyhow!("CheckpointAnchored: {e}"))?;
            if history.last().is_some_and(|(s, _)| *s >= e.size) {
                bail!("anchored sizes do not grow at {}", e.size);
            }
            history.push((e.size, e.root.0));
        }
        let latest = rpc.eth_call(&contract, &latestCall {})?;
        match history.last() {
            Some((s, r)) if *s == latest.size && *r == latest.root.0 => {}
            None if latest.size == 0 => {}
            _ => bail!("the contract's latest() does not match its CheckpointAnchored events"),
        }
        for (size, root) in &history {
            let stored = rpc.eth_call(&contract, &rootAtCall { size: *size })?;
            if stored.0 != *root {
                bail!("rootAt({size}) differs from its CheckpointAnchored event");
            }
        }
        let active = rpc.eth_call(&contract, &enclaveKeyCall {})?;
        let mut registration = None;
        for log in rpc.logs(&contract, &[Some(EnclaveKeyRegistered::SIGNATURE_HASH)])? {
            let e = EnclaveKeyRegistered::decode_raw_log(log.topics, &log.data)
                .map_err(|e| anyhow!("EnclaveKeyRegistered: {e}"))?;
            if e.key == active {
                registration = Some(e);
            }
        }
        Ok(Self {
            contract,
            chain_id,
            origin,
            history,
            latest: (latest.size, latest.root.0),
            active,
            registration,
        })
    }

    /// The key binding: `attested` (a verified attestation binding `keys`) must bind the
    /// contract's active anchor key, the registered PCR0 and the contract's log origin.
    ///
    /// # Errors
    /// What differs.
    pub fn check_binding(
        &self,
        what: &str,
        attested: &VerifiedAttestation,
        keys: &EnclaveKeys,
    ) -> anyhow::Result<String> {
        let active = self.active;
        let reg = self
            .registration
            .as_ref()
            .ok_or_else(|| anyhow!("no active enclave key registered"))?;
        let key = address_of_sec1(&keys.anchor_key)
            .ok_or_else(|| anyhow!("{what}: anchor key is not a point"))?;
        if key != active.0 .0 {
            bail!(
                "{what}: anchor key {} is not the contract's active key {active}",
                address_hex(&key)
            );
        }
        if attested.pcr(0) != Some(&reg.pcr0[..]) {
            bail!("{what}: PCR0 is not the registered PCR0");
        }
        if keys.origin != self.origin {
            bail!(
                "{what}: log {:?} is not the contract's {:?}",
                keys.origin,
                self.origin
            );
        }
        Ok(format!(
            "the {what} binds the contract's active anchor key {active}, its registered PCR0 and log {:?}",
            self.origin
        ))
    }

    /// Whether the served checkpoint (`size`, `root`) is anchored, or consistent with the
    /// latest anchor (the proof read from `log`: the gateway's API or the log's tiles).
    ///
    /// # Errors
    /// `FORK: …` for a checkpoint the chain contradicts; fetch failures.
    pub fn check_served(
        &self,
        log: Option<&dyn LogSource>,
        size: u64,
        root: Hash,
    ) -> anyhow::Result<String> {
        if let Some((_, anchored)) = self.history.iter().find(|(s, _)| *s == size) {
            if *anchored != root {
                bail!(
                    "FORK: the served checkpoint of size {size} has root {}, the chain anchored {}",
                    hex::encode(root),
                    hex::encode(anchored)
                );
            }
            return Ok(format!("served checkpoint (size {size}) is anchored"));
        }
        let (latest_size, latest_root) = self.latest;
        if latest_size == 0 {
            return Ok(format!(
                "nothing anchored yet; served checkpoint size {size} not compared"
            ));
        }
        let Some(log) = log else {
            bail!(
                "checkpoint size {size} is not anchored; its consistency proof needs --gateway \
                 or --tiles"
            );
        };
        let (m, n, rm, rn) = if latest_size < size {
            (latest_size, size, latest_root, root)
        } else {
            (size, latest_size, root, latest_root)
        };
        let proof = log.consistency(m, n)?;
        merkle::verify_consistency(m, n, &proof, &rm, &rn).map_err(|e| {
            anyhow!(
                "FORK: the served checkpoint of size {size} is not consistent with the anchored \
                 checkpoint of size {latest_size}: {}",
                e.code()
            )
        })?;
        Ok(format!(
            "served checkpoint (size {size}) is consistent with the latest anchor (size {latest_size})"
        ))
    }
}

/// `verify anchor`: the anchored history, the key registration against the attestation, and
/// the served checkpoint against the latest anchor. A served checkpoint inconsistent with the
/// chain is reported as `FORK` (an error: exit status 1).
pub fn verify_anchor(a: &AnchorArgs<'_>) -> anyhow::Result<()> {
    let http = agent();
    let view = ChainView::read(&http, a.rpc, a.contract)?;
    println!(
        "contract {} on chain {}: log {:?}",
        view.contract, view.chain_id, view.origin
    );
    println!(
        "anchored history: {} checkpoints, latest size {} root {}",
        view.history.len(),
        view.latest.0,
        hex::encode(view.latest.1)
    );
    let reg = view
        .registration
        .as_ref()
        .ok_or_else(|| anyhow!("no active enclave key registered"))?;
    println!(
        "active enclave key {}: attestation sha256 {}, pcr0 {}",
        view.active,
        hex::encode(reg.attestationSha256),
        hex::encode(&reg.pcr0)
    );
    // The registered document (checked against its on-chain SHA-256) and/or the gateway's
    // fresh attestation must bind the active key, the registered PCR0 and the contract's log.
    // The checkpoint's log key comes from whichever is given.
    let mut bound_keys = None;
    if let Some(path) = a.registration {
        let doc = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let digest: [u8; 32] = Sha256::digest(&doc).into();
        if digest != reg.attestationSha256.0 {
            bail!(
                "{}: SHA-256 is not the registered attestation's",
                path.display()
            );
        }
        println!("registration document matches the registered SHA-256");
        let (attested, keys) = verify_document_at_its_time(&doc, a.trust)?;
        println!(
            "{}",
            view.check_binding("registered attestation", &attested, &keys)?
        );
        bound_keys = Some(keys);
    }
    if let Some(gateway) = a.gateway {
        let (attested, keys) = attest_gateway(&http, gateway, a.trust)?;
        println!(
            "{}",
            view.check_binding("gateway's attestation", &attested, &keys)?
        );
        bound_keys = Some(keys);
    }

    // Where the served checkpoint and the consistency proofs come from: the tiles when given
    // (no host involved), else the gateway.
    let log = log_source(&http, a.tiles, a.gateway);
    let note = match (a.checkpoint, &log) {
        (Some(p), _) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        (None, Some(log)) => log.checkpoint_note()?,
        (None, None) => return Ok(()),
    };
    let keys = bound_keys.ok_or_else(|| {
        anyhow!("checking a checkpoint needs its log key: give --gateway or --registration")
    })?;
    let cp = verify_checkpoint(&note, &keys.note_verifier()?, &keys.origin)
        .map_err(|e| anyhow!("checkpoint rejected: {}: {e}", e.code()))?;
    let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
    println!("{}", view.check_served(log.as_deref(), size, root)?);
    Ok(())
}
