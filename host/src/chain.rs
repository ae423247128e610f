//! The host's chain access shared by the anchoring ([`crate::anchor`]) and settling
//! ([`crate::settle`]) workers: a provider that signs with one of the host's gas accounts, and
//! what became of a transaction sent earlier.

use alloy::network::EthereumWallet;
use alloy::primitives::B256;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::TransportError;

/// A provider over `rpc_url` (`http://` or `https://`) that signs transactions with the
/// secp256k1 `account_key` (32 bytes); `what` names the account in errors.
///
/// # Errors
/// A bad RPC URL or account key.
pub fn wallet_provider(
    rpc_url: &str,
    account_key: &[u8; 32],
    what: &str,
) -> anyhow::Result<DynProvider> {
    let signer = PrivateKeySigner::from_bytes(&B256::from(*account_key))
        .map_err(|e| anyhow::anyhow!("{what} account key: {e}"))?;
    let url = rpc_url
        .parse()
        .map_err(|e| anyhow::anyhow!("{what} RPC URL {rpc_url:?}: {e}"))?;
    Ok(ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url)
        .erased())
}

/// What became of a transaction sent earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Mined and succeeded: its block and the gas it used.
    Mined {
        /// Block number.
        block: u64,
        /// Gas used.
        gas_used: u64,
    },
    /// Mined and reverted.
    Reverted,
    /// Known to the node, not mined yet.
    Pending,
    /// Unknown to the node: dropped, or the chain was reset.
    Gone,
}

/// Asks the node what became of transaction `hash`: its receipt, else whether it knows it.
///
/// # Errors
/// RPC failures.
pub async fn follow(provider: &DynProvider, hash: B256) -> Result<Sent, TransportError> {
    Ok(match provider.get_transaction_receipt(hash).await? {
        Some(r) if r.status() => Sent::Mined {
            block: r.block_number.unwrap_or_default(),
            gas_used: r.gas_used,
        },
        Some(_) => Sent::Reverted,
        None if provider.get_transaction_by_hash(hash).await?.is_some() => Sent::Pending,
        None => Sent::Gone,
    })
}
