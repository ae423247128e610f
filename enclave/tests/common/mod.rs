//! A minimal in-memory host for the enclave's flow tests: stores what the enclave returns and
//! boots it the way the real host does (tip, tags, restore from the last epoch's
//! `replay_from`, start), with the host's own start-up code (`leadgate_protocol::boot`).
#![allow(dead_code)]

use std::collections::HashMap;

use ed25519_dalek::SigningKey;
use leadgate_enclave::attest::DevAttestationProvider;
use leadgate_enclave::core::{Enclave, EnclaveConfig};
use leadgate_enclave::sealing::DevFileSealer;
use leadgate_protocol::boot;
use leadgate_protocol::{
    BidOutcome, Request, Response, RestoreEntry, SubmitOutcome, Tip, WireAppended,
};
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
    pub tags: Vec<Vec<u8>>,
    pub checkpoint: Option<ByteBuf>,
    /// Sealed bids by the leaf index of their `bid.sealed`.
    pub bids: HashMap<u64, SealedBid>,
    /// Sealed leads by lead id.
    pub leads: HashMap<String, SealedLead>,
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

    /// `replay_from` of the last `log.epoch`.
    pub fn replay_from(&self) -> u64 {
        self.leaves
            .iter()
            .rev()
            .find_map(|l| match Event::from_leaf(l) {
                Ok(Event::LogEpoch(e)) => Some(e.replay_from),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// The restore requests from `from` to the tip, in chunks of `chunk` entries, as the host
    /// builds them ([`boot::Restore`]).
    pub fn restore_requests(&self, from: u64, chunk: usize) -> Vec<Request> {
        let before = from
            .checked_sub(1)
            .map(|i| self.receipts[i as usize].clone());
        let mut restore = boot::Restore::new(from, before, self).unwrap();
        let entries: Vec<RestoreEntry> = (from as usize..self.leaves.len())
            .map(|i| RestoreEntry {
                leaf: ByteBuf::from(self.leaves[i].clone()),
                bid: self.bids.get(&(i as u64)).cloned(),
            })
            .collect();
        entries
            .chunks(chunk.max(1))
            .map(|c| restore.next_request(c.to_vec()))
            .collect()
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
                ..
            } => {
                self.sealed = Some(sealed_secrets);
                EnclaveKeys::from_attested(Some(&keys), None).unwrap()
            }
            other => panic!("{other:?}"),
        };
        for req in boot::load_tags(&self.tags) {
            assert_eq!(e.handle(req, now), Response::Ok);
        }
        if self.last.is_some() {
            for req in self.restore_requests(self.replay_from(), 500) {
                assert_eq!(e.handle(req, now), Response::Ok);
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
        let Response::Submitted { results } = e.handle(
            Request::Submit {
                leads: leads.clone(),
            },
            now,
        ) else {
            panic!()
        };
        for (r, lead) in results.iter().zip(leads) {
            if let SubmitOutcome::Logged {
                appended,
                email_tag,
                lead_id,
                ..
            } = r
            {
                self.store(appended);
                self.leads.insert(lead_id.clone(), lead);
                if let Some(t) = email_tag {
                    self.tags.push(t.to_vec());
                }
            }
        }
        results
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

    /// Ticks; stores and returns the close events.
    pub fn tick(&mut self, e: &mut Enclave, now: u64) -> Vec<Event> {
        let Response::Ticked { closed } = e.handle(Request::Tick, now) else {
            panic!()
        };
        closed
            .iter()
            .map(|a| {
                self.store(a);
                Event::from_leaf(&a.leaf).unwrap()
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
