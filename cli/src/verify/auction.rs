//! `leadgate verify auction`: an auction's outcome recomputed from the log, and a bidder's
//! own bid found among the considered ones.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context as _};
use leadgate_verifier::api::{AuctionDetail, BidEntry};
use leadgate_verifier::checkpoint::verify_checkpoint;
use leadgate_verifier::event::Event;
use leadgate_verifier::merkle::Hash;
use leadgate_verifier::note::NoteVerifier;
use leadgate_verifier::receipt::Receipt;
use serde_json::Value;

use crate::http::{agent, attest_gateway, get_typed, TrustArgs};

use super::checkpoints::{checkpoint_covering, included_entry_in, LogId};
use super::receipts::included_receipt_in;
use super::source::{GatewaySource, LogSource, TileSource};

/// Options of `verify auction`.
pub struct AuctionArgs<'a> {
    /// Auction id (default: every auction in `my_bids`).
    pub id: Option<&'a str>,
    /// Gateway base URL: its attested keys, its auction index (`GET /v1/auctions/{id}`) and
    /// the log through its API.
    pub gateway: Option<&'a str>,
    /// The log's C2SP tlog-tiles URL prefix: the auctions found by reading the whole log.
    pub tiles: Option<&'a str>,
    /// The log's note verifier key (`origin+keyid+base64`); required with `tiles`.
    pub log_key: Option<&'a str>,
    /// `--pcr0`, `--allow-debug`, `--root`.
    pub trust: &'a TrustArgs,
    /// The caller's bid records (`buyer bid --out`).
    pub my_bids: Option<&'a Path>,
    /// The caller's rule sets (`buyer rules set --out`): check the enclave's bids under them.
    pub my_rules: Option<&'a Path>,
    /// Parallel requests.
    pub concurrency: usize,
}

/// Finds an auction's events and a checkpoint (size, root) covering its close.
type Locate<'a> = dyn Fn(&str) -> anyhow::Result<(AuctionIndex, u64, Hash)> + Sync + 'a;

/// Where one auction's events are in the log.
#[derive(Debug, Default, Clone)]
struct AuctionIndex {
    /// Its `lead.accepted`.
    open: Option<u64>,
    /// Its `auction.closed` or `auction.unsold`.
    close: Option<u64>,
    /// Every `bid.sealed` for it (index, buyer, commitment hex), in log order.
    bids: Vec<BidEntry>,
}

impl From<&AuctionDetail> for AuctionIndex {
    fn from(a: &AuctionDetail) -> Self {
        Self {
            open: Some(a.auction.open_index),
            close: a.auction.close_index,
            bids: a.bid_entries.clone(),
        }
    }
}

/// Reads every entry of the tree of `size` entries from the tiles and indexes the events
/// of the auctions `ids`: each one's `lead.accepted`, first close, and `bid.sealed` entries.
///
/// # Errors
/// A tile that cannot be read or does not match ([`TileSource::scan_entries`]), or a leaf
/// that is not an event.
fn scan_auctions(
    source: &TileSource<'_>,
    size: u64,
    ids: &[String],
) -> anyhow::Result<HashMap<String, AuctionIndex>> {
    let mut found: HashMap<String, AuctionIndex> = HashMap::new();
    let wanted = |id: &str| ids.binary_search_by(|i| i.as_str().cmp(id)).is_ok();
    source.scan_entries(size, |index, leaf| {
        let event = Event::from_leaf(leaf).map_err(|e| anyhow!("entry {index}: {}", e.code()))?;
        match &event {
            Event::LeadAccepted(e) if wanted(&e.lead_id) => {
                found.entry(e.lead_id.clone()).or_default().open = Some(index);
            }
            Event::BidSealed(e) if wanted(&e.auction_id) => {
                found
                    .entry(e.auction_id.clone())
                    .or_default()
                    .bids
                    .push(BidEntry {
                        index,
                        buyer: e.buyer.clone(),
                        commitment: e.commitment.clone(),
                    });
            }
            Event::AuctionClosed(leadgate_verifier::event::AuctionClosed {
                auction_id, ..
            })
            | Event::AuctionUnsold(leadgate_verifier::event::AuctionUnsold {
                auction_id, ..
            }) if wanted(auction_id) => {
                found
                    .entry(auction_id.clone())
                    .or_default()
                    .close
                    .get_or_insert(index);
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(found)
}

/// `verify auction`: for each auction (ID, or every auction in the bids file), checks that its
/// `lead.accepted` and close events are in a checkpoint signed by the log key, that the
/// tie-break seed is the log key's signature, that the `bid.sealed` entries give exactly the
/// committed set of considered bids, and, for the caller's own bids (`buyer bid`'s output),
/// that the last one is in that set and the outcome is consistent with its amount.
///
/// From a gateway, the log key is its attested one and the auctions' events come from its
/// index (`GET /v1/auctions/{id}`), each proved included. With `tiles` no host is involved:
/// the log key is `log_key`, and the whole log is read once (one entry bundle at a time) to
/// find every event of the auctions, so the bid set comes from the log itself.
///
/// # Errors
/// Bad options or an unreadable bids file; then, after every auction is checked, one error
/// counting the auctions that failed (each printed with its reason).
pub fn auction(a: &AuctionArgs<'_>) -> anyhow::Result<()> {
    if let Some(path) = a.my_rules {
        return my_rules(a, path);
    }
    let http = agent();
    let (id, my_bids, concurrency) = (a.id, a.my_bids, a.concurrency);
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
    let tiles = a.tiles.map(|t| TileSource::new(&http, t));
    // The log key, and where each auction's events and a checkpoint covering its close are.
    let (log_verifier, keys);
    let locate: Box<Locate<'_>> = match (&tiles, a.gateway) {
        (Some(source), _) => {
            let k = a
                .log_key
                .ok_or_else(|| anyhow!("--tiles needs --log-key VKEY: no attestation gives it"))?;
            log_verifier = NoteVerifier::parse(k).map_err(|e| anyhow!("--log-key: {e}"))?;
            let note = source.checkpoint_note()?;
            let cp = verify_checkpoint(&note, &log_verifier, log_verifier.name()).map_err(|e| {
                anyhow!("checkpoint at {} rejected: {}: {e}", source.url(), e.code())
            })?;
            let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
            let found = scan_auctions(source, size, &ids)?;
            Box::new(move |id: &str| {
                let index = found
                    .get(id)
                    .cloned()
                    .ok_or_else(|| anyhow!("no event of it in the checkpoint of {size} entries"))?;
                Ok((index, size, root))
            })
        }
        (None, Some(gateway)) => {
            keys = attest_gateway(&http, gateway, a.trust)?.1;
            log_verifier = keys.note_verifier()?;
            let (http, keys) = (&http, &keys);
            Box::new(move |id: &str| {
                let detail: AuctionDetail =
                    get_typed(http, &format!("{gateway}/v1/auctions/{id}"))?;
                let close = detail.auction.close_index.ok_or_else(|| {
                    anyhow!("not closed yet (status {})", detail.auction.status.as_str())
                })?;
                let cp = checkpoint_covering(http, gateway, keys, close + 1)?;
                let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
                Ok(((&detail).into(), size, root))
            })
        }
        (None, None) => bail!("give --gateway URL or --tiles URL"),
    };
    let gateway_source = a.gateway.map(|gateway| GatewaySource {
        http: &http,
        gateway,
    });
    let source: &dyn LogSource = match (&tiles, &gateway_source) {
        (Some(t), _) => t,
        (None, Some(g)) => g,
        (None, None) => bail!("give --gateway URL or --tiles URL"),
    };
    let log = LogId::from(&log_verifier);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let mine: Vec<&Value> = own.iter().filter(|b| b["auction_id"] == **id).collect();
                let checked = locate(id).and_then(|(index, size, root)| {
                    check_auction(source, log, id, &index, (size, root), &mine)
                });
                match checked {
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

/// One auction checked against the checkpoint (`size`, `root`), its events read from
/// `source` where `index` says they are.
fn check_auction(
    source: &dyn LogSource,
    log: LogId<'_>,
    id: &str,
    index: &AuctionIndex,
    (size, root): (u64, Hash),
    mine: &[&Value],
) -> anyhow::Result<String> {
    use leadgate_verifier::auction::{
        check_own_bid, commitments_root, considered, verify_seed, OpenedBid, Outcome, TokenAmount,
    };
    let open_index = index
        .open
        .ok_or_else(|| anyhow!("no lead.accepted opened it"))?;
    let close_index = index.close.ok_or_else(|| anyhow!("not closed yet"))?;
    let Event::LeadAccepted(opened) = included_entry_in(source, open_index, size, &root)?.0 else {
        bail!("entry {open_index} is not a lead.accepted");
    };
    if opened.lead_id != id {
        bail!("entry {open_index} is another lead's acceptance");
    }
    let terms = opened.auction;
    let close = included_entry_in(source, close_index, size, &root)?.0;
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
    verify_seed(log.log_key, log.origin, id, &seed).map_err(|e| anyhow!("{}", e.code()))?;
    // The considered set, by the enclave's rule (`leadgate_verifier::auction::considered`),
    // from the bid.sealed entries between open and close in log order.
    let mut entries: Vec<_> = index
        .bids
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
        let verified = receipt
            .verify(log.log_key, log.origin)
            .map_err(|e| anyhow!("my bid's receipt: {}", e.code()))?;
        let Event::BidSealed(ev) = included_receipt_in(source, size, &root, &verified)? else {
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

/// `verify auction --my-rules`: reads the whole log of the newest checkpoint from its tiles
/// (`--tiles`, or the gateway's own `/tile` endpoints, verified against its attested key) and
/// checks, with [`leadgate_verifier::autobid::RulesAudit`], that the enclave bid for the
/// buyer exactly when its active rule set matched and its budget allowed. Prints the report
/// (JSON).
///
/// # Errors
/// An unreadable rules file or log; a report with a violation, or a matched lead with budget
/// left and no bid.
fn my_rules(a: &AuctionArgs<'_>, path: &Path) -> anyhow::Result<()> {
    let http = agent();
    let kept = crate::rules::read_kept(path)?;
    let buyer = kept
        .first()
        .map(|k| k.rules.buyer.clone())
        .ok_or_else(|| anyhow!("{} holds no rule set", path.display()))?;
    if kept.iter().any(|k| k.rules.buyer != buyer) {
        bail!("{} holds rule sets of more than one buyer", path.display());
    }
    // From a gateway, a checkpoint signed now, so that the log is read to its tip.
    let (prefix, log_verifier, note) = match (a.tiles, a.gateway) {
        (Some(t), _) => {
            let k = a
                .log_key
                .ok_or_else(|| anyhow!("--tiles needs --log-key VKEY: no attestation gives it"))?;
            let v = NoteVerifier::parse(k).map_err(|e| anyhow!("--log-key: {e}"))?;
            (t.to_owned(), v, None)
        }
        (None, Some(gateway)) => {
            let keys = attest_gateway(&http, gateway, a.trust)?.1;
            let note = super::checkpoints::sign_checkpoint_now(&http, gateway)?;
            (gateway.to_owned(), keys.note_verifier()?, Some(note))
        }
        (None, None) => bail!("give --gateway or --tiles"),
    };
    let source = TileSource::new(&http, &prefix);
    let note = match note {
        Some(n) => n,
        None => source.checkpoint_note()?,
    };
    let cp = verify_checkpoint(&note, &log_verifier, log_verifier.name())
        .map_err(|e| anyhow!("checkpoint at {} rejected: {}: {e}", source.url(), e.code()))?;
    let size = cp.checkpoint().size;
    let pairs: Vec<(String, leadgate_verifier::autobid::RuleSet)> = kept
        .iter()
        .map(|k| (k.commitment.clone(), k.rules.clone()))
        .collect();
    let mut audit = leadgate_verifier::autobid::RulesAudit::new(&buyer, &pairs)
        .map_err(|e| anyhow!("a kept rule set: {e}"))?;
    source.scan_entries(size, |index, leaf| {
        let event = Event::from_leaf(leaf).map_err(|e| anyhow!("entry {index}: {}", e.code()))?;
        audit.entry(index, &event);
        Ok(())
    })?;
    let report = audit.finish();
    println!(
        "{}",
        serde_json::json!({"buyer": buyer, "checkpoint_size": size, "report": report})
    );
    if !report.violations.is_empty() {
        bail!(
            "{} decisions break your rules: {}",
            report.violations.len(),
            report.violations.join("; ")
        );
    }
    if !report.unexplained.is_empty() {
        bail!(
            "{} leads matched your rules within budget but got no bid ({}): your deposit did not cover them, the auction was full, or the enclave broke your rules",
            report.unexplained.len(),
            report.unexplained.join(", ")
        );
    }
    eprintln!(
        "the enclave bid for you exactly when your rules matched and your budget allowed: {} bids on {} matching leads ({} over budget) among {} leads",
        report.bids, report.matched, report.skipped_budget, report.leads
    );
    Ok(())
}
