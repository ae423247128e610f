//! `leadgate verify`: attestation documents, checkpoints, receipts and auctions, one module
//! each; [`checkpoints`] also holds the log reads the other commands (and `audit`, `buyer`,
//! `anchor`) share.

mod attestation;
mod auction;
mod checkpoints;
mod receipts;
mod settlement;
pub mod source;

pub use attestation::attestation;
pub use auction::{auction, AuctionArgs};
pub use checkpoints::*;
pub use receipts::*;
pub use settlement::{settlement, SettlementArgs};
