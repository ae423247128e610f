//! Settlement: submits each settlement the enclave signed at close (logged in the
//! `auction.closed`, copied to the `settlements` table as the close is stored) to the
//! configured `LeadEscrow` (`contracts/src/LeadEscrow.sol`) through alloy.
//!
//! The settling account only pays gas: the escrow pays on the enclave's signature alone, once
//! per auction, whoever submits it. So this host can delay a payment but neither forge nor
//! repeat one, and a seller whose host withholds it submits the logged settlement itself
//! (`docs/settlement.md`).
//!
//! Each settlement moves `pending → sent → settled`, or to `failed` when the escrow will never
//! pay its signature. A settlement is never sent twice while its transaction may still be
//! mined: once one is recorded as `sent`, later passes follow its receipt, and resubmit only if
//! the node no longer knows it (dropped, or the chain was reset) *and* the escrow has not paid
//! the auction. Before every submission the worker reads `settled(auctionId)` (paid by anyone:
//! `settled`) and simulates the call: the escrow's revert decides what happens next
//! (`AlreadySettled`: settled by someone else in between; `BadSignature` or
//! `UnregisteredSigner`: `failed`; `InsufficientBalance` and RPC failures: kept and retried, with
//! exponential backoff from 0.5 s doubling to 30 s). One settlement that cannot be paid yet
//! never holds up the others: each pass tries every unsettled row, sends every transaction,
//! then waits for their receipts together.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, FixedBytes, B256, U256};
use alloy::providers::{DynProvider, PendingTransactionBuilder, Provider};
use leadgate_verifier::api::{SettlementState, SettlementStatus};
use leadgate_verifier::settlement::EthAddress;
use tokio::sync::Notify;

use crate::chain::Sent;
use crate::storage::{Store, StoreError};

alloy::sol!(
    #[sol(rpc)]
    #[allow(missing_docs)]
    LeadEscrow,
    "../contracts/artifacts/LeadEscrow.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[allow(missing_docs)]
    TestUsdc,
    "../contracts/artifacts/TestUsdc.json"
);

/// Most settlements one pass handles; the rest wait for the next pass.
pub const MAX_PER_PASS: u32 = 256;

/// Where and as whom to settle.
#[derive(Clone)]
pub struct SettleConfig {
    /// JSON-RPC URL (`http://` or `https://`).
    pub rpc_url: String,
    /// The chain's EIP-155 id; the worker refuses to send if the RPC reports another.
    pub chain_id: u64,
    /// The `LeadEscrow` contract, 20 bytes.
    pub escrow: [u8; 20],
    /// The settling account's secp256k1 private key, 32 bytes: pays gas, signs nothing the
    /// escrow checks. On a real chain give it its own account, not the anchoring one, so the
    /// two workers never compete for nonces.
    pub account_key: [u8; 32],
    /// How long to wait for a receipt before leaving the transaction to the next pass
    /// (default 60 s).
    pub receipt_timeout: Duration,
}

impl std::fmt::Debug for SettleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettleConfig")
            .field("rpc_url", &self.rpc_url)
            .field("chain_id", &self.chain_id)
            .field("escrow", &EthAddress(self.escrow).to_string())
            .finish_non_exhaustive()
    }
}

/// Settlement failures; each is recorded on its settlement and retried.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The RPC failed, or the call reverted in a way the escrow's errors do not name.
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
    /// The winner's escrow balance is short of the price (for now: a deposit may follow).
    #[error("the buyer's escrow balance {balance} is short of the price {price}")]
    InsufficientBalance {
        /// Balance, token units.
        balance: U256,
        /// Price, token units.
        price: U256,
    },
    /// The settling transaction was mined but reverted.
    #[error("transaction {0} reverted")]
    Reverted(B256),
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

fn rpc(e: impl std::fmt::Display) -> SettleError {
    SettleError::Rpc(e.to_string())
}

/// The arguments of `LeadEscrow.settle` for a stored settlement, or why the escrow can never
/// pay it.
struct Call {
    auction_id: FixedBytes<16>,
    buyer: Address,
    seller: Address,
    price: U256,
    signature: Bytes,
}

impl Call {
    fn of(s: &SettlementStatus) -> Result<Self, &'static str> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(&s.auction_id, &mut id)
            .map_err(|_| "the auction id is not 32 hex digits")?;
        let addr = |a: &str| a.parse::<EthAddress>().map(|a| Address::from(a.0));
        let mut sig = [0u8; 65];
        hex::decode_to_slice(&s.signature, &mut sig)
            .map_err(|_| "the signature is not 65 bytes of hex")?;
        Ok(Call {
            auction_id: FixedBytes(id),
            buyer: addr(&s.buyer).map_err(|_| "the buyer is not an address")?,
            seller: addr(&s.seller).map_err(|_| "the seller is not an address")?,
            price: U256::from(s.price.units()),
            signature: Bytes::from(crate::anchor::submitted_signature(&sig)),
        })
    }
}

/// What one pass of [`Settler::settle_pending`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Unsettled settlements it took up (at most [`MAX_PER_PASS`]).
    pub handled: usize,
    /// How many of them failed this time.
    pub failed: usize,
}

/// What simulating `settle` said.
enum Verdict {
    /// It would pay.
    Pays,
    /// Someone else paid it in between.
    Paid,
    /// It can never pay: why.
    Never(String),
}

/// The settling worker.
pub struct Settler {
    store: Store,
    config: SettleConfig,
    /// [`SettleConfig::escrow`] as stored: `0x` + 40 lowercase hex digits.
    escrow_text: String,
    escrow: LeadEscrow::LeadEscrowInstance<DynProvider>,
    provider: DynProvider,
    wake: Notify,
}

impl Settler {
    /// A worker for `config` over `store`.
    ///
    /// # Errors
    /// A bad RPC URL or account key.
    pub fn new(store: Store, config: SettleConfig) -> anyhow::Result<Arc<Self>> {
        let provider =
            crate::chain::wallet_provider(&config.rpc_url, &config.account_key, "settling")?;
        let escrow = LeadEscrow::new(Address::from(config.escrow), provider.clone());
        Ok(Arc::new(Self {
            store,
            escrow_text: EthAddress(config.escrow).to_string(),
            config,
            escrow,
            provider,
            wake: Notify::new(),
        }))
    }

    /// Wakes the worker: a close with a settlement was stored.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs forever: settles what is unsettled, then waits for a new close (or 5 s); after a
    /// pass with failures, waits with backoff instead.
    pub async fn run(self: Arc<Self>) {
        const FIRST: Duration = Duration::from_millis(500);
        const MAX: Duration = Duration::from_secs(30);
        let mut backoff = FIRST;
        loop {
            match self.settle_pending().await {
                Ok(Pass { handled, failed: 0 }) => {
                    backoff = FIRST;
                    // A full pass leaves more behind: go on at once.
                    if handled < MAX_PER_PASS as usize {
                        let _ = tokio::time::timeout(Duration::from_secs(5), self.wake.notified())
                            .await;
                    }
                }
                Ok(Pass { failed, .. }) => {
                    tracing::warn!(
                        failed,
                        retry_ms = backoff.as_millis() as u64,
                        "some settlements failed"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "settling failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX);
                }
            }
        }
    }

    /// One pass over up to [`MAX_PER_PASS`] unsettled settlements, in log order: follows sent
    /// transactions, submits the rest, and waits for the receipts. Each failure is recorded
    /// on its settlement.
    ///
    /// # Errors
    /// The RPC is down or serves another chain, or storage failed.
    pub async fn settle_pending(&self) -> Result<Pass, SettleError> {
        let foreign = self
            .store
            .fail_foreign_settlements(self.config.chain_id, &self.escrow_text)
            .await?;
        if foreign > 0 {
            tracing::error!(
                foreign,
                "settlements signed for another escrow or chain than this host settles on"
            );
        }
        let rows = self
            .store
            .unsettled(self.config.chain_id, &self.escrow_text, MAX_PER_PASS)
            .await?;
        if rows.is_empty() {
            return Ok(Pass::default());
        }
        let found = self.provider.get_chain_id().await.map_err(rpc)?;
        if found != self.config.chain_id {
            return Err(SettleError::WrongChain {
                expected: self.config.chain_id,
                found,
            });
        }
        let mut failed = 0;
        let mut sent = Vec::new();
        for row in &rows {
            match self.submit(row).await {
                Ok(Some(pending)) => sent.push((row, pending)),
                Ok(None) => {}
                Err(e) => {
                    failed += 1;
                    self.record_failure(row, &e).await?;
                }
            }
        }
        for (row, pending) in sent {
            let tx = *pending.tx_hash();
            let receipt = pending
                .with_timeout(Some(self.config.receipt_timeout))
                .get_receipt()
                .await;
            let result = match receipt {
                Ok(r) if r.status() => {
                    let mined = (r.block_number.unwrap_or_default(), r.gas_used);
                    self.mark_settled(row, Some(&tx.0), Some(mined)).await
                }
                Ok(_) => Err(SettleError::Reverted(tx)),
                Err(e) => Err(rpc(e)),
            };
            if let Err(e) = result {
                failed += 1;
                self.record_failure(row, &e).await?;
            }
        }
        Ok(Pass {
            handled: rows.len(),
            failed,
        })
    }

    async fn record_failure(
        &self,
        row: &SettlementStatus,
        e: &SettleError,
    ) -> Result<(), SettleError> {
        tracing::warn!(auction = %row.auction_id, error = %e, "settlement attempt failed");
        self.store
            .settlement_failed(&row.auction_id, &e.to_string())
            .await?;
        Ok(())
    }

    /// Follows a sent transaction, or checks and sends one. Returns the transaction sent, if
    /// one was.
    async fn submit(
        &self,
        row: &SettlementStatus,
    ) -> Result<Option<PendingTransactionBuilder<alloy::network::Ethereum>>, SettleError> {
        let now = crate::clock::now_ms();
        let call = match Call::of(row) {
            Ok(c) => c,
            Err(why) => return self.mark_failed(row, why).await.map(|()| None),
        };
        // A transaction already sent: follow it rather than send another.
        if let Some(tx) = &row.tx_hash {
            let hash: B256 = tx.parse().map_err(rpc)?;
            match crate::chain::follow(&self.provider, hash)
                .await
                .map_err(rpc)?
            {
                Sent::Mined { block, gas_used } => {
                    return self
                        .mark_settled(row, Some(&hash.0), Some((block, gas_used)))
                        .await
                        .map(|()| None);
                }
                Sent::Reverted => {}              // the checks below decide
                Sent::Pending => return Ok(None), // still waiting to be mined
                Sent::Gone => {
                    tracing::warn!(auction = %row.auction_id, tx = %hash, "settling transaction is gone from the node; checking the escrow");
                }
            }
        }
        if self
            .escrow
            .settled(call.auction_id)
            .call()
            .await
            .map_err(rpc)?
        {
            return self.mark_settled(row, None, None).await.map(|()| None);
        }
        let settle = self.escrow.settle(
            call.auction_id,
            call.buyer,
            call.seller,
            call.price,
            call.signature,
        );
        match self.verdict(settle.call().await)? {
            Verdict::Pays => {}
            Verdict::Paid => return self.mark_settled(row, None, None).await.map(|()| None),
            Verdict::Never(why) => return self.mark_failed(row, &why).await.map(|()| None),
        }
        let pending = settle.send().await.map_err(rpc)?;
        let tx = pending.tx_hash().0;
        self.store
            .set_settlement_state(
                &row.auction_id,
                SettlementState::Sent,
                Some(&tx),
                None,
                None,
                now,
            )
            .await?;
        tracing::info!(auction = %row.auction_id, tx = %B256::from(tx), "settlement sent");
        Ok(Some(pending))
    }

    /// What the escrow's answer to a simulated `settle` means.
    fn verdict<T>(
        &self,
        answer: Result<T, alloy::contract::Error>,
    ) -> Result<Verdict, SettleError> {
        use LeadEscrow::LeadEscrowErrors as E;
        let e = match answer {
            Ok(_) => return Ok(Verdict::Pays),
            Err(e) => e,
        };
        Ok(match e.as_decoded_interface_error::<E>() {
            Some(E::AlreadySettled(_)) => Verdict::Paid,
            Some(E::BadSignature(_)) => {
                Verdict::Never("the escrow finds no signer in the signature".into())
            }
            Some(E::UnregisteredSigner(s)) => Verdict::Never(format!(
                "signed by {}, which is not the anchor's enclave key now",
                EthAddress(s.signer.0 .0)
            )),
            Some(E::InsufficientBalance(b)) => {
                return Err(SettleError::InsufficientBalance {
                    balance: b.balance,
                    price: b.amount,
                })
            }
            _ => return Err(rpc(e)),
        })
    }

    async fn mark_failed(&self, row: &SettlementStatus, why: &str) -> Result<(), SettleError> {
        tracing::error!(auction = %row.auction_id, reason = why, "the escrow will never pay this settlement");
        let now = crate::clock::now_ms();
        let tx = row.tx_hash.as_deref().and_then(|t| t.parse::<B256>().ok());
        self.store
            .set_settlement_state(
                &row.auction_id,
                SettlementState::Failed,
                tx.as_ref().map(|t| &t.0),
                None,
                Some(why),
                now,
            )
            .await?;
        Ok(())
    }

    async fn mark_settled(
        &self,
        row: &SettlementStatus,
        tx: Option<&[u8; 32]>,
        mined: Option<(u64, u64)>,
    ) -> Result<(), SettleError> {
        let now = crate::clock::now_ms();
        self.store
            .set_settlement_state(
                &row.auction_id,
                SettlementState::Settled,
                tx,
                mined,
                None,
                now,
            )
            .await?;
        tracing::info!(
            auction = %row.auction_id,
            by_us = tx.is_some(),
            block = mined.map(|m| m.0),
            gas_used = mined.map(|m| m.1),
            latency_ms = now.saturating_sub(row.closed_ms),
            "settlement paid"
        );
        Ok(())
    }
}
