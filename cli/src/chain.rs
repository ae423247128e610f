//! Plain JSON-RPC to an EVM chain, synchronous (ureq): contract reads with the ABI from
//! `alloy-sol-types`, and, for the money commands, EIP-1559 transactions built with
//! `alloy-consensus` and signed with the account's secp256k1 key (k256). No chain client and
//! no async runtime.

use std::time::{Duration, Instant};

use alloy_consensus::{SignableTransaction as _, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718 as _;
use alloy_primitives::{Address, Bytes, Signature, TxKind, B256, U256};
use alloy_sol_types::SolCall;
use anyhow::{anyhow, bail, Context as _};
use k256::ecdsa::SigningKey;
use serde_json::{json, Value};

/// A JSON-RPC endpoint, read at one block tag: pinned to a number, every read of one view
/// sees the same state.
pub struct Rpc {
    http: ureq::Agent,
    url: String,
    /// Block tag of every read: `latest`, or a `0x` quantity from `eth_blockNumber`.
    pub block: String,
}

impl Rpc {
    /// Reads at `latest`.
    pub fn new(http: &ureq::Agent, url: &str) -> Self {
        Rpc {
            http: http.clone(),
            url: url.to_owned(),
            block: "latest".to_owned(),
        }
    }

    /// Pins every later read to the chain's current block.
    ///
    /// # Errors
    /// RPC failures.
    pub fn pin(&mut self) -> anyhow::Result<()> {
        self.block = self
            .call("eth_blockNumber", json!([]))?
            .as_str()
            .ok_or_else(|| anyhow!("eth_blockNumber: not a quantity"))?
            .to_owned();
        Ok(())
    }

    /// One JSON-RPC call; its `result`.
    ///
    /// # Errors
    /// Transport failures and JSON-RPC errors (with the node's message and revert data).
    pub fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let mut resp = self
            .http
            .post(&self.url)
            .send_json(&body)
            .with_context(|| format!("{method} at {}", self.url))?;
        let v: Value = resp
            .body_mut()
            .read_json()
            .context("RPC answer is not JSON")?;
        if let Some(e) = v.get("error") {
            bail!("{method}: {e}");
        }
        Ok(v["result"].clone())
    }

    /// `eth_chainId`.
    ///
    /// # Errors
    /// RPC failures.
    pub fn chain_id(&self) -> anyhow::Result<u64> {
        quantity(&self.call("eth_chainId", json!([]))?)
    }

    /// `eth_call` of `call` on `to` at [`Rpc::block`], decoded.
    ///
    /// # Errors
    /// RPC failures, reverts, and answers that do not decode.
    pub fn eth_call<C: SolCall>(&self, to: &Address, call: &C) -> anyhow::Result<C::Return> {
        let data = format!("0x{}", hex::encode(call.abi_encode()));
        let out = self.call(
            "eth_call",
            json!([{ "to": to.to_string(), "data": data }, self.block]),
        )?;
        let bytes = hex_bytes(&out)?;
        C::abi_decode_returns(&bytes).map_err(|e| anyhow!("{}: {e}", C::SIGNATURE))
    }

    /// Logs of `to` from block 0 to [`Rpc::block`] whose topics start with `topics` (each
    /// `None` matches anything), oldest first.
    ///
    /// # Errors
    /// RPC failures and malformed answers.
    pub fn logs(&self, to: &Address, topics: &[Option<B256>]) -> anyhow::Result<Vec<Log>> {
        let topics: Vec<Value> = topics
            .iter()
            .map(|t| t.map_or(Value::Null, |t| json!(t.to_string())))
            .collect();
        let out = self.call(
            "eth_getLogs",
            json!([{ "address": to.to_string(), "fromBlock": "0x0", "toBlock": self.block,
                     "topics": topics }]),
        )?;
        out.as_array()
            .ok_or_else(|| anyhow!("eth_getLogs: not a list"))?
            .iter()
            .map(|l| {
                let topics = l["topics"]
                    .as_array()
                    .ok_or_else(|| anyhow!("log without topics"))?
                    .iter()
                    .map(|t| {
                        let b = hex_bytes(t)?;
                        Ok(B256::from_slice(
                            b.get(..32).ok_or_else(|| anyhow!("short topic"))?,
                        ))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(Log {
                    topics,
                    data: hex_bytes(&l["data"])?,
                    tx_hash: B256::from_slice(&hex_bytes(&l["transactionHash"])?),
                    block_number: quantity(&l["blockNumber"])?,
                })
            })
            .collect()
    }
}

/// One event log.
#[derive(Debug, Clone)]
pub struct Log {
    /// Its topics: the event's signature hash, then the indexed arguments.
    pub topics: Vec<B256>,
    /// The ABI-encoded arguments that are not indexed.
    pub data: Vec<u8>,
    /// The transaction that emitted it, 32 bytes.
    pub tx_hash: B256,
    /// Its block.
    pub block_number: u64,
}

/// The bytes of a `0x` hex string in an RPC answer.
///
/// # Errors
/// Not a string, or not hex.
pub fn hex_bytes(v: &Value) -> anyhow::Result<Vec<u8>> {
    let s = v
        .as_str()
        .ok_or_else(|| anyhow!("RPC: expected a hex string"))?;
    hex::decode(s.trim_start_matches("0x")).context("RPC: bad hex")
}

/// A `0x` quantity in an RPC answer.
///
/// # Errors
/// Not a quantity that fits 64 bits.
pub fn quantity(v: &Value) -> anyhow::Result<u64> {
    let s = v
        .as_str()
        .ok_or_else(|| anyhow!("RPC: expected a quantity"))?;
    u64::from_str_radix(s.trim_start_matches("0x"), 16).context("RPC: bad quantity")
}

/// A mined transaction.
#[derive(Debug, Clone)]
pub struct Mined {
    /// Its hash, 32 bytes.
    pub tx_hash: B256,
    /// Its block.
    pub block_number: u64,
    /// Gas it used.
    pub gas_used: u64,
}

/// An account that sends transactions: its secp256k1 key and the chain it sends on.
pub struct Wallet {
    key: SigningKey,
    /// The account's address (Keccak-256 of its public key, last 20 bytes).
    pub address: Address,
    /// The chain's EIP-155 id, read from the RPC.
    pub chain_id: u64,
}

impl Wallet {
    /// The account of `key` (a file holding 32 bytes as hex, `0x` allowed), on `rpc`'s chain.
    ///
    /// # Errors
    /// The file cannot be read or holds no valid key; RPC failures.
    pub fn open(rpc: &Rpc, key_file: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(key_file)
            .with_context(|| format!("reading {}", key_file.display()))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim().trim_start_matches("0x"), &mut bytes)
            .with_context(|| format!("{}: not a 32-byte hex key", key_file.display()))?;
        let key = SigningKey::from_slice(&bytes)
            .map_err(|_| anyhow!("{}: not a secp256k1 key", key_file.display()))?;
        let address = Address::from(leadgate_verifier::anchor::address_of(key.verifying_key()));
        Ok(Wallet {
            key,
            address,
            chain_id: rpc.chain_id()?,
        })
    }

    /// Sends `data` to `to` as an EIP-1559 transaction and waits up to 120 s for its receipt.
    /// The gas limit is the node's estimate plus 20 %; the fee cap twice the latest base fee
    /// plus the node's suggested tip.
    ///
    /// # Errors
    /// The call would revert (the node's message carries the contract's error), RPC failures,
    /// a reverted or unmined transaction.
    pub fn send(&self, rpc: &Rpc, to: &Address, data: Vec<u8>) -> anyhow::Result<Mined> {
        let from = self.address.to_string();
        let call = json!({ "from": from, "to": to.to_string(), "data": format!("0x{}", hex::encode(&data)) });
        let gas = quantity(&rpc.call("eth_estimateGas", json!([call]))?)?;
        let nonce = quantity(&rpc.call("eth_getTransactionCount", json!([from, "pending"]))?)?;
        let base =
            quantity(&rpc.call("eth_getBlockByNumber", json!(["latest", false]))?["baseFeePerGas"])
                .unwrap_or(0);
        let tip = rpc
            .call("eth_maxPriorityFeePerGas", json!([]))
            .and_then(|v| quantity(&v))
            .unwrap_or(1_000_000_000);
        let tx = TxEip1559 {
            chain_id: self.chain_id,
            nonce,
            gas_limit: gas + gas / 5,
            max_fee_per_gas: u128::from(base) * 2 + u128::from(tip),
            max_priority_fee_per_gas: u128::from(tip),
            to: TxKind::Call(*to),
            value: U256::ZERO,
            access_list: Default::default(),
            input: Bytes::from(data),
        };
        let sig = leadgate_verifier::anchor::sign_digest(&self.key, &tx.signature_hash().0)
            .map_err(|e| anyhow!("signing the transaction: {e}"))?;
        let signature = Signature::new(
            U256::from_be_slice(&sig[..32]),
            U256::from_be_slice(&sig[32..64]),
            sig[64] == 28,
        );
        let raw = TxEnvelope::from(tx.into_signed(signature)).encoded_2718();
        let hash = rpc.call(
            "eth_sendRawTransaction",
            json!([format!("0x{}", hex::encode(raw))]),
        )?;
        let tx_hash = B256::from_slice(&hex_bytes(&hash)?);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = rpc.call("eth_getTransactionReceipt", json!([tx_hash.to_string()]))?;
            if !r.is_null() {
                if quantity(&r["status"])? != 1 {
                    bail!("transaction {tx_hash} reverted");
                }
                return Ok(Mined {
                    tx_hash,
                    block_number: quantity(&r["blockNumber"])?,
                    gas_used: quantity(&r["gasUsed"])?,
                });
            }
            if Instant::now() > deadline {
                bail!("transaction {tx_hash} not mined after 120 s");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
