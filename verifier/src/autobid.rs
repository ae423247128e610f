//! Auto-bid rule sets: a buyer's standing order, sealed to the enclave, under which the
//! enclave bids for the buyer on every accepted lead the rules match (`docs/PROTOCOL.md` §4,
//! "Auto-bid rules").
//!
//! * Plaintext: [`RuleSet`] as JSON (at most [`MAX_RULES_PLAINTEXT`] bytes): the buyer's keys
//!   and deposit account, the seven gates, a maximum bid and a daily budget.
//! * Sealed with RFC 9180 HPKE to the enclave's intake key (the suite of [`crate::envelope`]),
//!   `info` = [`RULES_INFO`], AAD = `leadgate.rules.v1\n{origin}\n{buyer}`.
//! * **Commitment**: SHA-256(enc ‖ ciphertext), the only trace of a rule set in the log
//!   (`rules.set`, `rules.cancelled`, and the `rules` field of the bids made under it).
//! * The buyer signs, with Ed25519 (`verify_strict`),
//!   `leadgate.rules.v1\n{origin}\n{buyer}\n{commitment hex}\n{issued_at_ms}\n`; a
//!   cancellation ([`RulesCancel`]) signs
//!   `leadgate.rules.cancel.v1\n{origin}\n{buyer}\n{commitment hex}\n{issued_at_ms}\n`.
//!
//! What the enclave does with an active rule set, exactly (so that a buyer holding its rule set
//! can check every decision from the log, `leadgate verify auction --my-rules`): for each
//! `lead.accepted` after the rule set's `rules.set` and before the buyer's next `rules.set` or
//! `rules.cancelled`, if [`Rules::matches`] the lead and the bids the rule set already made
//! in the lead's UTC day (of the enclave clock, [`budget_day`]) leave room for one more
//! `max_bid` within `daily_budget`, the enclave bids `max_bid` for the buyer in that auction,
//! provided the buyer's escrow deposit covers it on a settling gateway. The budget counts bids
//! made, not leads won: the buyer can never be charged more than its daily budget in a day,
//! whatever wins, and the count is a function of the log alone.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::auction::TokenAmount;
use crate::bid::hex32;
use crate::envelope::{self, HpkeSecret, ENC_LEN, TAG_LEN};
use crate::event::{LeadAccepted, Listing};
use crate::merkle::Hash;
use crate::settlement::EthAddress;
use crate::ErrorCode;

/// HPKE `info` string of rule sets.
pub const RULES_INFO: &[u8] = b"leadgate rules v1";

/// Largest rule set plaintext, bytes.
pub const MAX_RULES_PLAINTEXT: usize = 4096;

/// Most entries in one gate's list (verticals, countries, states, field values).
pub const MAX_GATE_ITEMS: usize = 64;

/// Most field filters in a rule set.
pub const MAX_FIELD_FILTERS: usize = 16;

/// A day of the budget, Unix ms: budgets reset at 00:00 UTC of the enclave clock.
pub const DAY_MS: u64 = 86_400_000;

/// The score reason that makes a lead "verified" for the `verified_only` gate: the contact's
/// email is on the company website's domain.
pub const VERIFIED_REASON: &str = "email_domain_matches_website";

/// USPS state and territory codes (the suffix of a listing's `region`, `City, ST`): a region
/// ending in one of them is in country `US`.
pub const US_STATES: [&str; 62] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "AS", "GU", "MP", "PR", "VI", "FM", "MH", "PW", "AA", "AE", "AP",
];

/// Errors for rule sets and cancellations. Codes: `rules.*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// A field of the envelope is not in its encoding, or a size is out of range.
    #[error("malformed rule set: {0}")]
    Malformed(&'static str),
    /// The buyer's signature does not verify.
    #[error("rule set signature is invalid")]
    BadSignature,
    /// HPKE open failed: garbled ciphertext, or sealed for another log or buyer.
    #[error("rule set ciphertext does not open")]
    Decrypt,
    /// The opened plaintext is not a rule set, names another buyer than its envelope, or a
    /// gate is out of range.
    #[error("invalid rule set: {0}")]
    Invalid(String),
}

impl RulesError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            RulesError::Malformed(_) => ErrorCode::RulesMalformed,
            RulesError::BadSignature => ErrorCode::RulesBadSignature,
            RulesError::Decrypt => ErrorCode::RulesDecryptFailed,
            RulesError::Invalid(_) => ErrorCode::RulesInvalid,
        }
    }
}

fn invalid(m: impl Into<String>) -> RulesError {
    RulesError::Invalid(m.into())
}

/// A listing field a [`FieldFilter`] tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingField {
    /// [`Listing::industry`].
    Industry,
    /// [`Listing::sub_industry`].
    SubIndustry,
    /// [`Listing::region`].
    Region,
    /// [`Listing::role`].
    Role,
    /// [`Listing::company_type`].
    CompanyType,
    /// [`Listing::ownership_type`].
    OwnershipType,
    /// [`Listing::number_of_locations`].
    NumberOfLocations,
    /// [`Listing::founded_year`].
    FoundedYear,
}

enum FieldValue<'a> {
    Text(Option<&'a str>),
    Number(Option<u64>),
}

impl ListingField {
    fn of(self, l: &Listing) -> FieldValue<'_> {
        match self {
            ListingField::Industry => FieldValue::Text(Some(&l.industry)),
            ListingField::SubIndustry => FieldValue::Text(Some(&l.sub_industry)),
            ListingField::Region => FieldValue::Text(Some(&l.region)),
            ListingField::Role => FieldValue::Text(Some(&l.role)),
            ListingField::CompanyType => FieldValue::Text(l.company_type.as_deref()),
            ListingField::OwnershipType => FieldValue::Text(l.ownership_type.as_deref()),
            ListingField::NumberOfLocations => FieldValue::Number(l.number_of_locations),
            ListingField::FoundedYear => FieldValue::Number(l.founded_year),
        }
    }

    fn is_number(self) -> bool {
        matches!(
            self,
            ListingField::NumberOfLocations | ListingField::FoundedYear
        )
    }
}

/// A field-level filter: a text field equal to one of `any_of` or containing `contains`
/// (both case-insensitive), or a number field within `min ..= max`. A lead without the field
/// fails the filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldFilter {
    /// The field.
    pub field: ListingField,
    /// Text fields: the value is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_of: Option<Vec<String>>,
    /// Text fields: the value contains this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// Number fields: at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    /// Number fields: at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

/// A buyer's auto-bid rule set, as it is sealed (JSON; all hex lowercase). The seven gates,
/// all of which a lead must pass:
///
/// 1. `verticals`: `*` (any), `Industry` or `Industry/*` (any sub-industry), or
///    `Industry/Sub-industry`, case-insensitive, against the listing's `industry` and
///    `sub_industry`;
/// 2. `countries`: ISO 3166-1 alpha-2 codes; empty for any. Listings carry no country: a
///    region ending in a USPS code ([`US_STATES`]) is in `US`, any other region in none;
/// 3. `states_include` / `states_exclude`: USPS codes of the region (`City, ST`); an empty
///    include list takes any state;
/// 4. `min_score`: the lead's intake score (0–100) is at least this;
/// 5. `off_site`: `false` skips leads the seller marked off-site;
/// 6. `verified_only`: `true` takes only leads scored [`VERIFIED_REASON`];
/// 7. `fields`: every [`FieldFilter`] passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// Buyer id: Ed25519 public key, hex (64 chars).
    pub buyer: String,
    /// The buyer's X25519 HPKE public key, hex (64 chars): where a won lead is sealed.
    pub buyer_hpke: String,
    /// The buyer's escrow deposit address, which pays the bids made under this rule set
    /// (required by a settling gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<EthAddress>,
    /// Unix ms, buyer's clock: within the enclave's freshness window, and later than the
    /// buyer's last rule change.
    pub issued_at_ms: u64,
    /// Gate 1.
    pub verticals: Vec<String>,
    /// Gate 2.
    #[serde(default)]
    pub countries: Vec<String>,
    /// Gate 3, included states.
    #[serde(default)]
    pub states_include: Vec<String>,
    /// Gate 3, excluded states.
    #[serde(default)]
    pub states_exclude: Vec<String>,
    /// Gate 4, 0–100.
    #[serde(default)]
    pub min_score: u8,
    /// Gate 5.
    #[serde(default)]
    pub off_site: bool,
    /// Gate 6.
    #[serde(default)]
    pub verified_only: bool,
    /// Gate 7.
    #[serde(default)]
    pub fields: Vec<FieldFilter>,
    /// What the enclave bids on a matching lead, smallest token units, above 0.
    pub max_bid: TokenAmount,
    /// The most the rule set bids in one UTC day, smallest token units: the sum of its bids
    /// that day (won or not) stays within it.
    pub daily_budget: TokenAmount,
}

enum Vertical {
    Any,
    Industry(String),
    Exact(String, String),
}

enum Filter {
    Text {
        field: ListingField,
        any_of: Option<Vec<String>>,
        contains: Option<String>,
    },
    Number {
        field: ListingField,
        min: u64,
        max: u64,
    },
}

/// A [`RuleSet`] checked and normalised for matching (lowercased text, uppercased codes).
pub struct Rules {
    /// Buyer public key.
    pub buyer: [u8; 32],
    /// Buyer HPKE public key.
    pub buyer_hpke: [u8; 32],
    /// Deposit account.
    pub account: Option<EthAddress>,
    /// The rule set's `issued_at_ms`.
    pub issued_at_ms: u64,
    /// Bid amount.
    pub max_bid: TokenAmount,
    /// Daily budget.
    pub daily_budget: TokenAmount,
    verticals: Vec<Vertical>,
    countries: Vec<String>,
    states_include: Vec<String>,
    states_exclude: Vec<String>,
    min_score: u8,
    off_site: bool,
    verified_only: bool,
    fields: Vec<Filter>,
}

/// The UTC day (of Unix ms `time_ms`) a bid counts against: `time_ms / 86,400,000`.
pub fn budget_day(time_ms: u64) -> u64 {
    time_ms / DAY_MS
}

/// The USPS code a region `City, ST` ends in, uppercased; `None` if it ends otherwise.
pub fn region_state(region: &str) -> Option<String> {
    let (_, st) = region.rsplit_once(", ")?;
    let st = st.trim();
    (st.len() == 2 && st.bytes().all(|b| b.is_ascii_alphabetic())).then(|| st.to_ascii_uppercase())
}

fn list(name: &str, items: &[String]) -> Result<(), RulesError> {
    if items.len() > MAX_GATE_ITEMS {
        return Err(invalid(format!("{name}: at most {MAX_GATE_ITEMS} entries")));
    }
    if items.iter().any(|i| i.is_empty() || i.len() > 120) {
        return Err(invalid(format!("{name}: entries are 1 to 120 bytes")));
    }
    Ok(())
}

fn codes(name: &str, items: &[String]) -> Result<Vec<String>, RulesError> {
    list(name, items)?;
    items
        .iter()
        .map(|c| {
            (c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
                .then(|| c.clone())
                .ok_or_else(|| invalid(format!("{name}: {c:?} is not two uppercase letters")))
        })
        .collect()
}

impl RuleSet {
    /// A rule set of `buyer` (hex) sealing won leads to `buyer_hpke` (hex), issued at
    /// `issued_at_ms`, bidding `max_bid` within `daily_budget` a day (token units) on
    /// `verticals`, with every other gate open and no deposit account. Fields are public:
    /// set the other gates on the value.
    pub fn open(
        buyer: &[u8; 32],
        buyer_hpke: &[u8; 32],
        issued_at_ms: u64,
        verticals: &[&str],
        max_bid: TokenAmount,
        daily_budget: TokenAmount,
    ) -> Self {
        Self {
            buyer: hex::encode(buyer),
            buyer_hpke: hex::encode(buyer_hpke),
            account: None,
            issued_at_ms,
            verticals: verticals.iter().map(|v| (*v).to_owned()).collect(),
            countries: Vec::new(),
            states_include: Vec::new(),
            states_exclude: Vec::new(),
            min_score: 0,
            off_site: false,
            verified_only: false,
            fields: Vec::new(),
            max_bid,
            daily_budget,
        }
    }

    /// Checks every gate and normalises the rule set for [`Rules::matches`].
    ///
    /// # Errors
    /// [`RulesError::Invalid`] naming the first field out of range: keys not 64 lowercase hex
    /// digits, no vertical, a list over [`MAX_GATE_ITEMS`], a code not two uppercase letters,
    /// a score over 100, a filter without a condition or with one its field does not take,
    /// a zero bid, or a budget below the bid.
    pub fn compile(&self) -> Result<Rules, RulesError> {
        let buyer = hex32(&self.buyer).ok_or_else(|| invalid("buyer is 64 lowercase hex"))?;
        let buyer_hpke =
            hex32(&self.buyer_hpke).ok_or_else(|| invalid("buyer_hpke is 64 lowercase hex"))?;
        if self.account.is_some_and(|a| a.is_zero()) {
            return Err(invalid("account is the zero address"));
        }
        if self.verticals.is_empty() {
            return Err(invalid("verticals: at least one (\"*\" for any)"));
        }
        list("verticals", &self.verticals)?;
        let verticals = self
            .verticals
            .iter()
            .map(|v| {
                let v = v.to_lowercase();
                match v.split_once('/') {
                    _ if v == "*" => Vertical::Any,
                    None => Vertical::Industry(v),
                    Some((i, "*")) => Vertical::Industry(i.to_owned()),
                    Some((i, s)) => Vertical::Exact(i.to_owned(), s.to_owned()),
                }
            })
            .collect();
        let countries = codes("countries", &self.countries)?;
        let states_include = codes("states_include", &self.states_include)?;
        let states_exclude = codes("states_exclude", &self.states_exclude)?;
        if self.min_score > 100 {
            return Err(invalid("min_score is 0 to 100"));
        }
        if self.fields.len() > MAX_FIELD_FILTERS {
            return Err(invalid(format!(
                "fields: at most {MAX_FIELD_FILTERS} filters"
            )));
        }
        let mut fields = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            let name = format!("fields ({:?})", f.field);
            if f.field.is_number() {
                if f.any_of.is_some() || f.contains.is_some() {
                    return Err(invalid(format!("{name}: a number takes min and max")));
                }
                let (min, max) = (f.min.unwrap_or(0), f.max.unwrap_or(u64::MAX));
                if (f.min.is_none() && f.max.is_none()) || min > max {
                    return Err(invalid(format!("{name}: min and/or max, min <= max")));
                }
                fields.push(Filter::Number {
                    field: f.field,
                    min,
                    max,
                });
            } else {
                if f.min.is_some() || f.max.is_some() {
                    return Err(invalid(format!("{name}: text takes any_of or contains")));
                }
                if f.any_of.is_none() && f.contains.is_none() {
                    return Err(invalid(format!("{name}: any_of and/or contains")));
                }
                if let Some(a) = &f.any_of {
                    list(&name, a)?;
                }
                if f.contains
                    .as_ref()
                    .is_some_and(|c| c.is_empty() || c.len() > 120)
                {
                    return Err(invalid(format!("{name}: contains is 1 to 120 bytes")));
                }
                fields.push(Filter::Text {
                    field: f.field,
                    any_of: f
                        .any_of
                        .as_ref()
                        .map(|a| a.iter().map(|s| s.to_lowercase()).collect()),
                    contains: f.contains.as_ref().map(|c| c.to_lowercase()),
                });
            }
        }
        if self.max_bid.units() == 0 {
            return Err(invalid("max_bid is above 0"));
        }
        if self.daily_budget < self.max_bid {
            return Err(invalid("daily_budget is at least max_bid"));
        }
        Ok(Rules {
            buyer,
            buyer_hpke,
            account: self.account,
            issued_at_ms: self.issued_at_ms,
            max_bid: self.max_bid,
            daily_budget: self.daily_budget,
            verticals,
            countries,
            states_include,
            states_exclude,
            min_score: self.min_score,
            off_site: self.off_site,
            verified_only: self.verified_only,
            fields,
        })
    }
}

/// What the gates read from a lead that takes work to derive, derived once per lead and
/// shared by every rule set evaluated on it: the region's USPS state (upper case), the
/// listing's country, the industry and sub-industry in lower case, and whether the lead is
/// verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadFacts {
    state: Option<String>,
    country: Option<&'static str>,
    industry: String,
    sub_industry: String,
    verified: bool,
}

impl LeadFacts {
    /// The facts of `lead`.
    pub fn of(lead: &LeadAccepted) -> Self {
        let state = region_state(&lead.listing.region);
        let country = state
            .as_deref()
            .and_then(|st| US_STATES.contains(&st).then_some("US"));
        Self {
            state,
            country,
            industry: lead.listing.industry.to_lowercase(),
            sub_industry: lead.listing.sub_industry.to_lowercase(),
            verified: lead.reasons.iter().any(|r| r == VERIFIED_REASON),
        }
    }
}

impl Rules {
    /// Whether `lead` passes all seven gates (see [`RuleSet`]).
    pub fn matches(&self, lead: &LeadAccepted) -> bool {
        self.matches_with(lead, &LeadFacts::of(lead))
    }

    /// [`Rules::matches`] with `facts` already derived from `lead` ([`LeadFacts::of`]), for
    /// evaluating many rule sets on one lead.
    pub fn matches_with(&self, lead: &LeadAccepted, facts: &LeadFacts) -> bool {
        if lead.score < self.min_score
            || (lead.auction.off_site && !self.off_site)
            || (self.verified_only && !facts.verified)
        {
            return false;
        }
        if !self.verticals.iter().any(|v| match v {
            Vertical::Any => true,
            Vertical::Industry(i) => facts.industry == *i,
            Vertical::Exact(i, s) => facts.industry == *i && facts.sub_industry == *s,
        }) {
            return false;
        }
        if !self.countries.is_empty()
            && !facts
                .country
                .is_some_and(|c| self.countries.iter().any(|x| x == c))
        {
            return false;
        }
        let state = facts.state.as_ref();
        if !self.states_include.is_empty()
            && !state.is_some_and(|s| self.states_include.contains(s))
        {
            return false;
        }
        if state.is_some_and(|s| self.states_exclude.contains(s)) {
            return false;
        }
        let l = &lead.listing;
        self.fields.iter().all(|f| match f {
            Filter::Text {
                field,
                any_of,
                contains,
            } => match field.of(l) {
                FieldValue::Text(Some(v)) => {
                    let v = v.to_lowercase();
                    any_of.as_ref().is_none_or(|a| a.contains(&v))
                        && contains.as_ref().is_none_or(|c| v.contains(c.as_str()))
                }
                _ => false,
            },
            Filter::Number { field, min, max } => match field.of(l) {
                FieldValue::Number(Some(n)) => (*min..=*max).contains(&n),
                _ => false,
            },
        })
    }

    /// Whether a rule set that made `bids_today` bids today may make one more.
    pub fn budget_allows(&self, bids_today: u32) -> bool {
        u64::from(bids_today)
            .checked_add(1)
            .and_then(|n| n.checked_mul(self.max_bid.units()))
            .is_some_and(|spent| spent <= self.daily_budget.units())
    }
}

/// A sealed, signed rule set as posted to `POST /v1/rules` (JSON).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedRuleSet {
    /// Buyer id, 64 hex chars.
    pub buyer: String,
    /// The rule set's `issued_at_ms` (Unix ms), also inside the sealed plaintext.
    pub issued_at_ms: u64,
    /// HPKE encapsulated key, base64 (32 bytes).
    pub enc: String,
    /// HPKE ciphertext of the [`RuleSet`] JSON, base64.
    pub ciphertext: String,
    /// Ed25519 signature, base64 (64 bytes).
    pub signature: String,
}

/// A [`SealedRuleSet`] whose signature was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRuleSet {
    /// Buyer public key.
    pub buyer: [u8; 32],
    /// `issued_at_ms`.
    pub issued_at_ms: u64,
    /// HPKE encapsulated key.
    pub enc: [u8; ENC_LEN],
    /// HPKE ciphertext.
    pub ciphertext: Vec<u8>,
    /// SHA-256(enc ‖ ciphertext).
    pub commitment: Hash,
}

/// AAD of a rule set.
pub fn rules_aad(origin: &str, buyer: &[u8; 32]) -> Vec<u8> {
    format!("leadgate.rules.v1\n{origin}\n{}", hex::encode(buyer)).into_bytes()
}

fn set_text(origin: &str, buyer: &[u8; 32], commitment: &Hash, issued_at_ms: u64) -> String {
    format!(
        "leadgate.rules.v1\n{origin}\n{}\n{}\n{issued_at_ms}\n",
        hex::encode(buyer),
        hex::encode(commitment)
    )
}

fn cancel_text(origin: &str, buyer: &[u8; 32], commitment: &Hash, issued_at_ms: u64) -> String {
    format!(
        "leadgate.rules.cancel.v1\n{origin}\n{}\n{}\n{issued_at_ms}\n",
        hex::encode(buyer),
        hex::encode(commitment)
    )
}

/// Seals and signs a rule set (the buyer's side). The rule set's `buyer` must be `buyer`'s
/// key. Returns the sealed rule set and its commitment.
///
/// # Errors
/// [`RulesError::Invalid`] for a rule set [`RuleSet::compile`] refuses or naming another
/// buyer; [`RulesError::Malformed`] for a bad intake key or a plaintext over
/// [`MAX_RULES_PLAINTEXT`].
pub fn seal_rules(
    buyer: &SigningKey,
    intake_key: &[u8; 32],
    origin: &str,
    rules: &RuleSet,
) -> Result<(SealedRuleSet, Hash), RulesError> {
    let buyer_pk = buyer.verifying_key().to_bytes();
    if rules.compile()?.buyer != buyer_pk {
        return Err(invalid("the rule set names another buyer"));
    }
    let json = serde_json::to_vec(rules).map_err(|_| RulesError::Malformed("encode"))?;
    if json.len() > MAX_RULES_PLAINTEXT {
        return Err(RulesError::Malformed("rule set over 4,096 bytes"));
    }
    let (enc, ciphertext) =
        envelope::seal(intake_key, RULES_INFO, &rules_aad(origin, &buyer_pk), &json)
            .map_err(|_| RulesError::Malformed("intake key"))?;
    let commitment = envelope::fingerprint(&enc, &ciphertext);
    let sig = buyer.sign(set_text(origin, &buyer_pk, &commitment, rules.issued_at_ms).as_bytes());
    Ok((
        SealedRuleSet {
            buyer: hex::encode(buyer_pk),
            issued_at_ms: rules.issued_at_ms,
            enc: B64.encode(enc),
            ciphertext: B64.encode(ciphertext),
            signature: B64.encode(sig.to_bytes()),
        },
        commitment,
    ))
}

fn buyer_key(hex: &str) -> Result<([u8; 32], VerifyingKey), RulesError> {
    let buyer = hex32(hex).ok_or(RulesError::Malformed("buyer must be 64 hex digits"))?;
    let key = VerifyingKey::from_bytes(&buyer)
        .map_err(|_| RulesError::Malformed("buyer is not an Ed25519 key"))?;
    Ok((buyer, key))
}

fn signature(b64: &str) -> Result<Signature, RulesError> {
    let sig: [u8; 64] =
        B64.decode(b64)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(RulesError::Malformed(
                "signature must be base64 of 64 bytes",
            ))?;
    Ok(Signature::from_bytes(&sig))
}

impl SealedRuleSet {
    /// Decodes the fields without checking the signature: the buyer key and the commitment.
    ///
    /// # Errors
    /// [`RulesError::Malformed`].
    pub fn decode(&self) -> Result<VerifiedRuleSet, RulesError> {
        let buyer =
            hex32(&self.buyer).ok_or(RulesError::Malformed("buyer must be 64 hex digits"))?;
        let enc: [u8; ENC_LEN] = B64
            .decode(&self.enc)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(RulesError::Malformed("enc must be base64 of 32 bytes"))?;
        if self.ciphertext.len() > (MAX_RULES_PLAINTEXT + TAG_LEN).div_ceil(3) * 4 {
            return Err(RulesError::Malformed("ciphertext too large"));
        }
        let ciphertext = B64
            .decode(&self.ciphertext)
            .map_err(|_| RulesError::Malformed("ciphertext is not base64"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(RulesError::Malformed("ciphertext shorter than its tag"));
        }
        Ok(VerifiedRuleSet {
            buyer,
            issued_at_ms: self.issued_at_ms,
            commitment: envelope::fingerprint(&enc, &ciphertext),
            enc,
            ciphertext,
        })
    }

    /// Decodes and verifies the buyer's signature for `origin` (RFC 8032 `verify_strict`).
    ///
    /// # Errors
    /// [`RulesError::Malformed`], [`RulesError::BadSignature`].
    pub fn verify(&self, origin: &str) -> Result<VerifiedRuleSet, RulesError> {
        let (_, key) = buyer_key(&self.buyer)?;
        let sig = signature(&self.signature)?;
        let d = self.decode()?;
        let text = set_text(origin, &d.buyer, &d.commitment, d.issued_at_ms);
        key.verify_strict(text.as_bytes(), &sig)
            .map_err(|_| RulesError::BadSignature)?;
        Ok(d)
    }
}

/// The enclave's side: opens a rule set with the intake private key, parses it, checks it
/// names the envelope's buyer and `issued_at_ms`, and compiles it.
///
/// # Errors
/// [`RulesError::Decrypt`], [`RulesError::Invalid`].
pub fn open_rules(
    intake_secret: &HpkeSecret,
    origin: &str,
    sealed: &VerifiedRuleSet,
) -> Result<Rules, RulesError> {
    let plaintext = envelope::open(
        intake_secret,
        &sealed.enc,
        RULES_INFO,
        &rules_aad(origin, &sealed.buyer),
        &sealed.ciphertext,
    )
    .map_err(|_| RulesError::Decrypt)?;
    let set: RuleSet =
        serde_json::from_slice(&plaintext).map_err(|e| invalid(format!("not a rule set: {e}")))?;
    let rules = set.compile()?;
    if rules.buyer != sealed.buyer {
        return Err(invalid("the sealed rule set names another buyer"));
    }
    if rules.issued_at_ms != sealed.issued_at_ms {
        return Err(invalid(
            "the sealed issued_at_ms differs from the envelope's",
        ));
    }
    Ok(rules)
}

/// A buyer's signed cancellation of its active rule set, as posted to
/// `POST /v1/rules/cancel` (JSON).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesCancel {
    /// Buyer id, 64 hex chars.
    pub buyer: String,
    /// The commitment of the rule set cancelled, 64 hex chars.
    pub commitment: String,
    /// Unix ms, buyer's clock.
    pub issued_at_ms: u64,
    /// Ed25519 signature, base64 (64 bytes).
    pub signature: String,
}

/// A verified cancellation: buyer, commitment, `issued_at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedCancel {
    /// Buyer public key.
    pub buyer: [u8; 32],
    /// The cancelled rule set's commitment.
    pub commitment: Hash,
    /// `issued_at_ms`.
    pub issued_at_ms: u64,
}

impl RulesCancel {
    /// Signs a cancellation of rule set `commitment` as `buyer`.
    pub fn sign(buyer: &SigningKey, origin: &str, commitment: &Hash, issued_at_ms: u64) -> Self {
        let pk = buyer.verifying_key().to_bytes();
        let sig = buyer.sign(cancel_text(origin, &pk, commitment, issued_at_ms).as_bytes());
        Self {
            buyer: hex::encode(pk),
            commitment: hex::encode(commitment),
            issued_at_ms,
            signature: B64.encode(sig.to_bytes()),
        }
    }

    /// Decodes and verifies the buyer's signature for `origin`.
    ///
    /// # Errors
    /// [`RulesError::Malformed`], [`RulesError::BadSignature`].
    pub fn verify(&self, origin: &str) -> Result<VerifiedCancel, RulesError> {
        let (buyer, key) = buyer_key(&self.buyer)?;
        let commitment = hex32(&self.commitment)
            .ok_or(RulesError::Malformed("commitment must be 64 hex digits"))?;
        let sig = signature(&self.signature)?;
        key.verify_strict(
            cancel_text(origin, &buyer, &commitment, self.issued_at_ms).as_bytes(),
            &sig,
        )
        .map_err(|_| RulesError::BadSignature)?;
        Ok(VerifiedCancel {
            buyer,
            commitment,
            issued_at_ms: self.issued_at_ms,
        })
    }
}

/// What [`RulesAudit`] found: the buyer's rule-set decisions checked against the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RulesReport {
    /// Leads accepted while one of the buyer's rule sets was active.
    pub leads: u64,
    /// Of those, the ones its rule set matched.
    pub matched: u64,
    /// Bids the enclave made for the buyer under its rule sets.
    pub bids: u64,
    /// Matched leads with no bid because the day's budget was spent.
    pub skipped_budget: u64,
    /// Matched leads with budget left and no bid (lead ids): the buyer's escrow deposit did
    /// not cover the bid, or the auction was full, or the enclave broke its rules.
    pub unexplained: Vec<String>,
    /// Decisions that break the rules (a bid on a lead the rules do not match, over the
    /// budget, under a rule set not active, or by a rule set the buyer did not keep).
    pub violations: Vec<String>,
}

/// Checks, entry by entry in log order, that the enclave bid for `buyer` exactly when its
/// active rule set matched and its budget allowed (see the module docs). Feed it every entry
/// of the log from before the buyer's first `rules.set` on, with [`RulesAudit::entry`], then
/// call [`RulesAudit::finish`].
pub struct RulesAudit {
    buyer: String,
    kept: Vec<(String, Rules)>,
    active: Option<(String, usize)>,
    day: u64,
    bids_today: u32,
    /// Matched leads not yet resolved (lead id, day), in log order.
    pending: std::collections::VecDeque<(String, u64)>,
    report: RulesReport,
}

impl RulesAudit {
    /// An audit of `buyer` (hex) with the rule sets it kept: (commitment hex, rule set).
    ///
    /// # Errors
    /// [`RulesError::Invalid`] if a kept rule set does not compile.
    pub fn new(buyer: &str, kept: &[(String, RuleSet)]) -> Result<Self, RulesError> {
        Ok(Self {
            buyer: buyer.to_owned(),
            kept: kept
                .iter()
                .map(|(c, r)| Ok((c.clone(), r.compile()?)))
                .collect::<Result<_, RulesError>>()?,
            active: None,
            day: 0,
            bids_today: 0,
            pending: std::collections::VecDeque::new(),
            report: RulesReport::default(),
        })
    }

    fn rules(&self) -> Option<&Rules> {
        self.active.as_ref().map(|(_, i)| &self.kept[*i].1)
    }

    fn today(&self, day: u64) -> u32 {
        if self.day == day {
            self.bids_today
        } else {
            0
        }
    }

    /// Resolves the front pending lead as not bid on.
    fn skip_front(&mut self) {
        if let Some((lead, day)) = self.pending.pop_front() {
            let allowed = self
                .rules()
                .is_some_and(|r| r.budget_allows(self.today(day)));
            if allowed {
                self.report.unexplained.push(lead);
            } else {
                self.report.skipped_budget += 1;
            }
        }
    }

    /// Takes the next entry (`index`, event) in log order.
    pub fn entry(&mut self, index: u64, event: &crate::event::Event) {
        use crate::event::Event;
        match event {
            Event::RulesSet(e) if e.buyer == self.buyer => {
                while !self.pending.is_empty() {
                    self.skip_front();
                }
                match self.kept.iter().position(|(c, _)| *c == e.commitment) {
                    Some(i) => self.active = Some((e.commitment.clone(), i)),
                    None => {
                        self.active = None;
                        self.report.violations.push(format!(
                            "entry {index}: rules.set of {}, a rule set you did not keep",
                            e.commitment
                        ));
                    }
                }
                self.bids_today = 0;
                self.day = 0;
            }
            Event::RulesCancelled(e) if e.buyer == self.buyer => {
                while !self.pending.is_empty() {
                    self.skip_front();
                }
                self.active = None;
            }
            Event::LeadAccepted(lead) => {
                if let Some(matched) = self.rules().map(|r| r.matches(lead)) {
                    self.report.leads += 1;
                    if matched {
                        self.report.matched += 1;
                        self.pending
                            .push_back((lead.lead_id.clone(), budget_day(lead.time)));
                    }
                }
            }
            Event::BidSealed(b) if b.buyer == self.buyer => {
                let Some(rules_commitment) = &b.rules else {
                    return;
                };
                self.report.bids += 1;
                if self.active.as_ref().map(|(c, _)| c) != Some(rules_commitment) {
                    self.report.violations.push(format!(
                        "entry {index}: a bid under rule set {rules_commitment}, which is not active"
                    ));
                    return;
                }
                while self
                    .pending
                    .front()
                    .is_some_and(|(lead, _)| *lead != b.auction_id)
                {
                    self.skip_front();
                }
                if self.pending.pop_front().is_none() {
                    self.report.violations.push(format!(
                        "entry {index}: a bid on {}, which your rules do not match (or not in lead order)",
                        b.auction_id
                    ));
                    return;
                }
                let day = budget_day(b.time);
                let today = self.today(day);
                if !self.rules().is_some_and(|r| r.budget_allows(today)) {
                    self.report.violations.push(format!(
                        "entry {index}: a bid on {} over the daily budget",
                        b.auction_id
                    ));
                }
                self.day = day;
                self.bids_today = today.saturating_add(1);
            }
            _ => {}
        }
    }

    /// The report, once every entry is in.
    pub fn finish(mut self) -> RulesReport {
        while !self.pending.is_empty() {
            self.skip_front();
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::Pricing;
    use crate::event::AuctionTerms;

    fn lead(industry: &str, sub: &str, region: &str, score: u8) -> LeadAccepted {
        LeadAccepted {
            time: 1_700_000_000_000,
            lead_id: "00".repeat(16),
            seller: "11".repeat(32),
            ciphertext_sha256: "22".repeat(32),
            score,
            reasons: vec![VERIFIED_REASON.into()],
            listing: Listing {
                industry: industry.into(),
                sub_industry: sub.into(),
                region: region.into(),
                role: "General Manager".into(),
                company_type: Some("LLC".into()),
                ownership_type: None,
                number_of_locations: Some(12),
                founded_year: Some(1990),
            },
            email_tag: "33".repeat(32),
            auction: AuctionTerms {
                reserve: TokenAmount::default(),
                closes_at: 1_700_000_060_000,
                pricing: Pricing::FirstPrice,
                payout: None,
                off_site: false,
                instant: false,
            },
        }
    }

    fn rules(edit: impl FnOnce(&mut RuleSet)) -> Result<Rules, RulesError> {
        let mut r = RuleSet::open(
            &[0xab; 32],
            &[0xcd; 32],
            1,
            &["HVAC/*"],
            TokenAmount::new(5_000_000).unwrap(),
            TokenAmount::new(12_000_000).unwrap(),
        );
        edit(&mut r);
        r.compile()
    }

    #[test]
    fn each_gate_decides() {
        let hvac = lead("HVAC", "Air Conditioning", "Austin, TX", 70);
        let base = rules(|_| {}).unwrap();
        assert!(base.matches(&hvac));
        assert!(!base.matches(&lead("Mortgage", "Refinance", "Austin, TX", 70)));
        // 1. verticals, wildcard and exact.
        assert!(rules(|r| r.verticals = vec!["*".into()])
            .unwrap()
            .matches(&lead("Solar", "x", "Reno, NV", 1)));
        assert!(
            rules(|r| r.verticals = vec!["hvac/air conditioning".into()])
                .unwrap()
                .matches(&hvac)
        );
        assert!(
            !rules(|r| r.verticals = vec!["HVAC/Heating Services".into()])
                .unwrap()
                .matches(&hvac)
        );
        // 2. country, derived from the region.
        assert!(rules(|r| r.countries = vec!["US".into()])
            .unwrap()
            .matches(&hvac));
        assert!(!rules(|r| r.countries = vec!["CA".into()])
            .unwrap()
            .matches(&hvac));
        assert!(!rules(|r| r.countries = vec!["US".into()])
            .unwrap()
            .matches(&lead("HVAC", "x", "Toronto, ON", 70)));
        // 3. states, include and exclude.
        assert!(rules(|r| r.states_include = vec!["TX".into(), "CA".into()])
            .unwrap()
            .matches(&hvac));
        assert!(!rules(|r| r.states_include = vec!["CA".into()])
            .unwrap()
            .matches(&hvac));
        assert!(!rules(|r| r.states_exclude = vec!["TX".into()])
            .unwrap()
            .matches(&hvac));
        // 4. score.
        assert!(rules(|r| r.min_score = 70).unwrap().matches(&hvac));
        assert!(!rules(|r| r.min_score = 71).unwrap().matches(&hvac));
        // 5. off-site.
        let mut off = hvac.clone();
        off.auction.off_site = true;
        assert!(!base.matches(&off));
        assert!(rules(|r| r.off_site = true).unwrap().matches(&off));
        // 6. verified only.
        let mut unverified = hvac.clone();
        unverified.reasons.clear();
        assert!(base.matches(&unverified));
        assert!(!rules(|r| r.verified_only = true)
            .unwrap()
            .matches(&unverified));
        // 7. field filters.
        let f = |field, any_of: Option<&[&str]>, contains: Option<&str>, min, max| FieldFilter {
            field,
            any_of: any_of.map(|a| a.iter().map(|s| s.to_string()).collect()),
            contains: contains.map(str::to_owned),
            min,
            max,
        };
        let role = |any: &[&str]| {
            rules(|r| r.fields = vec![f(ListingField::Role, Some(any), None, None, None)]).unwrap()
        };
        assert!(role(&["general manager", "Owner"]).matches(&hvac));
        assert!(!role(&["Owner"]).matches(&hvac));
        assert!(rules(
            |r| r.fields = vec![f(ListingField::Role, None, Some("manager"), None, None)]
        )
        .unwrap()
        .matches(&hvac));
        assert!(rules(|r| r.fields = vec![f(
            ListingField::NumberOfLocations,
            None,
            None,
            Some(10),
            Some(20)
        )])
        .unwrap()
        .matches(&hvac));
        assert!(!rules(
            |r| r.fields = vec![f(ListingField::FoundedYear, None, None, Some(2000), None)]
        )
        .unwrap()
        .matches(&hvac));
        // A lead without the field fails its filter.
        assert!(!rules(|r| r.fields = vec![f(
            ListingField::OwnershipType,
            None,
            Some("priv"),
            None,
            None
        )])
        .unwrap()
        .matches(&hvac));
    }

    #[test]
    fn out_of_range_rule_sets_are_refused() {
        assert!(rules(|r| r.verticals.clear()).is_err());
        assert!(rules(|r| r.min_score = 101).is_err());
        assert!(rules(|r| r.states_include = vec!["tx".into()]).is_err());
        assert!(rules(|r| r.max_bid = TokenAmount::default()).is_err());
        assert!(rules(|r| r.daily_budget = TokenAmount::new(1).unwrap()).is_err());
        assert!(rules(|r| r.buyer = "AB".repeat(32)).is_err());
        assert!(rules(|r| r.fields = vec![FieldFilter {
            field: ListingField::FoundedYear,
            any_of: Some(vec!["1990".into()]),
            contains: None,
            min: None,
            max: None
        }])
        .is_err());
        assert!(rules(|r| r.fields = vec![FieldFilter {
            field: ListingField::Role,
            any_of: None,
            contains: None,
            min: None,
            max: None
        }])
        .is_err());
        assert!(rules(|r| r.countries = vec!["US".into(); MAX_GATE_ITEMS + 1]).is_err());
    }

    #[test]
    fn budget_counts_bids() {
        // 5 USDC bids within 12 USDC a day: two fit, the third does not.
        let r = rules(|_| {}).unwrap();
        assert!(r.budget_allows(0));
        assert!(r.budget_allows(1));
        assert!(!r.budget_allows(2));
        assert!(!r.budget_allows(u32::MAX));
        assert_eq!(budget_day(DAY_MS - 1), 0);
        assert_eq!(budget_day(DAY_MS), 1);
    }

    #[test]
    fn seal_open_and_attacks() {
        let buyer = SigningKey::from_bytes(&[7u8; 32]);
        let (intake_sk, intake_pk) = envelope::keypair_from_seed(&[9u8; 32]);
        let mut set = RuleSet::open(
            &buyer.verifying_key().to_bytes(),
            &[0xcd; 32],
            1_700_000_000_000,
            &["*"],
            TokenAmount::new(1).unwrap(),
            TokenAmount::new(10).unwrap(),
        );
        set.min_score = 50;
        let (sealed, commitment) = seal_rules(&buyer, &intake_pk, "o", &set).unwrap();
        let v = sealed.verify("o").unwrap();
        assert_eq!(v.commitment, commitment);
        let opened = open_rules(&intake_sk, "o", &v).unwrap();
        assert_eq!(opened.min_score, 50);
        // Another log's signature, a changed issued_at, a swapped buyer: refused.
        assert_eq!(sealed.verify("p"), Err(RulesError::BadSignature));
        let mut later = sealed.clone();
        later.issued_at_ms += 1;
        assert_eq!(later.verify("o"), Err(RulesError::BadSignature));
        let thief = SigningKey::from_bytes(&[8u8; 32]);
        let stolen = {
            let d = sealed.decode().unwrap();
            let pk = thief.verifying_key().to_bytes();
            let sig = thief.sign(set_text("o", &pk, &d.commitment, d.issued_at_ms).as_bytes());
            SealedRuleSet {
                buyer: hex::encode(pk),
                signature: B64.encode(sig.to_bytes()),
                ..sealed.clone()
            }
        };
        // Signed by the thief, but the AAD binds the original buyer: it does not open.
        let v = stolen.verify("o").unwrap();
        assert!(matches!(
            open_rules(&intake_sk, "o", &v),
            Err(RulesError::Decrypt)
        ));
        // A rule set naming another buyer is not sealed.
        set.buyer = "ab".repeat(32);
        assert!(seal_rules(&buyer, &intake_pk, "o", &set).is_err());
        // Cancellations.
        let c = RulesCancel::sign(&buyer, "o", &commitment, 5);
        assert_eq!(c.verify("o").unwrap().commitment, commitment);
        assert_eq!(c.verify("p"), Err(RulesError::BadSignature));
        let mut moved = c.clone();
        moved.issued_at_ms = 6;
        assert_eq!(moved.verify("o"), Err(RulesError::BadSignature));
    }
}
