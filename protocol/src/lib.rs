//! The host ↔ enclave protocol: CBOR (RFC 8949) messages in length-prefixed frames.
//!
//! Frame: 4-byte big-endian body length, then the body, at most [`MAX_FRAME_LEN`] bytes. The
//! host sends one [`Request`] and reads one [`Response`], in order. A frame that does not decode
//! gets a [`Response::Error`] with code `protocol.malformed_frame`; the enclave never crashes on
//! input.
//!
//! Start-up sequence: `Boot` (sealed secrets and the host's log tip) → `LoadState`* (the
//! parts of the newest sealed state the host stored, if any) → `Restore`* (wire name
//! `Replay`: the leaves from that state's size, or from leaf 0, to the tip, from which the
//! enclave rebuilds its open auctions, duplicate-email filter and the buyers' rule book;
//! required when there is a tip) → `LoadRules`* (the sealed rule sets the rule book names
//! active; `Start` is refused while one is missing) → `LoadBids`* (a settling enclave only:
//! the stored bids of every open auction, counted against deposits again; `Start` is refused
//! while one is missing) → `Start` (appends `log.epoch`).
//!
//! Words: *restore* is rebuilding the enclave's state from the log at start-up; *replay*
//! is a client sending the same submission or bid again, which the enclave refuses
//! (`submission.replayed`, `bid.replayed`). Then any of `Attest`, `Submit` (with the bids of
//! buyers' rule sets and the instant auctions' closes), `Bid`, `SetRules`, `CancelRules`,
//! `Tick` (which auctions are due), `Close` (closing them from the stored entries), `Release`
//! (with the sale proven from the log), `SealState`, `Checkpoint`, `Status`, `Durable`,
//! `Journal`.
//! `docs/AUCTION-BOOK.md` explains why the enclave needs nothing else across restarts.
//!
//! Reconnecting to a running enclave (the host restarted or dropped the link): `Boot` answers
//! `boot.already_booted`; the host compares `Status` with its store and, if the enclave is
//! ahead, fetches the missing tail with `Journal` (entries the host has not confirmed with
//! `Durable`), checks it against the enclave's root and stores it. If the tail is gone
//! (`journal.gap`), or the enclave is not started or holds another log, the host sends
//! `Reset` and boots it again from its own tip: a new epoch, as after an enclave restart.
//!
//! Sessions: the enclave serves one host session at a time (see `leadgate_enclave::server`).
//!
//! Modules: [`boot`] (the host's side of the start-up sequence, over its stored tree),
//! [`message`] (what each request and answer carries), [`frame`] (the framing and the CBOR
//! codec), [`limits`] (sizes both sides enforce), [`transport`] (TCP, vsock and in-process
//! streams), [`credentials`] (the AWS credentials the host lends the enclave). The enclave
//! (`leadgate-enclave`) serves this protocol; the host (`leadgate-host`) speaks it without
//! linking the enclave.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod boot;
pub mod credentials;
pub mod frame;
pub mod limits;
pub mod message;
pub mod transport;

pub use credentials::AwsCredentials;
pub use frame::{decode, encode, read_frame, write_frame, FrameError};
pub use limits::*;
pub use message::*;
