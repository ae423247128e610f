//! `docs/PROTOCOL.md` §3 lists every event kind with every field and its type. This test
//! builds every kind (once with every optional field, once with none), serializes it as the
//! enclave does, and compares field by field with the spec's tables: a kind or a field the
//! spec does not list, a listed one the event lacks, a required field that is optional or the
//! reverse, and a value not of the listed type all fail it. A new `Event` variant fails to
//! compile here until it has a sample (the match in `variant` is exhaustive).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use leadgate_verifier::auction::{Pricing, TokenAmount};
use leadgate_verifier::event::{
    AuctionClosed, AuctionTerms, AuctionUnsold, BidSealed, EpochPcrs, Event, LeadAccepted,
    LeadRejected, LeadReleased, Listing, LogEpoch, RulesCancelled, RulesSet,
};
use leadgate_verifier::settlement::{EthAddress, SignedSettlement};
use serde_json::Value;

/// A field of the spec: its type text (without ", optional") and whether it is optional.
#[derive(Debug)]
struct SpecField {
    ty: String,
    optional: bool,
}

/// kind → field path → field, from the section between the event-fields markers.
fn spec() -> BTreeMap<String, BTreeMap<String, SpecField>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let begin = doc
        .find("<!-- event-fields:begin -->")
        .expect("begin marker");
    let end = doc.find("<!-- event-fields:end -->").expect("end marker");
    let mut kinds = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in doc[begin..end].lines() {
        if let Some(h) = line.strip_prefix("#### ") {
            let kind = h.trim().trim_matches('`').to_owned();
            kinds.insert(kind.clone(), BTreeMap::new());
            current = Some(kind);
        } else if let Some(row) = line.strip_prefix("| `") {
            let cells: Vec<&str> = row.split(" | ").collect();
            let field = cells[0].trim_end_matches('`').to_owned();
            let ty = cells.get(1).expect("a type cell").trim();
            let (ty, optional) = match ty.strip_suffix(", optional") {
                Some(t) => (t.to_owned(), true),
                None => (ty.to_owned(), false),
            };
            let kind = current.as_ref().expect("a row under a kind heading");
            let previous = kinds
                .get_mut(kind)
                .unwrap()
                .insert(field.clone(), SpecField { ty, optional });
            assert!(previous.is_none(), "{kind}: {field} listed twice");
        }
    }
    kinds
}

/// Every field path of a JSON object (`a`, `a.b` for nested objects) with its value.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    for (k, v) in v.as_object().expect("an object") {
        let path = format!("{prefix}{k}");
        if v.is_object() {
            flatten(&format!("{path}."), v, out);
        }
        out.insert(path, v.clone());
    }
}

/// Whether `v` is of the spec's type `ty`.
fn has_type(ty: &str, v: &Value) -> bool {
    if let Some(lit) = ty.strip_prefix("`\"").and_then(|t| t.strip_suffix("\"`")) {
        return v.as_str() == Some(lit);
    }
    if let Some(n) = ty.strip_prefix("hex(").and_then(|t| t.strip_suffix(')')) {
        let n: usize = n.parse().expect("hex(N)");
        return v.as_str().is_some_and(|s| {
            s.len() == 2 * n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
    }
    match ty {
        "Unix ms" | "integer" | "token amount" => v.is_u64(),
        "string" => v.is_string(),
        "address" => v.as_str().is_some_and(|s| {
            s.len() == 42
                && s.starts_with("0x")
                && s[2..]
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        }),
        "object" => v.is_object(),
        "`true`" => v == &Value::Bool(true),
        "array of string" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        "`first_price` or `second_price`" => {
            matches!(v.as_str(), Some("first_price" | "second_price"))
        }
        other => panic!("the spec uses a type this test does not know: {other}"),
    }
}

/// Which variant, exhaustively: adding one to `Event` breaks this match.
fn variant(e: &Event) -> usize {
    match e {
        Event::LogEpoch(_) => 0,
        Event::LeadAccepted(_) => 1,
        Event::LeadRejected(_) => 2,
        Event::BidSealed(_) => 3,
        Event::AuctionClosed(_) => 4,
        Event::AuctionUnsold(_) => 5,
        Event::LeadReleased(_) => 6,
        Event::RulesSet(_) => 7,
        Event::RulesCancelled(_) => 8,
    }
}
const VARIANTS: usize = 9;

/// Each kind twice: every optional field given, and none.
fn samples() -> Vec<(Event, Event)> {
    let h = |b: u8, n: usize| format!("{b:02x}").repeat(n);
    let epoch = |pcrs: Option<EpochPcrs>| {
        Event::LogEpoch(LogEpoch {
            time: 1_700_000_000_000,
            epoch: 2,
            previous_size: 10,
            previous_root: h(1, 32),
            origin: "leadgate.dev/log".into(),
            log_key: "leadgate.dev/log+01020304+AQ==".into(),
            intake_key: h(2, 32),
            anchor_key: h(3, 33),
            replay_from: 0,
            pcrs,
        })
    };
    let pcrs = EpochPcrs {
        pcr0: h(4, 48),
        pcr1: h(5, 48),
        pcr2: h(6, 48),
    };
    let accepted = |full: bool| {
        Event::LeadAccepted(LeadAccepted {
            time: 1_700_000_000_001,
            lead_id: h(7, 16),
            seller: h(8, 32),
            ciphertext_sha256: h(9, 32),
            score: 80,
            reasons: vec!["phone_present".into()],
            listing: Listing {
                industry: "HVAC".into(),
                sub_industry: "Heating".into(),
                region: "Austin, TX".into(),
                role: "Owner".into(),
                company_type: full.then(|| "LLC".into()),
                ownership_type: full.then(|| "Private".into()),
                number_of_locations: full.then_some(3),
                founded_year: full.then_some(1999),
            },
            email_tag: h(10, 32),
            auction: AuctionTerms {
                reserve: TokenAmount::new(1_000_000).unwrap(),
                closes_at: 1_700_000_030_001,
                pricing: Pricing::SecondPrice,
                payout: full.then_some(EthAddress([0x5e; 20])),
                off_site: full,
                instant: full,
            },
        })
    };
    let rejected = Event::LeadRejected(LeadRejected {
        time: 1,
        lead_id: h(7, 16),
        seller: h(8, 32),
        ciphertext_sha256: h(9, 32),
        reason: "malformed_email".into(),
    });
    let bid = |full: bool| {
        Event::BidSealed(BidSealed {
            time: 2,
            auction_id: h(7, 16),
            buyer: h(11, 32),
            commitment: h(12, 32),
            rules: full.then(|| h(19, 32)),
        })
    };
    let rules_set = Event::RulesSet(RulesSet {
        time: 6,
        buyer: h(11, 32),
        commitment: h(19, 32),
        issued_at: 1_700_000_000_000,
    });
    let rules_cancelled = Event::RulesCancelled(RulesCancelled {
        time: 7,
        buyer: h(11, 32),
        commitment: h(19, 32),
        issued_at: 1_700_000_000_500,
    });
    let closed = |full: bool| {
        Event::AuctionClosed(AuctionClosed {
            time: 3,
            auction_id: h(7, 16),
            winner: h(11, 32),
            winning_commitment: h(12, 32),
            winner_hpke: h(13, 32),
            price: TokenAmount::new(2_500_000).unwrap(),
            reserve: TokenAmount::new(1_000_000).unwrap(),
            pricing: Pricing::FirstPrice,
            bids: 3,
            commitments_root: h(14, 32),
            seed: h(15, 64),
            settlement: full.then(|| SignedSettlement {
                chain_id: 31337,
                escrow: EthAddress([0xe5; 20]),
                buyer: EthAddress([0xb0; 20]),
                seller: EthAddress([0x5e; 20]),
                fee_bps: 250,
                fee_recipient: EthAddress([0xfe; 20]),
                signature: h(18, 65),
            }),
        })
    };
    let unsold = Event::AuctionUnsold(AuctionUnsold {
        time: 4,
        auction_id: h(7, 16),
        reserve: TokenAmount::new(0).unwrap(),
        bids: 0,
        commitments_root: h(16, 32),
        seed: h(15, 64),
    });
    let released = Event::LeadReleased(LeadReleased {
        time: 5,
        lead_id: h(7, 16),
        buyer: h(11, 32),
        sealed_sha256: h(17, 32),
    });
    vec![
        (epoch(Some(pcrs)), epoch(None)),
        (accepted(true), accepted(false)),
        (rejected.clone(), rejected),
        (bid(true), bid(false)),
        (closed(true), closed(false)),
        (unsold.clone(), unsold),
        (released.clone(), released),
        (rules_set.clone(), rules_set),
        (rules_cancelled.clone(), rules_cancelled),
    ]
}

/// The event's fields as the log carries them (its canonical leaf, parsed back).
fn fields(e: &Event) -> BTreeMap<String, Value> {
    let leaf = e.to_leaf().unwrap();
    assert_eq!(&Event::from_leaf(&leaf).unwrap(), e, "round trip");
    let mut out = BTreeMap::new();
    flatten("", &serde_json::from_slice(&leaf).unwrap(), &mut out);
    out
}

#[test]
fn the_spec_lists_every_event_kind_with_exactly_its_fields_and_types() {
    let spec = spec();
    let samples = samples();
    let covered: BTreeSet<usize> = samples.iter().map(|(e, _)| variant(e)).collect();
    assert_eq!(covered.len(), VARIANTS, "a sample for every variant");
    let kinds: BTreeSet<&str> = samples.iter().map(|(e, _)| e.kind()).collect();
    assert_eq!(
        kinds,
        spec.keys().map(String::as_str).collect(),
        "the spec's kinds"
    );

    for (full, minimal) in &samples {
        let kind = full.kind();
        let listed = &spec[kind];
        let full = fields(full);
        let minimal = fields(minimal);
        let listed_names: BTreeSet<&String> = listed.keys().collect();
        assert_eq!(
            full.keys().collect::<BTreeSet<_>>(),
            listed_names,
            "{kind}: the fields the spec lists"
        );
        // Required: not optional, and inside no optional object.
        let optional = |name: &str| {
            listed[name].optional
                || name
                    .match_indices('.')
                    .any(|(i, _)| listed.get(&name[..i]).is_some_and(|f| f.optional))
        };
        let required: BTreeSet<&String> = listed.keys().filter(|n| !optional(n)).collect();
        assert_eq!(
            minimal.keys().collect::<BTreeSet<_>>(),
            required,
            "{kind}: the fields the spec does not mark optional"
        );
        for (name, value) in &full {
            let ty = &listed[name].ty;
            assert!(
                has_type(ty, value),
                "{kind}.{name}: {value} is not of the listed type {ty}"
            );
        }
    }
}

/// The checker itself: a field the spec does not list, and a value of another type, are
/// caught.
#[test]
fn the_checker_catches_an_unlisted_field_and_a_wrong_type() {
    let spec = spec();
    let mut extra = fields(&samples()[3].0);
    extra.insert("amount".into(), Value::from(5));
    assert_ne!(
        extra.keys().collect::<BTreeSet<_>>(),
        spec["bid.sealed"].keys().collect::<BTreeSet<_>>()
    );
    assert!(!has_type("hex(32)", &Value::from("AB".repeat(32))));
    assert!(!has_type("hex(32)", &Value::from("ab".repeat(31))));
    assert!(!has_type("Unix ms", &Value::from(-1)));
    assert!(!has_type("`\"log.epoch\"`", &Value::from("lead.accepted")));
}
