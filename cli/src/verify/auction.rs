//! `leadgate verify auction`: an auction's outcome recomputed from the log, and a bidder's
//! own bid found among the considered ones.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context as _};
use leadgate_verifier::api::AuctionDetail;
use leadgate_verifier::event::Event;
use leadgate_verifier::merkle::Hash;
use leadgate_verifier::receipt::Receipt;
use serde_json::Value;

use crate::http::{agent, attest_gateway, get_typed, TrustArgs};

use super::checkpoints::{checkpoint_covering, included_entry};
use super::receipts::receipt_entry;

/// `verify auction`: for each auction (ID, or every auction in the bids file), checks that its
/// `lead.accepted` and close events are in a checkpoint signed by the attested log key, that
/// the tie-break seed is the log key's signature, that the served `bid.sealed` entries give
/// exactly the committed set of considered bids, and, for the caller's own bids (`buyer bid`'s
/// output), that the last one is in that set and the outcome is consistent with its amount.
pub fn auction(
    id: Option<&str>,
    gateway: &str,
    trust: &TrustArgs,
    my_bids: Option<&Path>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let http = agent();
    let (_, keys) = attest_gateway(&http, gateway, trust)?;
    let mut own: Vec<Value> = Vec::new();
    if let Some(p) = my_bids {
        for line in std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            own.push(serde_json::from_str(line).context("bids file line")?);
        }
    }
    let mut ids: Vec<String> = match id {
        Some(i) => vec![i.to_owned()],
        None => own
            .iter()
            .filter_map(|b| b["auction_id"].as_str().map(str::to_owned))
            .collect(),
    };
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        bail!("give an auction ID or --my-bid FILE");
    }
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let mine: Vec<&Value> = own.iter().filter(|b| b["auction_id"] == **id).collect();
                match check_auction(&http, gateway, &keys, id, &mine) {
                    Ok(line) => println!("{line}"),
                    Err(e) => failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("auction {id}: {e:#}")),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    eprintln!(
        "{} auctions verified, {} failed",
        ids.len() - failures.len(),
        failures.len()
    );
    if !failures.is_empty() {
        bail!("{} auctions failed verification", failures.len());
    }
    Ok(())
}

fn check_auction(
    http: &ureq::Agent,
    gateway: &str,
    keys: &leadgate_verifier::keys::EnclaveKeys,
    id: &str,
    mine: &[&Value],
) -> anyhow::Result<String> {
    use leadgate_verifier::auction::{
        check_own_bid, commitments_root, considered, verify_seed, OpenedBid, Outcome, TokenAmount,
    };
    let a: AuctionDetail = get_typed(http, &format!("{gateway}/v1/auctions/{id}"))?;
    let close_index = a
        .auction
        .close_index
        .ok_or_else(|| anyhow!("not closed yet (status {})", a.auction.status.as_str()))?;
    let open_index = a.auction.open_index;
    let cp = checkpoint_covering(http, gateway, keys, close_index + 1)?;
    let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
    let Event::LeadAccepted(opened) = included_entry(http, gateway, open_index, size, &root)?.0
    else {
        bail!("entry {open_index} is not a lead.accepted");
    };
    if opened.lead_id != id {
        bail!("entry {open_index} is another lead's acceptance");
    }
    let terms = opened.auction;
    let close = included_entry(http, gateway, close_index, size, &root)?.0;
    let (auction_id, time, reserve, bids, croot, seed_hex, outcome, winner) = match &close {
        Event::AuctionClosed(c) => {
            if c.pricing != terms.pricing {
                bail!("closed with another pricing rule than the seller's");
            }
            let w: Hash = hex::decode(&c.winning_commitment)?
                .try_into()
                .map_err(|_| anyhow!("bad winning commitment"))?;
            (
                &c.auction_id,
                c.time,
                c.reserve,
                c.bids,
                &c.commitments_root,
                &c.seed,
                Outcome::Sold {
                    winner: w,
                    price: c.price,
                },
                Some(c.winner.clone()),
            )
        }
        Event::AuctionUnsold(u) => (
            &u.auction_id,
            u.time,
            u.reserve,
            u.bids,
            &u.commitments_root,
            &u.seed,
            Outcome::Unsold,
            None,
        ),
        other => bail!("entry {close_index} is a {}, not a close", other.kind()),
    };
    if auction_id != id {
        bail!("the close is another auction's");
    }
    if time < terms.closes_at {
        bail!(
            "closed at {time}, before its close time {}",
            terms.closes_at
        );
    }
    if reserve != terms.reserve {
        bail!("closed with another reserve than the seller's");
    }
    let seed: [u8; 64] = hex::decode(seed_hex)?
        .try_into()
        .map_err(|_| anyhow!("seed is not 64 bytes"))?;
    verify_seed(&keys.log_key, &keys.origin, id, &seed).map_err(|e| anyhow!("{}", e.code()))?;
    // The considered set, by the enclave's rule (`leadgate_verifier::auction::considered`),
    // from the bid.sealed entries between open and close in log order.
    let mut entries: Vec<_> = a
        .bid_entries
        .iter()
        .filter(|b| b.index > open_index && b.index < close_index)
        .collect();
    entries.sort_by_key(|b| b.index);
    let keyed: Vec<(&str, Hash)> = entries
        .iter()
        .map(|b| {
            hex::decode(&b.commitment)
                .ok()
                .and_then(|v| v.try_into().ok())
                .map(|c| (b.buyer.as_str(), c))
                .ok_or_else(|| anyhow!("bad commitment"))
        })
        .collect::<anyhow::Result<_>>()?;
    let considered: Vec<Hash> = considered(&keyed).into_iter().map(|i| keyed[i].1).collect();
    if hex::encode(commitments_root(&considered)) != *croot || considered.len() as u64 != bids {
        bail!("the served bid entries are not the set the enclave committed to");
    }
    let mut verdict = match (&outcome, &winner) {
        (Outcome::Sold { price, .. }, Some(w)) => {
            format!(
                "auction {id}: sold to {w} at {} ({bids} bids)",
                price.units()
            )
        }
        _ => format!("auction {id}: unsold ({bids} bids)"),
    };
    // The caller's last bid.
    if let Some(b) = mine.iter().max_by_key(|b| b["index"].as_u64().unwrap_or(0)) {
        let receipt: Receipt = serde_json::from_value(b["receipt"].clone())?;
        let Event::BidSealed(ev) = receipt_entry(http, gateway, keys, size, &root, &receipt)?
        else {
            bail!("my bid's receipt is not for a bid.sealed");
        };
        let commitment: Hash = hex::decode(b["commitment"].as_str().unwrap_or_default())?
            .try_into()
            .map_err(|_| anyhow!("bad commitment in my bid file"))?;
        if ev.commitment != hex::encode(commitment) || ev.auction_id != id {
            bail!("my bid's logged entry is for another bid");
        }
        if !considered.contains(&commitment) {
            bail!("my last bid is not among the bids the enclave considered");
        }
        let own = OpenedBid {
            commitment,
            amount: TokenAmount::new(b["amount"].as_u64().unwrap_or(u64::MAX))?,
        };
        check_own_bid(&own, &outcome, terms.reserve, terms.pricing, &seed)
            .map_err(|e| anyhow!("{}: {e}", e.code()))?;
        if winner.as_deref() == Some(ev.buyer.as_str())
            && !matches!(outcome, Outcome::Sold { winner, .. } if winner == commitment)
        {
            bail!("I won with a bid that is not my last one");
        }
        verdict.push_str(if winner.as_deref() == Some(ev.buyer.as_str()) {
            "; my bid won, consistent"
        } else {
            "; my bid lost, consistent"
        });
    }
    Ok(verdict)
}
