//! The enclave's reads of an EVM chain: `eth_call` over JSON-RPC (Ethereum JSON-RPC API,
//! `eth_blockNumber`, `eth_call`; batches per JSON-RPC 2.0 §6), sent with [`crate::fetch`]:
//! TLS to the RPC provider through the vsock proxy on Nitro, plain HTTP to anvil in dev.
//!
//! Two users: the anchor floor ([`crate::floor`], `CheckpointAnchor.latest()`) and the escrow
//! ([`EscrowChain`]: the fee terms and withdrawal delay at boot, a buyer's deposit before a
//! bid, `settled(auctionId)` before a release). `docs/settlement.md` §6 says what these reads
//! trust and what breaks if the provider lies.

use leadgate_protocol::transport::Endpoint;

/// How long one chain request may take.
pub const CHAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A JSON-RPC endpoint the enclave reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rpc {
    /// `http(s)://host[:port]/path`; `http://` in dev only.
    pub url: String,
    /// A proxy to connect through instead of the URL's host (vsock on Nitro).
    pub via: Option<Endpoint>,
}

/// The first 4 bytes of `keccak256(signature)`: a Solidity function selector.
pub fn selector(signature: &str) -> [u8; 4] {
    use sha3::Digest as _;
    let h = sha3::Keccak256::digest(signature.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

/// An ABI word holding `address` (left-padded to 32 bytes).
pub fn word_address(address: &[u8; 20]) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(address);
    w
}

/// An ABI word holding a `bytes16` (right-padded to 32 bytes).
pub fn word_bytes16(b: &[u8; 16]) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[..16].copy_from_slice(b);
    w
}

/// Word `i` of ABI-encoded return data, as an unsigned integer of at most 128 bits.
///
/// # Errors
/// The data is too short, or the word is over 2^128 − 1.
pub fn uint_word(data: &[u8], i: usize) -> Result<u128, String> {
    let w = data
        .get(32 * i..32 * (i + 1))
        .ok_or_else(|| format!("return data of {} bytes has no word {i}", data.len()))?;
    if w[..16].iter().any(|&b| b != 0) {
        return Err(format!("word {i} is over 2^128 - 1"));
    }
    Ok(u128::from_be_bytes(w[16..].try_into().expect("16 bytes")))
}

/// Word `i` of ABI-encoded return data, as an `address`.
///
/// # Errors
/// The data is too short, or the word's top 12 bytes are not zero.
pub fn address_word(data: &[u8], i: usize) -> Result<[u8; 20], String> {
    let w = data
        .get(32 * i..32 * (i + 1))
        .ok_or_else(|| format!("return data of {} bytes has no word {i}", data.len()))?;
    if w[..12].iter().any(|&b| b != 0) {
        return Err(format!("word {i} is not an address"));
    }
    Ok(w[12..].try_into().expect("20 bytes"))
}

/// Which block a read is made at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// The node's newest block.
    Latest,
    /// Block number `n`.
    Number(u64),
}

impl Block {
    fn tag(self) -> String {
        match self {
            Block::Latest => "latest".into(),
            Block::Number(n) => format!("0x{n:x}"),
        }
    }
}

fn rpc_result(v: &serde_json::Value) -> Result<&str, String> {
    v.get("result")
        .and_then(|r| r.as_str())
        .ok_or_else(|| format!("JSON-RPC error: {}", v.get("error").unwrap_or(v)))
}

fn hex_data(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s.trim_start_matches("0x")).map_err(|e| format!("eth_call result: {e}"))
}

impl Rpc {
    async fn post(&self, body: &serde_json::Value) -> Result<serde_json::Value, String> {
        let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let (status, answer) =
            crate::fetch::request(&self.url, self.via.as_ref(), Some(body)).await?;
        if status != 200 {
            return Err(format!("HTTP {status} from the RPC"));
        }
        serde_json::from_slice(&answer).map_err(|e| format!("JSON-RPC answer: {e}"))
    }

    /// `eth_blockNumber`.
    ///
    /// # Errors
    /// The request fails, or the answer is not a quantity.
    pub async fn block_number(&self) -> Result<u64, String> {
        let v = self
            .post(&serde_json::json!({
                "jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []
            }))
            .await?;
        let s = rpc_result(&v)?;
        u64::from_str_radix(s.trim_start_matches("0x"), 16)
            .map_err(|e| format!("eth_blockNumber {s}: {e}"))
    }

    /// `eth_call`s to `to` with each of `calls` (calldata), at `block`, in one JSON-RPC
    /// batch; the return data of each, in order.
    ///
    /// # Errors
    /// The request fails, an answer is missing or an error (a revert), or not hex.
    pub async fn calls(
        &self,
        to: &[u8; 20],
        calls: &[Vec<u8>],
        block: Block,
    ) -> Result<Vec<Vec<u8>>, String> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let to = format!("0x{}", hex::encode(to));
        let batch: Vec<serde_json::Value> = calls
            .iter()
            .enumerate()
            .map(|(i, data)| {
                serde_json::json!({
                    "jsonrpc": "2.0", "id": i, "method": "eth_call",
                    "params": [{"to": to, "data": format!("0x{}", hex::encode(data))}, block.tag()],
                })
            })
            .collect();
        let v = self.post(&serde_json::Value::Array(batch)).await?;
        let answers = v
            .as_array()
            .ok_or_else(|| format!("JSON-RPC batch answer is not an array: {v}"))?;
        let mut out: Vec<Option<Vec<u8>>> = vec![None; calls.len()];
        for a in answers {
            let i = a
                .get("id")
                .and_then(|i| i.as_u64())
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i < calls.len())
                .ok_or_else(|| format!("JSON-RPC answer with an unknown id: {a}"))?;
            out[i] = Some(hex_data(rpc_result(a)?)?);
        }
        out.into_iter()
            .enumerate()
            .map(|(i, o)| o.ok_or_else(|| format!("no answer to call {i}")))
            .collect()
    }
}

/// Runs `f` to completion on a runtime of its own, on a thread of its own, within
/// [`CHAIN_TIMEOUT`]: for the enclave's synchronous code (the core runs under the link
/// server's lock, inside `block_in_place`).
///
/// # Errors
/// What `f` returns, or a message if it timed out or the runtime did not start.
pub fn blocking<T: Send>(
    f: impl std::future::Future<Output = Result<T, String>> + Send,
) -> Result<T, String> {
    crate::blocking::run(async {
        tokio::time::timeout(CHAIN_TIMEOUT, f)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {CHAIN_TIMEOUT:?}")))
    })
    .and_then(|r| r)
}

/// The escrow's deployment terms, read at boot (`LeadEscrow`'s immutables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowTerms {
    /// `feeBps()`, basis points.
    pub fee_bps: u16,
    /// `feeRecipient()`, 20 bytes.
    pub fee_recipient: [u8; 20],
    /// `withdrawalDelay()`, seconds.
    pub withdrawal_delay_s: u64,
}

/// A buyer's deposit as the escrow holds it at one block, with the auctions asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositRead {
    /// The block read at.
    pub block: u64,
    /// `accountOf(buyer).balance`, token units.
    pub balance: u128,
    /// `accountOf(buyer).requested`: the pending withdrawal, token units.
    pub requested: u128,
    /// `settled(id)` of each auction asked about, in order.
    pub settled: Vec<bool>,
}

/// What the enclave reads from its `LeadEscrow`. A trait so the core's tests can answer
/// without a chain; the enclave binary uses [`RpcEscrow`].
pub trait EscrowChain: Send + Sync {
    /// The deployment's fee terms and withdrawal delay.
    ///
    /// # Errors
    /// The chain could not be read (a message).
    fn terms(&self) -> Result<EscrowTerms, String>;

    /// Each buyer's deposit and the `settled` flags of its auctions `(buyer, auctions)`, all
    /// at one block (so a payment is never counted both in a balance and as unpaid).
    ///
    /// # Errors
    /// As [`EscrowChain::terms`].
    fn deposits(&self, buyers: &[([u8; 20], Vec<[u8; 16]>)]) -> Result<Vec<DepositRead>, String>;

    /// Whether auction `id` is paid, at the confirmed block.
    ///
    /// # Errors
    /// As [`EscrowChain::terms`].
    fn settled(&self, id: &[u8; 16]) -> Result<bool, String>;
}

/// [`EscrowChain`] over JSON-RPC: reads at `confirmations` blocks below the node's newest.
#[derive(Debug, Clone)]
pub struct RpcEscrow {
    /// The RPC endpoint.
    pub rpc: Rpc,
    /// The escrow's address, 20 bytes.
    pub escrow: [u8; 20],
    /// Blocks below the newest that reads are made at (0 on anvil; a deposit in a block a
    /// reorg can remove is not counted).
    pub confirmations: u64,
}

impl RpcEscrow {
    async fn confirmed_block(&self) -> Result<u64, String> {
        Ok(self
            .rpc
            .block_number()
            .await?
            .saturating_sub(self.confirmations))
    }
}

impl EscrowChain for RpcEscrow {
    fn terms(&self) -> Result<EscrowTerms, String> {
        blocking(async {
            let calls = ["feeBps()", "feeRecipient()", "withdrawalDelay()"]
                .map(|s| selector(s).to_vec())
                .to_vec();
            let r = self.rpc.calls(&self.escrow, &calls, Block::Latest).await?;
            let fee_bps = u16::try_from(uint_word(&r[0], 0)?)
                .map_err(|_| "feeBps is over 65,535".to_string())?;
            let withdrawal_delay_s = u64::try_from(uint_word(&r[2], 0)?)
                .map_err(|_| "withdrawalDelay is over 2^64 - 1".to_string())?;
            Ok(EscrowTerms {
                fee_bps,
                fee_recipient: address_word(&r[1], 0)?,
                withdrawal_delay_s,
            })
        })
    }

    fn deposits(&self, buyers: &[([u8; 20], Vec<[u8; 16]>)]) -> Result<Vec<DepositRead>, String> {
        if buyers.is_empty() {
            return Ok(Vec::new());
        }
        blocking(async {
            let block = self.confirmed_block().await?;
            let mut calls = Vec::new();
            for (buyer, auctions) in buyers {
                let mut c = selector("accountOf(address)").to_vec();
                c.extend_from_slice(&word_address(buyer));
                calls.push(c);
                for id in auctions {
                    let mut c = selector("settled(bytes16)").to_vec();
                    c.extend_from_slice(&word_bytes16(id));
                    calls.push(c);
                }
            }
            let answers = self
                .rpc
                .calls(&self.escrow, &calls, Block::Number(block))
                .await?;
            let mut answers = answers.iter();
            let mut out = Vec::with_capacity(buyers.len());
            for (_, auctions) in buyers {
                let account = answers.next().ok_or("missing accountOf answer")?;
                let mut settled = Vec::with_capacity(auctions.len());
                for _ in auctions {
                    let s = answers.next().ok_or("missing settled answer")?;
                    settled.push(uint_word(s, 0)? != 0);
                }
                out.push(DepositRead {
                    block,
                    balance: uint_word(account, 0)?,
                    requested: uint_word(account, 1)?,
                    settled,
                });
            }
            Ok(out)
        })
    }

    fn settled(&self, id: &[u8; 16]) -> Result<bool, String> {
        blocking(async {
            let block = self.confirmed_block().await?;
            let mut c = selector("settled(bytes16)").to_vec();
            c.extend_from_slice(&word_bytes16(id));
            let r = self
                .rpc
                .calls(&self.escrow, &[c], Block::Number(block))
                .await?;
            Ok(uint_word(&r[0], 0)? != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_words() {
        // The compiler's method identifiers (contracts/artifacts, `methodIdentifiers`).
        assert_eq!(hex::encode(selector("latest()")), "52bfe789");
        let mut data = vec![0u8; 64];
        data[31] = 7;
        data[63 - 19..].copy_from_slice(&[0xab; 20]);
        assert_eq!(uint_word(&data, 0).unwrap(), 7);
        assert_eq!(address_word(&data, 1).unwrap(), [0xab; 20]);
        assert!(uint_word(&data, 2).is_err());
        data[0] = 1;
        assert!(uint_word(&data, 0).is_err());
        assert!(address_word(&data, 0).is_err());
        assert_eq!(word_bytes16(&[1; 16])[..16], [1; 16]);
        assert_eq!(word_address(&[2; 20])[12..], [2; 20]);
    }
}
