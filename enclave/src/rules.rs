//! Lead intake rules and scoring (pure: the duplicate check lives in [`crate::dedup`]).
//!
//! Rules, in order; the first that fails is the rejection `reason`:
//! 1. `missing_required`: a required field is absent or not a string;
//! 2. `empty_required`: a required field is blank;
//! 3. `malformed_email`: not exactly one `@`, local part not an RFC 5322 §3.2.3 dot-atom, or
//!    domain not at least two valid DNS labels (RFC 1035 §2.3.1 letters-digits-hyphens, 1–63
//!    octets, no leading or trailing hyphen);
//! 4. `disposable_domain`: the domain or a parent domain is on the community
//!    disposable-email-domains blocklist (vendored in `data/`, ~10k domains; see
//!    `scripts/update-disposable-domains`). The `mailchecker` crate's larger list was tried and
//!    dropped: it lists real company domains such as `smith.com` and `bishop.com`;
//! 5. `generic_mailbox`: the local part before any `+tag` is a general-purpose mailbox;
//! 6. `name_email_mismatch`: neither first nor last name (normalised, 2+ characters) appears in
//!    the normalised local part;
//! 7. `duplicate_email` (see [`crate::dedup`]).
//!
//! Score (0–100, integer, deterministic), points and the reason code given for each:
//! base 40; `email_domain_matches_website` +15; `linkedin_profile` +10 (a linkedin.com/in/ URL);
//! `phone_present` +10; `description_present` +5; `founded_year_plausible` +5 (1800 to the
//! current year); `locations_present` +5 (at least one); `company_type_present` +5 (company or
//! ownership type); `full_name_consistent` +5 (full name is first + space + last).

use std::collections::HashSet;
use std::sync::OnceLock;

use leadgate_verifier::event::{Listing, MAX_LISTING_FIELD};
use serde_json::Value;
use unicode_normalization::UnicodeNormalization as _;

/// Required lead fields, in the order they are checked.
pub const REQUIRED_FIELDS: [&str; 11] = [
    "business",
    "full_name",
    "first",
    "last",
    "email",
    "role",
    "website",
    "industry",
    "sub_industry",
    "region",
    "linkedin",
];

/// General-purpose mailboxes (rule 5).
pub const GENERIC_MAILBOXES: [&str; 27] = [
    "info",
    "hello",
    "owner",
    "ceo",
    "founder",
    "contact",
    "support",
    "team",
    "admin",
    "office",
    "mail",
    "connect",
    "help",
    "hi",
    "welcome",
    "inquiries",
    "general",
    "feedback",
    "ask",
    "outreach",
    "communications",
    "crew",
    "staff",
    "community",
    "reachus",
    "talk",
    "service",
];

/// Why a lead was rejected. `code()` is the event's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The lead is not a JSON object.
    NotAnObject,
    /// Rule 1.
    MissingRequired,
    /// Rule 2.
    EmptyRequired,
    /// Rule 3.
    MalformedEmail,
    /// Rule 4.
    DisposableDomain,
    /// Rule 5.
    GenericMailbox,
    /// Rule 6.
    NameEmailMismatch,
    /// Rule 7.
    DuplicateEmail,
}

impl RejectReason {
    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::MissingRequired => "missing_required",
            RejectReason::EmptyRequired => "empty_required",
            RejectReason::MalformedEmail => "malformed_email",
            RejectReason::DisposableDomain => "disposable_domain",
            RejectReason::GenericMailbox => "generic_mailbox",
            RejectReason::NameEmailMismatch => "name_email_mismatch",
            RejectReason::DuplicateEmail => "duplicate_email",
        }
    }
}

/// A lead that passed rules 1–6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedLead {
    /// Lowercased email: the duplicate-detection key. Never leaves the enclave.
    pub normalised_email: String,
    /// Score 0–100.
    pub score: u8,
    /// Codes of the score components awarded.
    pub reasons: Vec<String>,
    /// The public listing.
    pub listing: Listing,
}

/// The vendored disposable-email-domains blocklist (one domain per line, `#` comments).
const DISPOSABLE_BLOCKLIST: &str = include_str!("../data/disposable_email_blocklist.conf");

fn disposable_domains() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        DISPOSABLE_BLOCKLIST
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// RFC 5322 §3.2.3 dot-atom-text: atext runs separated by single dots.
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// At least two labels of RFC 1035 letters-digits-hyphens, 1–63 octets, no edge hyphens.
fn is_dns_name(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    s.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Lowercase, ASCII-fold (NFKD, drop what is not ASCII), keep only alphanumerics.
pub fn normalise_name(s: &str) -> String {
    s.nfkd()
        .filter(char::is_ascii)
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn host_of(url: &str) -> Option<String> {
    let rest = url.trim().split_once("://").map_or(url.trim(), |(_, r)| r);
    let host = rest
        .split(['/', '?', '#', ':'])
        .next()?
        .to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host).to_owned();
    (!host.is_empty()).then_some(host)
}

fn text(lead: &serde_json::Map<String, Value>, k: &str) -> Option<String> {
    lead.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(MAX_LISTING_FIELD).collect())
}

/// Applies rules 1–6 and scores the lead. `current_year` bounds `founded_year`.
///
/// # Errors
/// The first [`RejectReason`] that applies.
pub fn check_lead(lead: &Value, current_year: u64) -> Result<CheckedLead, RejectReason> {
    let obj = lead.as_object().ok_or(RejectReason::NotAnObject)?;
    let mut fields = Vec::with_capacity(REQUIRED_FIELDS.len());
    for f in REQUIRED_FIELDS {
        match obj.get(f) {
            Some(Value::String(s)) => fields.push(s.as_str()),
            _ => return Err(RejectReason::MissingRequired),
        }
    }
    if fields.iter().any(|s| s.trim().is_empty()) {
        return Err(RejectReason::EmptyRequired);
    }
    let get =
        |name: &str| fields[REQUIRED_FIELDS.iter().position(|f| *f == name).unwrap_or(0)].trim();

    // Rule 3.
    let email = get("email");
    let (local, domain) = match email.split('@').collect::<Vec<_>>().as_slice() {
        [l, d] => (*l, d.to_ascii_lowercase()),
        _ => return Err(RejectReason::MalformedEmail),
    };
    if !is_dot_atom(local) || !is_dns_name(&domain) {
        return Err(RejectReason::MalformedEmail);
    }
    // Rule 4: the domain and each parent domain.
    let set = disposable_domains();
    let mut d = domain.as_str();
    loop {
        if set.contains(d) {
            return Err(RejectReason::DisposableDomain);
        }
        match d.split_once('.') {
            Some((_, parent)) if parent.contains('.') => d = parent,
            _ => break,
        }
    }
    // Rule 5.
    let mailbox = local
        .split('+')
        .next()
        .unwrap_or(local)
        .to_ascii_lowercase();
    if GENERIC_MAILBOXES.contains(&mailbox.as_str()) {
        return Err(RejectReason::GenericMailbox);
    }
    // Rule 6.
    let local_norm = normalise_name(local);
    let matches = [get("first"), get("last")].iter().any(|n| {
        let n = normalise_name(n);
        n.len() >= 2 && local_norm.contains(&n)
    });
    if !matches {
        return Err(RejectReason::NameEmailMismatch);
    }

    // Score.
    let mut score = 40u8;
    let mut reasons = Vec::new();
    let mut award = |cond: bool, points: u8, code: &str| {
        if cond {
            score += points;
            reasons.push(code.to_owned());
        }
    };
    let website_host = host_of(get("website"));
    award(
        website_host.as_deref().is_some_and(|h| {
            domain == h || domain.ends_with(&format!(".{h}")) || h.ends_with(&format!(".{domain}"))
        }),
        15,
        "email_domain_matches_website",
    );
    award(
        host_of(get("linkedin"))
            .is_some_and(|h| h == "linkedin.com" || h.ends_with(".linkedin.com"))
            && get("linkedin").contains("/in/"),
        10,
        "linkedin_profile",
    );
    award(
        obj.get("phone_numbers")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter().any(|p| {
                    p.as_str()
                        .is_some_and(|s| s.chars().filter(char::is_ascii_digit).count() >= 7)
                })
            }),
        10,
        "phone_present",
    );
    award(text(obj, "description").is_some(), 5, "description_present");
    let founded_year = obj.get("founded_year").and_then(Value::as_u64);
    award(
        founded_year.is_some_and(|y| (1800..=current_year).contains(&y)),
        5,
        "founded_year_plausible",
    );
    let locations = obj.get("number_of_locations").and_then(Value::as_u64);
    award(locations.is_some_and(|n| n >= 1), 5, "locations_present");
    award(
        text(obj, "company_type").is_some() || text(obj, "ownership_type").is_some(),
        5,
        "company_type_present",
    );
    award(
        get("full_name")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            == format!("{} {}", get("first"), get("last")),
        5,
        "full_name_consistent",
    );

    let cap = |s: &str| s.chars().take(MAX_LISTING_FIELD).collect::<String>();
    Ok(CheckedLead {
        normalised_email: format!("{}@{}", local.to_lowercase(), domain),
        score,
        reasons,
        listing: Listing {
            industry: cap(get("industry")),
            sub_industry: cap(get("sub_industry")),
            region: cap(get("region")),
            role: cap(get("role")),
            company_type: text(obj, "company_type"),
            ownership_type: text(obj, "ownership_type"),
            number_of_locations: locations,
            founded_year,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lead() -> Value {
        json!({"business": "Acme", "full_name": "Jane Doe", "first": "Jane", "last": "Doe",
               "email": "jane.doe@acme.io", "role": "CEO", "website": "https://www.acme.io",
               "industry": "HVAC", "sub_industry": "Heating", "region": "Austin, TX",
               "linkedin": "https://linkedin.com/in/janedoe", "phone_numbers": ["+1-512-555-0100"],
               "description": "d", "founded_year": 1990, "number_of_locations": 2, "company_type": "LLC"})
    }

    fn with(k: &str, v: Value) -> Value {
        let mut l = lead();
        l[k] = v;
        l
    }

    #[test]
    fn full_lead_scores_100() {
        let c = check_lead(&lead(), 2026).unwrap();
        assert_eq!(c.score, 100);
        assert_eq!(c.reasons.len(), 8);
        assert_eq!(c.normalised_email, "jane.doe@acme.io");
    }

    #[test]
    fn each_rule_in_order() {
        let r = |l: Value| check_lead(&l, 2026).unwrap_err();
        let mut missing = lead();
        missing.as_object_mut().unwrap().remove("linkedin");
        assert_eq!(r(missing), RejectReason::MissingRequired);
        assert_eq!(r(with("first", json!(5))), RejectReason::MissingRequired);
        assert_eq!(r(with("region", json!("  "))), RejectReason::EmptyRequired);
        for bad in [
            "jane@@acme.io",
            "jane.acme.io",
            "@acme.io",
            "jane.@acme.io",
            "ja..ne@acme.io",
            "jane@acme",
            "jane@-acme.io",
            "jane doe@acme.io",
        ] {
            assert_eq!(
                r(with("email", json!(bad))),
                RejectReason::MalformedEmail,
                "{bad}"
            );
        }
        assert_eq!(
            r(with("email", json!("jane@mailinator.com"))),
            RejectReason::DisposableDomain
        );
        assert_eq!(
            r(with("email", json!("jane@eu.mailinator.com"))),
            RejectReason::DisposableDomain
        );
        assert_eq!(
            r(with("email", json!("Info+x@acme.io"))),
            RejectReason::GenericMailbox
        );
        assert_eq!(
            r(with("email", json!("bob.smith@acme.io"))),
            RejectReason::NameEmailMismatch
        );
        // Accents fold: José matches jose.
        let mut accented = with("first", json!("José"));
        accented["email"] = json!("jose@acme.io");
        assert!(check_lead(&accented, 2026).is_ok());
        assert_eq!(r(json!([1])), RejectReason::NotAnObject);
    }
}
