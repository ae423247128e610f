//! The money commands: a buyer's deposit, withdrawal and balance, and a seller's earnings and
//! claim, on the `LeadEscrow` contract (`contracts/src/LeadEscrow.sol`, `docs/settlement.md`)
//! over plain JSON-RPC ([`crate::chain`]). Every command prints one JSON object; amounts are
//! token units (USDC: 6 decimals, 1000000 is 1 USDC), times Unix seconds.

use std::path::{Path, PathBuf};

use alloy_primitives::{Address, U256};
use alloy_sol_types::{sol, SolCall as _, SolEvent as _};
use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Value};

use crate::chain::{Mined, Rpc, Wallet};

sol! {
    function token() external view returns (address);
    function feeBps() external view returns (uint16);
    function feeRecipient() external view returns (address);
    function withdrawalDelay() external view returns (uint64);
    function deposit(uint256 amount) external;
    function requestWithdrawal(uint256 amount) external;
    function withdraw() external;
    function accountOf(address buyer) external view returns (uint256 balance, uint256 requested, uint64 unlockAt);
    function earnings(address account) external view returns (uint256);
    function claim() external;
    function settled(bytes16 auctionId) external view returns (bool);
    function approve(address spender, uint256 amount) external returns (bool);
    function allowance(address owner, address spender) external view returns (uint256);
    function balanceOf(address account) external view returns (uint256);
    event Settled(bytes16 indexed auctionId, address indexed buyer, address indexed seller, uint256 price, uint256 fee);
}

/// Where the escrow is and who acts: the flags every money command takes.
#[derive(clap::Args, Clone)]
pub struct EscrowArgs {
    /// JSON-RPC URL of the escrow's chain.
    #[arg(long, env = "LEADGATE_RPC", default_value = "http://127.0.0.1:8545")]
    pub rpc: String,
    /// The LeadEscrow contract (`0x` and 40 hex digits).
    #[arg(long, env = "LEADGATE_ESCROW")]
    pub escrow: String,
}

/// What a money command does.
pub enum Action {
    /// Approve the escrow for `amount` of its token (if needed) and deposit it.
    Deposit {
        /// File with the account's secp256k1 key (hex, 32 bytes).
        key: PathBuf,
        /// Token units.
        amount: u64,
    },
    /// Ask to withdraw `amount` after the escrow's delay (0 cancels).
    RequestWithdrawal {
        /// File with the account's secp256k1 key.
        key: PathBuf,
        /// Token units.
        amount: u64,
    },
    /// Take a withdrawal whose delay has passed.
    Withdraw {
        /// File with the account's secp256k1 key.
        key: PathBuf,
    },
    /// A buyer's deposit: balance, pending request, unlock time, and what bids may count on.
    Balance {
        /// The deposit address.
        account: Address,
    },
    /// A seller's settled, unclaimed earnings, and every settlement that paid it (from the
    /// escrow's `Settled` events: count, and the sum of price − fee).
    Earnings {
        /// The payout address.
        account: Address,
    },
    /// Take the caller's earnings.
    Claim {
        /// File with the payout account's secp256k1 key.
        key: PathBuf,
    },
}

fn mined(m: &Mined) -> Value {
    json!({ "tx_hash": m.tx_hash.to_string(), "block_number": m.block_number, "gas_used": m.gas_used })
}

fn address(text: &str, what: &str) -> anyhow::Result<Address> {
    leadgate_verifier::anchor::parse_address(text)
        .map(Address::from)
        .ok_or_else(|| anyhow!("{what} must be 0x and 40 hex digits"))
}

/// Parses an address flag.
///
/// # Errors
/// Not `0x` and 40 hex digits.
pub fn parse_account(text: &str) -> anyhow::Result<Address> {
    address(text, "the account")
}

fn account_json(rpc: &Rpc, escrow: &Address, who: Address) -> anyhow::Result<Value> {
    let a = rpc.eth_call(escrow, &accountOfCall { buyer: who })?;
    let available = a.balance.saturating_sub(a.requested);
    Ok(json!({
        "account": who.to_string().to_lowercase(),
        "balance": a.balance.to_string(),
        "requested": a.requested.to_string(),
        "unlock_at": a.unlockAt,
        "available": available.to_string(),
    }))
}

fn wallet(rpc: &Rpc, key: &Path) -> anyhow::Result<Wallet> {
    Wallet::open(rpc, key)
}

/// Runs `action` on the escrow of `args`; returns the JSON to print.
///
/// # Errors
/// RPC failures, reverts (with the node's message, which carries the escrow's error), bad
/// flags.
pub fn run(http: &ureq::Agent, args: &EscrowArgs, action: Action) -> anyhow::Result<Value> {
    let rpc = Rpc::new(http, &args.rpc);
    let escrow = address(&args.escrow, "--escrow")?;
    Ok(match action {
        Action::Deposit { key, amount } => {
            if amount == 0 {
                bail!("--amount must be more than 0");
            }
            let w = wallet(&rpc, &key)?;
            let token = rpc.eth_call(&escrow, &tokenCall {})?;
            let amount = U256::from(amount);
            let held = rpc.eth_call(&token, &balanceOfCall { account: w.address })?;
            if held < amount {
                bail!("the account holds {held} token units, less than {amount}");
            }
            let allowed = rpc.eth_call(
                &token,
                &allowanceCall {
                    owner: w.address,
                    spender: escrow,
                },
            )?;
            let approve = if allowed < amount {
                let call = approveCall {
                    spender: escrow,
                    amount,
                };
                Some(mined(
                    &w.send(&rpc, &token, call.abi_encode()).context("approve")?,
                ))
            } else {
                None
            };
            let m = w
                .send(&rpc, &escrow, depositCall { amount }.abi_encode())
                .context("deposit")?;
            json!({ "approve": approve, "deposit": mined(&m), "account": account_json(&rpc, &escrow, w.address)? })
        }
        Action::RequestWithdrawal { key, amount } => {
            let w = wallet(&rpc, &key)?;
            let m = w
                .send(
                    &rpc,
                    &escrow,
                    requestWithdrawalCall {
                        amount: U256::from(amount),
                    }
                    .abi_encode(),
                )
                .context("requestWithdrawal")?;
            json!({ "request_withdrawal": mined(&m), "account": account_json(&rpc, &escrow, w.address)? })
        }
        Action::Withdraw { key } => {
            let w = wallet(&rpc, &key)?;
            let before = rpc.eth_call(&escrow, &accountOfCall { buyer: w.address })?;
            if before.requested.is_zero() {
                bail!("no withdrawal is requested: run `buyer withdraw --amount N` first");
            }
            let now = crate::chain::quantity(
                &rpc.call("eth_getBlockByNumber", json!(["latest", false]))?["timestamp"],
            )?;
            if now < before.unlockAt {
                bail!(
                    "the withdrawal unlocks at {} (Unix s), {} s from the latest block",
                    before.unlockAt,
                    before.unlockAt - now
                );
            }
            let m = w
                .send(&rpc, &escrow, withdrawCall {}.abi_encode())
                .context("withdraw")?;
            json!({ "withdraw": mined(&m), "account": account_json(&rpc, &escrow, w.address)? })
        }
        Action::Balance { account } => account_json(&rpc, &escrow, account)?,
        Action::Earnings { account } => {
            let mut rpc = rpc;
            rpc.pin()?;
            let e = rpc.eth_call(&escrow, &earningsCall { account })?;
            // Every settlement that paid this address, from the escrow's `Settled` events.
            let topics = [
                Some(Settled::SIGNATURE_HASH),
                None,
                None,
                Some(account.into_word()),
            ];
            let (mut count, mut total) = (0u64, U256::ZERO);
            for log in rpc.logs(&escrow, &topics)? {
                let s = Settled::decode_raw_log(log.topics, &log.data)
                    .map_err(|e| anyhow!("Settled: {e}"))?;
                count += 1;
                total += s.price - s.fee;
            }
            json!({
                "account": account.to_string().to_lowercase(),
                "earnings": e.to_string(),
                "settlements": count,
                "settled_total": total.to_string(),
            })
        }
        Action::Claim { key } => {
            let w = wallet(&rpc, &key)?;
            let e = rpc.eth_call(&escrow, &earningsCall { account: w.address })?;
            if e.is_zero() {
                bail!("nothing to claim for {}", w.address);
            }
            let m = w
                .send(&rpc, &escrow, claimCall {}.abi_encode())
                .context("claim")?;
            json!({ "claim": mined(&m), "claimed": e.to_string(), "account": w.address.to_string().to_lowercase() })
        }
    })
}
