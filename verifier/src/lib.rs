//! # leadgate-verifier
//!
//! The public formats of leadgate and their verification: everything a seller, buyer or
//! auditor needs to check the gateway without trusting its operator.
//!
//! **In scope:** RFC 6962/9162 Merkle trees and proofs ([`merkle`]), C2SP signed notes and
//! checkpoints ([`note`], [`checkpoint`]), log events in RFC 8785 canonical JSON ([`event`],
//! [`jcs`]), receipts ([`receipt`]), the sealed lead submission (RFC 9180 HPKE, [`intake`]),
//! AWS Nitro attestation documents ([`attestation`]) and the keys they bind ([`keys`]), and the
//! sealed-bid auction rules that bidders recheck ([`auction`]), sealed bids ([`bid`]) and the
//! winner-only release of a lead ([`release`]), all on one HPKE suite ([`envelope`]), and the
//! EIP-712 statement the enclave signs to anchor a checkpoint on chain ([`anchor`]), and the
//! auditor's red-flag checks ([`audit`]).
//!
//! **Out of scope:** network and disk I/O, clocks and randomness sources other than those
//! passed in. Every function takes bytes and an explicit `now` and returns values; the `leadgate`
//! CLI (feature `cli`) does the fetching. Building this crate alone (`--no-default-features`)
//! pulls in no async runtime, HTTP stack, database or chain client, and a test checks that.
//!
//! Errors are one enum per module, each variant with a stable `code()` such as
//! `attestation.chain_invalid` or `proof.root_mismatch`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod anchor;
pub mod api;
pub mod attestation;
pub mod auction;
pub mod audit;
pub mod autobid;
pub mod bid;
pub mod checkpoint;
pub mod envelope;
pub mod error_code;
pub mod event;
pub mod intake;
pub mod jcs;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod receipt;
pub mod release;
pub mod settlement;
pub mod tiles;

pub use error_code::ErrorCode;
