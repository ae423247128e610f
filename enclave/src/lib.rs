//! # leadgate-enclave
//!
//! The trusted half of leadgate: it holds the keys, opens sealed leads, applies the intake
//! rules, and appends every decision to the log, signing receipts and checkpoints.
//!
//! * [`core`]: the enclave as a state machine (requests in, responses out; its only I/O is
//!   the chain reads of a settling gateway, through [`chain::EscrowChain`]).
//! * [`server`]: the link server around [`core`]: the frame loop of `leadgate-protocol` over TCP
//!   (dev) or vsock (Nitro), one host session at a time.
//! * [`clock`]: the enclave's clock (the host's is never used).
//! * [`error`]: the enclave's errors and their stable codes, mapped to the wire once.
//! * [`secrets`], [`sealing`]: the keys and how they are sealed at rest.
//! * [`attest`]: attestation providers: NSM (`/dev/nsm`, AWS Nitro) and the dev CA.
//! * [`rules`], [`dedup`], [`replay`]: intake rules and scoring; duplicate-email, submission
//!   and sealed-bid replay detection, all in fixed memory ([`bloom`]).
//! * [`log`]: frontier, receipts and checkpoints.
//! * [`journal`]: the appended tail the host has not confirmed durable, for its catch-up.
//! * [`auctions`]: the auction book: a fixed-size record per open auction, nothing per sale;
//!   the bid, close and release flows are in `core/market.rs` (`docs/AUCTION-BOOK.md`).
//! * [`state`]: the sealed state (open auctions, email filter) a restart starts from.
//! * [`restore`]: rebuilding that state at boot from a sealed state and the leaves after it,
//!   checked against the tip.
//! * [`sellers`]: decompressed keys of recent sellers.
//! * [`parallel`]: the order-preserving parallel map used for per-lead crypto in a batch.
//! * [`deposits`]: what each buyer has committed against its escrow deposit (open bids, unpaid
//!   wins), bounded; [`chain`]: the escrow and anchor reads over JSON-RPC; [`fetch`]: one
//!   HTTP(S) request out of the enclave (direct, or through the vsock proxy); [`floor`]: the
//!   newest signed tree a fresh enclave learns before it signs.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attest;
pub mod auctions;
pub mod autobid;
pub mod blocking;
pub mod bloom;
pub mod chain;
pub mod clock;
pub mod core;
pub mod dedup;
pub mod deposits;
pub mod error;
pub mod fetch;
pub mod floor;
pub mod journal;
pub mod kms;
pub mod log;
pub mod parallel;
mod private_file;
pub mod replay;
pub mod restore;
pub mod rules;
pub mod sealing;
pub mod secrets;
pub mod sellers;
pub mod server;
pub mod state;
