//! Auto-bid rule sets in memory: the enclave bids for a buyer exactly when its rule set
//! matches a lead and its budget allows; the bids it makes close and win like any other; rule
//! sets and budgets survive a restart (from the sealed state and the replay, with the rule
//! sets the host hands back), and every attack on them fails: a replayed, stale, stolen or
//! forged rule set or cancellation, and a host that withholds or swaps a rule set at boot.

mod common;

use common::{buyer, corpus, hpke_pk, rule_set, seal, Host, ORIGIN, T0};
use ed25519_dalek::SigningKey;
use leadgate_enclave::core::EnclaveConfig;
use leadgate_protocol::{Request, Response, SubmitOutcome};
use leadgate_verifier::autobid::{
    seal_rules, RuleSet, RulesAudit, RulesCancel, RulesReport, SealedRuleSet, DAY_MS,
};
use leadgate_verifier::envelope::keypair_from_seed;
use leadgate_verifier::event::{Event, LeadAccepted};
use leadgate_verifier::intake::{seal_lead_with_terms, AuctionRequest};
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::release::ReleaseRequest;

fn sealed(keys: &EnclaveKeys, n: u8, rules: &RuleSet) -> (SealedRuleSet, [u8; 32]) {
    seal_rules(&buyer(n), &keys.intake_key, ORIGIN, rules).unwrap()
}

/// The accepted leads and, per lead id, the (buyer hex, rules hex) of its rule bids.
fn rule_bids(host: &Host) -> (Vec<LeadAccepted>, Vec<(String, String, String)>) {
    let mut leads = Vec::new();
    let mut bids = Vec::new();
    for l in &host.leaves {
        match Event::from_leaf(l).unwrap() {
            Event::LeadAccepted(a) => leads.push(a),
            Event::BidSealed(b) => {
                if let Some(r) = b.rules {
                    bids.push((b.auction_id, b.buyer, r));
                }
            }
            _ => {}
        }
    }
    (leads, bids)
}

/// `verify auction --my-rules`' check of buyer `n` over the host's log, with its kept rule
/// sets.
fn audit(host: &Host, n: u8, kept: &[(String, RuleSet)]) -> RulesReport {
    audit_events(
        host.leaves.iter().map(|l| Event::from_leaf(l).unwrap()),
        n,
        kept,
    )
}

fn audit_events(
    events: impl Iterator<Item = Event>,
    n: u8,
    kept: &[(String, RuleSet)],
) -> RulesReport {
    let b = hex::encode(buyer(n).verifying_key().to_bytes());
    let mut a = RulesAudit::new(&b, kept).unwrap();
    for (i, e) in events.enumerate() {
        a.entry(i as u64, &e);
    }
    a.finish()
}

fn accepted_leads(n: usize) -> Vec<serde_json::Value> {
    corpus()
        .into_iter()
        .filter(|l| l["expect"] == "accept")
        .take(n)
        .map(|l| l["lead"].clone())
        .collect()
}

#[test]
fn rules_that_match_bid_and_the_others_never_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    let seller = SigningKey::from_bytes(&[1; 32]);
    // Buyer 10: every HVAC lead. Buyer 11: Insurance in a few states, score 60 and up, with
    // an owner-type role. Buyer 12: a vertical no lead has.
    let hvac = rule_set(10, &["HVAC/*"], 2_000_000, 1_000_000_000, T0);
    let mut insurance = rule_set(11, &["insurance"], 3_000_000, 1_000_000_000, T0);
    insurance.states_exclude = vec!["DC".into()];
    insurance.min_score = 60;
    let nothing = rule_set(12, &["Underwater Basket Weaving"], 1, 1_000, T0);
    let (s10, c10) = sealed(&keys, 10, &hvac);
    let (s11, c11) = sealed(&keys, 11, &insurance);
    let (s12, _) = sealed(&keys, 12, &nothing);
    for s in [s10, s11, s12] {
        host.set_rules(&mut e, s, T0 + 1).unwrap();
    }
    let leads = accepted_leads(42);
    let sealed_leads: Vec<_> = leads
        .iter()
        .enumerate()
        .map(|(i, l)| seal(&seller, &keys, l, T0 + 2 + i as u64))
        .collect();
    let results = host.submit(&mut e, sealed_leads, T0 + 100);
    assert!(results
        .iter()
        .all(|r| matches!(r, SubmitOutcome::Logged { accepted: true, .. })));
    let (accepted, bids) = rule_bids(&host);
    assert_eq!(accepted.len(), 42);
    let b10 = hex::encode(buyer(10).verifying_key().to_bytes());
    let b11 = hex::encode(buyer(11).verifying_key().to_bytes());
    let mut expected = Vec::new();
    for a in &accepted {
        if a.listing.industry == "HVAC" {
            expected.push((a.lead_id.clone(), b10.clone(), hex::encode(c10)));
        }
        if a.listing.industry == "Insurance" && !a.listing.region.ends_with(", DC") && a.score >= 60
        {
            expected.push((a.lead_id.clone(), b11.clone(), hex::encode(c11)));
        }
    }
    assert!(
        expected.len() >= 8,
        "the corpus slice exercises both rule sets"
    );
    let mut got = bids.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "a bid exactly where a rule set matches");
    // Each buyer's own check of the log agrees.
    let r10 = audit(&host, 10, &[(hex::encode(c10), hvac.clone())]);
    assert_eq!((r10.leads, r10.bids), (42, 8));
    assert_eq!(r10.matched, 8);
    assert!(
        r10.violations.is_empty() && r10.unexplained.is_empty(),
        "{r10:?}"
    );
    let r11 = audit(&host, 11, &[(hex::encode(c11), insurance.clone())]);
    assert_eq!(r11.matched, r11.bids);
    assert!(
        r11.violations.is_empty() && r11.unexplained.is_empty(),
        "{r11:?}"
    );
    // A log that dropped one of buyer 10's bids, or added one on a lead its rules do not
    // match, fails the check.
    let events: Vec<Event> = host
        .leaves
        .iter()
        .map(|l| Event::from_leaf(l).unwrap())
        .collect();
    let first_bid = events
        .iter()
        .position(|e| matches!(e, Event::BidSealed(b) if b.buyer == b10))
        .unwrap();
    let mut dropped = events.clone();
    dropped.remove(first_bid);
    let r = audit_events(dropped.into_iter(), 10, &[(hex::encode(c10), hvac.clone())]);
    assert_eq!(r.unexplained.len(), 1, "{r:?}");
    let mut added = events.clone();
    let insurance_lead = accepted
        .iter()
        .find(|a| a.listing.industry == "Insurance")
        .unwrap();
    if let Event::BidSealed(mut b) = events[first_bid].clone() {
        b.auction_id = insurance_lead.lead_id.clone();
        added.push(Event::BidSealed(b));
    }
    let r = audit_events(added.into_iter(), 10, &[(hex::encode(c10), hvac.clone())]);
    assert_eq!(r.violations.len(), 1, "{r:?}");

    // The bids close like any other: the HVAC auctions sell to buyer 10 at its max bid, and
    // the winner gets the lead.
    let hvac_lead = accepted
        .iter()
        .find(|a| a.listing.industry == "HVAC")
        .unwrap();
    let closes_at = hvac_lead.auction.closes_at;
    let closed = host.tick(&mut e, closes_at);
    let sold = closed
        .iter()
        .find_map(|ev| match ev {
            Event::AuctionClosed(c) if c.auction_id == hvac_lead.lead_id => Some(c.clone()),
            _ => None,
        })
        .expect("the HVAC auction sold");
    assert_eq!(sold.winner, b10);
    assert_eq!(sold.price.units(), 2_000_000);
    assert_eq!(sold.winner_hpke, hex::encode(hpke_pk(10)));
    let request = ReleaseRequest::sign(&buyer(10), ORIGIN, &hvac_lead.lead_id, closes_at + 1);
    let proof = host.sale_proof(&hvac_lead.lead_id);
    let lead = host.leads[&hvac_lead.lead_id].clone();
    match e.handle(
        Request::Release {
            request,
            lead,
            proof,
        },
        closes_at + 1,
    ) {
        Response::Released { released, .. } => {
            let (sk, _) = keypair_from_seed(&[110; 32]);
            let plain = released.open(ORIGIN, &sk).unwrap();
            let lead: serde_json::Value = serde_json::from_slice(&plain).unwrap();
            assert_eq!(lead["industry"], "HVAC");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_spent_budget_stops_bidding_until_the_next_day_and_a_cancel_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    let seller = SigningKey::from_bytes(&[1; 32]);
    // 5 USDC a bid, 12 USDC a day: two bids a day.
    let set = rule_set(10, &["*"], 5_000_000, 12_000_000, T0);
    let (s, c) = sealed(&keys, 10, &set);
    host.set_rules(&mut e, s, T0).unwrap();
    let leads = accepted_leads(12);
    let submit = |host: &mut Host, e: &mut _, from: usize, to: usize, at: u64| {
        let batch = leads[from..to]
            .iter()
            .map(|l| seal(&seller, &keys, l, at))
            .collect();
        host.submit(e, batch, at);
    };
    submit(&mut host, &mut e, 0, 4, T0 + 10);
    assert_eq!(rule_bids(&host).1.len(), 2, "the budget allows two");
    // The next UTC day of the enclave clock, two more.
    let next_day = (T0 / DAY_MS + 1) * DAY_MS;
    let mut host2 = host.clone();
    drop(e);
    let (mut e, _) = host2.boot(dir.path(), next_day + 5);
    submit(&mut host2, &mut e, 4, 8, next_day + 10);
    assert_eq!(rule_bids(&host2).1.len(), 4);
    // Cancelled: no more, even with a fresh day.
    let cancel = RulesCancel::sign(&buyer(10), ORIGIN, &c, next_day + 20);
    host2.cancel_rules(&mut e, cancel, next_day + 20).unwrap();
    drop(e);
    let later = next_day + DAY_MS + 10;
    let (mut e, _) = host2.boot(dir.path(), later);
    submit(&mut host2, &mut e, 8, 12, later + 1);
    assert_eq!(
        rule_bids(&host2).1.len(),
        4,
        "a cancelled rule set never bids"
    );
    let r = audit(&host2, 10, &[(hex::encode(c), set.clone())]);
    assert_eq!((r.matched, r.bids, r.skipped_budget), (8, 4, 4), "{r:?}");
    assert!(r.violations.is_empty() && r.unexplained.is_empty());
    // Had the budget been one bid a day, the same log breaks it.
    let mut tight = set.clone();
    tight.daily_budget = tight.max_bid;
    let r = audit(&host2, 10, &[(hex::encode(c), tight)]);
    assert_eq!(r.violations.len(), 2, "{r:?}");
}

#[test]
fn off_site_leads_need_rules_that_allow_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    let seller = SigningKey::from_bytes(&[1; 32]);
    let strict = rule_set(10, &["*"], 1, 1_000, T0);
    let mut open = rule_set(11, &["*"], 1, 1_000, T0);
    open.off_site = true;
    host.set_rules(&mut e, sealed(&keys, 10, &strict).0, T0)
        .unwrap();
    host.set_rules(&mut e, sealed(&keys, 11, &open).0, T0)
        .unwrap();
    let lead = &accepted_leads(1)[0];
    let terms = AuctionRequest {
        off_site: true,
        ..AuctionRequest::default()
    };
    let sub = seal_lead_with_terms(
        &seller,
        &keys.intake_key,
        ORIGIN,
        &serde_json::to_vec(lead).unwrap(),
        T0 + 1,
        Some(terms),
    )
    .unwrap();
    host.submit(&mut e, vec![sub], T0 + 2);
    let (accepted, bids) = rule_bids(&host);
    assert!(accepted[0].auction.off_site);
    assert_eq!(bids.len(), 1);
    assert_eq!(bids[0].1, hex::encode(buyer(11).verifying_key().to_bytes()));
}

#[test]
fn rule_sets_and_budgets_survive_restarts_and_a_host_cannot_withhold_or_swap_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    let seller = SigningKey::from_bytes(&[1; 32]);
    // Three bids a day.
    let set = rule_set(10, &["*"], 1_000_000, 3_000_000, T0);
    let (s, _) = sealed(&keys, 10, &set);
    host.set_rules(&mut e, s, T0).unwrap();
    let leads = accepted_leads(10);
    let lead = |i: usize, at: u64| seal(&seller, &keys, &leads[i], at);
    host.submit(&mut e, vec![lead(0, T0 + 1)], T0 + 2);
    // A sealed state now: the rule book's record (one bid today) is in it.
    host.seal_state(&mut e, true, T0 + 3).unwrap();
    host.submit(&mut e, vec![lead(1, T0 + 4)], T0 + 5);
    assert_eq!(rule_bids(&host).1.len(), 2);

    // kill -9: a new process from the host's store (state, replay, rule sets).
    drop(e);
    let (mut e, _) = host.boot(dir.path(), T0 + 10);
    host.submit(&mut e, vec![lead(2, T0 + 11), lead(3, T0 + 12)], T0 + 13);
    assert_eq!(
        rule_bids(&host).1.len(),
        3,
        "the budget's count survived: one more bid, not two"
    );

    // A host that withholds the rule set: the enclave does not start.
    drop(e);
    let mut withheld = host.clone();
    withheld.rule_sets.clear();
    let (mut e2, _) = withheld.boot_unstarted(dir.path(), T0 + 20, EnclaveConfig::new(ORIGIN));
    match e2.handle(Request::Start, T0 + 20) {
        Response::Error(err) => assert_eq!(err.code.as_str(), "boot.rules_missing"),
        other => panic!("{other:?}"),
    }
    // Or hands back another rule set of the same buyer (validly signed, never logged): refused.
    let other = rule_set(10, &["HVAC"], 1, 1_000_000_000, T0 + 1);
    let (swapped, _) = sealed(&keys, 10, &other);
    match e2.handle(
        Request::LoadRules {
            sets: vec![swapped],
        },
        T0 + 20,
    ) {
        Response::Error(err) => assert_eq!(err.code.as_str(), "boot.rules_missing"),
        other => panic!("{other:?}"),
    }
    // The genuine one starts it.
    for req in host.rules_requests() {
        assert_eq!(e2.handle(req, T0 + 20), Response::Ok);
    }
    assert!(matches!(
        e2.handle(Request::Start, T0 + 20),
        Response::Started { .. }
    ));
}

#[test]
fn replayed_stale_stolen_and_forged_rule_changes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    let set = rule_set(10, &["*"], 1, 1_000, T0);
    let (s, c) = sealed(&keys, 10, &set);
    let size = host.leaves.len();
    let code = |r: Result<u64, String>| r.err().unwrap_or_else(|| "ok".into());
    assert_eq!(code(host.set_rules(&mut e, s.clone(), T0 + 1)), "ok");
    // The same rule set again (a host replaying it): refused.
    assert_eq!(
        code(host.set_rules(&mut e, s.clone(), T0 + 2)),
        "rules.replayed"
    );
    // Stale: issued over ten minutes before the enclave clock.
    let old = rule_set(11, &["*"], 1, 1_000, T0 - 11 * 60_000);
    assert_eq!(
        code(host.set_rules(&mut e, sealed(&keys, 11, &old).0, T0)),
        "rules.stale"
    );
    // Another buyer signs buyer 10's sealed rule set as its own: the AAD binds buyer 10.
    let thief = buyer(13);
    let stolen = {
        let d = s.decode().unwrap();
        let pk = thief.verifying_key().to_bytes();
        let text = format!(
            "leadgate.rules.v1\n{ORIGIN}\n{}\n{}\n{}\n",
            hex::encode(pk),
            hex::encode(d.commitment),
            d.issued_at_ms
        );
        use ed25519_dalek::Signer as _;
        SealedRuleSet {
            buyer: hex::encode(pk),
            signature: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                thief.sign(text.as_bytes()).to_bytes(),
            ),
            ..s.clone()
        }
    };
    assert_eq!(
        code(host.set_rules(&mut e, stolen, T0 + 3)),
        "rules.decrypt_failed"
    );
    // A flipped signature bit.
    let mut forged = sealed(&keys, 14, &rule_set(14, &["*"], 1, 1_000, T0)).0;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut sig = base64::Engine::decode(&b64, &forged.signature).unwrap();
    sig[5] ^= 1;
    forged.signature = base64::Engine::encode(&b64, sig);
    assert_eq!(
        code(host.set_rules(&mut e, forged, T0 + 3)),
        "rules.bad_signature"
    );
    // Cancels: another buyer's, an unknown commitment, and the genuine one then again.
    let not_mine = RulesCancel::sign(&buyer(11), ORIGIN, &c, T0 + 4);
    assert_eq!(
        code(host.cancel_rules(&mut e, not_mine, T0 + 4)),
        "rules.not_active"
    );
    let cancel = RulesCancel::sign(&buyer(10), ORIGIN, &c, T0 + 5);
    assert_eq!(
        code(host.cancel_rules(&mut e, cancel.clone(), T0 + 5)),
        "ok"
    );
    assert_eq!(
        code(host.cancel_rules(&mut e, cancel, T0 + 6)),
        "rules.not_active"
    );
    // The cancelled rule set posted again (the host replaying the buyer's old post): refused,
    // before and after a restart.
    assert_eq!(
        code(host.set_rules(&mut e, s.clone(), T0 + 7)),
        "rules.replayed"
    );
    drop(e);
    let (mut e, _) = host.boot(dir.path(), T0 + 8);
    assert_eq!(code(host.set_rules(&mut e, s, T0 + 9)), "rules.replayed");
    // Only the set and the cancel were logged (and the restart's epoch).
    let kinds: Vec<String> = host.leaves[size..]
        .iter()
        .map(|l| Event::from_leaf(l).unwrap().kind().to_owned())
        .collect();
    assert_eq!(kinds, ["rules.set", "rules.cancelled", "log.epoch"]);
}

#[test]
fn instant_auctions_sell_in_the_submission_s_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    let seller = SigningKey::from_bytes(&[1; 32]);
    host.set_rules(
        &mut e,
        sealed(
            &keys,
            10,
            &rule_set(10, &["HVAC"], 2_000_000, 10_000_000, T0),
        )
        .0,
        T0,
    )
    .unwrap();
    host.set_rules(
        &mut e,
        sealed(
            &keys,
            11,
            &rule_set(11, &["HVAC"], 3_000_000, 10_000_000, T0),
        )
        .0,
        T0,
    )
    .unwrap();
    let leads = accepted_leads(42);
    let hvac = leads.iter().find(|l| l["industry"] == "HVAC").unwrap();
    let other = leads.iter().find(|l| l["industry"] == "Solar").unwrap();
    let instant = |lead: &serde_json::Value, pricing, duration_ms| {
        seal_lead_with_terms(
            &seller,
            &keys.intake_key,
            ORIGIN,
            &serde_json::to_vec(lead).unwrap(),
            T0 + 1,
            Some(AuctionRequest {
                instant: true,
                pricing,
                duration_ms,
                ..AuctionRequest::default()
            }),
        )
        .unwrap()
    };
    let second = Some(leadgate_verifier::auction::Pricing::SecondPrice);
    let results = host.submit(
        &mut e,
        vec![
            instant(hvac, second, None),
            instant(other, None, None),
            instant(hvac, None, Some(5_000)),
        ],
        T0 + 2,
    );
    let sale = |r: &SubmitOutcome| match r {
        SubmitOutcome::Logged { sale: Some(a), .. } => Event::from_leaf(&a.leaf).unwrap(),
        other => panic!("{other:?}"),
    };
    // The HVAC lead: both rule sets bid; the higher wins at the second price, in this answer.
    match sale(&results[0]) {
        Event::AuctionClosed(c) => {
            assert_eq!(c.winner, hex::encode(buyer(11).verifying_key().to_bytes()));
            assert_eq!(c.price.units(), 2_000_000);
            assert_eq!(c.bids, 2);
            assert_eq!(c.time, T0 + 2);
        }
        other => panic!("{other:?}"),
    }
    // No rule set matches the Solar lead: unsold, at once.
    assert!(matches!(sale(&results[1]), Event::AuctionUnsold(u) if u.bids == 0));
    // An instant auction with a duration is refused.
    match &results[2] {
        SubmitOutcome::Refused(err) => assert_eq!(err.code.as_str(), "submission.bad_terms"),
        other => panic!("{other:?}"),
    }
    // In log order: the two leads, the two bids, the two closes; nothing is left open.
    let kinds: Vec<String> = host.leaves[host.leaves.len() - 6..]
        .iter()
        .map(|l| Event::from_leaf(l).unwrap().kind().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "lead.accepted",
            "lead.accepted",
            "bid.sealed",
            "bid.sealed",
            "auction.closed",
            "auction.unsold"
        ]
    );
    assert!(host.tick(&mut e, T0 + 60_000).is_empty());
    // The winner gets the lead now; the close survives a restart like any other.
    let id = match sale(&results[0]) {
        Event::AuctionClosed(c) => c.auction_id,
        _ => unreachable!(),
    };
    drop(e);
    let (mut e, _) = host.boot(dir.path(), T0 + 10);
    let request = ReleaseRequest::sign(&buyer(11), ORIGIN, &id, T0 + 11);
    let proof = host.sale_proof(&id);
    let lead = host.leads[&id].clone();
    assert!(matches!(
        e.handle(
            Request::Release {
                request,
                lead,
                proof
            },
            T0 + 11
        ),
        Response::Released { .. }
    ));
}
