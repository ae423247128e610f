//! `leadgate-contract`: the operator's tool for the `CheckpointAnchor` and `LeadEscrow`
//! contracts, from their committed artifacts (`contracts/artifacts/`).
//!
//! - `deploy`: deploys `CheckpointAnchor` for a log origin and prints the contract address.
//! - `register`: fetches a fresh attestation from a gateway, verifies it (AWS Nitro chain, or
//!   the dev root with `--allow-debug`), and registers the anchor key it binds, with the
//!   document's SHA-256 and PCR0. The document is saved so auditors can check the binding.
//! - `deploy-escrow`: deploys `LeadEscrow` over a settlement token and a `CheckpointAnchor`,
//!   with its fee terms and withdrawal delay.
//! - `deploy-test-token`, `mint`: the test token (`TestUsdc`, 6 decimals, its deployer mints)
//!   for a dev chain.
//!
//! The account (`--account-key-file`, hex secp256k1 key) sends every transaction and owns
//! what it deploys.

use std::path::PathBuf;

use alloy::network::EthereumWallet;
use alloy::primitives::U256;
use alloy::primitives::{Address, Bytes, FixedBytes, B256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use clap::Parser;
use leadgate_host::anchor::{read_account_key, CheckpointAnchor};
use leadgate_host::settle::{LeadEscrow, TestUsdc};
use leadgate_verifier::anchor::{address_hex, address_of_sec1, parse_address};
use leadgate_verifier::attestation::{root_der_from_pem, verify_attestation, AttestationPolicy};
use leadgate_verifier::settlement::FeeTerms;
use rand_core::RngCore as _;
use sha2::{Digest as _, Sha256};

#[derive(Parser)]
#[command(
    version,
    about = "leadgate contracts: deploy CheckpointAnchor and LeadEscrow, register the enclave key"
)]
struct Args {
    /// JSON-RPC URL.
    #[arg(
        long,
        env = "LEADGATE_ANCHOR_RPC",
        global = true,
        default_value = "http://127.0.0.1:8545"
    )]
    rpc: String,
    /// File with the owner account's private key (hex, 32 bytes).
    #[arg(long, env = "LEADGATE_ANCHOR_ACCOUNT_KEY_FILE", global = true)]
    account_key_file: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Deploy CheckpointAnchor for a log; prints `{"contract": "0x…", "chain_id": N}`.
    Deploy {
        /// The log's origin line (the checkpoint origin the enclave signs).
        #[arg(long)]
        origin: String,
    },
    /// Register the gateway's attested anchor key (rotating to it).
    Register {
        /// Contract address.
        #[arg(long)]
        contract: String,
        /// Gateway base URL.
        #[arg(long)]
        gateway: String,
        /// Expected PCR0 (hex, 48 bytes).
        #[arg(long)]
        pcr0: Option<String>,
        /// Accept a debug or dev enclave (all-zero PCRs).
        #[arg(long)]
        allow_debug: bool,
        /// Trusted root (PEM) instead of the AWS Nitro root G1 (e.g. the dev CA).
        #[arg(long)]
        root: Option<PathBuf>,
        /// Where to save the registered attestation document (raw COSE_Sign1 bytes).
        #[arg(long)]
        save_attestation: PathBuf,
    },
    /// Deploy LeadEscrow; prints `{"escrow": "0x…", "chain_id": N, …}`.
    DeployEscrow {
        /// The settlement token (ERC-20; USDC on a real chain).
        #[arg(long)]
        token: String,
        /// The CheckpointAnchor whose enclave key signs settlements.
        #[arg(long)]
        anchor: String,
        /// Platform fee, basis points of each price (0 to 10,000).
        #[arg(long, default_value_t = 0)]
        fee_bps: u16,
        /// Who is credited the fee; required with a fee, refused without one.
        #[arg(long)]
        fee_recipient: Option<String>,
        /// Seconds a withdrawal waits after it is requested: longer than an auction plus its
        /// settlement window.
        #[arg(long, default_value_t = 86_400)]
        withdrawal_delay_secs: u64,
    },
    /// Deploy the test settlement token (TestUsdc, 6 decimals, the deployer mints; dev chains only);
    /// prints `{"token": "0x…", "chain_id": N}`.
    DeployTestToken,
    /// Mint test tokens (TestUsdc only, as its deployer).
    Mint {
        /// The TestUsdc contract.
        #[arg(long)]
        token: String,
        /// Who receives them.
        #[arg(long)]
        to: String,
        /// Token units (6 decimals: 1000000 is 1 USDC).
        #[arg(long)]
        amount: u64,
    },
}

fn address(text: &str, flag: &str) -> anyhow::Result<Address> {
    parse_address(text)
        .map(Address::from)
        .with_context(|| format!("{flag} must be a 0x-prefixed 20-byte hex address"))
}

fn read_key(path: Option<&PathBuf>) -> anyhow::Result<PrivateKeySigner> {
    let path = path.ok_or_else(|| anyhow!("give --account-key-file"))?;
    let key = read_account_key(path)?;
    PrivateKeySigner::from_bytes(&B256::from(key)).map_err(|e| anyhow!("account key: {e}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let signer = read_key(args.account_key_file.as_ref())?;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(args.rpc.parse().context("--rpc")?);
    let chain_id = provider.get_chain_id().await.context("eth_chainId")?;
    match args.cmd {
        Cmd::Deploy { origin } => {
            let c = CheckpointAnchor::deploy(&provider, origin.clone())
                .await
                .context("deploying CheckpointAnchor")?;
            println!(
                "{}",
                serde_json::json!({ "contract": address_hex(&c.address().0 .0), "chain_id": chain_id, "origin": origin })
            );
        }
        Cmd::Register {
            contract,
            gateway,
            pcr0,
            allow_debug,
            root,
            save_attestation,
        } => {
            let contract = parse_address(&contract).context("--contract")?;
            let mut nonce = [0u8; 32];
            rand_core::OsRng.fill_bytes(&mut nonce);
            let url = format!("{gateway}/attest?nonce={}", hex::encode(nonce));
            let body: serde_json::Value = alloy::transports::http::reqwest::get(&url)
                .await
                .with_context(|| format!("GET {url}"))?
                .json()
                .await
                .with_context(|| format!("GET {url}: not JSON"))?;
            let doc = base64::engine::general_purpose::STANDARD
                .decode(
                    body["document"]
                        .as_str()
                        .ok_or_else(|| anyhow!("no document"))?,
                )
                .context("document is not base64")?;
            let root = root
                .map(|p| {
                    let pem = std::fs::read_to_string(&p)?;
                    root_der_from_pem(&pem).map_err(|e| anyhow!("{}: {e}", p.display()))
                })
                .transpose()?;
            let pcr0 = pcr0.map(hex::decode).transpose().context("--pcr0")?;
            if pcr0.is_none() && !allow_debug {
                bail!("give --pcr0 HEX or --allow-debug");
            }
            let verified = verify_attestation(
                &doc,
                &AttestationPolicy {
                    now_unix_ms: leadgate_host::clock::now_ms(),
                    root_der: root.as_deref(),
                    expected_pcr0: pcr0.as_deref(),
                    allow_debug,
                    expected_nonce: Some(&nonce),
                },
            )
            .map_err(|e| anyhow!("attestation rejected: {} ({e})", e.code()))?;
            let keys = verified
                .enclave_keys()
                .map_err(|e| anyhow!("attestation rejected: {} ({e})", e.code()))?;
            let key = address_of_sec1(&keys.anchor_key).ok_or_else(|| anyhow!("bad anchor key"))?;
            let pcr0 = verified.pcr(0).ok_or_else(|| anyhow!("no PCR0"))?.to_vec();
            let digest: [u8; 32] = Sha256::digest(&doc).into();
            std::fs::write(&save_attestation, &doc)
                .with_context(|| format!("writing {}", save_attestation.display()))?;
            let c = CheckpointAnchor::new(Address::from(contract), &provider);
            let receipt = c
                .registerEnclaveKey(
                    Address::from(key),
                    FixedBytes(digest),
                    Bytes::from(pcr0.clone()),
                )
                .send()
                .await
                .context("registerEnclaveKey")?
                .get_receipt()
                .await
                .context("registerEnclaveKey receipt")?;
            if !receipt.status() {
                bail!("registerEnclaveKey reverted");
            }
            println!(
                "{}",
                serde_json::json!({
                    "contract": address_hex(&contract),
                    "chain_id": chain_id,
                    "origin": keys.origin,
                    "enclave_key": address_hex(&key),
                    "attestation_sha256": hex::encode(digest),
                    "pcr0": hex::encode(pcr0),
                    "debug": verified.is_debug(),
                })
            );
        }
        Cmd::DeployEscrow {
            token,
            anchor,
            fee_bps,
            fee_recipient,
            withdrawal_delay_secs,
        } => {
            let fee_recipient = fee_recipient
                .map(|r| address(&r, "--fee-recipient"))
                .transpose()?
                .unwrap_or(Address::ZERO);
            let terms = FeeTerms {
                fee_bps,
                fee_recipient: fee_recipient.0 .0,
            };
            if !terms.is_valid() {
                bail!("--fee-bps is at most 10000, and --fee-recipient is given exactly when the fee is not 0");
            }
            let c = LeadEscrow::deploy(
                &provider,
                address(&token, "--token")?,
                address(&anchor, "--anchor")?,
                fee_bps,
                fee_recipient,
                withdrawal_delay_secs,
            )
            .await
            .context("deploying LeadEscrow")?;
            println!(
                "{}",
                serde_json::json!({
                    "escrow": address_hex(&c.address().0 .0),
                    "chain_id": chain_id,
                    "token": token,
                    "anchor": anchor,
                    "fee_bps": fee_bps,
                    "fee_recipient": address_hex(&fee_recipient.0 .0),
                    "withdrawal_delay_secs": withdrawal_delay_secs,
                })
            );
        }
        Cmd::DeployTestToken => {
            let c = TestUsdc::deploy(&provider)
                .await
                .context("deploying TestUsdc")?;
            println!(
                "{}",
                serde_json::json!({ "token": address_hex(&c.address().0 .0), "chain_id": chain_id })
            );
        }
        Cmd::Mint { token, to, amount } => {
            let c = TestUsdc::new(address(&token, "--token")?, &provider);
            let receipt = c
                .mint(address(&to, "--to")?, U256::from(amount))
                .send()
                .await
                .context("mint")?
                .get_receipt()
                .await
                .context("mint receipt")?;
            if !receipt.status() {
                bail!("mint reverted");
            }
            println!(
                "{}",
                serde_json::json!({ "token": token, "to": to, "amount": amount })
            );
        }
    }
    Ok(())
}
