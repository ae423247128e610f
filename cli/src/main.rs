//! `leadgate`: the seller, buyer, auditor and benchmark CLI. Every command that talks to a gateway
//! first verifies a fresh attestation (random nonce) and takes the log key from it.
#![forbid(unsafe_code)]

mod anchor;
mod audit;
mod bench;
mod buyer;
mod chain;
mod escrow;
mod http;
mod pcr;
mod rules;
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
    /// Buyer commands.
    #[command(subcommand)]
    Buyer(BuyerCmd),
    /// Verification commands (exit status 0 only when everything holds).
    #[command(subcommand)]
    Verify(VerifyCmd),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Compute the PCRs (SHA-384) an AWS Nitro Enclave image will measure: PCR0 (whole image),
    /// PCR1 (kernel, command line, first ramdisk), PCR2 (the other ramdisks) and PCR8 (signing
    /// certificate, signed images only).
    Pcr {
        /// The enclave image file (.eif), as `nitro-cli build-enclave` writes it.
        eif: PathBuf,
        /// Print JSON {"PCR0": hex, …}.
        #[arg(long)]
        json: bool,
    },
    /// Run every red-flag check against a gateway and print one line per check: attestation
    /// signature, chain, fresh nonce, PCR0, debug mode, key binding, checkpoint signature,
    /// consistency with the checkpoint seen last time, the on-chain anchors, and receipts.
    /// Exit status 0 only if no check fails.
    Audit {
        /// Gateway base URL.
        #[arg(long, required_unless_present = "tiles", conflicts_with = "tiles")]
        gateway: Option<String>,
        /// Audit the log from its C2SP tlog-tiles under this URL prefix alone (the bucket,
        /// or any static copy), with no gateway: every entry is read and the tree rebuilt.
        #[arg(long, requires = "log_key")]
        tiles: Option<String>,
        /// The log's note verifier key (`origin+keyid+base64`), needed with --tiles.
        #[arg(long)]
        log_key: Option<String>,
        #[command(flatten)]
        trust: TrustArgs,
        /// JSON-RPC URL of the chain the log is anchored on (with --contract).
        #[arg(long, requires = "contract")]
        rpc: Option<String>,
        /// CheckpointAnchor contract address (with --rpc).
        #[arg(long, requires = "rpc")]
        contract: Option<String>,
        /// Receipts file (JSON lines from `seller submit`): each must be included or voided.
        #[arg(long)]
        receipts: Option<PathBuf>,
        /// Where this auditor remembers the last checkpoint it saw.
        #[arg(long, default_value_os_t = verify::default_state())]
        state: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// PCR0 (hex) of an earlier image to accept in the log's history (repeatable); the
        /// expected one (--pcr0 / --pcr-manifest) is always accepted.
        #[arg(long = "allow-pcr0", value_name = "HEX")]
        allow_pcr0: Vec<String>,
    },
}

// Parsed once per run: the size of the Submit variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
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
        /// Output receipts (JSON lines): each answer is appended as it arrives, and the file is
        /// rewritten in input order at the end. Sealed requests wait in RECEIPTS.sealed until
        /// answered.
        #[arg(long)]
        receipts: PathBuf,
        /// Keep the receipts already in RECEIPTS and send only the leads without one, with the
        /// sealed bytes kept from the earlier run (a lead logged then gets its original answer).
        #[arg(long)]
        resume: bool,
        /// How long to keep retrying a lead the gateway cannot answer yet (503, no connection),
        /// seconds.
        #[arg(long, default_value_t = 600)]
        retry_for_secs: u64,
        /// Parallel requests.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Leads per request (1 posts to /v1/leads; more use /v1/leads/batch, at most 256).
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[command(flatten)]
        auction: AuctionArgs,
        /// Leads file: JSON lines, bare lead objects or corpus lines {"lead": …, "auction": {…}}.
        leads: PathBuf,
    },
    /// Your settled earnings on the escrow: unclaimed, and every settlement that paid your
    /// payout address (JSON; token units).
    Earnings {
        #[command(flatten)]
        escrow: escrow::EscrowArgs,
        /// Your payout address (`0x` and 40 hex digits).
        #[arg(long)]
        payout: String,
    },
    /// Take your earnings from the escrow to your payout account.
    Claim {
        #[command(flatten)]
        escrow: escrow::EscrowArgs,
        /// File with the payout account's secp256k1 key (hex, 32 bytes).
        #[arg(long)]
        account_key: PathBuf,
    },
}

/// Auction terms a seller asks for (the enclave's defaults fill the rest).
#[derive(clap::Args)]
struct AuctionArgs {
    /// Reserve price in the settlement token's smallest unit (USDC: 6 decimals).
    #[arg(long)]
    reserve: Option<u64>,
    /// Auction duration, ms.
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Pricing rule.
    #[arg(long, value_parser = ["first_price", "second_price"])]
    pricing: Option<String>,
    /// Where the sale's settlement pays the seller: `0x` and 40 lowercase hex digits (required
    /// by a gateway that settles on chain).
    #[arg(long)]
    payout: Option<leadgate_verifier::settlement::EthAddress>,
    /// Mark the leads as captured off your own site (bought, re-sold or aggregated): buyers'
    /// rules skip them unless they allow off-site leads.
    #[arg(long)]
    off_site: bool,
    /// Instant auctions (ping-post): each closes in its own submission, on the bids of
    /// buyers' rule sets, and the answer carries the sale. Takes no --duration-ms.
    #[arg(long, conflicts_with = "duration_ms")]
    instant: bool,
}

impl AuctionArgs {
    fn terms(&self) -> anyhow::Result<Option<leadgate_verifier::intake::AuctionRequest>> {
        use leadgate_verifier::auction::{Pricing, TokenAmount};
        if self.reserve.is_none()
            && self.duration_ms.is_none()
            && self.pricing.is_none()
            && self.payout.is_none()
            && !self.off_site
            && !self.instant
        {
            return Ok(None);
        }
        Ok(Some(leadgate_verifier::intake::AuctionRequest {
            reserve: self.reserve.map(TokenAmount::new).transpose()?,
            duration_ms: self.duration_ms,
            pricing: self.pricing.as_deref().map(|p| {
                if p == "second_price" {
                    Pricing::SecondPrice
                } else {
                    Pricing::FirstPrice
                }
            }),
            payout: self.payout,
            off_site: self.off_site,
            instant: self.instant,
        }))
    }
}

#[derive(Subcommand)]
enum BuyerCmd {
    /// Create a buyer key file: Ed25519 (buyer id, signatures) and X25519 (HPKE, where won
    /// leads are sealed). Prints the buyer id.
    Keygen {
        /// Where to write the key (must not exist).
        #[arg(long, default_value = "buyer.key")]
        out: PathBuf,
    },
    /// List auctions (JSON lines): listing, score, reserve, close time, status.
    Auctions {
        /// Gateway base URL.
        #[arg(long)]
        gateway: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// open, sold, unsold or all.
        #[arg(long, default_value = "open")]
        status: String,
        /// Only this industry.
        #[arg(long)]
        industry: Option<String>,
        /// Only this region.
        #[arg(long)]
        region: Option<String>,
        /// Lowest score.
        #[arg(long)]
        min_score: Option<u8>,
        /// Most auctions listed (≤ 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Seal, sign and place bids (one, or a plan file); append your bid records to --out.
    Bid {
        /// Gateway base URL.
        #[arg(long)]
        gateway: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Buyer key file.
        #[arg(long)]
        key: PathBuf,
        /// Auction id.
        #[arg(long)]
        auction: Option<String>,
        /// Amount in the settlement token's smallest unit (USDC: 6 decimals).
        #[arg(long)]
        amount: Option<u64>,
        /// JSON lines {"auction": ID, "amount": N}, instead of --auction/--amount.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Your deposit address in the escrow, sealed in every bid: it pays what you win
        /// (`0x` and 40 lowercase hex digits; required by a gateway that settles on chain).
        #[arg(long)]
        account: Option<leadgate_verifier::settlement::EthAddress>,
        /// Your bid records (JSON lines, appended): keep them to verify the outcome.
        #[arg(long, default_value = "my-bids.jsonl")]
        out: PathBuf,
        /// Parallel requests.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Deposit settlement tokens to the escrow (approving it first if needed); what you win
    /// is paid from this deposit (JSON; token units).
    Deposit {
        #[command(flatten)]
        escrow: escrow::EscrowArgs,
        /// File with your deposit account's secp256k1 key (hex, 32 bytes): the address you
        /// give bids as --account.
        #[arg(long)]
        account_key: PathBuf,
        /// Token units (USDC: 6 decimals, 1000000 is 1 USDC).
        #[arg(long)]
        amount: u64,
    },
    /// Withdraw from the escrow in two steps: `--amount N` asks (0 cancels; bids stop counting
    /// on N at once), then `--complete` after the escrow's delay pays min(N, balance).
    Withdraw {
        #[command(flatten)]
        escrow: escrow::EscrowArgs,
        /// File with your deposit account's secp256k1 key (hex, 32 bytes).
        #[arg(long)]
        account_key: PathBuf,
        /// Ask to withdraw this many token units (0 cancels a request).
        #[arg(
            long,
            conflicts_with = "complete",
            required_unless_present = "complete"
        )]
        amount: Option<u64>,
        /// Take the requested withdrawal, once its delay has passed.
        #[arg(long)]
        complete: bool,
    },
    /// Your deposit: balance, pending withdrawal, its unlock time (Unix s), and what bids may
    /// count on (balance − requested), in token units (JSON).
    Balance {
        #[command(flatten)]
        escrow: escrow::EscrowArgs,
        /// Your deposit address (`0x` and 40 hex digits).
        #[arg(long)]
        account: String,
    },
    /// Your auto-bid rule set: the enclave bids for you on every lead it matches.
    #[command(subcommand)]
    Rules(RulesCmd),
    /// Ask for won leads, prove each lead.released in a checkpoint, then decrypt.
    Decrypt {
        /// Gateway base URL.
        #[arg(long)]
        gateway: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Buyer key file.
        #[arg(long)]
        key: PathBuf,
        /// Lead id.
        #[arg(long)]
        lead: Option<String>,
        /// Where to write the lead JSON.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Every lead you won, instead of --lead.
        #[arg(long)]
        won: bool,
        /// Directory for --won (one {lead_id}.json each).
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Seal a rule set (a JSON file: the gates, `max_bid`, `daily_budget`; docs/PROTOCOL.md
    /// §4) to the attested enclave, replacing your active one; keeps it in --out.
    Set {
        /// Gateway base URL.
        #[arg(long)]
        gateway: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Buyer key file.
        #[arg(long)]
        key: PathBuf,
        /// The rule set (JSON), without `buyer`, `buyer_hpke` and `issued_at_ms`.
        #[arg(long)]
        rules: PathBuf,
        /// Your deposit address in the escrow, which pays the bids made under the rules
        /// (required by a gateway that settles on chain).
        #[arg(long)]
        account: Option<leadgate_verifier::settlement::EthAddress>,
        /// Your rule sets (JSON lines, appended): keep them to verify the enclave's bids.
        #[arg(long, default_value = "my-rules.jsonl")]
        out: PathBuf,
    },
    /// Your logged rule changes, with the rules you kept for each (JSON lines).
    Show {
        /// Gateway base URL.
        #[arg(long)]
        gateway: String,
        /// Buyer key file.
        #[arg(long)]
        key: PathBuf,
        /// Your rule sets, as `rules set` kept them.
        #[arg(long, default_value = "my-rules.jsonl")]
        rules: PathBuf,
    },
    /// Cancel your active rule set: the enclave bids for you no more.
    Cancel {
        /// Gateway base URL.
        #[arg(long)]
        gateway: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Buyer key file.
        #[arg(long)]
        key: PathBuf,
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
    /// Verify a checkpoint (FILE, the gateway's, or with --tiles the log's tiles') against the
    /// attested log key or --log-key.
    Checkpoint {
        /// Signed note file.
        file: Option<PathBuf>,
        /// Gateway base URL.
        #[arg(long)]
        gateway: Option<String>,
        /// Read the checkpoint from the log's C2SP tlog-tiles under this URL prefix
        /// (`PREFIX/checkpoint`: the bucket, or any static copy) instead of the gateway.
        #[arg(long, conflicts_with = "file")]
        tiles: Option<String>,
        /// Where this verifier remembers the last checkpoint it saw: a checkpoint read from
        /// the gateway or the tiles must be consistent with it (a rollback or fork exits with
        /// status 3), and is remembered if newer.
        #[arg(long, default_value_os_t = verify::default_state())]
        state: PathBuf,
        /// C2SP vkey of the log, instead of taking it from an attestation.
        #[arg(long)]
        log_key: Option<String>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Verify every receipt in a receipts file against the log's newest checkpoint: from the
    /// gateway's API, or with --tiles from the log's tiles alone (the bucket's public URL, or
    /// any static copy; no host involved). A rollback or fork against the checkpoint this
    /// verifier saw before (--state) exits with status 3; any other failure with 1.
    Receipts {
        /// Receipts file from `seller submit`.
        receipts: PathBuf,
        /// Gateway base URL (the log key comes from its attestation).
        #[arg(long, required_unless_present_all = ["tiles", "log_key"])]
        gateway: Option<String>,
        /// Read the log from its C2SP tlog-tiles under this URL prefix (`PREFIX/checkpoint`,
        /// `PREFIX/tile/...`) instead of the gateway's API.
        #[arg(long)]
        tiles: Option<String>,
        /// The log's note verifier key (`origin+keyid+base64`, as `GET /attest` binds it and
        /// the bucket's `leadgate/log-key` holds); without it, the gateway's attested key.
        #[arg(long)]
        log_key: Option<String>,
        #[command(flatten)]
        trust: TrustArgs,
        /// Where this verifier remembers the last checkpoint it saw (for consistency checks).
        #[arg(long, default_value_os_t = verify::default_state())]
        state: PathBuf,
        /// Parallel requests.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Verify a sale's payment: its close and settlement in a checkpoint, the settlement
    /// signed by the anchor key of the epoch in force and paying the seller's signed payout
    /// address, and the escrow's on-chain payment of exactly those amounts, once.
    Settlement {
        /// Auction (lead) id.
        id: String,
        /// Gateway base URL (attestation, the auction index, the log).
        #[arg(long)]
        gateway: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// JSON-RPC URL of the escrow's chain.
        #[arg(long, env = "LEADGATE_RPC", default_value = "http://127.0.0.1:8545")]
        rpc: String,
    },
    /// Check the chain's anchored checkpoints: the history only grows, the active enclave key is
    /// the gateway's attested one (same PCR0), and the served checkpoint (the gateway's, or
    /// CHECKPOINT) is anchored or consistent with the latest anchor. A fork exits with 1.
    /// Offline (CHECKPOINT with --registration, no gateway) only an anchored size can be checked.
    Anchor {
        /// A checkpoint note file to check instead of the gateway's current one.
        checkpoint: Option<PathBuf>,
        /// JSON-RPC URL of the chain.
        #[arg(long)]
        rpc: String,
        /// CheckpointAnchor contract address.
        #[arg(long)]
        contract: String,
        /// Gateway base URL (attestation, checkpoint, consistency proofs).
        #[arg(long)]
        gateway: Option<String>,
        /// Read the served checkpoint and consistency proofs from the log's C2SP tlog-tiles
        /// under this URL prefix (the bucket, or any static copy) instead of the gateway; with
        /// --registration no host is involved.
        #[arg(long)]
        tiles: Option<String>,
        /// The registered attestation document, checked against its on-chain SHA-256.
        #[arg(long)]
        registration: Option<PathBuf>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Verify a closed auction (or every auction in --my-bid): events in a checkpoint, the
    /// tie-break seed, the considered set, and your own bid against the outcome.
    Auction {
        /// Auction id (default: every auction in --my-bid).
        id: Option<String>,
        /// Gateway base URL.
        #[arg(long, required_unless_present = "tiles", conflicts_with = "tiles")]
        gateway: Option<String>,
        /// Read the log from its C2SP tlog-tiles under this URL prefix alone (the bucket, or
        /// any static copy), with no gateway: the whole log is read once to find the auctions'
        /// events.
        #[arg(long, requires = "log_key")]
        tiles: Option<String>,
        /// The log's note verifier key (`origin+keyid+base64`), needed with --tiles.
        #[arg(long)]
        log_key: Option<String>,
        #[command(flatten)]
        trust: TrustArgs,
        /// Your bid records from `buyer bid --out`.
        #[arg(long)]
        my_bid: Option<PathBuf>,
        /// Your rule sets from `buyer rules set --out`: instead of auctions, check from the
        /// whole log that the enclave bid for you exactly when your rules matched and your
        /// budget allowed.
        #[arg(long, conflicts_with_all = ["id", "my_bid"])]
        my_rules: Option<PathBuf>,
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
        /// Also write every request's timing as CSV to this file: `sent_ms` (since the run
        /// started), `latency_ms`, and `ok` (1 or 0), in the order the requests were sent. For
        /// finding where a latency tail comes from (which seconds of the run it falls in).
        #[arg(long)]
        latencies: Option<PathBuf>,
        /// Spread the leads over 7 industries and 50 states (to meet `bench rules`).
        #[arg(long)]
        varied: bool,
        /// Instant auctions: each answer carries its sale (counted as sold instantly).
        #[arg(long)]
        instant: bool,
    },
    /// Seal and post auto-bid rule sets of fresh buyers, for `bench submit --varied` to meet.
    Rules {
        /// Gateway base URL.
        #[arg(long)]
        gateway: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Rule sets (one buyer each).
        #[arg(long, default_value_t = 1_000)]
        count: usize,
        /// States each rule set takes: a `--varied` lead meets count / 350 × states of them
        /// (0: a state no lead has, so that none bids).
        #[arg(long, default_value_t = 1)]
        states: usize,
    },
}

/// Exit status 3: the log showed a rollback or a fork ([`verify::LogMisbehaved`]); 1: any
/// other failure.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            if e.downcast_ref::<verify::LogMisbehaved>().is_some() {
                std::process::ExitCode::from(3)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Seller(SellerCmd::Keygen { out }) => seller::keygen(&out),
        Cmd::Seller(SellerCmd::Earnings { escrow, payout }) => money(
            &escrow,
            escrow::Action::Earnings {
                account: escrow::parse_account(&payout)?,
            },
        ),
        Cmd::Seller(SellerCmd::Claim {
            escrow,
            account_key,
        }) => money(&escrow, escrow::Action::Claim { key: account_key }),
        Cmd::Buyer(BuyerCmd::Deposit {
            escrow,
            account_key,
            amount,
        }) => money(
            &escrow,
            escrow::Action::Deposit {
                key: account_key,
                amount,
            },
        ),
        Cmd::Buyer(BuyerCmd::Withdraw {
            escrow,
            account_key,
            amount,
            complete: _,
        }) => money(
            &escrow,
            match amount {
                Some(amount) => escrow::Action::RequestWithdrawal {
                    key: account_key,
                    amount,
                },
                None => escrow::Action::Withdraw { key: account_key },
            },
        ),
        Cmd::Buyer(BuyerCmd::Balance { escrow, account }) => money(
            &escrow,
            escrow::Action::Balance {
                account: escrow::parse_account(&account)?,
            },
        ),
        Cmd::Seller(SellerCmd::Submit {
            gateway,
            trust,
            key,
            receipts,
            resume,
            retry_for_secs,
            concurrency,
            batch,
            auction,
            leads,
        }) => seller::submit(seller::SubmitArgs {
            gateway,
            trust,
            key,
            receipts,
            leads,
            concurrency,
            batch,
            terms: auction.terms()?,
            resume,
            retry_for: std::time::Duration::from_secs(retry_for_secs),
        }),
        Cmd::Buyer(BuyerCmd::Keygen { out }) => buyer::keygen(&out),
        Cmd::Buyer(BuyerCmd::Rules(RulesCmd::Set {
            gateway,
            trust,
            key,
            rules,
            account,
            out,
        })) => rules::set(rules::SetArgs {
            gateway,
            trust,
            key,
            rules,
            account,
            out,
        }),
        Cmd::Buyer(BuyerCmd::Rules(RulesCmd::Show {
            gateway,
            key,
            rules,
        })) => rules::show(&gateway, &key, &rules),
        Cmd::Buyer(BuyerCmd::Rules(RulesCmd::Cancel {
            gateway,
            trust,
            key,
        })) => rules::cancel(&gateway, &trust, &key),
        Cmd::Buyer(BuyerCmd::Auctions {
            gateway,
            trust,
            status,
            industry,
            region,
            min_score,
            limit,
        }) => buyer::auctions(buyer::AuctionsArgs {
            gateway,
            trust,
            status,
            industry,
            region,
            min_score,
            limit,
        }),
        Cmd::Buyer(BuyerCmd::Bid {
            gateway,
            trust,
            key,
            auction,
            amount,
            plan,
            account,
            out,
            concurrency,
        }) => buyer::bid(buyer::BidArgs {
            gateway,
            trust,
            key,
            auction,
            amount,
            plan,
            account,
            out,
            concurrency,
        }),
        Cmd::Buyer(BuyerCmd::Decrypt {
            gateway,
            trust,
            key,
            lead,
            out,
            won,
            out_dir,
        }) => buyer::decrypt(buyer::DecryptArgs {
            gateway,
            trust,
            key,
            lead,
            out,
            won,
            out_dir,
        }),
        Cmd::Verify(VerifyCmd::Auction {
            id,
            gateway,
            tiles,
            log_key,
            trust,
            my_bid,
            my_rules,
            concurrency,
        }) => verify::auction(&verify::AuctionArgs {
            id: id.as_deref(),
            gateway: gateway.as_deref(),
            tiles: tiles.as_deref(),
            log_key: log_key.as_deref(),
            trust: &trust,
            my_bids: my_bid.as_deref(),
            my_rules: my_rules.as_deref(),
            concurrency,
        }),
        Cmd::Verify(VerifyCmd::Settlement {
            id,
            gateway,
            trust,
            rpc,
        }) => verify::settlement(&verify::SettlementArgs {
            id: &id,
            gateway: &gateway,
            trust: &trust,
            rpc: &rpc,
        }),
        Cmd::Verify(VerifyCmd::Anchor {
            checkpoint,
            rpc,
            contract,
            gateway,
            tiles,
            registration,
            trust,
        }) => anchor::verify_anchor(&anchor::AnchorArgs {
            rpc: &rpc,
            contract: &contract,
            gateway: gateway.as_deref(),
            tiles: tiles.as_deref(),
            checkpoint: checkpoint.as_deref(),
            registration: registration.as_deref(),
            trust: &trust,
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
            tiles,
            state,
            log_key,
            trust,
        }) => verify::checkpoint(&verify::CheckpointArgs {
            file: file.as_deref(),
            gateway: gateway.as_deref(),
            tiles: tiles.as_deref(),
            log_key: log_key.as_deref(),
            trust: &trust,
            state: &state,
        }),
        Cmd::Verify(VerifyCmd::Receipts {
            receipts,
            gateway,
            tiles,
            log_key,
            trust,
            state,
            concurrency,
        }) => verify::receipts(
            &receipts,
            gateway.as_deref(),
            tiles.as_deref(),
            log_key.as_deref(),
            &trust,
            &state,
            concurrency,
        ),
        Cmd::Pcr { eif, json } => pcr::pcr(&eif, json),
        Cmd::Audit {
            gateway,
            tiles,
            log_key,
            trust,
            rpc,
            contract,
            receipts,
            state,
            json,
            allow_pcr0,
        } => audit::audit(&audit::AuditArgs {
            gateway: gateway.as_deref(),
            tiles: tiles.as_deref(),
            log_key: log_key.as_deref(),
            trust: &trust,
            chain: rpc.as_deref().zip(contract.as_deref()),
            receipts: receipts.as_deref(),
            state: &state,
            json,
            allow_pcr0: &allow_pcr0,
        }),
        Cmd::Bench(BenchCmd::Submit {
            gateway,
            trust,
            count,
            concurrency,
            rate,
            json,
            latencies,
            batch,
            varied,
            instant,
        }) => bench::submit(bench::BenchArgs {
            gateway,
            trust,
            count,
            concurrency,
            rate,
            json,
            latencies,
            batch,
            varied,
            instant,
        }),
        Cmd::Bench(BenchCmd::Rules {
            gateway,
            trust,
            count,
            states,
        }) => bench::rules(bench::RulesBenchArgs {
            gateway,
            trust,
            count,
            states,
        }),
    }
}

/// Runs a money command and prints its JSON.
fn money(args: &escrow::EscrowArgs, action: escrow::Action) -> anyhow::Result<()> {
    let out = escrow::run(&http::agent(), args, action)?;
    println!("{out}");
    Ok(())
}
