//! Auctions in memory: sealed bids, closing on the enclave clock from the entries the host
//! stored, winner-only release from a sale proven from the log, the known marketplace attacks
//! (each must fail for the attacker, including a host that tampers with what it hands back),
//! and restarts that must lose no bid while refusing any state or replay the host tampered
//! with.

mod common;

use base64::Engine as _;
use common::{corpus, Host, ORIGIN, T0};
use ed25519_dalek::{SigningKey, VerifyingKey};
use leadgate_enclave::core::{Enclave, EnclaveConfig};
use leadgate_protocol::{Request, Response, SaleProof, SubmitOutcome};
use leadgate_verifier::auction::{
    check_own_bid, commitments_root, tie_rank, verify_seed, OpenedBid, Outcome, Pricing,
    TokenAmount,
};
use leadgate_verifier::bid::{seal_bid, sign_sealed_bid, SealedBid};
use leadgate_verifier::envelope::{keypair_from_seed, HpkeSecret};
use leadgate_verifier::event::{AuctionClosed, Event};
use leadgate_verifier::intake::{seal_lead_with_terms, AuctionRequest};
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::release::ReleaseRequest;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct Buyer {
    key: SigningKey,
    hpke: HpkeSecret,
    hpke_pk: [u8; 32],
}

impl Buyer {
    fn new(n: u8) -> Self {
        let (hpke, hpke_pk) = keypair_from_seed(&[n + 100; 32]);
        Self {
            key: SigningKey::from_bytes(&[n; 32]),
            hpke,
            hpke_pk,
        }
    }

    fn id(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    fn bid(
        &self,
        keys: &EnclaveKeys,
        auction: &str,
        amount: u64,
        nonce: u8,
    ) -> (SealedBid, [u8; 32]) {
        seal_bid(
            &self.key,
            &self.hpke_pk,
            &keys.intake_key,
            ORIGIN,
            auction,
            TokenAmount::new(amount).unwrap(),
            [nonce; 16],
        )
        .unwrap()
    }

    fn release(&self, lead: &str, now: u64) -> ReleaseRequest {
        ReleaseRequest::sign(&self.key, ORIGIN, lead, now)
    }
}

fn amt(u: u64) -> TokenAmount {
    TokenAmount::new(u).unwrap()
}

/// Accepted corpus leads, sealed with `terms`, submitted at `now`; returns (lead id, lead JSON).
fn list(
    host: &mut Host,
    e: &mut Enclave,
    keys: &EnclaveKeys,
    skip: usize,
    terms: &[AuctionRequest],
    now: u64,
) -> Vec<(String, Vec<u8>)> {
    let seller = SigningKey::from_bytes(&[1u8; 32]);
    let leads: Vec<Vec<u8>> = corpus()
        .iter()
        .filter(|l| l["expect"] == "accept")
        .skip(skip)
        .take(terms.len())
        .map(|l| serde_json::to_vec(&l["lead"]).unwrap())
        .collect();
    let sealed = leads
        .iter()
        .zip(terms)
        .map(|(l, t)| {
            seal_lead_with_terms(&seller, &keys.intake_key, ORIGIN, l, now, Some(*t)).unwrap()
        })
        .collect();
    host.submit(e, sealed, now)
        .into_iter()
        .zip(leads)
        .map(|(r, l)| match r {
            SubmitOutcome::Logged {
                lead_id, accepted, ..
            } => {
                assert!(accepted);
                (lead_id, l)
            }
            other => panic!("{other:?}"),
        })
        .collect()
}

fn terms(reserve: u64, duration_ms: u64, pricing: Pricing) -> AuctionRequest {
    AuctionRequest {
        reserve: Some(amt(reserve)),
        duration_ms: Some(duration_ms),
        pricing: Some(pricing),
        payout: None,
        off_site: false,
        instant: false,
    }
}

/// A release as the host sends it: the stored sealed lead and the sale's proof from the
/// stored log. Before the close there is no close entry; the proof then names the lead's own
/// `lead.accepted` as its close, as a host pretending the sale happened would.
fn release(
    host: &mut Host,
    e: &mut Enclave,
    req: ReleaseRequest,
    now: u64,
) -> Result<Vec<u8>, String> {
    let proof = match host.close_index(&req.lead_id) {
        Some(_) => host.sale_proof(&req.lead_id),
        None => {
            let mut p =
                host.sale_proof_of(&req.lead_id, host.accepted_index(&req.lead_id).unwrap());
            p.closed = p.accepted.clone();
            p
        }
    };
    release_with(host, e, req, proof, now)
}

fn release_with(
    host: &mut Host,
    e: &mut Enclave,
    req: ReleaseRequest,
    proof: SaleProof,
    now: u64,
) -> Result<Vec<u8>, String> {
    let lead = host.leads[&req.lead_id].clone();
    match e.handle(
        Request::Release {
            request: req,
            lead,
            proof,
        },
        now,
    ) {
        Response::Released { released, appended } => {
            host.store(&appended);
            let Event::LeadReleased(ev) = Event::from_leaf(&appended.leaf).unwrap() else {
                panic!("not lead.released")
            };
            assert_eq!(
                ev.sealed_sha256,
                hex::encode(released.sealed_sha256().unwrap())
            );
            Ok(serde_json::to_vec(&released).unwrap())
        }
        Response::Error(e) => Err(e.code.to_string()),
        other => panic!("{other:?}"),
    }
}

fn closed(events: &[Event], id: &str) -> AuctionClosed {
    events
        .iter()
        .find_map(|e| match e {
            Event::AuctionClosed(c) if c.auction_id == id => Some(c.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{id} not closed in {events:?}"))
}

#[test]
fn sealed_bid_auctions_and_the_attacks_that_must_fail() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    let log_key = VerifyingKey::from_bytes(&keys.log_key.to_bytes()).unwrap();
    let listed = list(
        &mut host,
        &mut e,
        &keys,
        0,
        &[
            terms(1_000_000, 60_000, Pricing::FirstPrice),
            terms(1_000_000, 60_000, Pricing::SecondPrice),
            terms(50_000_000, 60_000, Pricing::FirstPrice),
        ],
        T0,
    );
    let (a, b, c) = (&listed[0].0, &listed[1].0, &listed[2].0);
    let close = T0 + 60_000;
    let (b1, b2, b3) = (Buyer::new(11), Buyer::new(12), Buyer::new(13));

    // Auction A: b1 bids, then replaces its bid with a lower one; b2 and b3 tie at the top.
    let (a1, _) = b1.bid(&keys, a, 4_000_000, 1);
    let (a1b, a1b_c) = b1.bid(&keys, a, 1_500_000, 2);
    let (a2, a2_c) = b2.bid(&keys, a, 3_000_000, 3);
    let (a3, a3_c) = b3.bid(&keys, a, 3_000_000, 4);
    // Auction B (second price): b1 wins at b2's amount. Auction C: every bid under the reserve.
    let (bb1, bb1_c) = b1.bid(&keys, b, 9_000_000, 5);
    let (bb2, _) = b2.bid(&keys, b, 2_000_000, 6);
    let (cc1, _) = b1.bid(&keys, c, 49_999_999, 7);
    let got = host.bid(
        &mut e,
        vec![a1, a1b.clone(), a2.clone(), a3.clone(), bb1, bb2, cc1],
        T0 + 10,
    );
    assert_eq!(got, vec!["ok"; 7]);
    let size = host.leaves.len();

    // The attacks on bidding. Each is refused and appends nothing.
    let unknown = b1.bid(&keys, &"ab".repeat(16), 5_000_000, 20).0;
    let mut forged = b2.bid(&keys, a, 5_000_000, 21).0;
    forged.signature = a3.signature.clone();
    let mut swapped = a2.clone();
    swapped.buyer = b1.id(); // b2's bid re-attributed to b1 (signature no longer verifies)
    let enc: [u8; 32] = B64.decode(&a2.enc).unwrap().try_into().unwrap();
    let a2_ct = B64.decode(&a2.ciphertext).unwrap();
    let (stolen, _) = sign_sealed_bid(&b3.key, ORIGIN, a, &enc, &a2_ct); // b3 signs b2's sealed bid
    let mut tampered_ct = a2_ct.clone();
    tampered_ct[5] ^= 1;
    let (tampered, _) = sign_sealed_bid(&b2.key, ORIGIN, a, &enc, &tampered_ct);
    let got = host.bid(
        &mut e,
        vec![unknown, forged, swapped, stolen, tampered, a2.clone()],
        T0 + 20,
    );
    assert_eq!(
        got,
        vec![
            "auction.unknown",
            "bid.bad_signature",
            "bid.bad_signature",
            "bid.decrypt_failed",
            "bid.decrypt_failed",
            "bid.replayed",
        ]
    );
    assert_eq!(host.leaves.len(), size, "refused bids append nothing");

    // Before the close time nothing closes, whatever the host sends, and nobody gets the lead.
    assert!(host.tick(&mut e, close - 1).is_empty());
    assert_eq!(
        release(&mut host, &mut e, b2.release(a, close - 1), close - 1),
        Err("release.proof_invalid".into())
    );
    // At the close time (enclave clock) bidding is over even before the close is logged.
    let late = b1.bid(&keys, a, 9_000_000, 30).0;
    assert_eq!(host.bid(&mut e, vec![late], close), vec!["auction.closed"]);
    assert_eq!(host.leaves.len(), size);

    let events = host.tick(&mut e, close + 5);
    assert_eq!(events.len(), 3);
    assert!(
        host.tick(&mut e, close + 6).is_empty(),
        "each auction closes once"
    );
    // A: the tie between b2 and b3 goes to the lower SHA-256(seed || commitment).
    let ca = closed(&events, a);
    let seed: [u8; 64] = hex::decode(&ca.seed).unwrap().try_into().unwrap();
    verify_seed(&log_key, ORIGIN, a, &seed).unwrap();
    let (tie_winner, tie_loser) = if tie_rank(&seed, &a2_c) < tie_rank(&seed, &a3_c) {
        ((&b2, a2_c), (&b3, a3_c))
    } else {
        ((&b3, a3_c), (&b2, a2_c))
    };
    assert_eq!(ca.winner, tie_winner.0.id());
    assert_eq!(ca.winning_commitment, hex::encode(tie_winner.1));
    assert_eq!(ca.winner_hpke, hex::encode(tie_winner.0.hpke_pk));
    assert_eq!(ca.price, amt(3_000_000));
    assert_eq!(ca.bids, 3, "b1's replaced bid is not considered");
    assert_eq!(
        ca.commitments_root,
        hex::encode(commitments_root(&[a1b_c, a2_c, a3_c]))
    );
    // Every bidder's own check passes on the real outcome …
    let outcome = Outcome::Sold {
        winner: tie_winner.1,
        price: ca.price,
    };
    for (c, amount) in [(a1b_c, 1_500_000), (a2_c, 3_000_000), (a3_c, 3_000_000)] {
        let own = OpenedBid {
            commitment: c,
            amount: amt(amount),
        };
        check_own_bid(&own, &outcome, amt(1_000_000), Pricing::FirstPrice, &seed).unwrap();
    }
    // … and catches a winner determination that differs from the one it recomputes.
    let forged_outcome = Outcome::Sold {
        winner: tie_loser.1,
        price: ca.price,
    };
    let loser_bid = OpenedBid {
        commitment: tie_winner.1,
        amount: amt(3_000_000),
    };
    assert_eq!(
        check_own_bid(
            &loser_bid,
            &forged_outcome,
            amt(1_000_000),
            Pricing::FirstPrice,
            &seed
        )
        .unwrap_err()
        .code(),
        "auction.outcome_inconsistent"
    );
    // B: second price is the runner-up's amount. C: unsold.
    let cb = closed(&events, b);
    assert_eq!(
        (cb.winner.clone(), cb.winning_commitment.clone(), cb.price),
        (b1.id(), hex::encode(bb1_c), amt(2_000_000))
    );
    assert!(events
        .iter()
        .any(|ev| matches!(ev, Event::AuctionUnsold(u) if &u.auction_id == c && u.bids == 1)));
    // No event carries a bid amount other than the winner's price.
    for leaf in &host.leaves {
        let text = String::from_utf8(leaf.clone()).unwrap();
        for secret in ["4000000", "1500000", "49999999", "9000000"] {
            let as_number = [format!(":{secret},"), format!(":{secret}}}")];
            assert!(
                !as_number.iter().any(|n| text.contains(n)),
                "{secret} in {text}"
            );
        }
    }

    // Bids after close are refused: the enclave no longer holds the auction (the gateway
    // tells `auction.closed` from its table).
    let after = b1.bid(&keys, a, 9_000_000, 31).0;
    assert_eq!(
        host.bid(&mut e, vec![after], close + 10),
        vec!["auction.unknown"]
    );

    // Release: only A's winner gets A, not the loser, not b1 (which won B), not for an unsold
    // lead, not with a forged or stale request, not with another lead's ciphertext.
    let size = host.leaves.len();
    let now = close + 100;
    assert_eq!(
        release(&mut host, &mut e, tie_loser.0.release(a, now), now),
        Err("release.not_winner".into())
    );
    assert_eq!(
        release(&mut host, &mut e, b1.release(a, now), now),
        Err("release.not_winner".into())
    );
    assert_eq!(
        release(&mut host, &mut e, b1.release(c, now), now),
        Err("release.not_sold".into())
    );
    let mut forged_req = tie_winner.0.release(a, now);
    forged_req.buyer = b1.id();
    assert_eq!(
        release(&mut host, &mut e, forged_req, now),
        Err("release.bad_signature".into())
    );
    let mut claimed = b1.release(a, now);
    claimed.buyer = tie_winner.0.id(); // b1 signs, claims to be the winner
    assert_eq!(
        release(&mut host, &mut e, claimed, now),
        Err("release.bad_signature".into())
    );
    assert_eq!(
        release(
            &mut host,
            &mut e,
            tie_winner.0.release(a, now - 3_600_000),
            now
        ),
        Err("release.stale".into())
    );
    let mut swapped_host = host.clone();
    swapped_host.leads.insert(a.clone(), host.leads[b].clone());
    assert_eq!(
        release(&mut swapped_host, &mut e, tie_winner.0.release(a, now), now),
        Err("release.lead_mismatch".into())
    );
    assert_eq!(host.leaves.len(), size, "refused releases append nothing");
    // The winner gets the lead, sealed to the HPKE key of its winning bid.
    let env = release(&mut host, &mut e, tie_winner.0.release(a, now), now).unwrap();
    let env: leadgate_verifier::release::ReleasedLead = serde_json::from_slice(&env).unwrap();
    assert_eq!(env.open(ORIGIN, &tie_winner.0.hpke).unwrap(), listed[0].1);
    assert!(env.open(ORIGIN, &tie_loser.0.hpke).is_err());
    let env_b = release(&mut host, &mut e, b1.release(b, now), now).unwrap();
    let env_b: leadgate_verifier::release::ReleasedLead = serde_json::from_slice(&env_b).unwrap();
    assert_eq!(env_b.open(ORIGIN, &b1.hpke).unwrap(), listed[1].1);
}

#[test]
fn bids_and_release_rights_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    // Leads and a close before the sealed state, more after it.
    list(
        &mut host,
        &mut e,
        &keys,
        10,
        &[terms(1, 1_000, Pricing::FirstPrice); 3],
        T0,
    );
    host.tick(&mut e, T0 + 2_000);
    let listed = list(
        &mut host,
        &mut e,
        &keys,
        0,
        &[terms(1_000, 60_000, Pricing::FirstPrice); 2],
        T0 + 3_000,
    );
    let (a, b) = (&listed[0].0, &listed[1].0);
    let (b1, b2) = (Buyer::new(21), Buyer::new(22));
    let a1 = b1.bid(&keys, a, 5_000, 1).0;
    let bids = vec![a1.clone(), b2.bid(&keys, a, 7_000, 2).0];
    assert_eq!(host.bid(&mut e, bids, T0 + 4_000), vec!["ok"; 2]);
    let state = host.seal_state(&mut e, true, T0 + 4_000).unwrap();
    assert_eq!(state, host.leaves.len() as u64);
    assert_eq!(
        host.bid(&mut e, vec![b2.bid(&keys, b, 2_000, 3).0], T0 + 4_500),
        vec!["ok"]
    );

    // kill -9 and restart mid-auction: the state comes back from the sealed state and the
    // leaves after it.
    drop(e);
    let (mut e, _) = host.boot(dir.path(), T0 + 5_000);
    let Event::LogEpoch(epoch) = Event::from_leaf(host.leaves.last().unwrap()).unwrap() else {
        panic!()
    };
    assert_eq!(epoch.replay_from, state, "restored from the sealed state");
    // The close time came back: a bid at it is refused.
    assert_eq!(
        host.bid(&mut e, vec![b1.bid(&keys, a, 1, 9).0], T0 + 63_000),
        vec!["auction.closed"]
    );
    // The replay filter starts empty, so the host can get b1's first bid logged again; it
    // counts once at close all the same.
    assert_eq!(host.bid(&mut e, vec![a1], T0 + 6_000), vec!["ok"]);
    assert_eq!(
        host.bid(&mut e, vec![b1.bid(&keys, b, 3_000, 4).0], T0 + 6_000),
        vec!["ok"]
    );
    let events = host.tick(&mut e, T0 + 63_000);
    assert_eq!(closed(&events, a).winner, b2.id());
    assert_eq!(
        closed(&events, a).bids,
        2,
        "no sealed bid lost or counted twice"
    );
    assert_eq!(closed(&events, b).winner, b1.id());

    // Restart again after the close, from leaf 0 this time: the winner can still get its lead.
    drop(e);
    host.state = None;
    let (mut e, _) = host.boot(dir.path(), T0 + 70_000);
    let now = T0 + 71_000;
    assert_eq!(
        release(&mut host, &mut e, b1.release(a, now), now),
        Err("release.not_winner".into())
    );
    let env = release(&mut host, &mut e, b2.release(a, now), now).unwrap();
    let env: leadgate_verifier::release::ReleasedLead = serde_json::from_slice(&env).unwrap();
    assert_eq!(env.open(ORIGIN, &b2.hpke).unwrap(), listed[0].1);
    // Past the release window the sale cannot be claimed.
    drop(e);
    let mut config = EnclaveConfig::new(ORIGIN);
    config.release_window_ms = 60_000;
    let (mut e, _) = host.boot_with(dir.path(), T0 + 200_000, config);
    assert_eq!(
        release(&mut host, &mut e, b2.release(a, T0 + 200_000), T0 + 200_000),
        Err("release.expired".into())
    );
}

/// Three open auctions with bids from two buyers, due at `T0 + 60_000`.
fn three_auctions(
    host: &mut Host,
    e: &mut Enclave,
    keys: &EnclaveKeys,
) -> (Vec<String>, Buyer, Buyer) {
    let listed = list(
        host,
        e,
        keys,
        20,
        &[terms(1_000, 60_000, Pricing::FirstPrice); 3],
        T0,
    );
    let ids: Vec<String> = listed.into_iter().map(|(id, _)| id).collect();
    let (b1, b2) = (Buyer::new(41), Buyer::new(42));
    let bids = vec![
        b1.bid(keys, &ids[0], 5_000, 1).0,
        b2.bid(keys, &ids[0], 7_000, 2).0,
        b1.bid(keys, &ids[0], 8_000, 3).0,
        b2.bid(keys, &ids[1], 2_000, 4).0,
    ];
    assert_eq!(host.bid(e, bids, T0 + 10), vec!["ok"; 4]);
    (ids, b1, b2)
}

#[test]
fn a_host_that_tampers_with_a_close_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    let (ids, b1, _) = three_auctions(&mut host, &mut e, &keys);
    let due = T0 + 60_000;
    let honest = host.close_input(&ids[0]);
    assert_eq!(honest.bids.len(), 3);
    let size = host.leaves.len();
    let mut attempts = Vec::new();
    // A bid omitted (the highest), duplicated, or two swapped in order.
    let mut c = honest.clone();
    c.bids.remove(2);
    attempts.push(("omitted", c));
    let mut c = honest.clone();
    c.bids.push(c.bids[1].clone());
    attempts.push(("duplicated", c));
    let mut c = honest.clone();
    c.bids.swap(0, 1);
    attempts.push(("reordered", c));
    // A sealed bid substituted (b1's lower bid under the leaf of its higher one), and a bid
    // leaf of another auction in place of one of this auction's.
    let mut c = honest.clone();
    c.bids[2].sealed = c.bids[0].sealed.clone();
    attempts.push(("substituted sealed bid", c));
    let mut c = honest.clone();
    c.bids[1] = host.close_input(&ids[1]).bids[0].clone();
    attempts.push(("another auction's bid", c));
    // A bid entry the log never held: a fresh bid from b1, with a made-up bid.sealed leaf.
    let mut c = honest.clone();
    let fresh = b1.bid(&keys, &ids[0], 9_000, 9).0;
    let leaf = String::from_utf8(c.bids[2].leaf.to_vec()).unwrap();
    let commitment = hex::encode(fresh.decode().unwrap().commitment);
    let old = serde_json::from_str::<serde_json::Value>(&leaf).unwrap()["commitment"]
        .as_str()
        .unwrap()
        .to_owned();
    c.bids[2].leaf = serde_bytes::ByteBuf::from(leaf.replace(&old, &commitment).into_bytes());
    c.bids[2].sealed = fresh;
    attempts.push(("forged bid entry", c));
    // Another auction's lead.accepted in front of this auction's bids.
    let mut c = honest.clone();
    c.accepted = host.close_input(&ids[2]).accepted;
    attempts.push(("another auction's lead", c));
    for (what, input) in attempts {
        let got = host.close(&mut e, vec![input], due);
        assert_eq!(got, vec![Err("auction.close_invalid".into())], "{what}");
    }
    // Before its close time, even the honest entries do not close it.
    assert_eq!(
        host.close(&mut e, vec![honest.clone()], due - 1),
        vec![Err("auction.close_invalid".into())]
    );
    assert_eq!(host.leaves.len(), size, "refused closes append nothing");
    // The auction is still open and closes from the honest entries, with b1's last bid.
    let events = host.tick(&mut e, due);
    assert_eq!(events.len(), 3);
    let c0 = closed(&events, &ids[0]);
    assert_eq!(
        (c0.winner.as_str(), c0.price, c0.bids),
        (b1.id().as_str(), amt(8_000), 2)
    );
    // A closed auction cannot be closed again, with any entries.
    assert_eq!(
        host.close(&mut e, vec![honest], due + 1),
        vec![Err("auction.close_invalid".into())]
    );
}

#[test]
fn a_release_needs_a_sale_proven_from_this_epochs_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    let (ids, b1, b2) = three_auctions(&mut host, &mut e, &keys);
    let events = host.tick(&mut e, T0 + 60_000);
    assert_eq!(closed(&events, &ids[0]).winner, b1.id());
    assert_eq!(closed(&events, &ids[1]).winner, b2.id());
    let now = T0 + 61_000;
    let size = host.leaves.len();
    let a = &ids[0];
    let honest = host.sale_proof(a);

    // Another buyer's sale: b2 won auction 1 and offers its close for auction 0.
    let mut other = honest.clone();
    other.closed = host.sale_proof(&ids[1]).closed;
    assert_eq!(
        release_with(&mut host, &mut e, b2.release(a, now), other, now),
        Err("release.proof_invalid".into())
    );
    // A forged auction.closed naming b2 as the winner: not in the log.
    let mut forged = honest.clone();
    let text = String::from_utf8(forged.closed.leaf.to_vec()).unwrap();
    forged.closed.leaf = serde_bytes::ByteBuf::from(text.replace(&b1.id(), &b2.id()).into_bytes());
    assert_eq!(
        release_with(&mut host, &mut e, b2.release(a, now), forged, now),
        Err("release.proof_invalid".into())
    );
    // The right entries with a path that does not lead to the receipt's root.
    let mut bent = honest.clone();
    bent.accepted.path[0] = serde_bytes::ByteBuf::from(vec![0u8; 32]);
    assert_eq!(
        release_with(&mut host, &mut e, b1.release(a, now), bent, now),
        Err("release.proof_invalid".into())
    );
    // Another lead's entries (a valid sale of b2's) for lead 0.
    let mut swapped = host.sale_proof(&ids[1]);
    swapped.receipt = honest.receipt.clone();
    assert_eq!(
        release_with(&mut host, &mut e, b2.release(a, now), swapped, now),
        Err("release.proof_invalid".into())
    );
    // A receipt that is not the enclave's.
    let mut unsigned = honest.clone();
    unsigned.receipt.root = hex::encode([1u8; 32]);
    assert_eq!(
        release_with(&mut host, &mut e, b1.release(a, now), unsigned, now),
        Err("release.proof_invalid".into())
    );
    // The unsold auction's close.
    assert_eq!(
        release(&mut host, &mut e, b1.release(&ids[2], now), now),
        Err("release.not_sold".into())
    );
    assert_eq!(host.leaves.len(), size, "refused releases append nothing");

    // After a restart, a proof against the previous epoch's receipt is stale: that tree may
    // hold entries the restart voided.
    drop(e);
    let (mut e, _) = host.boot(dir.path(), now);
    assert_eq!(
        release_with(&mut host, &mut e, b1.release(a, now), honest, now),
        Err("release.proof_invalid".into())
    );
    // The same sale against this epoch's tree goes through.
    let env = release(&mut host, &mut e, b1.release(a, now), now).unwrap();
    let env: leadgate_verifier::release::ReleasedLead = serde_json::from_slice(&env).unwrap();
    assert!(env.open(ORIGIN, &b1.hpke).is_ok());
}

/// Boots from `host` with the given start-up requests: `Ok` if the enclave started, else the
/// first error code.
fn start(host: &Host, dir: &std::path::Path, reqs: Vec<Request>, now: u64) -> Result<(), String> {
    let tip = host.tip();
    let sealer = leadgate_enclave::sealing::DevFileSealer::open_or_create(dir).unwrap();
    let attestor =
        leadgate_enclave::attest::DevAttestationProvider::open_or_create(dir, now).unwrap();
    let mut e = Enclave::new(
        EnclaveConfig::new(ORIGIN),
        Box::new(sealer),
        Box::new(attestor),
    );
    assert!(matches!(
        e.handle(
            Request::Boot {
                sealed_secrets: host.sealed.clone(),
                tip,
                aws_credentials: None,
            },
            now
        ),
        Response::Booted { .. }
    ));
    for req in reqs {
        match e.handle(req, now) {
            Response::Ok => {}
            Response::Error(err) => return Err(err.code.to_string()),
            other => panic!("{other:?}"),
        }
    }
    match e.handle(Request::Start, now) {
        Response::Started { .. } => Ok(()),
        Response::Error(err) => Err(err.code.to_string()),
        other => panic!("{other:?}"),
    }
}

fn start_error(host: &Host, dir: &std::path::Path, reqs: Vec<Request>, now: u64) -> String {
    start(host, dir, reqs, now).expect_err("a tampered restore must not start the enclave")
}

/// The state requests followed by the replay from its size.
fn with_state(host: &Host, chunk: usize) -> Vec<Request> {
    let (mut reqs, from) = host.state_requests();
    reqs.extend(host.restore_requests(from, chunk));
    reqs
}

#[test]
fn a_host_that_tampers_with_the_restore_cannot_start_the_enclave() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    list(
        &mut host,
        &mut e,
        &keys,
        5,
        &[terms(1, 1_000, Pricing::FirstPrice); 2],
        T0,
    );
    host.tick(&mut e, T0 + 1_000);
    let old_state = host.seal_state(&mut e, true, T0 + 1_000).unwrap();
    let old_parts = host.state.clone().unwrap();
    let listed = list(
        &mut host,
        &mut e,
        &keys,
        0,
        &[terms(1_000, 60_000, Pricing::FirstPrice)],
        T0 + 2_000,
    );
    let a = &listed[0].0;
    let (b1, b2) = (Buyer::new(31), Buyer::new(32));
    assert_eq!(
        host.bid(&mut e, vec![b1.bid(&keys, a, 5_000, 1).0], T0 + 3_000),
        vec!["ok"]
    );
    let state = host.seal_state(&mut e, true, T0 + 3_000).unwrap();
    assert!(state > old_state);
    assert_eq!(
        host.bid(&mut e, vec![b2.bid(&keys, a, 7_000, 2).0], T0 + 3_500),
        vec!["ok"]
    );
    drop(e);
    let now = T0 + 5_000;
    let d = dir.path();
    let bid_index = host.leaves.len() - 1;

    // No restore at all, or only the state without the leaves after it.
    assert_eq!(start_error(&host, d, vec![], now), "boot.replay_invalid");
    assert_eq!(
        start_error(&host, d, host.state_requests().0, now),
        "boot.replay_invalid"
    );
    // The replay starting past the state's size, or at 0 on top of the state.
    let mut reqs = host.state_requests().0;
    reqs.extend(host.restore_requests(state + 1, 100));
    assert_eq!(start_error(&host, d, reqs, now), "boot.replay_invalid");
    let mut reqs = host.state_requests().0;
    reqs.extend(host.restore_requests(0, 100));
    assert_eq!(start_error(&host, d, reqs, now), "boot.replay_invalid");
    // The last bid's leaf dropped from the replay (from the state, and from leaf 0).
    let mut h = host.clone();
    h.leaves.remove(bid_index);
    assert_eq!(
        start_error(&h, d, with_state(&h, 100), now),
        "boot.replay_invalid"
    );
    h.state = None;
    assert_eq!(
        start_error(&h, d, with_state(&h, 100), now),
        "boot.replay_invalid"
    );
    // The close time rewritten in the accepted event.
    let mut h = host.clone();
    h.state = None;
    let i = h.accepted_index(a).unwrap() as usize;
    let text = String::from_utf8(h.leaves[i].clone()).unwrap();
    let moved = text.replace(&format!("{}", T0 + 62_000), &format!("{}", T0 + 3_001));
    assert_ne!(moved, text);
    h.leaves[i] = moved.into_bytes();
    assert_eq!(
        start_error(&h, d, with_state(&h, 100), now),
        "boot.replay_invalid"
    );
    // A state part with a flipped bit, relabelled with another size, or out of order.
    let mut h = host.clone();
    h.state.as_mut().unwrap()[0].blob[40] ^= 1;
    assert_eq!(
        start_error(&h, d, with_state(&h, 100), now),
        "boot.state_invalid"
    );
    let mut h = host.clone();
    h.state.as_mut().unwrap()[0].size = old_state;
    assert_eq!(
        start_error(&h, d, with_state(&h, 100), now),
        "boot.state_invalid"
    );
    let mut h = host.clone();
    h.state.as_mut().unwrap()[0].index = 1;
    assert_eq!(
        start_error(&h, d, with_state(&h, 100), now),
        "boot.state_invalid"
    );
    // An older state is harmless: the replay from there reaches the same tip.
    let mut h = host.clone();
    h.state = Some(old_parts);
    assert_eq!(start(&h, d, with_state(&h, 7), now), Ok(()));
    // The honest restore, and a full one from leaf 0, start the enclave.
    assert_eq!(start(&host, d, with_state(&host, 100), now), Ok(()));
    assert_eq!(start(&host, d, host.restore_requests(0, 7), now), Ok(()));
}
