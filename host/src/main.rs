//! `leadgate-host`: the untrusted host service (dev mode: TCP link to the enclave).

use anyhow::Context as _;
use clap::Parser;
use leadgate_host::HostConfig;

#[derive(Parser)]
#[command(version, about = "leadgate host: relay, storage, proofs")]
struct Args {
    /// HTTP listen address.
    #[arg(long, env = "LEADGATE_HOST_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Once listening, write the bound HTTP address (`HOST:PORT`, then a newline) to this file:
    /// with port 0 in `--listen`, how a supervisor or a test learns the port the OS chose.
    #[arg(long)]
    addr_file: Option<std::path::PathBuf>,
    /// Enclave link: `vsock://CID:PORT` (the enclave's CID from `nitro-cli run-enclave`) or a
    /// TCP `host:port` (dev).
    #[arg(long, env = "LEADGATE_ENCLAVE_ADDR", default_value = "127.0.0.1:7000")]
    enclave: String,
    /// SQLite database file.
    #[arg(long, env = "LEADGATE_HOST_DB", default_value = "host.db")]
    db: std::path::PathBuf,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = HostConfig::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Submissions per seller per UTC day.
    #[arg(long, default_value_t = HostConfig::DEFAULT_SELLER_DAILY_LIMIT)]
    seller_daily_limit: u32,
    /// Tick, ms: closes due auctions and signs a checkpoint when one is due (the enclave
    /// decides both by its own clock; the tick bounds how late a close is logged).
    #[arg(long, default_value_t = HostConfig::DEFAULT_TICK_MS)]
    tick_ms: u64,
    /// How often the database's WAL is checkpointed beside the writes, ms.
    #[arg(long, default_value_t = HostConfig::DEFAULT_WAL_CHECKPOINT_MS)]
    wal_checkpoint_ms: u64,
    /// Publish the log to this bucket in the C2SP tlog-tiles layout, confirm entries to the
    /// enclave only once it holds them, and repair the database from it: `s3://BUCKET[/PREFIX]`
    /// (credentials and endpoint from AWS_* variables), `gs://…`, `az://…`, or a directory.
    #[arg(long, env = "LEADGATE_BUCKET")]
    bucket: Option<String>,
    /// JSON-RPC URL of the chain to anchor checkpoints on; anchoring is off without it.
    #[arg(long, env = "LEADGATE_ANCHOR_RPC", requires_all = ["anchor_contract", "anchor_chain_id", "anchor_account_key_file"])]
    anchor_rpc: Option<String>,
    /// The CheckpointAnchor contract address (0x-prefixed hex, 20 bytes).
    #[arg(long, env = "LEADGATE_ANCHOR_CONTRACT")]
    anchor_contract: Option<String>,
    /// The chain's EIP-155 id (31337 for a local anvil); anchoring pauses if the RPC differs.
    #[arg(long, env = "LEADGATE_ANCHOR_CHAIN_ID")]
    anchor_chain_id: Option<u64>,
    /// File holding the anchoring account's secp256k1 private key (hex, 32 bytes): the host's
    /// account that pays for anchors. The enclave's anchor key signs; this one only pays.
    #[arg(long, env = "LEADGATE_ANCHOR_ACCOUNT_KEY_FILE")]
    anchor_account_key_file: Option<std::path::PathBuf>,
    /// Submit the settlements the enclave signs at close to this LeadEscrow contract (0x-prefixed
    /// hex, 20 bytes), on the anchoring chain and RPC; settling is off without it. Start the
    /// enclave with the same `--escrow`.
    #[arg(long, env = "LEADGATE_ESCROW", requires = "anchor_rpc")]
    escrow: Option<String>,
    /// File holding the settling account's secp256k1 private key (hex, 32 bytes), which pays the
    /// settlements' gas; default: the anchoring account. On a real chain give it its own
    /// account, so that anchors and settlements never compete for nonces.
    #[arg(long, env = "LEADGATE_SETTLE_ACCOUNT_KEY_FILE", requires = "escrow")]
    settle_account_key_file: Option<std::path::PathBuf>,
    /// Lend the enclave AWS credentials at every boot, for its KMS sealer (Nitro with
    /// `--sealing kms`), from the AWS SDK's default chain: AWS_ACCESS_KEY_ID /
    /// AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, the shared profile, the container endpoint,
    /// then the EC2 instance role (IMDSv2). Asked afresh at each boot, so rotating instance-role
    /// credentials stay current. They let the enclave sign KMS calls; the key policy still
    /// requires its attestation.
    #[arg(long, env = "LEADGATE_FORWARD_AWS_CREDENTIALS")]
    forward_aws_credentials: bool,
    /// Most open HTTP connections; at the cap a new one evicts the oldest idle connection.
    #[arg(long, default_value_t = leadgate_host::http::HttpLimits::default().max_connections)]
    max_connections: usize,
    /// Longest wait for a request's headers, and for the next request on an idle keep-alive
    /// connection, seconds.
    #[arg(long, default_value_t = leadgate_host::http::HttpLimits::default().header_timeout.as_secs())]
    header_timeout_secs: u64,
    /// Longest wait for a request body once its headers are in, seconds (then 408).
    #[arg(long, default_value_t = leadgate_host::http::HttpLimits::default().body_timeout.as_secs())]
    body_timeout_secs: u64,
    /// Most request-body bytes buffered across all connections (then 503 `server.busy`).
    #[arg(long, default_value_t = leadgate_host::http::HttpLimits::default().max_buffered_bytes)]
    max_buffered_bytes: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = HostConfig::new(args.enclave.parse().context("--enclave")?, args.db);
    config.max_body_bytes = args.max_body_bytes;
    config.seller_daily_limit = args.seller_daily_limit;
    config.tick_ms = args.tick_ms;
    config.wal_checkpoint_ms = args.wal_checkpoint_ms;
    config.bucket = args.bucket;
    config.http = leadgate_host::http::HttpLimits {
        max_connections: args.max_connections,
        header_timeout: std::time::Duration::from_secs(args.header_timeout_secs.max(1)),
        body_timeout: std::time::Duration::from_secs(args.body_timeout_secs.max(1)),
        max_buffered_bytes: args.max_buffered_bytes,
    };
    if args.forward_aws_credentials {
        let source = leadgate_host::aws_credentials::CredentialSource::default_chain().await;
        // Fail at start, not at the first boot, when there are none at all.
        source
            .resolve()
            .await
            .context("--forward-aws-credentials")?;
        config.aws_credentials = Some(source);
    }
    if let (Some(rpc_url), Some(contract), Some(chain_id), Some(key_file)) = (
        args.anchor_rpc,
        args.anchor_contract,
        args.anchor_chain_id,
        args.anchor_account_key_file,
    ) {
        let contract = leadgate_verifier::anchor::parse_address(&contract)
            .context("--anchor-contract must be a 0x-prefixed 20-byte hex address")?;
        let account_key = leadgate_host::anchor::read_account_key(&key_file)?;
        if let Some(escrow) = args.escrow {
            let escrow = leadgate_verifier::anchor::parse_address(&escrow)
                .context("--escrow must be a 0x-prefixed 20-byte hex address")?;
            let settle_key = match &args.settle_account_key_file {
                Some(f) => leadgate_host::anchor::read_account_key(f)?,
                None => account_key,
            };
            config.settle = Some(leadgate_host::settle::SettleConfig {
                rpc_url: rpc_url.clone(),
                chain_id,
                escrow,
                account_key: settle_key,
                receipt_timeout: std::time::Duration::from_secs(60),
            });
        }
        config.anchor = Some(leadgate_host::anchor::AnchorConfig {
            rpc_url,
            contract,
            chain_id,
            account_key,
            receipt_timeout: std::time::Duration::from_secs(60),
        });
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    if let Some(path) = &args.addr_file {
        // Through a temporary file and a rename, so a reader never sees a partial address.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{}\n", listener.local_addr()?))
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    }
    leadgate_host::run(config, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
