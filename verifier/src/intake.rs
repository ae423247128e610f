//! The seller's sealed lead submission (RFC 9180 HPKE) and its request signature.
//!
//! * HPKE suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, base mode, `info` =
//!   [`HPKE_INFO`]. The sealed plaintext is the lead JSON.
//! * AAD: `leadgate.lead.v1\n{origin}\n{seller hex}` binds the ciphertext to this log and seller,
//!   so it cannot be replayed to another gateway or re-attributed to another seller.
//! * The seller signs, with Ed25519, `leadgate.submit.v1\n{origin}\n{seller hex}\n
//!   {ciphertext_sha256 hex}\n{issued_at_ms}\n`, where `ciphertext_sha256 = SHA-256(enc ||
//!   ciphertext)`. A submission that asks for auction terms ([`AuctionRequest`]) signs three
//!   more lines: `{reserve}\n{duration_ms}\n{pricing}\n`, each `default` when not given, then
//!   `{payout}\n` if it names a payout address, `off_site\n` if it marks the lead off-site and
//!   `instant\n` if it asks for an instant auction.

use crate::ErrorCode;
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::auction::{Pricing, TokenAmount};
use crate::envelope::{self, HpkeSecret};
pub use crate::envelope::{ENC_LEN, TAG_LEN};
use crate::settlement::EthAddress;

/// HPKE `info` string.
pub const HPKE_INFO: &[u8] = b"leadgate intake v1";

/// Largest lead plaintext accepted, in bytes. Leadpoet leads are under 2 KiB; 16 KiB leaves room
/// for long descriptions without letting one request cost much enclave work.
pub const MAX_LEAD_BYTES: usize = 16 * 1024;

/// Errors for submissions. Codes: `submission.*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmissionError {
    /// A field is not in its encoding, or a size is out of range.
    #[error("malformed submission: {0}")]
    Malformed(&'static str),
    /// The seller's signature does not verify.
    #[error("submission signature is invalid")]
    BadSignature,
    /// HPKE open failed: garbled ciphertext, wrong key or wrong AAD.
    #[error("ciphertext does not open")]
    Decrypt,
    /// The ciphertext is longer than a [`MAX_LEAD_BYTES`] plaintext and its tag: the lead is
    /// too large, whatever it holds (the plaintext is the ciphertext less its 16-byte tag, so
    /// the size is known without a key).
    #[error("lead over {MAX_LEAD_BYTES} bytes")]
    LeadTooLarge,
    /// Asked-for auction terms outside what any gateway accepts: a reserve over 2^53 − 1 or a
    /// pricing rule other than `first_price` and `second_price`. (Bounds that are the
    /// enclave's configuration, such as the duration, are checked by the enclave, with the
    /// same code.)
    #[error("bad auction terms: {0}")]
    BadTerms(&'static str),
}

impl SubmissionError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            SubmissionError::Malformed(_) => ErrorCode::SubmissionMalformed,
            SubmissionError::BadSignature => ErrorCode::SubmissionBadSignature,
            SubmissionError::Decrypt => ErrorCode::SubmissionDecryptFailed,
            SubmissionError::LeadTooLarge => ErrorCode::LeadTooLarge,
            SubmissionError::BadTerms(_) => ErrorCode::SubmissionBadTerms,
        }
    }
}

/// A sealed, signed lead as posted to `POST /v1/leads` (JSON).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedLead {
    /// Seller Ed25519 public key, hex (64 chars).
    pub seller: String,
    /// HPKE encapsulated key, base64 (32 bytes).
    pub enc: String,
    /// HPKE ciphertext of the lead JSON, base64 (plaintext + 16 bytes).
    pub ciphertext: String,
    /// When the seller signed, Unix ms. The enclave accepts a window around its own clock.
    pub issued_at_ms: u64,
    /// Ed25519 signature, base64 (64 bytes).
    pub signature: String,
    /// The auction the seller asks for; the enclave's defaults fill what is absent. Absent,
    /// never `null` (`null` is `request.malformed_json`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub auction: Option<RequestedTerms>,
}

/// A field that may be absent but is never `null`: absent is `None` (with
/// `#[serde(default)]`), a present value must be a `T`. One encoding per request, as the
/// signed text has one (`default` for an absent term).
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Auction terms as a submission carries them in JSON (`POST /v1/leads`, field `auction`):
/// any JSON integer up to 2^64 − 1 and any pricing string parse, so that a term out of range
/// is refused by [`SealedLead::decode`] as `submission.bad_terms` (422) rather than as a
/// malformed body. Absent fields take the enclave's defaults; `null` is refused.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedTerms {
    /// Reserve price in the settlement token's smallest unit (USDC: 6 decimals), 0 to 2^53 − 1.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false, value_type = Option<TokenAmount>))]
    pub reserve: Option<u64>,
    /// How long the auction stays open after acceptance, ms (the enclave's bounds apply).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub duration_ms: Option<u64>,
    /// `first_price` or `second_price`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false, value_type = Option<Pricing>))]
    pub pricing: Option<String>,
    /// The seller's payout address for the sale's settlement: `0x` and 40 lowercase hex
    /// digits, not the zero address. Required by a gateway that settles on chain.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, pattern = "^0x[0-9a-f]{40}$")
    )]
    pub payout: Option<String>,
    /// `true`: the lead was captured off the seller's own site (bought, re-sold or
    /// aggregated); auto-bid rules skip it unless they allow off-site leads. Default `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub off_site: bool,
    /// `true`: an instant auction (ping-post) that closes within the submission's request,
    /// once the bids of buyers' rule sets are in; the answer carries the sale. Takes no
    /// `duration_ms`. Default `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub instant: bool,
}

impl From<AuctionRequest> for RequestedTerms {
    fn from(t: AuctionRequest) -> Self {
        Self {
            reserve: t.reserve.map(TokenAmount::units),
            duration_ms: t.duration_ms,
            pricing: t.pricing.map(|p| p.as_str().to_owned()),
            payout: t.payout.map(|a| a.to_string()),
            off_site: t.off_site,
            instant: t.instant,
        }
    }
}

impl RequestedTerms {
    /// The typed terms.
    ///
    /// # Errors
    /// [`SubmissionError::BadTerms`] for a reserve over 2^53 − 1, an unknown pricing rule, or a
    /// payout that is not a lowercase `0x` address or is the zero address.
    pub fn decode(&self) -> Result<AuctionRequest, SubmissionError> {
        let reserve = self
            .reserve
            .map(TokenAmount::new)
            .transpose()
            .map_err(|_| SubmissionError::BadTerms("reserve over 2^53 - 1"))?;
        let pricing = match self.pricing.as_deref() {
            None => None,
            Some("first_price") => Some(Pricing::FirstPrice),
            Some("second_price") => Some(Pricing::SecondPrice),
            Some(_) => {
                return Err(SubmissionError::BadTerms(
                    "pricing is first_price or second_price",
                ))
            }
        };
        let payout = match self.payout.as_deref() {
            None => None,
            Some(a) => match a.parse::<EthAddress>() {
                Ok(a) if !a.is_zero() => Some(a),
                Ok(_) => return Err(SubmissionError::BadTerms("payout is the zero address")),
                Err(_) => {
                    return Err(SubmissionError::BadTerms(
                        "payout is 0x and 40 lowercase hex digits",
                    ))
                }
            },
        };
        Ok(AuctionRequest {
            reserve,
            duration_ms: self.duration_ms,
            pricing,
            payout,
            off_site: self.off_site,
            instant: self.instant,
        })
    }
}

/// Auction terms a seller asks for in its signed submission, typed. Absent fields take the
/// enclave's configured defaults; the enclave refuses values outside its bounds
/// (`submission.bad_terms`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuctionRequest {
    /// Reserve price in the settlement token's smallest unit (USDC: 6 decimals).
    pub reserve: Option<TokenAmount>,
    /// How long the auction stays open after acceptance, ms.
    pub duration_ms: Option<u64>,
    /// First price (default) or second price.
    pub pricing: Option<Pricing>,
    /// Where the sale's settlement pays the seller (`docs/settlement.md`).
    pub payout: Option<EthAddress>,
    /// The seller marks the lead as captured off its own site (bought, re-sold or
    /// aggregated): buyers' auto-bid rules skip such leads unless they allow them
    /// ([`crate::autobid`]).
    pub off_site: bool,
    /// An instant auction (ping-post): it closes in the submission's own request, as soon as
    /// the bids of buyers' rule sets are in, and the answer carries the sale. Takes no
    /// duration.
    pub instant: bool,
}

impl AuctionRequest {
    /// The signed lines: the three terms, then the payout address if there is one.
    fn signed_lines(&self) -> String {
        let d = |v: Option<String>| v.unwrap_or_else(|| "default".into());
        let mut lines = format!(
            "{}\n{}\n{}\n",
            d(self.reserve.map(|r| r.units().to_string())),
            d(self.duration_ms.map(|v| v.to_string())),
            d(self.pricing.map(|p| p.as_str().to_owned())),
        );
        if let Some(a) = self.payout {
            lines.push_str(&format!("{a}\n"));
        }
        if self.off_site {
            lines.push_str("off_site\n");
        }
        if self.instant {
            lines.push_str("instant\n");
        }
        lines
    }
}

/// A [`DecodedSubmission`] whose seller signature has been checked; only
/// [`DecodedSubmission::verify`] makes one. Dereferences to the decoded fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSubmission(DecodedSubmission);

impl std::ops::Deref for VerifiedSubmission {
    type Target = DecodedSubmission;
    fn deref(&self) -> &DecodedSubmission {
        &self.0
    }
}

impl VerifiedSubmission {
    /// Lead id: hex of the first 16 bytes of `ciphertext_sha256` (32 chars).
    pub fn lead_id(&self) -> String {
        hex::encode(&self.ciphertext_sha256[..16])
    }
}

/// AAD for a lead sealed by `seller` to the log `origin`.
pub fn lead_aad(origin: &str, seller: &[u8; 32]) -> Vec<u8> {
    format!("leadgate.lead.v1\n{origin}\n{}", hex::encode(seller)).into_bytes()
}

fn signed_text(
    origin: &str,
    seller: &[u8; 32],
    ct_sha: &[u8; 32],
    issued_at_ms: u64,
    terms: Option<&AuctionRequest>,
) -> String {
    format!(
        "leadgate.submit.v1\n{origin}\n{}\n{}\n{issued_at_ms}\n{}",
        hex::encode(seller),
        hex::encode(ct_sha),
        terms.map(AuctionRequest::signed_lines).unwrap_or_default()
    )
}

fn ct_sha256(enc: &[u8], ciphertext: &[u8]) -> [u8; 32] {
    envelope::fingerprint(enc, ciphertext)
}

/// Seals and signs a lead (the seller's side).
///
/// # Errors
/// [`SubmissionError::LeadTooLarge`] over [`MAX_LEAD_BYTES`], [`SubmissionError::Malformed`]
/// if the intake key is invalid.
pub fn seal_lead(
    seller: &SigningKey,
    intake_key: &[u8; 32],
    origin: &str,
    lead_json: &[u8],
    issued_at_ms: u64,
) -> Result<SealedLead, SubmissionError> {
    seal_lead_with_terms(seller, intake_key, origin, lead_json, issued_at_ms, None)
}

/// [`seal_lead`] asking for auction terms (signed with the submission).
///
/// # Errors
/// As [`seal_lead`].
pub fn seal_lead_with_terms(
    seller: &SigningKey,
    intake_key: &[u8; 32],
    origin: &str,
    lead_json: &[u8],
    issued_at_ms: u64,
    terms: Option<AuctionRequest>,
) -> Result<SealedLead, SubmissionError> {
    if lead_json.len() > MAX_LEAD_BYTES {
        return Err(SubmissionError::LeadTooLarge);
    }
    let seller_pk = seller.verifying_key().to_bytes();
    let (enc, ciphertext) = envelope::seal(
        intake_key,
        HPKE_INFO,
        &lead_aad(origin, &seller_pk),
        lead_json,
    )
    .map_err(|e| match e {
        envelope::EnvelopeError::BadKey => SubmissionError::Malformed("intake key"),
        _ => SubmissionError::Malformed("HPKE seal failed"),
    })?;
    Ok(sign_sealed(
        seller,
        origin,
        &enc,
        &ciphertext,
        issued_at_ms,
        terms,
    ))
}

/// Signs an already sealed lead as `seller` (the second half of [`seal_lead`]). Signing
/// someone else's ciphertext gets the signer nothing: the AAD binds the original seller, so the
/// enclave cannot open it.
pub fn sign_sealed(
    seller: &SigningKey,
    origin: &str,
    enc: &[u8; ENC_LEN],
    ciphertext: &[u8],
    issued_at_ms: u64,
    terms: Option<AuctionRequest>,
) -> SealedLead {
    let seller_pk = seller.verifying_key().to_bytes();
    let sha = ct_sha256(enc, ciphertext);
    let text = signed_text(origin, &seller_pk, &sha, issued_at_ms, terms.as_ref());
    let sig = seller.sign(text.as_bytes());
    SealedLead {
        seller: hex::encode(seller_pk),
        enc: B64.encode(enc),
        ciphertext: B64.encode(ciphertext),
        issued_at_ms,
        signature: B64.encode(sig.to_bytes()),
        auction: terms.map(RequestedTerms::from),
    }
}

/// A [`SealedLead`] decoded into bytes, its signature not yet checked: what an untrusted relay
/// (the host) may learn from a submission without any key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedSubmission {
    /// Seller public key.
    pub seller: [u8; 32],
    /// HPKE encapsulated key.
    pub enc: [u8; ENC_LEN],
    /// HPKE ciphertext.
    pub ciphertext: Vec<u8>,
    /// Unix ms.
    pub issued_at_ms: u64,
    /// SHA-256(enc || ciphertext).
    pub ciphertext_sha256: [u8; 32],
    /// The auction terms asked for.
    pub auction: Option<AuctionRequest>,
    signature: ed25519_dalek::Signature,
}

impl SealedLead {
    /// Decodes the fields (hex, base64, sizes) without checking the signature or whether the
    /// seller key is a valid Ed25519 point (both cost a curve operation; [`DecodedSubmission::verify`]
    /// does them).
    ///
    /// # Errors
    /// [`SubmissionError::Malformed`], [`SubmissionError::LeadTooLarge`],
    /// [`SubmissionError::BadTerms`].
    pub fn decode(&self) -> Result<DecodedSubmission, SubmissionError> {
        let mut seller = [0u8; 32];
        if self.seller.len() != 64 {
            return Err(SubmissionError::Malformed("seller must be 64 hex digits"));
        }
        if !crate::bid::is_lower_hex(&self.seller) {
            return Err(SubmissionError::Malformed("seller is not lowercase hex"));
        }
        hex::decode_to_slice(&self.seller, &mut seller)
            .map_err(|_| SubmissionError::Malformed("seller is not hex"))?;
        let enc: [u8; ENC_LEN] = B64
            .decode(&self.enc)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(SubmissionError::Malformed("enc must be base64 of 32 bytes"))?;
        // Base64 of MAX_LEAD_BYTES + TAG_LEN bytes is at most this long: anything longer
        // holds a larger lead, whatever its characters (checked before decoding it).
        if self.ciphertext.len() > (MAX_LEAD_BYTES + TAG_LEN).div_ceil(3) * 4 {
            return Err(SubmissionError::LeadTooLarge);
        }
        let ciphertext = B64
            .decode(&self.ciphertext)
            .map_err(|_| SubmissionError::Malformed("ciphertext is not base64"))?;
        if ciphertext.len() > MAX_LEAD_BYTES + TAG_LEN {
            return Err(SubmissionError::LeadTooLarge);
        }
        if ciphertext.len() < TAG_LEN {
            return Err(SubmissionError::Malformed(
                "ciphertext shorter than its tag",
            ));
        }
        let sig: [u8; 64] = B64
            .decode(&self.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(SubmissionError::Malformed(
                "signature must be base64 of 64 bytes",
            ))?;
        Ok(DecodedSubmission {
            seller,
            ciphertext_sha256: ct_sha256(&enc, &ciphertext),
            enc,
            ciphertext,
            issued_at_ms: self.issued_at_ms,
            auction: self
                .auction
                .as_ref()
                .map(RequestedTerms::decode)
                .transpose()?,
            signature: ed25519_dalek::Signature::from_bytes(&sig),
        })
    }

    /// Decodes the fields and verifies the seller's signature for `origin`.
    ///
    /// # Errors
    /// [`SubmissionError::Malformed`], [`SubmissionError::BadSignature`].
    pub fn verify(&self, origin: &str) -> Result<VerifiedSubmission, SubmissionError> {
        self.decode()?.verify(origin)
    }
}

impl DecodedSubmission {
    /// Verifies the seller's Ed25519 signature (RFC 8032, `verify_strict`: no small-order keys
    /// or R, canonical S) over the submission text for `origin`.
    ///
    /// # Errors
    /// [`SubmissionError::Malformed`] if the seller key is not an Ed25519 point,
    /// [`SubmissionError::BadSignature`].
    pub fn verify(self, origin: &str) -> Result<VerifiedSubmission, SubmissionError> {
        let seller_key = VerifyingKey::from_bytes(&self.seller)
            .map_err(|_| SubmissionError::Malformed("seller is not an Ed25519 key"))?;
        self.verify_with_key(origin, &seller_key)
    }

    /// [`DecodedSubmission::verify`] with the seller key already decompressed (from a cache).
    ///
    /// # Errors
    /// [`SubmissionError::BadSignature`], also if `seller_key` is not this submission's seller.
    pub fn verify_with_key(
        self,
        origin: &str,
        seller_key: &VerifyingKey,
    ) -> Result<VerifiedSubmission, SubmissionError> {
        if seller_key.as_bytes() != &self.seller {
            return Err(SubmissionError::BadSignature);
        }
        let text = signed_text(
            origin,
            &self.seller,
            &self.ciphertext_sha256,
            self.issued_at_ms,
            self.auction.as_ref(),
        );
        seller_key
            .verify_strict(text.as_bytes(), &self.signature)
            .map_err(|_| SubmissionError::BadSignature)?;
        Ok(VerifiedSubmission(self))
    }
}

/// The enclave's side: opens a verified submission with the intake private key.
///
/// # Errors
/// [`SubmissionError::Decrypt`] if the ciphertext, key or AAD is wrong.
pub fn open_lead(
    intake_secret: &HpkeSecret,
    origin: &str,
    sub: &VerifiedSubmission,
) -> Result<Vec<u8>, SubmissionError> {
    envelope::open(
        intake_secret,
        &sub.enc,
        HPKE_INFO,
        &lead_aad(origin, &sub.seller),
        &sub.ciphertext,
    )
    .map_err(|_| SubmissionError::Decrypt)
}

/// Derives an X25519 intake key pair from 32 secret bytes (RFC 9180 §7.1.3 DeriveKeyPair).
pub fn intake_keypair_from_seed(seed: &[u8; 32]) -> (HpkeSecret, [u8; 32]) {
    envelope::keypair_from_seed(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_verify_open_round_trip_and_attacks() {
        let (sk, pk) = intake_keypair_from_seed(&[7u8; 32]);
        let seller = SigningKey::from_bytes(&[1u8; 32]);
        let lead = br#"{"email":"a@b.co"}"#;
        let sealed = seal_lead(&seller, &pk, "o", lead, 1000).unwrap();
        let sub = sealed.verify("o").unwrap();
        assert_eq!(open_lead(&sk, "o", &sub).unwrap(), lead);
        assert_eq!(sub.lead_id().len(), 32);

        // A cached key must be the submission's own seller key.
        let other_key = SigningKey::from_bytes(&[4u8; 32]).verifying_key();
        assert_eq!(
            sealed.decode().unwrap().verify_with_key("o", &other_key),
            Err(SubmissionError::BadSignature)
        );
        assert_eq!(
            sealed
                .decode()
                .unwrap()
                .verify_with_key("o", &seller.verifying_key())
                .unwrap(),
            sub
        );
        // Wrong origin: the signature covers it.
        assert_eq!(sealed.verify("p"), Err(SubmissionError::BadSignature));
        // Re-attributed to another seller: signature fails.
        let mut other = sealed.clone();
        other.seller = hex::encode(
            SigningKey::from_bytes(&[2u8; 32])
                .verifying_key()
                .to_bytes(),
        );
        assert_eq!(other.verify("o"), Err(SubmissionError::BadSignature));
        // Garbled ciphertext: signature fails first; if re-signed by an attacker-seller, AAD fails.
        let mut garbled = sealed.clone();
        let mut ct = B64.decode(&garbled.ciphertext).unwrap();
        ct[3] ^= 1;
        garbled.ciphertext = B64.encode(&ct);
        assert_eq!(garbled.verify("o"), Err(SubmissionError::BadSignature));
        // Another seller re-signing the same ciphertext: the AAD binds the original seller.
        let thief = SigningKey::from_bytes(&[9u8; 32]);
        let thief_pk = thief.verifying_key().to_bytes();
        let enc = B64.decode(&sealed.enc).unwrap();
        let ct = B64.decode(&sealed.ciphertext).unwrap();
        let sha = ct_sha256(&enc, &ct);
        let stolen = SealedLead {
            seller: hex::encode(thief_pk),
            signature: B64.encode(
                thief
                    .sign(signed_text("o", &thief_pk, &sha, 1000, None).as_bytes())
                    .to_bytes(),
            ),
            ..sealed.clone()
        };
        let sub = stolen.verify("o").unwrap();
        assert_eq!(open_lead(&sk, "o", &sub), Err(SubmissionError::Decrypt));
        // Truncated ciphertext and bad encodings.
        let mut short = sealed.clone();
        short.ciphertext = B64.encode([0u8; 4]);
        assert_eq!(
            short.verify("o").unwrap_err().code(),
            "submission.malformed"
        );
        let mut bad = sealed.clone();
        bad.enc = "!!".into();
        assert_eq!(bad.verify("o").unwrap_err().code(), "submission.malformed");
        // Terms are signed: adding, removing or changing them breaks the signature.
        let terms = AuctionRequest {
            reserve: Some(TokenAmount::new(5).unwrap()),
            duration_ms: None,
            pricing: Some(Pricing::SecondPrice),
            payout: None,
            off_site: false,
            instant: false,
        };
        let mut added = sealed.clone();
        added.auction = Some(terms.into());
        assert_eq!(added.verify("o"), Err(SubmissionError::BadSignature));
        let with = seal_lead_with_terms(&seller, &pk, "o", lead, 1000, Some(terms)).unwrap();
        assert_eq!(with.verify("o").unwrap().auction, Some(terms));
        let mut stripped = with.clone();
        stripped.auction = None;
        assert_eq!(stripped.verify("o"), Err(SubmissionError::BadSignature));
        let mut raised = with;
        raised.auction = Some(
            AuctionRequest {
                reserve: Some(TokenAmount::new(6).unwrap()),
                ..terms
            }
            .into(),
        );
        assert_eq!(raised.verify("o"), Err(SubmissionError::BadSignature));
    }
}
