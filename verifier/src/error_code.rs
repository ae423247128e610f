//! Every stable error code leadgate sends, in one namespace (`area.condition`), and the HTTP
//! status each maps to. The enclave puts them in its wire errors, the host in its JSON error
//! bodies (`{"error": {"code", "message"}}`), and this crate's errors report them with
//! `code()`. The status mapping is one exhaustive table: a client's mistake is 4xx, a fault
//! of the gateway (host, store or enclave) is 5xx, with `Retry-After` on 429 and 503.
//!
//! On the wire and in JSON a code is its string ([`ErrorCode::as_str`]); an unknown string
//! does not deserialize (a peer that sends one speaks another protocol version).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string, one of [`ErrorCode::ALL`].
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .description(Some(
                "Stable error code (area.condition); its HTTP status is in docs/PROTOCOL.md",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ErrorCode {}

macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = $code:literal => $status:literal, )*) => {
        /// A stable error code. See the module documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code's string, e.g. `submission.bad_signature`.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status (RFC 9110 §15) an API error with this code carries.
            pub const fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// What the code means: its documentation, one line (the third column of
            /// `docs/PROTOCOL.md`'s error table).
            pub const fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => concat!($($doc),*),)* }
            }

            /// The code whose string is `s`, if any.
            pub fn from_code(s: &str) -> Option<Self> {
                match s { $($code => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    // The HTTP request itself (host).
    /// Unknown path.
    RequestNotFound = "request.not_found" => 404,
    /// The path exists but not with this method; `Allow` lists the methods it takes
    /// (RFC 9110 §15.5.6).
    RequestMethodNotAllowed = "request.method_not_allowed" => 405,
    /// The body is not JSON, or not the expected shape.
    RequestMalformedJson = "request.malformed_json" => 400,
    /// The body has a field the endpoint does not take.
    RequestUnknownField = "request.unknown_field" => 400,
    /// A query parameter is missing or malformed.
    RequestBadQuery = "request.bad_query" => 400,
    /// A path id (lead or auction id) is malformed.
    RequestBadId = "request.bad_id" => 400,
    /// A number in the path or query is malformed or out of range.
    RequestBadNumber = "request.bad_number" => 400,
    /// A batch is empty or over its limit.
    RequestBatchSize = "request.batch_size" => 400,
    /// The body is over the size limit.
    RequestTooLarge = "request.too_large" => 413,
    /// The body is not `application/json`.
    RequestUnsupportedMediaType = "request.unsupported_media_type" => 415,
    /// The request did not arrive in time.
    RequestTimeout = "request.timeout" => 408,
    /// Too many requests from this client; retry after `Retry-After`.
    RateLimited = "rate.limited" => 429,
    /// Too many requests in flight at the gateway; retry.
    ServerBusy = "server.busy" => 503,
    /// A queue of the gateway is full; retry.
    ServerOverloaded = "server.overloaded" => 503,
    /// A fault of the host not otherwise named.
    ServerInternal = "server.internal" => 500,
    /// The host's store is failing; the gateway heals by itself.
    StorageUnavailable = "storage.unavailable" => 503,
    /// The host's scrub found damaged entries it could not repair; proofs and entries are refused until it does.
    StorageDamaged = "storage.damaged" => 503,
    /// The enclave is unreachable; the gateway heals by itself.
    EnclaveUnavailable = "enclave.unavailable" => 503,
    /// The enclave has not finished start-up.
    EnclaveNotReady = "enclave.not_ready" => 503,
    /// The enclave tracks the most bidders with open bids or unpaid wins it holds; retry
    /// once auctions close and wins are paid.
    EnclaveDepositBookFull = "enclave.deposit_book_full" => 503,
    /// The enclave holds the most active auto-bid rule sets it keeps; retry once buyers cancel
    /// some.
    EnclaveRuleBookFull = "enclave.rule_book_full" => 503,
    /// The bids the enclave made under buyers' rule sets fill one answer: the lead was not
    /// taken; send it again.
    EnclaveBatchFull = "enclave.batch_full" => 503,
    /// The enclave answered out of protocol.
    EnclaveProtocol = "enclave.protocol" => 502,
    /// An attestation nonce is not hex, or over 512 bytes.
    AttestationBadNonce = "attestation.bad_nonce" => 400,
    /// No checkpoint has been signed yet.
    CheckpointNone = "checkpoint.none" => 404,
    /// No lead with this id.
    LeadUnknown = "lead.unknown" => 404,
    /// No log entry at this index.
    EntryUnknown = "entry.unknown" => 404,
    /// No such tile in the newest checkpoint's tree (or not a C2SP tile path).
    TileUnknown = "tile.unknown" => 404,

    // A seller's sealed submission (verifier::intake, enclave intake).
    /// A field of the sealed submission is not in its encoding: `seller` not 64 lowercase hex
    /// digits or not an Ed25519 key, `enc` not base64 of 32 bytes, `ciphertext` not base64 or
    /// shorter than its 16-byte tag, `signature` not base64 of 64 bytes.
    SubmissionMalformed = "submission.malformed" => 422,
    /// The seller's Ed25519 signature does not verify.
    SubmissionBadSignature = "submission.bad_signature" => 422,
    /// The HPKE ciphertext does not open.
    SubmissionDecryptFailed = "submission.decrypt_failed" => 422,
    /// The auction terms asked for are out of range: a reserve over 2^53 − 1, a pricing rule
    /// other than `first_price` or `second_price`, a duration outside the enclave's bounds.
    SubmissionBadTerms = "submission.bad_terms" => 422,
    /// The submission's time is outside the freshness window.
    SubmissionStale = "submission.stale" => 422,
    /// The same submission was taken in before.
    SubmissionReplayed = "submission.replayed" => 409,
    /// The lead is over 16,384 bytes (the ciphertext is over 16,400: plaintext plus tag).
    LeadTooLarge = "lead.too_large" => 422,
    /// The opened lead is not JSON.
    LeadMalformedJson = "lead.malformed_json" => 422,

    // A buyer's sealed bid (verifier::bid, enclave market).
    /// A field of the sealed bid's envelope is not in its encoding: `auction_id` not 32
    /// lowercase hex digits, `buyer` not 64 lowercase hex digits or not an Ed25519 key, `enc`,
    /// `ciphertext` or `signature` not base64 of the right size.
    BidMalformed = "bid.malformed" => 422,
    /// The buyer's signature does not verify.
    BidBadSignature = "bid.bad_signature" => 422,
    /// The bid's ciphertext does not open.
    BidDecryptFailed = "bid.decrypt_failed" => 422,
    /// The opened bid is not a bid plaintext (JSON with exactly `auction_id`, `amount`,
    /// `buyer`, `buyer_hpke`, `nonce`, hex lowercase), or names another auction or buyer than
    /// its envelope.
    BidMismatch = "bid.mismatch" => 422,
    /// The same sealed bid was taken before.
    BidReplayed = "bid.replayed" => 409,
    /// The bidder's escrow deposit, less its pending withdrawal, its other open bids and its
    /// unpaid wins, does not cover the bid.
    BidOverDeposit = "bid.over_deposit" => 402,
    /// No auction with this id: no lead with it, or the lead was rejected at intake.
    AuctionUnknown = "auction.unknown" => 404,
    /// The auction holds the most bids one auction takes.
    AuctionBidLimit = "auction.bid_limit" => 409,
    /// The auction has closed.
    AuctionClosed = "auction.closed" => 409,
    /// The sealed bid's amount is over 2^53 − 1 token units.
    AuctionAmountTooLarge = "auction.amount_too_large" => 422,
    /// An auction's tie-break seed is malformed.
    AuctionBadSeed = "auction.bad_seed" => 500,
    /// An auction outcome does not follow from its bids.
    AuctionOutcomeInconsistent = "auction.outcome_inconsistent" => 500,
    /// The entries the gateway gave to close an auction are not the ones the enclave logged
    /// (a bid omitted, added, reordered or substituted).
    AuctionCloseInvalid = "auction.close_invalid" => 502,
    /// No settlement is logged for this auction: it is open, unsold or unknown, or the
    /// gateway does not settle on chain.
    SettlementUnknown = "settlement.unknown" => 404,

    // A buyer's auto-bid rule set or its cancellation (verifier::autobid, enclave rules).
    /// A field of the sealed rule set or cancellation is not in its encoding (`buyer` not 64
    /// lowercase hex digits or not an Ed25519 key, `enc`, `ciphertext`, `signature` or
    /// `commitment` not of the right size).
    RulesMalformed = "rules.malformed" => 422,
    /// The buyer's signature does not verify.
    RulesBadSignature = "rules.bad_signature" => 422,
    /// The rule set's ciphertext does not open.
    RulesDecryptFailed = "rules.decrypt_failed" => 422,
    /// The opened rule set is not one: not the JSON of a rule set, another buyer or
    /// `issued_at_ms` than its envelope, or a gate out of range.
    RulesInvalid = "rules.invalid" => 422,
    /// The rule change's `issued_at_ms` is outside the freshness window.
    RulesStale = "rules.stale" => 422,
    /// The rule change is not later (`issued_at_ms`) than the buyer's last one: a replay.
    RulesReplayed = "rules.replayed" => 409,
    /// The cancellation names a rule set that is not the buyer's active one.
    RulesNotActive = "rules.not_active" => 409,

    // A buyer's release request (verifier::release, enclave market).
    /// A field is not in its encoding.
    ReleaseMalformed = "release.malformed" => 422,
    /// The buyer's signature does not verify.
    ReleaseBadSignature = "release.bad_signature" => 422,
    /// The released envelope does not open.
    ReleaseDecryptFailed = "release.decrypt_failed" => 422,
    /// The request's time is outside the freshness window.
    ReleaseStale = "release.stale" => 422,
    /// The sealed lead given is not the auction's.
    ReleaseLeadMismatch = "release.lead_mismatch" => 422,
    /// The auction has not closed yet.
    ReleaseNotClosed = "release.not_closed" => 409,
    /// The auction closed unsold: nobody may have the lead.
    ReleaseNotSold = "release.not_sold" => 403,
    /// The requester is not the auction's winner.
    ReleaseNotWinner = "release.not_winner" => 403,
    /// The sale's settlement is not paid on chain yet (at the enclave's confirmed block);
    /// the lead is released once it is.
    ReleaseUnpaid = "release.unpaid" => 409,
    /// The auction closed longer ago than the release window.
    ReleaseExpired = "release.expired" => 410,
    /// The log entries or proofs the gateway gave for a release do not verify.
    ReleaseProofInvalid = "release.proof_invalid" => 502,

    // Verification of what a gateway serves (the verifier library). A gateway that reports
    // one of these about its own data is at fault.
    /// A Merkle proof's index is beyond its tree.
    ProofIndexOutOfRange = "proof.index_out_of_range" => 400,
    /// A consistency proof's sizes are out of order.
    ProofSizesOutOfOrder = "proof.sizes_out_of_order" => 400,
    /// A proof asked beyond the log's size.
    ProofSizeBeyondLog = "proof.size_beyond_log" => 400,
    /// A proof has the wrong number of hashes.
    ProofWrongLength = "proof.wrong_length" => 500,
    /// A proof does not lead to the expected root.
    ProofRootMismatch = "proof.root_mismatch" => 500,
    /// A tree node the proof needs is missing.
    ProofMissingNode = "proof.missing_node" => 500,
    /// An attestation document is over its size limit.
    AttestationTooLarge = "attestation.too_large" => 500,
    /// An attestation document is not COSE_Sign1 with the expected payload.
    AttestationMalformed = "attestation.malformed" => 500,
    /// An attestation document is signed with another algorithm than ES384.
    AttestationUnsupportedAlgorithm = "attestation.unsupported_algorithm" => 500,
    /// An attestation chain does not end at the pinned root.
    AttestationUntrustedRoot = "attestation.untrusted_root" => 500,
    /// An attestation chain breaks a rule of X.509 path validation.
    AttestationChainInvalid = "attestation.chain_invalid" => 500,
    /// An attestation certificate is outside its validity.
    AttestationExpired = "attestation.expired" => 500,
    /// An attestation document's signature does not verify.
    AttestationSignatureInvalid = "attestation.signature_invalid" => 500,
    /// An attestation document is from a debug-mode enclave.
    AttestationDebugMode = "attestation.debug_mode" => 500,
    /// An attestation document's PCR0 is not the expected one.
    AttestationPcrMismatch = "attestation.pcr_mismatch" => 500,
    /// An attestation document does not carry the requester's nonce.
    AttestationNonceMismatch = "attestation.nonce_mismatch" => 500,
    /// The pinned root certificate is malformed.
    AttestationBadRoot = "attestation.bad_root" => 500,
    /// An attestation document's `user_data` does not bind the keys as expected.
    AttestationKeyBinding = "attestation.key_binding" => 500,
    /// A log event is over its size limit.
    EventTooLarge = "event.too_large" => 500,
    /// A log event is not the expected JSON.
    EventMalformed = "event.malformed" => 500,
    /// A log event is not in RFC 8785 canonical form.
    EventNotCanonical = "event.not_canonical" => 500,
    /// A checkpoint is not a C2SP checkpoint body.
    CheckpointMalformed = "checkpoint.malformed" => 500,
    /// A checkpoint is for another origin.
    CheckpointWrongOrigin = "checkpoint.wrong_origin" => 500,
    /// A receipt is malformed.
    ReceiptMalformed = "receipt.malformed" => 500,
    /// A receipt's signature does not verify.
    ReceiptBadSignature = "receipt.bad_signature" => 500,
    /// A receipt is for another origin.
    ReceiptWrongOrigin = "receipt.wrong_origin" => 500,
    /// A signed note is over its size limit.
    NoteTooLarge = "note.too_large" => 500,
    /// A signed note is malformed.
    NoteMalformed = "note.malformed" => 500,
    /// A note verifier key (vkey) is malformed.
    NoteMalformedKey = "note.malformed_key" => 500,
    /// No signature of a known key on a note.
    NoteUnverified = "note.unverified" => 500,
    /// A note signature by a known key does not verify.
    NoteBadSignature = "note.bad_signature" => 500,
    /// A checkpoint anchor's EIP-712 signature does not verify.
    AnchorBadSignature = "anchor.bad_signature" => 500,

    // Faults inside the enclave, and host ↔ enclave protocol errors (never a client's doing).
    /// The attestation provider (NSM or the dev CA) failed.
    AttestationProviderFailed = "attestation.provider_failed" => 502,
    /// The attestation provider returned a document the enclave cannot read.
    AttestationProviderBadDocument = "attestation.provider_bad_document" => 502,
    /// The attestation provider was asked for more than it takes.
    AttestationProviderTooLarge = "attestation.provider_too_large" => 502,
    /// The sealed secrets do not unseal.
    SealingUnsealFailed = "sealing.unseal_failed" => 502,
    /// The dev sealer's key file cannot be read or written.
    SealingKeyFile = "sealing.key_file" => 502,
    /// KMS returned a key the enclave cannot use.
    SealingKmsBadKey = "sealing.kms_bad_key" => 502,
    /// No AWS credentials were lent for a KMS call.
    SealingNoCredentials = "sealing.no_credentials" => 502,
    /// KMS refused the call (key policy, attestation condition).
    SealingKmsDenied = "sealing.kms_denied" => 502,
    /// KMS answered with an error.
    SealingKmsFailed = "sealing.kms_failed" => 502,
    /// KMS could not be reached through the vsock proxy.
    SealingKmsUnreachable = "sealing.kms_unreachable" => 502,
    /// KMS's answer is malformed.
    SealingKmsBadResponse = "sealing.kms_bad_response" => 502,
    /// The enclave is already booted (the host reconnected to a running enclave).
    BootAlreadyBooted = "boot.already_booted" => 502,
    /// A start-up message out of order.
    BootBadState = "boot.bad_state" => 502,
    /// Sealed secrets are required and none were given.
    BootNoSecrets = "boot.no_secrets" => 502,
    /// The sealed secrets' plaintext is malformed.
    BootSecretsMalformed = "boot.secrets_malformed" => 502,
    /// The host's log tip does not verify.
    BootTipInvalid = "boot.tip_invalid" => 502,
    /// A replayed leaf does not fit the log.
    BootReplayInvalid = "boot.replay_invalid" => 502,
    /// A sealed state part does not open, is out of order, or is not this enclave's.
    BootStateInvalid = "boot.state_invalid" => 502,
    /// `Start` before the host gave every active auto-bid rule set (as the replayed log names
    /// them), or a rule set given is not the active one of its buyer or does not open.
    BootRulesMissing = "boot.rules_missing" => 502,
    /// `Start` on a settling enclave before the host gave the stored bids of every open
    /// auction with bids, or a given auction is not open, not as logged, or given twice.
    BootBidsMissing = "boot.bids_missing" => 502,
    /// The log is for another origin than the enclave's.
    BootBadOrigin = "boot.bad_origin" => 502,
    /// The enclave no longer holds the journal entry asked for.
    JournalGap = "journal.gap" => 502,
    /// The enclave's unconfirmed tail is at its bound until the host stores (publishes) more; retry.
    JournalFull = "journal.full" => 503,
    /// The host's log is behind the newest tree the enclave signed (or learned from the bucket or the chain); the enclave will not sign over it until the missing entries are back.
    LogRollback = "log.rollback" => 502,
    /// The host's log is not the tree the enclave signed at that size: a fork, refused.
    LogFork = "log.fork" => 502,
    /// `Reset` refused: the enclave holds entries the host has not confirmed durable.
    LogResetRefused = "log.reset_refused" => 502,
    /// A configured source of the newest signed tree (the bucket's checkpoint, the anchor contract) could not be read or does not verify; the enclave does not boot without it.
    LogFloorUnavailable = "log.floor_unavailable" => 502,
    /// The enclave could not read its escrow on chain (the RPC provider did not answer, or
    /// not over verified TLS).
    ChainUnavailable = "chain.unavailable" => 503,
    /// The escrow's fee terms are not the enclave's, or its withdrawal delay does not exceed
    /// the longest auction plus the settlement window; the enclave does not boot.
    SettlementEscrowMismatch = "settlement.escrow_mismatch" => 500,
    /// Another host session holds the enclave.
    SessionBusy = "session.busy" => 503,
    /// A frame that does not decode as a request.
    ProtocolMalformedFrame = "protocol.malformed_frame" => 502,
    /// A frame over the size limit.
    ProtocolFrameTooLarge = "protocol.frame_too_large" => 502,
    /// The link failed mid-frame.
    ProtocolIo = "protocol.io" => 502,
    /// More leads than a `Submit` takes.
    ProtocolBatchTooLarge = "protocol.batch_too_large" => 502,
    /// More entries than a `Replay` takes.
    ProtocolTooManyEntries = "protocol.too_many_entries" => 502,
    /// An anchor target with a contract address that is not 20 bytes.
    ProtocolBadAnchorTarget = "protocol.bad_anchor_target" => 502,
}

impl ErrorCode {
    /// Whether the caller can fix it (4xx) rather than the gateway being at fault (5xx).
    pub const fn is_client_error(self) -> bool {
        self.http_status() < 500
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A string that is not a known [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownCode(pub String);

impl std::str::FromStr for ErrorCode {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, UnknownCode> {
        ErrorCode::from_code(s).ok_or_else(|| UnknownCode(s.to_owned()))
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        ErrorCode::from_code(&s).ok_or_else(|| serde::de::Error::custom(UnknownCode(s.into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_namespaced_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for &c in ErrorCode::ALL {
            let s = c.as_str();
            assert!(seen.insert(s), "{s} twice");
            let (area, condition) = s.split_once('.').expect("area.condition");
            for part in [area, condition] {
                assert!(
                    !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{s}"
                );
            }
            assert_eq!(s.parse::<ErrorCode>(), Ok(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), c);
            assert!((400..600).contains(&c.http_status()), "{s}");
        }
        assert!(serde_json::from_str::<ErrorCode>("\"no.such_code\"").is_err());
        assert!("not_found".parse::<ErrorCode>().is_err());
    }

    /// A client never gets a fault of ours as its own mistake, nor the reverse.
    #[test]
    fn faults_are_5xx_and_mistakes_4xx() {
        for c in ErrorCode::ALL {
            let s = c.as_str();
            let area = s.split_once('.').map(|(a, _)| a).unwrap_or(s);
            if matches!(
                area,
                "boot" | "sealing" | "journal" | "session" | "protocol" | "storage" | "server"
            ) || s.starts_with("attestation.provider_")
                || s.starts_with("enclave.")
            {
                assert!(!c.is_client_error(), "{s} is a fault of ours");
            }
            // The one exception: a release's sale proof is the gateway's to give, not the buyer's.
            if matches!(
                area,
                "request" | "submission" | "bid" | "rules" | "release" | "rate"
            ) && *c != ErrorCode::ReleaseProofInvalid
            {
                assert!(c.is_client_error(), "{s} is the caller's");
            }
        }
        assert_eq!(ErrorCode::SubmissionReplayed.http_status(), 409);
        assert_eq!(ErrorCode::ReleaseNotWinner.http_status(), 403);
        assert_eq!(ErrorCode::ReleaseProofInvalid.http_status(), 502);
        assert_eq!(ErrorCode::AuctionCloseInvalid.http_status(), 502);
        assert_eq!(ErrorCode::AttestationProviderFailed.http_status(), 502);
        assert_eq!(ErrorCode::StorageUnavailable.http_status(), 503);
    }
}
