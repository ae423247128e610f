//! `leadgate-enclave`: runs the enclave (dev mode: TCP link, file sealing, dev attestation).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use leadgate_enclave::attest::DevAttestationProvider;
use leadgate_enclave::core::{Enclave, EnclaveConfig};
use leadgate_enclave::sealing::DevFileSealer;
use leadgate_enclave::transport::{now_ms, serve};

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
#[command(version, about = "leadgate enclave (dev mode)")]
struct Args {
    /// Address to listen on for the host link.
    #[arg(
        long,
        env = "LEADGATE_ENCLAVE_LISTEN",
        default_value = "127.0.0.1:7000"
    )]
    listen: String,
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
    /// How long after close a winner may ask for its lead.
    #[arg(long, default_value = "7d", value_parser = parse_duration_ms)]
    release_window: u64,
    /// Attestation provider. Only `dev` exists until the Nitro work lands.
    #[arg(long, default_value = "dev", value_parser = ["dev"])]
    attestation: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    let sealer = DevFileSealer::open_or_create(&args.state_dir)?;
    let attestor = DevAttestationProvider::open_or_create(&args.state_dir, now_ms())?;
    tracing::warn!(
        "dev mode: file sealing and a local attestation CA; verifiers must pass --allow-debug"
    );
    let mut config = EnclaveConfig::new(&args.origin);
    config.checkpoint_interval_ms = args.checkpoint_interval;
    config.replay_window_ms = args.replay_window;
    config.dev_root_pem = Some(attestor.root_pem());
    config.default_reserve = leadgate_verifier::auction::TokenAmount::new(args.default_reserve)
        .context("--default-reserve is at most 2^53 - 1")?;
    config.default_duration_ms = args.default_auction_duration;
    config.release_window_ms = args.release_window;
    if let Some(w) = args.workers {
        config.workers = w.max(1);
    }
    let enclave = Enclave::new(config, Box::new(sealer), Box::new(attestor));
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "enclave listening");
    tokio::select! {
        r = serve(listener, Arc::new(tokio::sync::Mutex::new(enclave))) => r?,
        _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
    }
    Ok(())
}
