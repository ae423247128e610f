//! `leadgate-enclave`: runs the enclave. On AWS Nitro: vsock link, NSM attestation, KMS
//! sealing. In dev mode, on any Linux box: TCP link, dev attestation CA, file sealing.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use leadgate_enclave::attest::{
    AttestationProvider, DevAttestationProvider, NsmAttestationProvider,
};
use leadgate_enclave::clock::now_ms;
use leadgate_enclave::core::{Enclave, EnclaveConfig};
use leadgate_enclave::floor::FloorSource;
use leadgate_enclave::kms::{KmsClient, KmsKey};
use leadgate_enclave::sealing::{DevFileSealer, KmsSealer, Sealer};
use leadgate_enclave::server::{serve_with, LinkLimits};
use leadgate_protocol::transport::{Endpoint, Listener};

/// Parses durations like `90s`, `5m`, `1h`, `250ms` into milliseconds.
fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "ms"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m, h, d)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| "duration too large".into())
}

#[derive(Parser)]
#[command(version, about = "leadgate enclave")]
struct Args {
    /// Where to listen for the host link: `vsock://CID:PORT` inside a Nitro Enclave (CID
    /// 4294967295 = any), a TCP `host:port` in dev.
    #[arg(
        long,
        env = "LEADGATE_ENCLAVE_LISTEN",
        default_value = "127.0.0.1:7000"
    )]
    listen: String,
    /// Once listening, write the bound link address (`tcp://HOST:PORT` or `vsock://CID:PORT`,
    /// then a newline) to this file: with port 0 in `--listen`, how a supervisor or a test
    /// learns the port the OS chose.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// State directory (dev sealing key, dev attestation CA).
    #[arg(long, env = "LEADGATE_ENCLAVE_STATE", default_value = "enclave-state")]
    state_dir: PathBuf,
    /// Log origin (also the checkpoint key name).
    #[arg(long, env = "LEADGATE_ORIGIN", default_value = "leadgate.dev/log")]
    origin: String,
    /// Periodic checkpoint interval (e.g. 1h, 30s).
    #[arg(long, default_value = "1h", value_parser = parse_duration_ms)]
    checkpoint_interval: u64,
    /// How old a submission's issued_at_ms may be (replays are remembered this long).
    #[arg(long, default_value = "10m", value_parser = parse_duration_ms)]
    replay_window: u64,
    /// Threads that verify and open the leads of a batch (default: available CPUs, at most 8).
    #[arg(long)]
    workers: Option<usize>,
    /// Reserve of an auction whose seller names none, in the settlement token's smallest unit
    /// (USDC: 6 decimals, so 1000000 = 1 USDC).
    #[arg(long, default_value_t = 0)]
    default_reserve: u64,
    /// Auction duration when the seller names none (e.g. 1h, 30s).
    #[arg(long, default_value = "1h", value_parser = parse_duration_ms)]
    default_auction_duration: u64,
    /// Longest auction a seller may ask for (e.g. 7d, 1h). A settling enclave needs its
    /// escrow's withdrawal delay to exceed this plus --settlement-window.
    #[arg(long, default_value = "7d", value_parser = parse_duration_ms)]
    max_auction_duration: u64,
    /// How long after close a winner may ask for its lead.
    #[arg(long, default_value = "7d", value_parser = parse_duration_ms)]
    release_window: u64,
    /// Attestation provider: `nsm` (the Nitro Secure Module, /dev/nsm), `dev` (a local CA,
    /// all-zero PCRs), or `auto`: `nsm` when /dev/nsm exists, else `dev`.
    #[arg(long, env = "LEADGATE_ATTESTATION", default_value = "auto", value_parser = ["auto", "nsm", "dev"])]
    attestation: String,
    /// Sealing of the enclave's secrets: `dev` (AES-256-GCM under `STATE_DIR/seal.key`) or
    /// `kms` (an AWS KMS data key released only to this enclave's attestation; Nitro).
    #[arg(long, env = "LEADGATE_SEALING", default_value = "dev", value_parser = ["dev", "kms"])]
    sealing: String,
    /// The KMS key for `--sealing kms`: a key ARN (`arn:aws:kms:REGION:ACCOUNT:key/ID`),
    /// part of the image and so of PCR0. Aliases are refused.
    #[arg(long, env = "LEADGATE_KMS_KEY_ARN", required_if_eq("sealing", "kms"))]
    kms_key_arn: Option<String>,
    /// Where to reach KMS: the host's vsock proxy to kms.REGION.amazonaws.com:443 (TLS runs
    /// in the enclave).
    #[arg(long, env = "LEADGATE_KMS_PROXY", default_value = "vsock://3:8000")]
    kms_proxy: String,
    /// Most open link connections (one host session is served at a time; the rest are
    /// refused). Bounds frame memory at this many times 8 MiB.
    #[arg(long, default_value_t = LinkLimits::default().max_connections)]
    max_connections: usize,
    /// A link connection silent this long is closed, and a host session this idle may be taken
    /// over by a new connection (the host sends a heartbeat every 250 ms).
    #[arg(long, default_value = "15s", value_parser = parse_duration_ms)]
    link_idle_timeout: u64,
    /// Most appended entries kept until the host confirms them stored (its catch-up window).
    #[arg(long, default_value_t = leadgate_enclave::journal::DEFAULT_MAX_ENTRIES)]
    journal_max_entries: usize,
    /// Most bytes kept for those entries.
    #[arg(long, default_value_t = leadgate_enclave::journal::DEFAULT_MAX_BYTES)]
    journal_max_bytes: usize,
    /// Appends after which the host gets a new sealed state: a restart replays about this many
    /// leaves at most.
    #[arg(long, default_value_t = 50_000)]
    state_interval_entries: u64,
    /// Duplicate-email filter size, log2 bits (27 = 16 MiB; its false-positive rate grows with
    /// the accepted leads, see `dedup.rs`).
    #[arg(long, default_value_t = leadgate_enclave::dedup::DEFAULT_BITS_LOG2)]
    tag_filter_bits: u32,
    /// Sealed-bid replay filter size per generation, log2 bits (24 = 2 MiB, remembering at
    /// least the last 2^24 / 128 bids).
    #[arg(long, default_value_t = leadgate_enclave::replay::BID_FILTER_BITS_LOG2)]
    bid_filter_bits: u32,
    /// Most sellers' decompressed keys kept.
    #[arg(long, default_value_t = leadgate_enclave::sellers::DEFAULT_CAPACITY)]
    seller_cache: usize,
    /// The log's published checkpoint (the bucket's `checkpoint` URL), read at the first boot
    /// to learn the newest tree the log signed: the enclave never signs one that does not
    /// extend it. Repeatable. `http://` for a local server in dev only.
    /// (In the environment, comma-separated: the image bakes it in, see `scripts/build-eif`.)
    #[arg(long, env = "LEADGATE_FLOOR_CHECKPOINT", value_delimiter = ',')]
    floor_checkpoint: Vec<String>,
    /// A JSON-RPC URL to read the anchor contract's latest anchor from, likewise.
    #[arg(
        long,
        env = "LEADGATE_FLOOR_ANCHOR_RPC",
        requires = "floor_anchor_contract"
    )]
    floor_anchor_rpc: Option<String>,
    /// The CheckpointAnchor contract (0x-prefixed, 20 bytes) for --floor-anchor-rpc.
    #[arg(
        long,
        env = "LEADGATE_FLOOR_ANCHOR_CONTRACT",
        requires = "floor_anchor_rpc"
    )]
    floor_anchor_contract: Option<String>,
    /// Reach the --floor-checkpoint URLs through this proxy (on Nitro a `vsock-proxy` to the
    /// bucket's host, `vsock://3:PORT`, as KMS is reached).
    #[arg(long, env = "LEADGATE_FLOOR_CHECKPOINT_VIA")]
    floor_checkpoint_via: Option<String>,
    /// Reach --floor-anchor-rpc through this proxy (a `vsock-proxy` to the RPC's host).
    #[arg(long, env = "LEADGATE_FLOOR_ANCHOR_VIA")]
    floor_anchor_via: Option<String>,
    /// Settle every sale on this `LeadEscrow` contract (`0x` and 40 lowercase hex digits):
    /// submissions must name a payout address, bids a deposit account, and each
    /// `auction.closed` carries the settlement the anchor key signs (`docs/settlement.md`).
    #[arg(
        long,
        env = "LEADGATE_ESCROW",
        requires = "escrow_chain_id",
        requires = "escrow_rpc"
    )]
    escrow: Option<leadgate_verifier::settlement::EthAddress>,
    /// The JSON-RPC URL the enclave reads the escrow from (fee terms and withdrawal delay at
    /// boot, deposits before bids, payment before releases): `https://` to a provider on
    /// Nitro, `http://` to anvil in dev only.
    #[arg(long, env = "LEADGATE_ESCROW_RPC", requires = "escrow")]
    escrow_rpc: Option<String>,
    /// Reach --escrow-rpc through this proxy (a `vsock-proxy` to the RPC's host, `vsock://3:PORT`).
    #[arg(long, env = "LEADGATE_ESCROW_RPC_VIA")]
    escrow_rpc_via: Option<String>,
    /// Read the escrow this many blocks below the newest (0 on anvil): a deposit in a block a
    /// reorg can remove is not counted, and a lead is released only once its payment is this
    /// deep.
    #[arg(long, env = "LEADGATE_ESCROW_CONFIRMATIONS", default_value_t = 0)]
    escrow_confirmations: u64,
    /// How long after close a settlement is expected to be paid (e.g. 1h): the escrow's
    /// withdrawal delay must exceed the longest auction plus this plus --deposit-max-age.
    #[arg(long, env = "LEADGATE_SETTLEMENT_WINDOW", default_value = "1h", value_parser = parse_duration_ms)]
    settlement_window: u64,
    /// Longest a buyer's deposit read is reused for its next bids (e.g. 2s, 500ms).
    #[arg(long, env = "LEADGATE_DEPOSIT_MAX_AGE", default_value = "2s", value_parser = parse_duration_ms)]
    deposit_max_age: u64,
    /// Most buyers with an active auto-bid rule set (or a cancellation within the replay
    /// window); past it a new buyer's rule set is refused with `enclave.rule_book_full`.
    #[arg(long, env = "LEADGATE_RULE_BOOK_CAPACITY", default_value_t = leadgate_enclave::autobid::DEFAULT_CAPACITY)]
    rule_book_capacity: usize,
    /// The escrow's EIP-155 chain id (31337 on anvil).
    #[arg(long, env = "LEADGATE_ESCROW_CHAIN_ID", requires = "escrow")]
    escrow_chain_id: Option<u64>,
    /// The escrow's fee, basis points (0 to 10,000): must be the contract's `feeBps`.
    #[arg(
        long,
        env = "LEADGATE_FEE_BPS",
        default_value_t = 0,
        requires = "escrow"
    )]
    fee_bps: u16,
    /// The escrow's fee recipient: must be the contract's `feeRecipient` (none when the fee
    /// is 0).
    #[arg(long, env = "LEADGATE_FEE_RECIPIENT", requires = "escrow")]
    fee_recipient: Option<leadgate_verifier::settlement::EthAddress>,
}

/// Most glibc malloc arenas. glibc gives a thread that meets contention its own arena (up to
/// eight per core), and an arena keeps what its threads freed for reuse, so the enclave's
/// resident memory would carry the peak transient of every thread that ever allocated: the
/// batch workers, the link server and tokio's threads. `cargo run --release -p
/// leadgate-enclave --example rss` measured 49 MiB retained that way after a million sales,
/// and 4 MiB with one arena. Two arenas keep the batch workers from queueing on one lock.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 2;

/// Bounds glibc's malloc arenas ([`MALLOC_ARENAS`]); called before any other thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn bound_malloc_arenas() {
    // SAFETY: mallopt(3) only sets an allocator parameter, from the one thread there is yet.
    // It returns 0 on failure, which leaves glibc's default: more memory, nothing unsound.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) };
    if ok == 0 {
        eprintln!("mallopt(M_ARENA_MAX) failed; glibc's default arenas stay");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_malloc_arenas() {}

fn main() -> anyhow::Result<()> {
    bound_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    leadgate_verifier::note::NoteVerifier::new(
        &args.origin,
        ed25519_dalek::SigningKey::from_bytes(&[0; 32]).verifying_key(),
    )
    .context("--origin must be a valid note key name (no spaces or '+')")?;
    std::fs::create_dir_all(&args.state_dir).context("creating state dir")?;
    let mut config = EnclaveConfig::new(&args.origin);
    let nsm = match args.attestation.as_str() {
        "nsm" => true,
        "dev" => false,
        _ => NsmAttestationProvider::available(),
    };
    let sealer: Box<dyn Sealer> = match args.kms_key_arn.as_deref() {
        Some(arn) if args.sealing == "kms" => {
            let key = KmsKey::from_arn(arn).context("--kms-key-arn")?;
            let proxy: Endpoint = args.kms_proxy.parse().context("--kms-proxy")?;
            tracing::info!(key = key.arn(), %proxy, "sealing with AWS KMS");
            let attestor: Box<dyn AttestationProvider> = if nsm {
                Box::new(NsmAttestationProvider::open()?)
            } else {
                Box::new(DevAttestationProvider::open_or_create(
                    &args.state_dir,
                    now_ms(),
                )?)
            };
            Box::new(KmsSealer::new(KmsClient::new(key, proxy), attestor))
        }
        _ => {
            if nsm {
                tracing::warn!(
                    "dev sealing inside a Nitro Enclave: the key file lives in enclave memory, so \
                     the secrets (and the log) do not survive a restart; use --sealing kms"
                );
            }
            Box::new(DevFileSealer::open_or_create(&args.state_dir)?)
        }
    };
    let attestor: Box<dyn AttestationProvider> = if nsm {
        tracing::info!("attestation by the Nitro Secure Module");
        Box::new(NsmAttestationProvider::open()?)
    } else {
        let dev = DevAttestationProvider::open_or_create(&args.state_dir, now_ms())?;
        tracing::warn!(
            "dev mode: a local attestation CA and all-zero PCRs; verifiers must pass --allow-debug"
        );
        config.dev_root_pem = Some(dev.root_pem());
        Box::new(dev)
    };
    config.checkpoint_interval_ms = args.checkpoint_interval;
    config.replay_window_ms = args.replay_window;
    config.default_reserve = leadgate_verifier::auction::TokenAmount::new(args.default_reserve)
        .context("--default-reserve is at most 2^53 - 1")?;
    config.default_duration_ms = args.default_auction_duration;
    config.release_window_ms = args.release_window;
    config.max_duration_ms = args.max_auction_duration;
    config.journal_max_entries = args.journal_max_entries;
    config.journal_max_bytes = args.journal_max_bytes;
    config.state_interval_entries = args.state_interval_entries;
    config.tag_filter_bits_log2 = args.tag_filter_bits;
    config.bid_filter_bits_log2 = args.bid_filter_bits;
    config.seller_cache_capacity = args.seller_cache;
    let via = |arg: &Option<String>, name: &str| -> anyhow::Result<Option<Endpoint>> {
        arg.as_deref()
            .map(str::parse)
            .transpose()
            .with_context(|| name.to_owned())
    };
    let checkpoint_via = via(&args.floor_checkpoint_via, "--floor-checkpoint-via")?;
    let anchor_via = via(&args.floor_anchor_via, "--floor-anchor-via")?;
    for url in &args.floor_checkpoint {
        config.floor_sources.push(FloorSource::Checkpoint {
            url: url.clone(),
            via: checkpoint_via.clone(),
        });
    }
    if let (Some(rpc), Some(contract)) = (&args.floor_anchor_rpc, &args.floor_anchor_contract) {
        let contract: [u8; 20] = hex::decode(contract.trim_start_matches("0x"))
            .ok()
            .and_then(|b| b.try_into().ok())
            .context("--floor-anchor-contract: 20 bytes, hex")?;
        config.floor_sources.push(FloorSource::Anchor {
            rpc: rpc.clone(),
            contract,
            via: anchor_via,
        });
    }
    config.settlement_window_ms = args.settlement_window;
    config.deposit_max_age_ms = args.deposit_max_age;
    config.rule_book_capacity = args.rule_book_capacity;
    if let (Some(escrow), Some(url)) = (args.escrow, &args.escrow_rpc) {
        let reader = leadgate_enclave::chain::RpcEscrow {
            rpc: leadgate_enclave::chain::Rpc {
                url: url.clone(),
                via: via(&args.escrow_rpc_via, "--escrow-rpc-via")?,
            },
            escrow: escrow.0,
            confirmations: args.escrow_confirmations,
        };
        config.escrow_chain = Some(leadgate_enclave::core::EscrowReader(std::sync::Arc::new(
            reader,
        )));
    }
    if let (Some(escrow), Some(chain_id)) = (args.escrow, args.escrow_chain_id) {
        config.settlement = Some(leadgate_enclave::core::SettlementConfig {
            domain: leadgate_verifier::settlement::EscrowDomain {
                chain_id,
                escrow: escrow.0,
            },
            fee: leadgate_verifier::settlement::FeeTerms {
                fee_bps: args.fee_bps,
                fee_recipient: args.fee_recipient.map_or([0u8; 20], |a| a.0),
            },
        });
    }
    if let Some(w) = args.workers {
        config.workers = w.max(1);
    }
    config.validate()?;
    let enclave = Enclave::new(config, sealer, attestor);
    let endpoint: Endpoint = args.listen.parse().context("--listen")?;
    let listener = Listener::bind(&endpoint)
        .await
        .with_context(|| format!("binding {endpoint}"))?;
    let bound = listener.local_endpoint()?;
    tracing::info!(addr = %bound, "enclave listening");
    if let Some(path) = &args.addr_file {
        write_addr_file(path, &bound.to_string())?;
    }
    tokio::select! {
        r = serve_with(listener, Arc::new(tokio::sync::Mutex::new(enclave)), LinkLimits {
            max_connections: args.max_connections,
            idle_ms: args.link_idle_timeout,
            ..LinkLimits::default()
        }) => r?,
        _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
    }
    Ok(())
}

/// Writes `addr` and a newline to `path` through a temporary file and a rename, so a reader
/// never sees a partial address.
fn write_addr_file(path: &std::path::Path, addr: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{addr}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
