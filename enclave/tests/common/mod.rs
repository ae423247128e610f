//! A minimal in-memory host for the enclave's flow tests: stores what the enclave returns and
//! boots it the way the real host does (tip, the sealed state it holds, the leaves after it,
//! start), closes and releases the way the real host does, with the host's own code for these
//! (`leadgate_protocol::boot`).
#![allow(dead_code)]

use std::collections::HashMap;

use ed25519_dalek::SigningKey;
use leadgate_enclave::attest::DevAttestationProvider;
use leadgate_enclave::core::{Enclave, EnclaveConfig};
use leadgate_enclave::sealing::DevFileSealer;
use leadgate_protocol::boot;
use leadgate_protocol::{
    BidOutcome, CloseInput, CloseOutcome, LoggedBid, Request, Response, SaleProof, StatePart,
    SubmitOutcome, Tip, WireAppended,
};
use leadgate_verifier::autobid::{RulesCancel, SealedRuleSet};
use leadgate_verifier::bid::SealedBid;
use leadgate_verifier::event::Event;
use leadgate_verifier::intake::{seal_lead, SealedLead};
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle::NodeStore;
use serde_bytes::ByteBuf;

pub const ORIGIN: &str = "leadgate.test/log";
pub const T0: u64 = 1_790_000_000_000;

/// What the host stores.
#[derive(Default, Clone)]
pub struct Host {
    pub sealed: Option<ByteBuf>,
    pub nodes: HashMap<(u8, u64), [u8; 32]>,
    pub leaves: Vec<Vec<u8>>,
    pub receipts: Vec<leadgate_verifier::receipt::Receipt>,
    pub last: Option<WireAppended>,
    pub checkpoint: Option<ByteBuf>,
    /// The last sealed state's parts.
    pub state: Option<Vec<StatePart>>,
    /// Sealed bids by the leaf index of their `bid.sealed`.
    pub bids: HashMap<u64, SealedBid>,
    /// Sealed leads by lead id.
    pub leads: HashMap<String, SealedLead>,
    /// Sealed rule sets by the leaf index of their `rules.set`.
    pub rule_sets: Vec<(u64, SealedRuleSet)>,
    /// Whether the enclave booted last said it settles (then it takes `LoadBids`).
    pub settling: bool,
    /// A host that does not give a settling enclave its open bids back at boot.
    pub withhold_bids: bool,
}

impl NodeStore for Host {
    fn node(&self, level: u8, index: u64) -> Option<[u8; 32]> {
        self.nodes.get(&(level, index)).copied()
    }
}

impl Host {
    pub fn store(&mut self, a: &WireAppended) {
        assert_eq!(a.index as usize, self.leaves.len(), "appends are in order");
        self.leaves.push(a.leaf.to_vec());
        self.receipts.push(a.receipt.clone());
        for n in &a.nodes {
            self.nodes
                .insert((n.level, n.index), n.hash.as_slice().try_into().unwrap());
        }
        self.last = Some(a.clone());
    }

    /// The tip, as the host builds it ([`boot::tip`]).
    pub fn tip(&self) -> Option<Tip> {
        let last = self.last.as_ref()?;
        let checkpoint = self.checkpoint.as_ref().map(|c| c.to_vec());
        Some(boot::tip(last.receipt.clone(), self, checkpoint).unwrap())
    }

    /// The restore requests from `from` to the tip, in chunks of `chunk` leaves, as the host
    /// builds them ([`boot::Restore`]).
    pub fn restore_requests(&self, from: u64, chunk: usize) -> Vec<Request> {
        let mut restore = boot::Restore::new(from);
        let leaves: Vec<ByteBuf> = self.leaves[from as usize..]
            .iter()
            .cloned()
            .map(ByteBuf::from)
            .collect();
        leaves
            .chunks(chunk.max(1))
            .map(|c| restore.next_request(c.to_vec()))
            .collect()
    }

    /// The `LoadState` requests of the stored sealed state, and the size to replay from.
    pub fn state_requests(&self) -> (Vec<Request>, u64) {
        match &self.state {
            Some(parts) => (
                parts
                    .iter()
                    .cloned()
                    .map(|part| Request::LoadState { part })
                    .collect(),
                parts[0].size,
            ),
            None => (Vec::new(), 0),
        }
    }

    /// Seals the enclave's state (if due, or `force`) and keeps the parts. Returns the size.
    pub fn seal_state(&mut self, e: &mut Enclave, force: bool, now: u64) -> Option<u64> {
        let Response::SealedState { part: Some(first) } =
            e.handle(Request::SealState { part: 0, force }, now)
        else {
            return None;
        };
        let mut parts = vec![first];
        for part in 1..parts[0].count {
            let Response::SealedState { part: Some(p) } =
                e.handle(Request::SealState { part, force }, now)
            else {
                panic!("part {part}")
            };
            parts.push(p);
        }
        let size = parts[0].size;
        self.state = Some(parts);
        Some(size)
    }

    fn events(&self) -> impl Iterator<Item = (u64, Event)> + '_ {
        self.leaves
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64, Event::from_leaf(l).unwrap()))
    }

    /// Leaf index of lead `id`'s `lead.accepted`.
    pub fn accepted_index(&self, id: &str) -> Option<u64> {
        self.events().find_map(|(i, e)| match e {
            Event::LeadAccepted(a) if a.lead_id == id => Some(i),
            _ => None,
        })
    }

    /// Leaf index of auction `id`'s close.
    pub fn close_index(&self, id: &str) -> Option<u64> {
        self.events().find_map(|(i, e)| match e {
            Event::AuctionClosed(c) if c.auction_id == id => Some(i),
            Event::AuctionUnsold(u) if u.auction_id == id => Some(i),
            _ => None,
        })
    }

    /// What closing auction `id` takes, as the host stores it.
    pub fn close_input(&self, id: &str) -> CloseInput {
        let accepted = self.accepted_index(id).expect("an accepted lead");
        let bids = self
            .events()
            .filter_map(|(i, e)| match e {
                Event::BidSealed(b) if b.auction_id == id => Some(LoggedBid {
                    leaf: ByteBuf::from(self.leaves[i as usize].clone()),
                    sealed: self.bids[&i].clone(),
                }),
                _ => None,
            })
            .collect();
        CloseInput {
            accepted: ByteBuf::from(self.leaves[accepted as usize].clone()),
            bids,
        }
    }

    /// The `LoadBids` requests a settling enclave takes at start-up: every open auction with
    /// bids, packed as the host packs them.
    pub fn bids_requests(&self) -> Vec<Request> {
        let open: Vec<String> = self
            .events()
            .filter_map(|(_, e)| match e {
                Event::LeadAccepted(a)
                    if self.close_index(&a.lead_id).is_none()
                        && self.events().any(
                            |(_, b)| matches!(b, Event::BidSealed(b) if b.auction_id == a.lead_id),
                        ) =>
                {
                    Some(a.lead_id)
                }
                _ => None,
            })
            .collect();
        leadgate_protocol::pack_close_inputs(open.iter().map(|id| self.close_input(id)).collect())
            .into_iter()
            .map(|auctions| Request::LoadBids { auctions })
            .collect()
    }

    /// The sale proof of lead `id` in the tree of the last stored receipt.
    pub fn sale_proof(&self, id: &str) -> SaleProof {
        self.sale_proof_of(id, self.close_index(id).unwrap())
    }

    /// The sale proof of lead `id` with leaf `c` as its close, in the tree of the last stored
    /// receipt.
    pub fn sale_proof_of(&self, id: &str, c: u64) -> SaleProof {
        let a = self.accepted_index(id).unwrap();
        boot::sale_proof(
            self.receipts.last().unwrap().clone(),
            self,
            (a, self.leaves[a as usize].clone()),
            (c, self.leaves[c as usize].clone()),
        )
        .unwrap()
    }

    pub fn boot(&mut self, dir: &std::path::Path, now: u64) -> (Enclave, EnclaveKeys) {
        self.boot_with(dir, now, EnclaveConfig::new(ORIGIN))
    }

    /// Boot, tags and replay; returns the enclave before `Start`.
    pub fn boot_unstarted(
        &mut self,
        dir: &std::path::Path,
        now: u64,
        config: EnclaveConfig,
    ) -> (Enclave, EnclaveKeys) {
        let sealer = DevFileSealer::open_or_create(dir).unwrap();
        let attestor = DevAttestationProvider::open_or_create(dir, now).unwrap();
        let mut e = Enclave::new(config, Box::new(sealer), Box::new(attestor));
        let keys = match e.handle(
            Request::Boot {
                sealed_secrets: self.sealed.clone(),
                tip: self.tip(),
                aws_credentials: None,
            },
            now,
        ) {
            Response::Booted {
                sealed_secrets,
                keys,
                settling,
                ..
            } => {
                self.sealed = Some(sealed_secrets);
                self.settling = settling;
                EnclaveKeys::from_attested(Some(&keys), None).unwrap()
            }
            other => panic!("{other:?}"),
        };
        if self.last.is_some() {
            let (load, from) = self.state_requests();
            for req in load {
                assert_eq!(e.handle(req, now), Response::Ok);
            }
            for req in self.restore_requests(from, 500) {
                assert_eq!(e.handle(req, now), Response::Ok);
            }
            for req in self.rules_requests() {
                assert_eq!(e.handle(req, now), Response::Ok);
            }
            if self.settling && !self.withhold_bids {
                for req in self.bids_requests() {
                    assert_eq!(e.handle(req, now), Response::Ok);
                }
            }
        }
        (e, keys)
    }

    pub fn boot_with(
        &mut self,
        dir: &std::path::Path,
        now: u64,
        config: EnclaveConfig,
    ) -> (Enclave, EnclaveKeys) {
        let (mut e, keys) = self.boot_unstarted(dir, now, config);
        match e.handle(Request::Start, now) {
            Response::Started { appended } => self.store(&appended),
            other => panic!("{other:?}"),
        }
        (e, keys)
    }

    pub fn submit(
        &mut self,
        e: &mut Enclave,
        leads: Vec<SealedLead>,
        now: u64,
    ) -> Vec<SubmitOutcome> {
        let Response::Submitted { results, bids } = e.handle(
            Request::Submit {
                leads: leads.clone(),
            },
            now,
        ) else {
            panic!()
        };
        for (r, lead) in results.iter().zip(leads) {
            if let SubmitOutcome::Logged {
                appended, lead_id, ..
            } = r
            {
                self.store(appended);
                self.leads.insert(lead_id.clone(), lead);
            }
        }
        for b in bids {
            self.bids.insert(b.appended.index, b.sealed);
            self.store(&b.appended);
        }
        for r in &results {
            if let SubmitOutcome::Logged { sale: Some(a), .. } = r {
                self.store(a);
            }
        }
        results
    }

    /// Posts a sealed rule set; stores its `rules.set` and the rule set. The leaf index, or
    /// the refusal's code.
    pub fn set_rules(
        &mut self,
        e: &mut Enclave,
        rules: SealedRuleSet,
        now: u64,
    ) -> Result<u64, String> {
        match e.handle(
            Request::SetRules {
                rules: rules.clone(),
            },
            now,
        ) {
            Response::RulesLogged { appended } => {
                self.store(&appended);
                self.rule_sets.push((appended.index, rules));
                Ok(appended.index)
            }
            Response::Error(err) => Err(err.code.to_string()),
            other => panic!("{other:?}"),
        }
    }

    /// Posts a cancellation; stores its `rules.cancelled`.
    pub fn cancel_rules(
        &mut self,
        e: &mut Enclave,
        cancel: RulesCancel,
        now: u64,
    ) -> Result<u64, String> {
        match e.handle(Request::CancelRules { cancel }, now) {
            Response::RulesLogged { appended } => {
                self.store(&appended);
                Ok(appended.index)
            }
            Response::Error(err) => Err(err.code.to_string()),
            other => panic!("{other:?}"),
        }
    }

    /// The sealed rule sets active at the tip, as the real host selects them: each buyer's
    /// last `rules.set`, unless a `rules.cancelled` of it followed.
    pub fn active_rule_sets(&self) -> Vec<SealedRuleSet> {
        let mut last: HashMap<String, (u64, String)> = HashMap::new();
        let mut cancelled = std::collections::HashSet::new();
        for (i, e) in self.events() {
            match e {
                Event::RulesSet(r) => {
                    last.insert(r.buyer, (i, r.commitment));
                }
                Event::RulesCancelled(c) => {
                    cancelled.insert(c.commitment);
                }
                _ => {}
            }
        }
        let mut active: Vec<(u64, SealedRuleSet)> = last
            .values()
            .filter(|(_, c)| !cancelled.contains(c))
            .filter_map(|(i, _)| self.rule_sets.iter().find(|(j, _)| j == i).cloned())
            .collect();
        active.sort_by_key(|(i, _)| *i);
        active.into_iter().map(|(_, r)| r).collect()
    }

    /// The `LoadRules` requests of the active rule sets.
    pub fn rules_requests(&self) -> Vec<Request> {
        let sets = self.active_rule_sets();
        if sets.is_empty() {
            return Vec::new();
        }
        sets.chunks(leadgate_protocol::MAX_RULE_SETS_PER_LOAD)
            .map(|c| Request::LoadRules { sets: c.to_vec() })
            .collect()
    }

    /// Sends bids; stores the appends and the sealed bids. Returns each outcome's code
    /// (`ok` when logged).
    pub fn bid(&mut self, e: &mut Enclave, bids: Vec<SealedBid>, now: u64) -> Vec<String> {
        let Response::Bids { results } = e.handle(Request::Bid { bids: bids.clone() }, now) else {
            panic!()
        };
        results
            .into_iter()
            .zip(bids)
            .map(|(r, b)| match r {
                BidOutcome::Logged { appended, .. } => {
                    self.bids.insert(appended.index, b);
                    self.store(&appended);
                    "ok".to_owned()
                }
                BidOutcome::Refused(e) => e.code.to_string(),
            })
            .collect()
    }

    /// Ticks and closes what is due from the stored entries, as the host does; stores and
    /// returns the close events.
    pub fn tick(&mut self, e: &mut Enclave, now: u64) -> Vec<Event> {
        let Response::Due { auctions } = e.handle(Request::Tick, now) else {
            panic!()
        };
        if auctions.is_empty() {
            return Vec::new();
        }
        let inputs = auctions.iter().map(|id| self.close_input(id)).collect();
        self.close(e, inputs, now)
            .into_iter()
            .map(|r| r.expect("the stored entries close the auction"))
            .collect()
    }

    /// Sends `inputs` in one `Close`; stores the close events. Per input: the event, or the
    /// refusal's code.
    pub fn close(
        &mut self,
        e: &mut Enclave,
        inputs: Vec<CloseInput>,
        now: u64,
    ) -> Vec<Result<Event, String>> {
        let Response::Closed { results } = e.handle(Request::Close { auctions: inputs }, now)
        else {
            panic!()
        };
        results
            .into_iter()
            .map(|r| match r {
                CloseOutcome::Logged(a) => {
                    self.store(&a);
                    Ok(Event::from_leaf(&a.leaf).unwrap())
                }
                CloseOutcome::Refused(e) => Err(e.code.to_string()),
            })
            .collect()
    }
}

pub fn corpus() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/leads.jsonl"
    ))
    .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn seal(
    seller: &SigningKey,
    keys: &EnclaveKeys,
    lead: &serde_json::Value,
    at: u64,
) -> SealedLead {
    seal_lead(
        seller,
        &keys.intake_key,
        ORIGIN,
        &serde_json::to_vec(lead).unwrap(),
        at,
    )
    .unwrap()
}

impl Host {
    /// Boots the running enclave `e` again from this host's store, as the real host does after
    /// a `Reset` (boot, sealed state, replay in chunks of 500, start). Returns the first
    /// error, or the `Started` answer (whose append is stored).
    pub fn reboot(&mut self, e: &mut Enclave, now: u64) -> Response {
        let booted = e.handle(
            Request::Boot {
                sealed_secrets: self.sealed.clone(),
                tip: self.tip(),
                aws_credentials: None,
            },
            now,
        );
        let Response::Booted { settling, .. } = booted else {
            return booted;
        };
        let (load, from) = self.state_requests();
        let mut requests = load;
        requests.extend(self.restore_requests(from, 500));
        requests.extend(self.rules_requests());
        if settling && !self.withhold_bids {
            requests.extend(self.bids_requests());
        }
        for req in requests {
            let resp = e.handle(req, now);
            if resp != Response::Ok {
                return resp;
            }
        }
        let started = e.handle(Request::Start, now);
        if let Response::Started { appended } = &started {
            self.store(appended);
        }
        started
    }

    /// The store as it was at `size` entries (a backup taken then).
    pub fn truncated(&self, size: usize) -> Host {
        let mut h = Host {
            sealed: self.sealed.clone(),
            ..Host::default()
        };
        for i in 0..size {
            let a = WireAppended {
                index: i as u64,
                leaf: ByteBuf::from(self.leaves[i].clone()),
                nodes: Vec::new(),
                receipt: self.receipts[i].clone(),
            };
            h.leaves.push(a.leaf.to_vec());
            h.receipts.push(a.receipt.clone());
            h.last = Some(a);
        }
        // Nodes are a function of the leaves: recompute rather than copy.
        let mut f = leadgate_verifier::merkle::Frontier::new();
        for l in &h.leaves {
            for n in f.append(leadgate_verifier::merkle::leaf_hash(l)) {
                h.nodes.insert((n.level, n.index), n.hash);
            }
        }
        h
    }
}

/// Buyer `n`'s Ed25519 key (`[n; 32]`).
pub fn buyer(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// Buyer `n`'s HPKE public key (from the seed `[n + 100; 32]`).
pub fn hpke_pk(n: u8) -> [u8; 32] {
    leadgate_verifier::envelope::keypair_from_seed(&[n + 100; 32]).1
}

/// A rule set of buyer `n` bidding `max_bid` within `budget` a day on `verticals`, issued at
/// `at`, every other gate open.
pub fn rule_set(
    n: u8,
    verticals: &[&str],
    max_bid: u64,
    budget: u64,
    at: u64,
) -> leadgate_verifier::autobid::RuleSet {
    use leadgate_verifier::auction::TokenAmount;
    leadgate_verifier::autobid::RuleSet::open(
        &buyer(n).verifying_key().to_bytes(),
        &hpke_pk(n),
        at,
        verticals,
        TokenAmount::new(max_bid).unwrap(),
        TokenAmount::new(budget).unwrap(),
    )
}
