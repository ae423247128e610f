//! `leadgate-eif`: assembles the enclave image from a built binary and AWS's boot blobs.
//! `scripts/build-eif` runs it; see docs/nitro.md, "Reproducing PCR0".

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use leadgate_eif::image::{self, Inputs, Provenance};
use leadgate_eif::layout::{EscrowSettings, FloorSources};

/// Builds `leadgate-enclave.eif`, `pcr.json`, `manifest.json` and both ramdisks into --out.
#[derive(Parser, Debug)]
#[command(name = "leadgate-eif", version)]
struct Args {
    /// The statically linked enclave binary.
    #[arg(long)]
    binary: PathBuf,
    /// AWS's boot blobs: init, nsm.ko, cmdline (and bzImage, bzImage.config).
    #[arg(long, default_value = "/usr/share/nitro_enclaves/blobs")]
    blobs: PathBuf,
    /// The kernel, if not BLOBS/bzImage.
    #[arg(long, conflicts_with = "stand_in_kernel")]
    kernel: Option<PathBuf>,
    /// Use a stand-in kernel file (not bootable; PCR0 and PCR1 are then not a real image's).
    #[arg(long)]
    stand_in_kernel: bool,
    /// The KMS key the enclave unseals with (part of PCR0 and PCR2).
    #[arg(long)]
    kms_key_arn: String,
    /// The bucket's `checkpoint` URL (https://) a restarted enclave reads its floor from,
    /// through the parent's vsock-proxy on port 8001 (part of PCR0 and PCR2).
    #[arg(long)]
    floor_checkpoint: Option<String>,
    /// A JSON-RPC URL (https://) to read the anchor contract's latest anchor from, through
    /// the parent's vsock-proxy on port 8002 (part of PCR0 and PCR2).
    #[arg(long, requires = "floor_anchor_contract")]
    floor_anchor_rpc: Option<String>,
    /// The CheckpointAnchor contract (0x and 40 hex digits) for --floor-anchor-rpc.
    #[arg(long, requires = "floor_anchor_rpc")]
    floor_anchor_contract: Option<String>,
    /// Settle every sale on this `LeadEscrow` (0x and 40 hex digits), read through the
    /// parent's vsock-proxy on port 8003 at --escrow-rpc (part of PCR0 and PCR2).
    #[arg(long, requires = "escrow_chain_id", requires = "escrow_rpc")]
    escrow: Option<String>,
    /// The escrow's EIP-155 chain id.
    #[arg(long, requires = "escrow")]
    escrow_chain_id: Option<u64>,
    /// The escrow's JSON-RPC URL (https://).
    #[arg(long, requires = "escrow")]
    escrow_rpc: Option<String>,
    /// Blocks below the newest the enclave reads the escrow at.
    #[arg(long, default_value_t = 0, requires = "escrow")]
    escrow_confirmations: u64,
    /// The escrow's fee, basis points (the contract's `feeBps`).
    #[arg(long, default_value_t = 0, requires = "escrow")]
    fee_bps: u16,
    /// The escrow's fee recipient (the contract's `feeRecipient`).
    #[arg(long, requires = "escrow")]
    fee_recipient: Option<String>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Git commit the binary was built from (40 hex digits).
    #[arg(long)]
    commit: String,
    /// The commit's time, Unix seconds.
    #[arg(long)]
    commit_time: u64,
    /// `rustc -V` of the toolchain that built the binary.
    #[arg(long)]
    toolchain: String,
    /// The binary's Rust target triple.
    #[arg(long, default_value = "x86_64-unknown-linux-gnu")]
    target: String,
    /// The Cargo.lock the binary was built with.
    #[arg(long)]
    cargo_lock: PathBuf,
    /// Facts about the build machine to record in the manifest (KEY=VALUE), e.g. the C
    /// compiler and libc linked into the static binary.
    #[arg(long = "build-env", value_name = "KEY=VALUE")]
    build_env: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.commit.len() != 40 || !a.commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--commit must be 40 hex digits");
    }
    let mut build_env = BTreeMap::new();
    for kv in &a.build_env {
        let (k, v) = kv.split_once('=').context("--build-env takes KEY=VALUE")?;
        build_env.insert(k.to_owned(), v.to_owned());
    }
    let inputs = Inputs {
        binary: a.binary,
        blobs: a.blobs,
        kernel: a.kernel,
        stand_in_kernel: a.stand_in_kernel,
        kms_key_arn: a.kms_key_arn,
        floor: FloorSources {
            checkpoint: a.floor_checkpoint,
            anchor: a.floor_anchor_rpc.zip(a.floor_anchor_contract),
        },
        escrow: match (a.escrow, a.escrow_chain_id, a.escrow_rpc) {
            (Some(escrow), Some(chain_id), Some(rpc)) => Some(EscrowSettings {
                escrow,
                chain_id,
                fee_bps: a.fee_bps,
                fee_recipient: a.fee_recipient,
                rpc,
                confirmations: a.escrow_confirmations,
            }),
            _ => None,
        },
        provenance: Provenance {
            commit: a.commit.to_ascii_lowercase(),
            commit_time: a.commit_time,
            toolchain: a.toolchain,
            target: a.target,
            cargo_lock_sha256: image::sha256_file(&a.cargo_lock)?,
        },
    };
    let built = image::build(&inputs, &a.out, build_env)?;
    for f in &built.files {
        println!("wrote {}", f.display());
    }
    let m = &built.manifest;
    if m.stand_in_kernel {
        eprintln!("note: stand-in kernel: this EIF does not boot; PCR0 and PCR1 are not a real image's, PCR2 is");
    }
    println!(
        "PCR0 {}\nPCR1 {}\nPCR2 {}",
        m.pcrs.pcr0, m.pcrs.pcr1, m.pcrs.pcr2
    );
    Ok(())
}
