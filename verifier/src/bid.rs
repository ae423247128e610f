//! Sealed bids (RFC 9180 HPKE to the enclave's intake key) and their buyer signature.
//!
//! * A buyer is an Ed25519 key; its **buyer id** is the public key in hex (64 chars). It also
//!   holds an X25519 HPKE key, to which a won lead is re-sealed ([`crate::release`]).
//! * Plaintext: [`BidPlaintext`] as JSON: auction id, amount, the buyer's keys and a 16-byte
//!   nonce. HPKE `info` = [`BID_INFO`]; AAD = `leadgate.bid.v1\n{origin}\n{auction_id}\n{buyer}`
//!   binds the ciphertext to this log, auction and buyer.
//! * **Commitment**: SHA-256(enc ‖ ciphertext), the only trace of a bid in the log
//!   (`bid.sealed`).
//! * The buyer signs, with Ed25519 (`verify_strict`), the text
//!   `leadgate.bid.v1\n{origin}\n{auction_id}\n{buyer}\n{commitment hex}\n`.

use crate::ErrorCode;
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::auction::TokenAmount;
use crate::envelope::{self, HpkeSecret, ENC_LEN, TAG_LEN};
use crate::merkle::Hash;
use crate::settlement::EthAddress;

/// HPKE `info` string of bids.
pub const BID_INFO: &[u8] = b"leadgate bid v1";

/// Largest bid plaintext, bytes (a bid is about 250 bytes of JSON).
pub const MAX_BID_PLAINTEXT: usize = 1024;

/// Errors for bids. Codes: `bid.*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BidError {
    /// A field is not in its encoding, or a size is out of range.
    #[error("malformed bid: {0}")]
    Malformed(&'static str),
    /// The buyer's signature does not verify.
    #[error("bid signature is invalid")]
    BadSignature,
    /// HPKE open failed: garbled ciphertext, or sealed for another auction or buyer.
    #[error("bid ciphertext does not open")]
    Decrypt,
    /// The sealed content names another auction or buyer than the envelope, or is not a bid.
    #[error("sealed bid content does not match its envelope: {0}")]
    Mismatch(&'static str),
    /// The sealed amount is over [`crate::auction::MAX_AMOUNT`] (2^53 − 1).
    #[error("bid amount over 2^53 - 1 token units")]
    AmountTooLarge,
}

impl BidError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            BidError::Malformed(_) => ErrorCode::BidMalformed,
            BidError::BadSignature => ErrorCode::BidBadSignature,
            BidError::Decrypt => ErrorCode::BidDecryptFailed,
            BidError::Mismatch(_) => ErrorCode::BidMismatch,
            BidError::AmountTooLarge => ErrorCode::AuctionAmountTooLarge,
        }
    }
}

/// What a buyer seals: JSON, all hex lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BidPlaintext {
    /// Auction id (the lead id, 32 hex chars).
    pub auction_id: String,
    /// Amount in the settlement token's smallest unit (USDC: 6 decimals), ≤ 2^53 − 1.
    pub amount: TokenAmount,
    /// Buyer id: Ed25519 public key, hex (64 chars).
    pub buyer: String,
    /// The buyer's X25519 HPKE public key, hex (64 chars): where a won lead is sealed.
    pub buyer_hpke: String,
    /// 16 random bytes, hex (32 chars): makes every sealed bid distinct (a sealed bid counts
    /// once per auction, at its first `bid.sealed`).
    pub nonce: String,
    /// The buyer's deposit address in the escrow (`0x` and 40 lowercase hex digits), which
    /// pays if this bid wins. Required by a gateway that settles on chain; sealed, so only a
    /// winner's address is ever published (in its settlement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<EthAddress>,
}

/// A sealed, signed bid as posted to `POST /v1/bids` (JSON).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedBid {
    /// Auction id, 32 hex chars.
    pub auction_id: String,
    /// Buyer id, 64 hex chars.
    pub buyer: String,
    /// HPKE encapsulated key, base64 (32 bytes).
    pub enc: String,
    /// HPKE ciphertext of the [`BidPlaintext`] JSON, base64.
    pub ciphertext: String,
    /// Ed25519 signature, base64 (64 bytes).
    pub signature: String,
}

/// A [`SealedBid`] decoded, signature not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBid {
    /// Auction id, 32 hex chars (validated).
    pub auction_id: String,
    /// Buyer public key.
    pub buyer: [u8; 32],
    /// HPKE encapsulated key.
    pub enc: [u8; ENC_LEN],
    /// HPKE ciphertext.
    pub ciphertext: Vec<u8>,
    /// SHA-256(enc ‖ ciphertext).
    pub commitment: Hash,
    signature: Signature,
}

/// A [`DecodedBid`] whose buyer signature was checked; only [`DecodedBid::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBid(DecodedBid);

impl std::ops::Deref for VerifiedBid {
    type Target = DecodedBid;
    fn deref(&self) -> &DecodedBid {
        &self.0
    }
}

/// What the enclave learns by opening a verified bid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedBidContent {
    /// The amount.
    pub amount: TokenAmount,
    /// The buyer's HPKE public key.
    pub buyer_hpke: [u8; 32],
    /// The nonce.
    pub nonce: [u8; 16],
    /// The buyer's deposit address, if the bid names one.
    pub account: Option<EthAddress>,
}

/// Whether `id` is an auction (lead) id: 32 lowercase hex chars.
pub fn is_auction_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// AAD of a bid.
pub fn bid_aad(origin: &str, auction_id: &str, buyer: &[u8; 32]) -> Vec<u8> {
    format!(
        "leadgate.bid.v1\n{origin}\n{auction_id}\n{}",
        hex::encode(buyer)
    )
    .into_bytes()
}

fn signed_text(origin: &str, auction_id: &str, buyer: &[u8; 32], commitment: &Hash) -> String {
    format!(
        "leadgate.bid.v1\n{origin}\n{auction_id}\n{}\n{}\n",
        hex::encode(buyer),
        hex::encode(commitment)
    )
}

/// Seals and signs a bid (the buyer's side) naming no deposit address. Returns the sealed bid
/// and its commitment.
///
/// # Errors
/// [`BidError::Malformed`] for a bad auction id or intake key.
pub fn seal_bid(
    buyer: &SigningKey,
    buyer_hpke: &[u8; 32],
    intake_key: &[u8; 32],
    origin: &str,
    auction_id: &str,
    amount: TokenAmount,
    nonce: [u8; 16],
) -> Result<(SealedBid, Hash), BidError> {
    seal_bid_from(
        buyer, buyer_hpke, intake_key, origin, auction_id, amount, nonce, None,
    )
}

/// [`seal_bid`] naming `account`, the buyer's deposit address that pays if the bid wins.
///
/// # Errors
/// As [`seal_bid`].
#[allow(clippy::too_many_arguments)]
pub fn seal_bid_from(
    buyer: &SigningKey,
    buyer_hpke: &[u8; 32],
    intake_key: &[u8; 32],
    origin: &str,
    auction_id: &str,
    amount: TokenAmount,
    nonce: [u8; 16],
    account: Option<EthAddress>,
) -> Result<(SealedBid, Hash), BidError> {
    let buyer_pk = buyer.verifying_key().to_bytes();
    let (enc, ciphertext) = seal_plaintext(
        &buyer_pk, buyer_hpke, intake_key, origin, auction_id, amount, nonce, account,
    )?;
    Ok(sign_sealed_bid(
        buyer,
        origin,
        auction_id,
        &enc,
        &ciphertext,
    ))
}

/// Seals the [`BidPlaintext`] of a bid by `buyer` to the intake key: `(enc, ciphertext)`.
#[allow(clippy::too_many_arguments)]
fn seal_plaintext(
    buyer: &[u8; 32],
    buyer_hpke: &[u8; 32],
    intake_key: &[u8; 32],
    origin: &str,
    auction_id: &str,
    amount: TokenAmount,
    nonce: [u8; 16],
    account: Option<EthAddress>,
) -> Result<([u8; ENC_LEN], Vec<u8>), BidError> {
    if !is_auction_id(auction_id) {
        return Err(BidError::Malformed("auction id is 32 lowercase hex digits"));
    }
    let plaintext = BidPlaintext {
        auction_id: auction_id.to_owned(),
        amount,
        buyer: hex::encode(buyer),
        buyer_hpke: hex::encode(buyer_hpke),
        nonce: hex::encode(nonce),
        account,
    };
    let json = serde_json::to_vec(&plaintext).map_err(|_| BidError::Malformed("encode"))?;
    envelope::seal(
        intake_key,
        BID_INFO,
        &bid_aad(origin, auction_id, buyer),
        &json,
    )
    .map_err(|_| BidError::Malformed("intake key"))
}

/// The enclave's side of an auto-bid ([`crate::autobid`]): seals a bid for `buyer` to the
/// enclave's own intake key, exactly as the buyer would (same plaintext, `info` and AAD), and
/// signs the bid text with the log key `log_key` in the buyer's place (the buyer did not sign
/// it; its rule set, committed in the log, is the authority). Returns the sealed bid and its
/// commitment.
///
/// # Errors
/// [`BidError::Malformed`] for a bad auction id or intake key.
#[allow(clippy::too_many_arguments)]
pub fn seal_ruled_bid(
    log_key: &SigningKey,
    buyer: &[u8; 32],
    buyer_hpke: &[u8; 32],
    intake_key: &[u8; 32],
    origin: &str,
    auction_id: &str,
    amount: TokenAmount,
    account: Option<EthAddress>,
) -> Result<(SealedBid, Hash), BidError> {
    let mut nonce = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let (enc, ciphertext) = seal_plaintext(
        buyer, buyer_hpke, intake_key, origin, auction_id, amount, nonce, account,
    )?;
    let commitment = envelope::fingerprint(&enc, &ciphertext);
    let sig = log_key.sign(signed_text(origin, auction_id, buyer, &commitment).as_bytes());
    Ok((
        SealedBid {
            auction_id: auction_id.to_owned(),
            buyer: hex::encode(buyer),
            enc: B64.encode(enc),
            ciphertext: B64.encode(ciphertext),
            signature: B64.encode(sig.to_bytes()),
        },
        commitment,
    ))
}

/// Signs already sealed bid bytes as `buyer`. Signing another buyer's ciphertext gets the
/// signer nothing: the AAD binds the original buyer, so the enclave cannot open it.
pub fn sign_sealed_bid(
    buyer: &SigningKey,
    origin: &str,
    auction_id: &str,
    enc: &[u8; ENC_LEN],
    ciphertext: &[u8],
) -> (SealedBid, Hash) {
    let buyer_pk = buyer.verifying_key().to_bytes();
    let commitment = envelope::fingerprint(enc, ciphertext);
    let sig = buyer.sign(signed_text(origin, auction_id, &buyer_pk, &commitment).as_bytes());
    (
        SealedBid {
            auction_id: auction_id.to_owned(),
            buyer: hex::encode(buyer_pk),
            enc: B64.encode(enc),
            ciphertext: B64.encode(ciphertext),
            signature: B64.encode(sig.to_bytes()),
        },
        commitment,
    )
}

/// Whether `s` is lowercase hexadecimal (`0-9a-f` only). Every hex field of the protocol is
/// lowercase (docs/PROTOCOL.md, "Conventions"): one encoding per value, so a signed text, an
/// AAD or a per-seller count never depends on how a client spelled an id.
pub fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Decodes 64 lowercase hex chars into 32 bytes; `None` for any other length, a non-hex
/// character, or an uppercase digit.
pub fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    (s.len() == 64 && is_lower_hex(s) && hex::decode_to_slice(s, &mut out).is_ok()).then_some(out)
}

impl SealedBid {
    /// Decodes the fields without checking the signature.
    ///
    /// # Errors
    /// [`BidError::Malformed`].
    pub fn decode(&self) -> Result<DecodedBid, BidError> {
        if !is_auction_id(&self.auction_id) {
            return Err(BidError::Malformed("auction id is 32 lowercase hex digits"));
        }
        let buyer = hex32(&self.buyer).ok_or(BidError::Malformed("buyer must be 64 hex digits"))?;
        let enc: [u8; ENC_LEN] = B64
            .decode(&self.enc)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(BidError::Malformed("enc must be base64 of 32 bytes"))?;
        if self.ciphertext.len() > (MAX_BID_PLAINTEXT + TAG_LEN).div_ceil(3) * 4 {
            return Err(BidError::Malformed("ciphertext too large"));
        }
        let ciphertext = B64
            .decode(&self.ciphertext)
            .map_err(|_| BidError::Malformed("ciphertext is not base64"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(BidError::Malformed("ciphertext shorter than its tag"));
        }
        let sig: [u8; 64] = B64
            .decode(&self.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(BidError::Malformed("signature must be base64 of 64 bytes"))?;
        Ok(DecodedBid {
            auction_id: self.auction_id.clone(),
            buyer,
            commitment: envelope::fingerprint(&enc, &ciphertext),
            enc,
            ciphertext,
            signature: Signature::from_bytes(&sig),
        })
    }

    /// Decodes and verifies the buyer's signature for `origin`.
    ///
    /// # Errors
    /// [`BidError::Malformed`], [`BidError::BadSignature`].
    pub fn verify(&self, origin: &str) -> Result<VerifiedBid, BidError> {
        self.decode()?.verify(origin)
    }
}

impl DecodedBid {
    /// Verifies the buyer's signature (RFC 8032 `verify_strict`).
    ///
    /// # Errors
    /// [`BidError::Malformed`] if the buyer is not an Ed25519 key, [`BidError::BadSignature`].
    pub fn verify(self, origin: &str) -> Result<VerifiedBid, BidError> {
        let key = VerifyingKey::from_bytes(&self.buyer)
            .map_err(|_| BidError::Malformed("buyer is not an Ed25519 key"))?;
        let text = signed_text(origin, &self.auction_id, &self.buyer, &self.commitment);
        key.verify_strict(text.as_bytes(), &self.signature)
            .map_err(|_| BidError::BadSignature)?;
        Ok(VerifiedBid(self))
    }
}

/// Parses bid plaintext JSON and checks it names the envelope's auction and buyer.
fn parse_plaintext(bid: &DecodedBid, plaintext: &[u8]) -> Result<OpenedBidContent, BidError> {
    /// [`BidPlaintext`] with the amount as any JSON integer up to 2^64 − 1, so that an amount
    /// over [`crate::auction::MAX_AMOUNT`] is named as such rather than "not a bid".
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wire {
        auction_id: String,
        amount: u64,
        buyer: String,
        buyer_hpke: String,
        nonce: String,
        #[serde(default, deserialize_with = "crate::intake::present")]
        account: Option<String>,
    }
    let w: Wire = serde_json::from_slice(plaintext).map_err(|_| BidError::Mismatch("not a bid"))?;
    let p = BidPlaintext {
        amount: TokenAmount::new(w.amount).map_err(|_| BidError::AmountTooLarge)?,
        auction_id: w.auction_id,
        buyer: w.buyer,
        buyer_hpke: w.buyer_hpke,
        nonce: w.nonce,
        account: w
            .account
            .map(|a| {
                a.parse::<EthAddress>()
                    .ok()
                    .filter(|a| !a.is_zero())
                    .ok_or(BidError::Mismatch(
                        "account is 0x and 40 lowercase hex digits, not the zero address",
                    ))
            })
            .transpose()?,
    };
    if p.auction_id != bid.auction_id {
        return Err(BidError::Mismatch("auction id"));
    }
    if hex32(&p.buyer) != Some(bid.buyer) {
        return Err(BidError::Mismatch("buyer"));
    }
    let buyer_hpke = hex32(&p.buyer_hpke).ok_or(BidError::Mismatch("buyer_hpke"))?;
    let mut nonce = [0u8; 16];
    if p.nonce.len() != 32
        || !is_lower_hex(&p.nonce)
        || hex::decode_to_slice(&p.nonce, &mut nonce).is_err()
    {
        return Err(BidError::Mismatch("nonce is 16 bytes of lowercase hex"));
    }
    Ok(OpenedBidContent {
        amount: p.amount,
        buyer_hpke,
        nonce,
        account: p.account,
    })
}

/// The enclave's side: opens a verified bid with the intake private key and checks that the
/// content names the envelope's auction and buyer.
///
/// # Errors
/// [`BidError::Decrypt`], [`BidError::Mismatch`].
pub fn open_bid(
    intake_secret: &HpkeSecret,
    origin: &str,
    bid: &VerifiedBid,
) -> Result<OpenedBidContent, BidError> {
    open_logged_bid(
        intake_secret,
        origin,
        bid,
        &bid.commitment,
        &bid.auction_id,
        &bid.buyer,
    )
}

/// Opens a bid the log already holds (a restarting enclave rebuilding its book): the buyer's
/// signature was checked when `bid.sealed` was appended, so only the commitment is compared.
///
/// # Errors
/// [`BidError::Mismatch`] if the bid is not the one the log committed to (commitment, auction
/// or buyer), [`BidError::Decrypt`].
pub fn open_logged_bid(
    intake_secret: &HpkeSecret,
    origin: &str,
    bid: &DecodedBid,
    logged_commitment: &Hash,
    logged_auction_id: &str,
    logged_buyer: &[u8; 32],
) -> Result<OpenedBidContent, BidError> {
    if &bid.commitment != logged_commitment
        || bid.auction_id != logged_auction_id
        || &bid.buyer != logged_buyer
    {
        return Err(BidError::Mismatch("not the logged bid"));
    }
    let plaintext = zeroize::Zeroizing::new(
        envelope::open(
            intake_secret,
            &bid.enc,
            BID_INFO,
            &bid_aad(origin, &bid.auction_id, &bid.buyer),
            &bid.ciphertext,
        )
        .map_err(|_| BidError::Decrypt)?,
    );
    parse_plaintext(bid, &plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::keypair_from_seed;

    const AUCTION: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn seal_verify_open_round_trip_and_attacks() {
        let (sk, pk) = keypair_from_seed(&[7u8; 32]);
        let buyer = SigningKey::from_bytes(&[1u8; 32]);
        let amount = TokenAmount::new(2_500_000).unwrap();
        let (bid, commitment) =
            seal_bid(&buyer, &[5u8; 32], &pk, "o", AUCTION, amount, [9u8; 16]).unwrap();
        let v = bid.verify("o").unwrap();
        assert_eq!(v.commitment, commitment);
        let opened = open_bid(&sk, "o", &v).unwrap();
        assert_eq!(opened.amount, amount);
        assert_eq!(opened.buyer_hpke, [5u8; 32]);
        assert_eq!(opened.nonce, [9u8; 16]);

        // Another origin, auction or buyer breaks the signature.
        assert_eq!(bid.verify("p"), Err(BidError::BadSignature));
        let mut moved = bid.clone();
        moved.auction_id = "f".repeat(32);
        assert_eq!(moved.verify("o"), Err(BidError::BadSignature));
        let mut swapped = bid.clone();
        swapped.buyer = hex::encode(
            SigningKey::from_bytes(&[2u8; 32])
                .verifying_key()
                .to_bytes(),
        );
        assert_eq!(swapped.verify("o"), Err(BidError::BadSignature));
        // A tampered ciphertext breaks the signature (the commitment changes).
        let mut tampered = bid.clone();
        let mut ct = B64.decode(&tampered.ciphertext).unwrap();
        ct[0] ^= 1;
        tampered.ciphertext = B64.encode(&ct);
        assert_eq!(tampered.verify("o"), Err(BidError::BadSignature));
        // Re-attributed: another buyer signs the ciphertext as its own: the AAD names the first.
        let thief = SigningKey::from_bytes(&[3u8; 32]);
        let enc: [u8; 32] = B64.decode(&bid.enc).unwrap().try_into().unwrap();
        let (stolen, c2) = sign_sealed_bid(
            &thief,
            "o",
            AUCTION,
            &enc,
            &B64.decode(&bid.ciphertext).unwrap(),
        );
        assert_eq!(c2, commitment);
        let stolen = stolen.verify("o").unwrap();
        assert_eq!(open_bid(&sk, "o", &stolen), Err(BidError::Decrypt));
        // Moved to another auction and re-signed by the same buyer: the AAD names the first.
        let (moved, _) = sign_sealed_bid(
            &buyer,
            "o",
            &"f".repeat(32),
            &enc,
            &B64.decode(&bid.ciphertext).unwrap(),
        );
        assert_eq!(
            open_bid(&sk, "o", &moved.verify("o").unwrap()),
            Err(BidError::Decrypt)
        );
        // Encodings.
        let mut bad = bid.clone();
        bad.auction_id = "XYZ".into();
        assert_eq!(bad.verify("o").unwrap_err().code(), "bid.malformed");
        let mut bad = bid;
        bad.signature = "AA==".into();
        assert_eq!(bad.verify("o").unwrap_err().code(), "bid.malformed");
    }

    #[test]
    fn content_must_name_the_envelope() {
        let buyer = SigningKey::from_bytes(&[1u8; 32]);
        let (sk, pk) = keypair_from_seed(&[7u8; 32]);
        // A buyer seals content naming another auction under this auction's AAD.
        let body = serde_json::to_vec(&BidPlaintext {
            auction_id: "f".repeat(32),
            amount: TokenAmount::new(1).unwrap(),
            buyer: hex::encode(buyer.verifying_key().to_bytes()),
            buyer_hpke: "00".repeat(32),
            nonce: "00".repeat(16),
            account: None,
        })
        .unwrap();
        let aad = bid_aad("o", AUCTION, &buyer.verifying_key().to_bytes());
        let (enc, ct) = envelope::seal(&pk, BID_INFO, &aad, &body).unwrap();
        let (bid, _) = sign_sealed_bid(&buyer, "o", AUCTION, &enc, &ct);
        assert_eq!(
            open_bid(&sk, "o", &bid.verify("o").unwrap()),
            Err(BidError::Mismatch("auction id"))
        );
    }
}
