//! `leadgate`: the seller, auditor and benchmark CLI. Every command that talks to a gateway
//! first verifies a fresh attestation (random nonce) and takes the log key from it.
#![forbid(unsafe_code)]

mod bench;
mod http;
mod seller;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use http::TrustArgs;

#[derive(Parser)]
#[command(
    name = "leadgate",
    version,
    about = "Verify a leadgate gateway; submit leads to it"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Seller commands.
    #[command(subcommand)]
    Seller(SellerCmd),
    /// Verification commands (exit status 0 only when everything holds).
    #[command(subcommand)]
    Verify(VerifyCmd),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Subcommand)]
enum SellerCmd {
    /// Create an Ed25519 seller key file (prints the seller id).
    Keygen {
        /// Where to write the key (must not exist).
        #[arg(long, default_value = "seller.key")]
        out: PathBuf,
    },
    /// Verify the gateway's attestation, then seal and submit leads; write one receipt line per lead.
    Submit {
        /// Gateway base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        gateway: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Seller key file.
        #[arg(long)]
        key: PathBuf,
        /// Output receipts (JSON lines, input order).
        #[arg(long)]
        receipts: PathBuf,
        /// Parallel requests.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Leads per request (1 posts to /v1/leads; more use /v1/leads/batch, at most 256).
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Leads file: JSON lines, bare lead objects or corpus lines {"lead": …}.
        leads: PathBuf,
    },
}

#[derive(Subcommand)]
enum VerifyCmd {
    /// Verify an attestation document (FILE: raw CBOR, base64 or hex) or a gateway's fresh one.
    Attestation {
        /// Document file.
        file: Option<PathBuf>,
        /// Fetch a fresh document (random nonce) from this gateway instead.
        #[arg(long)]
        gateway: Option<String>,
        /// Verify at this time (Unix ms) instead of now (FILE only).
        #[arg(long)]
        at: Option<u64>,
        #[command(flatten)]
        trust: TrustArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Verify a checkpoint (FILE, or the gateway's) against the attested log key or --log-key.
    Checkpoint {
        /// Signed note file.
        file: Option<PathBuf>,
        /// Gateway base URL.
        #[arg(long)]
        gateway: Option<String>,
        /// C2SP vkey of the log, instead of taking it from an attestation.
        #[arg(long)]
        log_key: Option<String>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Verify every receipt in a receipts file against the gateway's current checkpoint.
    Receipts {
        /// Receipts file from `seller submit`.
        receipts: PathBuf,
        /// Gateway base URL.
        #[arg(long)]
        gateway: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Where this verifier remembers the last checkpoint it saw (for consistency checks).
        #[arg(long, default_value_os_t = verify::default_state())]
        state: PathBuf,
        /// Parallel requests.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Load-generate sealed submissions and report throughput and latency.
    Submit {
        /// Gateway base URL.
        #[arg(long)]
        gateway: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Number of submissions.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Parallel connections.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Target submissions per second (0 = as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Leads per request (more than 1 uses POST /v1/leads/batch, at most 256).
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Seller(SellerCmd::Keygen { out }) => seller::keygen(&out),
        Cmd::Seller(SellerCmd::Submit {
            gateway,
            trust,
            key,
            receipts,
            concurrency,
            batch,
            leads,
        }) => seller::submit(seller::SubmitArgs {
            gateway,
            trust,
            key,
            receipts,
            leads,
            concurrency,
            batch,
        }),
        Cmd::Verify(VerifyCmd::Attestation {
            file,
            gateway,
            at,
            trust,
            json,
        }) => verify::attestation(file.as_deref(), gateway.as_deref(), at, &trust, json),
        Cmd::Verify(VerifyCmd::Checkpoint {
            file,
            gateway,
            log_key,
            trust,
        }) => verify::checkpoint(
            file.as_deref(),
            gateway.as_deref(),
            log_key.as_deref(),
            &trust,
        ),
        Cmd::Verify(VerifyCmd::Receipts {
            receipts,
            gateway,
            trust,
            state,
            concurrency,
        }) => verify::receipts(&receipts, &gateway, &trust, &state, concurrency),
        Cmd::Bench(BenchCmd::Submit {
            gateway,
            trust,
            count,
            concurrency,
            rate,
            json,
            batch,
        }) => bench::submit(bench::BenchArgs {
            gateway,
            trust,
            count,
            concurrency,
            rate,
            json,
            batch,
        }),
    }
}
