//! The enclave's errors: one enum, each variant with its stable [`ErrorCode`]
//! ([`EnclaveError::code`]), turned into the wire's [`WireError`] in one place
//! (`From<EnclaveError> for WireError`). A refused request changes nothing.

use leadgate_protocol::{FrameError, WireError};
use leadgate_verifier::anchor::AnchorError;
use leadgate_verifier::autobid::RulesError;
use leadgate_verifier::bid::BidError;
use leadgate_verifier::event::EventError;
use leadgate_verifier::intake::SubmissionError;
use leadgate_verifier::note::NoteError;
use leadgate_verifier::release::ReleaseError;
use leadgate_verifier::ErrorCode;

use crate::attest::ProviderError;
use crate::auctions::BidRefusal;
use crate::journal::JournalGap;
use crate::sealing::SealError;

/// Why the enclave refused a request, or failed one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnclaveError {
    // Start-up and the host session (host ↔ enclave protocol; never a client's doing).
    /// A request that needs a started enclave came before `Start`. `enclave.not_ready`.
    #[error("enclave has not finished start-up")]
    NotReady,
    /// `Boot` to an enclave that is booted (the host reconnected). `boot.already_booted`.
    #[error("enclave is already booted")]
    AlreadyBooted,
    /// A start-up message out of order (what was expected). `boot.bad_state`.
    #[error("{0}")]
    BadState(&'static str),
    /// A log tip without the sealed secrets that signed it. `boot.no_secrets`.
    #[error("a log tip needs the sealed secrets that signed it")]
    NoSecrets,
    /// The unsealed secrets do not parse. `boot.secrets_malformed`.
    #[error("sealed secrets: {0}")]
    SecretsMalformed(crate::secrets::SecretsError),
    /// The host's tip (receipt, frontier, checkpoint) does not verify. `boot.tip_invalid`.
    #[error("{0}")]
    TipInvalid(String),
    /// A replayed leaf does not fit the log. `boot.replay_invalid`.
    #[error("{0}")]
    RestoreInvalid(String),
    /// A sealed state part that does not open, or is out of order. `boot.state_invalid`.
    #[error("{0}")]
    StateInvalid(String),
    /// The enclave's origin gives no valid note key. `boot.bad_origin`.
    #[error("origin: {0}")]
    BadOrigin(NoteError),
    /// A `Journal` read past what the enclave still holds. `journal.gap`.
    #[error(transparent)]
    JournalGap(#[from] JournalGap),
    /// An appending request while the unconfirmed tail is at its bound. `journal.full`.
    #[error("the enclave holds {entries} unconfirmed entries ({bytes} bytes), its bound; retry once the host has stored them")]
    JournalFull {
        /// Unconfirmed entries held.
        entries: usize,
        /// Their weight in bytes.
        bytes: usize,
    },
    /// A tip behind the newest tree the enclave signed or learned of. `log.rollback`.
    #[error("the host's log has {tip} entries, fewer than the signed tree of {signed} entries known from {known_from}: entries {tip}..{signed} are missing; restore them (from the bucket) and boot again")]
    Rollback {
        /// The tip's size.
        tip: u64,
        /// The newest signed size.
        signed: u64,
        /// Where that size is known from.
        known_from: String,
    },
    /// A tip or replay whose tree differs from a signed tree of the same size. `log.fork`.
    #[error("{0}")]
    Fork(String),
    /// `Reset` while unconfirmed entries are held. `log.reset_refused`.
    #[error(
        "reset refused: entries {first}..{end} are not confirmed durable; catch them up first"
    )]
    ResetRefused {
        /// The oldest unconfirmed index.
        first: u64,
        /// One past the newest.
        end: u64,
    },
    /// The escrow's chain could not be read (a deposit, `settled`, the terms at boot).
    /// `chain.unavailable`.
    #[error("chain read: {0}")]
    ChainUnavailable(String),
    /// The escrow's terms are not the ones this enclave signs for, or its withdrawal delay is
    /// too short. `settlement.escrow_mismatch`.
    #[error("{0}")]
    EscrowMismatch(String),
    /// A floor source that cannot be read or does not verify. `log.floor_unavailable`.
    #[error("{0}")]
    FloorUnavailable(String),
    /// A `Submit` or `Bid` over its batch limit. `protocol.batch_too_large`.
    #[error("at most {max} {what} per request")]
    BatchTooLarge {
        /// The limit.
        max: usize,
        /// What is counted (`leads`, `bids`).
        what: &'static str,
    },
    /// A `Replay` over [`leadgate_protocol::MAX_RESTORE_ENTRIES`]. `protocol.too_many_entries`.
    #[error("too many entries in one frame")]
    TooManyEntries,
    /// An anchor target whose contract address is not 20 bytes. `protocol.bad_anchor_target`.
    #[error("contract address is not 20 bytes")]
    BadAnchorTarget,
    /// Another host session holds the enclave. `session.busy`.
    #[error("another host session is active")]
    SessionBusy,
    /// A frame that does not decode. `protocol.*`.
    #[error(transparent)]
    Frame(#[from] FrameError),

    // A seller's submission.
    /// The submission does not decode, verify or open. `submission.*`.
    #[error(transparent)]
    Submission(#[from] SubmissionError),
    /// Auction terms outside the configured range. `submission.bad_terms`.
    #[error("auction duration must be {min_ms} to {max_ms} ms")]
    BadTerms {
        /// Shortest duration, ms.
        min_ms: u64,
        /// Longest duration, ms.
        max_ms: u64,
    },
    /// An instant auction that names a duration. `submission.bad_terms`.
    #[error("an instant auction closes in its own request: it takes no duration_ms")]
    InstantWithDuration,
    /// A gateway that settles on chain got a submission naming no payout address.
    /// `submission.bad_terms`.
    #[error("this gateway settles sales on chain: the submission's auction.payout (the seller's payout address) is required")]
    PayoutRequired,
    /// A gateway that settles on chain got a bid naming no deposit account. `bid.mismatch`.
    #[error("this gateway settles sales on chain: the sealed bid must name its deposit account")]
    AccountRequired,
    /// `issued_at_ms` outside the freshness window. `submission.stale`.
    #[error("issued_at_ms is outside the accepted window")]
    SubmissionStale,
    /// The same submission was taken in before. `submission.replayed`.
    #[error("this submission was already received")]
    SubmissionReplayed,
    /// The opened lead is over the size limit. `lead.too_large`.
    #[error("lead is over the size limit")]
    LeadTooLarge,
    /// The opened lead is not JSON. `lead.malformed_json`.
    #[error("lead is not valid JSON")]
    LeadMalformedJson,

    // A buyer's bid or release request.
    /// The bid does not decode, verify or open. `bid.*`.
    #[error(transparent)]
    Bid(#[from] BidError),
    /// The auction book refuses the bid. `auction.unknown`, `auction.closed`,
    /// `auction.bid_limit`, `bid.replayed`.
    #[error("{}", .0.message())]
    BidRefused(BidRefusal),
    /// The entries given to close an auction are not the ones logged for it.
    /// `auction.close_invalid`.
    #[error("close: {0}")]
    CloseInvalid(String),
    /// The release request does not decode or verify. `release.*`.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// `issued_at_ms` outside the freshness window. `release.stale`.
    #[error("issued_at_ms is outside the accepted window")]
    ReleaseStale,
    /// The entry given as the sale is not an `auction.closed`. `release.not_sold`.
    #[error("the lead was not sold")]
    ReleaseNotSold,
    /// The sale closed longer ago than the release window. `release.expired`.
    #[error("the sale closed longer ago than the release window")]
    ReleaseExpired,
    /// The sale's entries or proofs do not verify against this epoch's log.
    /// `release.proof_invalid`.
    #[error("sale proof: {0}")]
    ReleaseProofInvalid(String),
    /// The sale is not paid on chain yet. `release.unpaid`.
    #[error("the sale is not paid on chain yet (settled({0}) is false at the confirmed block); retry once it is")]
    ReleaseUnpaid(String),
    /// The bidder's deposit does not back the bid. `bid.over_deposit`,
    /// `enclave.deposit_book_full`.
    #[error(transparent)]
    Deposit(#[from] crate::deposits::DepositRefusal),
    /// The rule set or cancellation does not decode, verify or open. `rules.*`.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// The rule book refuses the change. `rules.stale`, `rules.replayed`, `rules.not_active`,
    /// `enclave.rule_book_full`.
    #[error("{}", match .0 {
        crate::autobid::RuleRefusal::Stale => "issued_at_ms is outside the accepted window",
        crate::autobid::RuleRefusal::Replayed => "issued_at_ms is not later than the buyer's last rule change",
        crate::autobid::RuleRefusal::NotActive => "the commitment is not the buyer's active rule set",
        crate::autobid::RuleRefusal::Full => "the enclave holds the most rule sets it keeps",
    })]
    RuleRefused(crate::autobid::RuleRefusal),
    /// `Start` while an active rule set was not given, or a given one is not active or does
    /// not open. `boot.rules_missing`.
    #[error("{0}")]
    RulesMissing(String),
    /// `Start` on a settling enclave while an open auction's bids were not given, or a given
    /// auction is not open, not as logged, or given twice. `boot.bids_missing`.
    #[error("{0}")]
    BidsMissing(String),
    /// The bids made under rule sets fill the `Submit` answer. `enclave.batch_full`.
    #[error("the bids made under buyers' rule sets fill this batch's answer; send the lead again")]
    BatchFull,
    /// The requester is not the winner. `release.not_winner`.
    #[error("only the auction's winner gets the lead")]
    ReleaseNotWinner,
    /// The stored submission is not the accepted lead, or does not open.
    /// `release.lead_mismatch`.
    #[error("{0}")]
    ReleaseLeadMismatch(&'static str),

    // Faults inside the enclave.
    /// Sealing or unsealing the secrets failed. `sealing.*`.
    #[error(transparent)]
    Sealing(#[from] SealError),
    /// The attestation provider failed. `attestation.provider_*`.
    #[error(transparent)]
    Attestation(#[from] ProviderError),
    /// The provider's document lacks what the enclave reads from it (its PCRs).
    /// `attestation.provider_failed`.
    #[error("own attestation document: {0}")]
    OwnDocument(String),
    /// An event the enclave built does not encode. `event.*`.
    #[error(transparent)]
    Event(#[from] EventError),
    /// Signing a checkpoint anchor failed. `anchor.bad_signature`.
    #[error(transparent)]
    Anchor(#[from] AnchorError),
}

impl EnclaveError {
    /// The stable code sent on the wire.
    pub fn code(&self) -> ErrorCode {
        match self {
            EnclaveError::NotReady => ErrorCode::EnclaveNotReady,
            EnclaveError::AlreadyBooted => ErrorCode::BootAlreadyBooted,
            EnclaveError::BadState(_) => ErrorCode::BootBadState,
            EnclaveError::NoSecrets => ErrorCode::BootNoSecrets,
            EnclaveError::SecretsMalformed(_) => ErrorCode::BootSecretsMalformed,
            EnclaveError::TipInvalid(_) => ErrorCode::BootTipInvalid,
            EnclaveError::RestoreInvalid(_) => ErrorCode::BootReplayInvalid,
            EnclaveError::StateInvalid(_) => ErrorCode::BootStateInvalid,
            EnclaveError::BadOrigin(_) => ErrorCode::BootBadOrigin,
            EnclaveError::JournalGap(_) => ErrorCode::JournalGap,
            EnclaveError::JournalFull { .. } => ErrorCode::JournalFull,
            EnclaveError::Rollback { .. } => ErrorCode::LogRollback,
            EnclaveError::Fork(_) => ErrorCode::LogFork,
            EnclaveError::ResetRefused { .. } => ErrorCode::LogResetRefused,
            EnclaveError::FloorUnavailable(_) => ErrorCode::LogFloorUnavailable,
            EnclaveError::ChainUnavailable(_) => ErrorCode::ChainUnavailable,
            EnclaveError::EscrowMismatch(_) => ErrorCode::SettlementEscrowMismatch,
            EnclaveError::ReleaseUnpaid(_) => ErrorCode::ReleaseUnpaid,
            EnclaveError::Deposit(d) => match d {
                crate::deposits::DepositRefusal::OverDeposit { .. } => ErrorCode::BidOverDeposit,
                crate::deposits::DepositRefusal::Full(_) => ErrorCode::EnclaveDepositBookFull,
            },
            EnclaveError::BatchTooLarge { .. } => ErrorCode::ProtocolBatchTooLarge,
            EnclaveError::TooManyEntries => ErrorCode::ProtocolTooManyEntries,
            EnclaveError::BadAnchorTarget => ErrorCode::ProtocolBadAnchorTarget,
            EnclaveError::SessionBusy => ErrorCode::SessionBusy,
            EnclaveError::Frame(e) => e.code(),
            EnclaveError::Submission(e) => e.code(),
            EnclaveError::BadTerms { .. }
            | EnclaveError::PayoutRequired
            | EnclaveError::InstantWithDuration => ErrorCode::SubmissionBadTerms,
            EnclaveError::AccountRequired => ErrorCode::BidMismatch,
            EnclaveError::SubmissionStale => ErrorCode::SubmissionStale,
            EnclaveError::SubmissionReplayed => ErrorCode::SubmissionReplayed,
            EnclaveError::LeadTooLarge => ErrorCode::LeadTooLarge,
            EnclaveError::LeadMalformedJson => ErrorCode::LeadMalformedJson,
            EnclaveError::Bid(e) => e.code(),
            EnclaveError::BidRefused(why) => why.code(),
            EnclaveError::CloseInvalid(_) => ErrorCode::AuctionCloseInvalid,
            EnclaveError::Release(e) => e.code(),
            EnclaveError::ReleaseStale => ErrorCode::ReleaseStale,
            EnclaveError::ReleaseNotSold => ErrorCode::ReleaseNotSold,
            EnclaveError::ReleaseExpired => ErrorCode::ReleaseExpired,
            EnclaveError::ReleaseProofInvalid(_) => ErrorCode::ReleaseProofInvalid,
            EnclaveError::ReleaseNotWinner => ErrorCode::ReleaseNotWinner,
            EnclaveError::Rules(e) => e.code(),
            EnclaveError::RuleRefused(why) => match why {
                crate::autobid::RuleRefusal::Stale => ErrorCode::RulesStale,
                crate::autobid::RuleRefusal::Replayed => ErrorCode::RulesReplayed,
                crate::autobid::RuleRefusal::NotActive => ErrorCode::RulesNotActive,
                crate::autobid::RuleRefusal::Full => ErrorCode::EnclaveRuleBookFull,
            },
            EnclaveError::RulesMissing(_) => ErrorCode::BootRulesMissing,
            EnclaveError::BidsMissing(_) => ErrorCode::BootBidsMissing,
            EnclaveError::BatchFull => ErrorCode::EnclaveBatchFull,
            EnclaveError::ReleaseLeadMismatch(_) => ErrorCode::ReleaseLeadMismatch,
            EnclaveError::Sealing(e) => e.code(),
            EnclaveError::Attestation(e) => e.code(),
            EnclaveError::OwnDocument(_) => ErrorCode::AttestationProviderFailed,
            EnclaveError::Event(e) => e.code(),
            EnclaveError::Anchor(e) => e.code(),
        }
    }
}

impl From<EnclaveError> for WireError {
    fn from(e: EnclaveError) -> Self {
        WireError {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<BidRefusal> for EnclaveError {
    fn from(why: BidRefusal) -> Self {
        EnclaveError::BidRefused(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_errors_carry_the_code_and_message() {
        let w = WireError::from(EnclaveError::BatchTooLarge {
            max: 256,
            what: "leads",
        });
        assert_eq!(w.code, ErrorCode::ProtocolBatchTooLarge);
        assert_eq!(w.message, "at most 256 leads per request");
        let w = WireError::from(EnclaveError::from(BidRefusal::Replayed));
        assert_eq!(w.code, ErrorCode::BidReplayed);
        assert_eq!(
            WireError::from(EnclaveError::NotReady).code.http_status(),
            503
        );
    }
}
