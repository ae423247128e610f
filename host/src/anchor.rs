//! On-chain anchoring: submits each checkpoint the enclave signed for the configured
//! `CheckpointAnchor` deployment (`contracts/src/CheckpointAnchor.sol`) through alloy.
//!
//! The anchoring account (which pays gas) is the host's; the enclave's anchor key only signs
//! (EIP-712, [`leadgate_verifier::anchor`]), so the host can delay anchors but not forge them.
//!
//! Each checkpoint moves `pending → sent → anchored` in the `anchors` table, strictly in size
//! order. A checkpoint is never submitted twice: once a transaction is recorded as `sent`, a
//! later pass waits for that transaction's receipt, and resubmits only if the node no longer
//! knows the transaction (dropped, or the chain was reset) *and* the chain does not already hold
//! the checkpoint. Before every submission the worker reads the chain: a size the chain already
//! holds with our root is marked `anchored`; one skipped by a later anchor is `superseded`; one
//! the chain holds with another root is a `conflict` (a fork) and is never retried. RPC failures
//! are retried with exponential backoff (0.5 s doubling to 30 s), so anchoring resumes once the
//! RPC is back. With no RPC configured none of this runs and nothing else changes.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, FixedBytes, B256};
use alloy::providers::{DynProvider, Provider};
use leadgate_protocol::AnchorTarget;
use leadgate_verifier::merkle::{self, Hash};
use serde_bytes::ByteBuf;
use tokio::sync::Notify;

use crate::chain::Sent;
use crate::storage::{AnchorRecord, Store};

alloy::sol!(
    #[sol(rpc)]
    #[allow(missing_docs)]
    CheckpointAnchor,
    "../contracts/artifacts/CheckpointAnchor.json"
);

/// Where and as whom to anchor.
#[derive(Clone)]
pub struct AnchorConfig {
    /// JSON-RPC URL (`http://` or `https://`).
    pub rpc_url: String,
    /// The `CheckpointAnchor` contract, 20 bytes.
    pub contract: [u8; 20],
    /// The chain's EIP-155 id; the worker refuses to send if the RPC reports another.
    pub chain_id: u64,
    /// The anchoring account's secp256k1 private key, 32 bytes (pays gas; signs nothing else).
    pub account_key: [u8; 32],
    /// How long to wait for a receipt before treating the attempt as failed (default 60 s).
    pub receipt_timeout: Duration,
}

/// Reads a secp256k1 account key file: 32 bytes as hex, `0x` prefix and surrounding white
/// space allowed.
///
/// # Errors
/// The file cannot be read or is not 32 bytes of hex.
pub fn read_account_key(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    use anyhow::Context as _;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim().trim_start_matches("0x"), &mut key)
        .with_context(|| format!("{}: not a 32-byte hex key", path.display()))?;
    Ok(key)
}

impl std::fmt::Debug for AnchorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnchorConfig")
            .field("rpc_url", &self.rpc_url)
            .field("contract", &hex::encode(self.contract))
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

/// Anchoring failures; each is logged and retried (except a conflict, which is recorded).
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The RPC failed or the contract call reverted.
    #[error("rpc: {0}")]
    Rpc(String),
    /// The RPC serves another chain than configured.
    #[error("rpc reports chain id {found}, configured {expected}")]
    WrongChain {
        /// Configured.
        expected: u64,
        /// Reported.
        found: u64,
    },
    /// A sent transaction is still waiting to be mined.
    #[error("transaction {0} is not mined yet")]
    Pending(String),
    /// The anchoring transaction was mined but reverted.
    #[error("transaction {0} reverted")]
    Reverted(String),
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] crate::storage::StoreError),
    /// The log lacks nodes for a proof.
    #[error("proof: {0}")]
    Proof(#[from] merkle::ProofError),
}

fn rpc(e: impl std::fmt::Display) -> AnchorError {
    AnchorError::Rpc(e.to_string())
}

/// The enclave's signature as the host submits it: its 64-byte EIP-2098 compact form, which is
/// the same signature in 32 fewer calldata bytes (about 84 gas less per anchor), or the bytes as
/// they are if they have no compact form (then the contract refuses them, as it would anyway).
pub(crate) fn submitted_signature(signature: &[u8]) -> Vec<u8> {
    <&[u8; 65]>::try_from(signature)
        .ok()
        .and_then(|s| leadgate_verifier::anchor::compact_signature(s).ok())
        .map_or_else(|| signature.to_vec(), |c| c.to_vec())
}

/// The anchoring worker.
pub struct Anchorer {
    store: Store,
    config: AnchorConfig,
    contract: CheckpointAnchor::CheckpointAnchorInstance<DynProvider>,
    provider: DynProvider,
    wake: Notify,
}

impl Anchorer {
    /// A worker for `config` over `store`.
    ///
    /// # Errors
    /// A bad RPC URL or account key.
    pub fn new(store: Store, config: AnchorConfig) -> anyhow::Result<Arc<Self>> {
        let provider =
            crate::chain::wallet_provider(&config.rpc_url, &config.account_key, "anchoring")?;
        let contract = CheckpointAnchor::new(Address::from(config.contract), provider.clone());
        Ok(Arc::new(Self {
            store,
            config,
            contract,
            provider,
            wake: Notify::new(),
        }))
    }

    /// What the enclave signs checkpoints for.
    pub fn target(&self) -> AnchorTarget {
        AnchorTarget {
            chain_id: self.config.chain_id,
            contract: ByteBuf::from(self.config.contract.to_vec()),
        }
    }

    /// Records a checkpoint the enclave signed for [`Self::target`] and wakes the worker.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn enqueue(
        &self,
        size: u64,
        root: &Hash,
        signature: &[u8],
        now_ms: u64,
    ) -> Result<(), crate::storage::StoreError> {
        let target = (self.config.chain_id, &self.config.contract);
        self.store
            .put_anchor(size, root, signature, target, now_ms)
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Runs forever: anchors what is pending, then waits for a new checkpoint (or 5 s); on
    /// failure, retries with backoff.
    pub async fn run(self: Arc<Self>) {
        const FIRST: Duration = Duration::from_millis(500);
        const MAX: Duration = Duration::from_secs(30);
        let mut backoff = FIRST;
        loop {
            match self.anchor_pending().await {
                Ok(()) => {
                    backoff = FIRST;
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), self.wake.notified()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "anchoring failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX);
                }
            }
        }
    }

    /// Anchors every pending checkpoint in size order; stops at the first failure.
    ///
    /// # Errors
    /// The failure, after recording it on the checkpoint.
    pub async fn anchor_pending(&self) -> Result<(), AnchorError> {
        let rows = self
            .store
            .unanchored(self.config.chain_id, &self.config.contract)
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        // The chain check counts as an attempt on the oldest pending checkpoint, so an RPC
        // outage shows in its record.
        let mut result = self.check_chain().await;
        let mut failed = rows.first().map(|r| r.size);
        if result.is_ok() {
            for row in &rows {
                failed = Some(row.size);
                result = self.anchor_one(row).await;
                if result.is_err() {
                    break;
                }
            }
        }
        if let (Err(e), Some(size)) = (&result, failed) {
            self.store.anchor_failed(size, &e.to_string()).await?;
        }
        result
    }

    /// The RPC answers and serves the configured chain.
    async fn check_chain(&self) -> Result<(), AnchorError> {
        let found = self.provider.get_chain_id().await.map_err(rpc)?;
        if found != self.config.chain_id {
            return Err(AnchorError::WrongChain {
                expected: self.config.chain_id,
                found,
            });
        }
        Ok(())
    }

    async fn anchor_one(&self, row: &AnchorRecord) -> Result<(), AnchorError> {
        let now = crate::clock::now_ms();
        // A transaction already sent: follow it rather than send another.
        if let Some(tx) = row.tx_hash {
            let hash = B256::from(tx);
            match crate::chain::follow(&self.provider, hash)
                .await
                .map_err(rpc)?
            {
                Sent::Mined { block, gas_used } => {
                    return self
                        .mark_anchored(row, Some(&tx), Some((block, gas_used)))
                        .await;
                }
                Sent::Reverted => {} // the chain check below decides
                Sent::Pending => return Err(AnchorError::Pending(format!("{hash}"))),
                Sent::Gone => {
                    tracing::warn!(size = row.size, tx = %hash, "anchoring transaction is gone from the node; checking the chain");
                }
            }
        }
        let latest = self.contract.latest().call().await.map_err(rpc)?;
        let (chain_size, chain_root) = (latest.size, latest.root);
        if chain_size >= row.size {
            let on_chain = self.contract.rootAt(row.size).call().await.map_err(rpc)?;
            let state = if on_chain.0 == row.root {
                "anchored"
            } else if on_chain == FixedBytes::ZERO {
                "superseded"
            } else {
                tracing::error!(size = row.size, chain = %on_chain, "the chain holds another root for this size: fork");
                "conflict"
            };
            self.store
                .set_anchor_state(row.size, state, row.tx_hash.as_ref(), None, now)
                .await?;
            return Ok(());
        }
        // Our log must extend the chain's latest anchor; the proof shows it to the contract.
        let proof = if chain_size == 0 {
            Vec::new()
        } else {
            let (ours, proof) = self
                .store
                .with_nodes(|s| {
                    Ok::<_, merkle::ProofError>((
                        merkle::subtree_root(s, 0, chain_size)?,
                        merkle::consistency_proof(s, chain_size, row.size)?,
                    ))
                })
                .await??;
            if ours != chain_root.0 {
                tracing::error!(
                    chain_size,
                    "the chain's latest anchor is not on this log: fork"
                );
                self.store
                    .set_anchor_state(row.size, "conflict", None, None, now)
                    .await?;
                return Ok(());
            }
            proof
        };
        let call = self.contract.anchor(
            row.size,
            FixedBytes(row.root),
            proof.into_iter().map(FixedBytes).collect(),
            Bytes::from(submitted_signature(&row.signature)),
        );
        let pending = call.send().await.map_err(rpc)?;
        let tx = pending.tx_hash().0;
        self.store
            .set_anchor_state(row.size, "sent", Some(&tx), None, now)
            .await?;
        tracing::info!(size = row.size, tx = %B256::from(tx), "anchor sent");
        let receipt = pending
            .with_timeout(Some(self.config.receipt_timeout))
            .get_receipt()
            .await
            .map_err(rpc)?;
        if !receipt.status() {
            return Err(AnchorError::Reverted(format!("{}", B256::from(tx))));
        }
        let mined = (receipt.block_number.unwrap_or_default(), receipt.gas_used);
        self.mark_anchored(row, Some(&tx), Some(mined)).await
    }

    async fn mark_anchored(
        &self,
        row: &AnchorRecord,
        tx: Option<&[u8; 32]>,
        mined: Option<(u64, u64)>,
    ) -> Result<(), AnchorError> {
        let now = crate::clock::now_ms();
        self.store
            .set_anchor_state(row.size, "anchored", tx, mined, now)
            .await?;
        tracing::info!(
            size = row.size,
            block = mined.map(|m| m.0),
            gas_used = mined.map(|m| m.1),
            "checkpoint anchored"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::submitted_signature;
    use k256::ecdsa::SigningKey;
    use leadgate_verifier::anchor::{address_of, recover_signer, sign_digest};

    #[test]
    fn submits_the_compact_form_of_the_same_signature() {
        let key = SigningKey::from_slice(&[7; 32]).unwrap();
        let signer = address_of(key.verifying_key());
        for digest in [[1u8; 32], [2; 32], [3; 32], [4; 32]] {
            let sig = sign_digest(&key, &digest).unwrap();
            let sent = submitted_signature(&sig);
            assert_eq!(sent.len(), 64);
            assert_eq!(recover_signer(&digest, &sent).unwrap(), signer);
        }
        // No compact form: passed on unchanged, for the contract to refuse.
        let mut bad_v = sign_digest(&key, &[1; 32]).unwrap();
        bad_v[64] = 1;
        assert_eq!(submitted_signature(&bad_v), bad_v.to_vec());
        assert_eq!(submitted_signature(&[9; 10]), vec![9; 10]);
    }
}
