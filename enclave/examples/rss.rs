//! Measures the enclave's resident memory under a marketplace's mix, and the enclave time of
//! closes, releases and sealing the state. Starts `leadgate-enclave` (release build) and
//! drives it over the wire protocol as the host does, keeping what the host would store:
//!
//! 1. `SOLD` auctions (default 1,000,000): accepted leads with 1 s auctions, one bid each,
//!    closed from the stored entries as they fall due, a release every 100th sale (with its
//!    proof from the stored tree); every sale stays claimable (7-day release window);
//! 2. `OPEN` auctions (default 200,000): accepted leads with 7-day auctions, a bid on every
//!    fifth, left open;
//! 3. the state sealed (as the host asks every 50,000 entries) and its size.
//!
//! Prints VmRSS after start, after each phase, and at the end, and the peak (VmHWM). Like the
//! host, it confirms every append as stored (`Durable`) after each exchange, so the journal
//! holds only the unconfirmed tail.
//!
//! Run: `cargo build --release -p leadgate-enclave --bins && cargo run --release -p
//! leadgate-enclave --example rss [SOLD OPEN]`.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use leadgate_protocol::{
    decode, encode, BidOutcome, CloseInput, CloseOutcome, LoggedBid, Request, Response,
    SubmitOutcome, WireAppended, MAX_BATCH,
};
use leadgate_verifier::auction::TokenAmount;
use leadgate_verifier::bid::seal_bid;
use leadgate_verifier::intake::{seal_lead_with_terms, AuctionRequest, SealedLead};
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle::NodeStore;
use leadgate_verifier::release::ReleaseRequest;

fn call(s: &mut TcpStream, req: &Request) -> Response {
    let body = encode(req);
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    decode(&buf).unwrap()
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The tree as the host stores it: every node, by level.
#[derive(Default)]
struct Tree {
    levels: Vec<Vec<[u8; 32]>>,
    last: Option<leadgate_verifier::receipt::Receipt>,
}

impl Tree {
    fn store(&mut self, a: &WireAppended) {
        for n in &a.nodes {
            let level = n.level as usize;
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            assert_eq!(self.levels[level].len() as u64, n.index);
            self.levels[level].push(n.hash.as_slice().try_into().unwrap());
        }
        self.last = Some(a.receipt.clone());
    }
}

impl NodeStore for Tree {
    fn node(&self, level: u8, index: u64) -> Option<[u8; 32]> {
        self.levels
            .get(level as usize)?
            .get(index as usize)
            .copied()
    }
}

/// A sold auction waiting for its close: what the host stores for it.
struct Pending {
    closes_at: u64,
    input: CloseInput,
    accepted_index: u64,
    lead: SealedLead,
    id: String,
}

struct Driver {
    s: TcpStream,
    keys: EnclaveKeys,
    tree: Tree,
    seller: SigningKey,
    buyers: Vec<SigningKey>,
    hpke_pk: [u8; 32],
    next_lead: u64,
    close_ms: Vec<f64>,
    release_ms: Vec<f64>,
    seal_ms: Vec<(f64, usize)>,
    sealed_at: u64,
}

impl Driver {
    fn lead(&mut self, duration_ms: u64, now: u64) -> SealedLead {
        let i = self.next_lead;
        self.next_lead += 1;
        let lead = serde_json::json!({
            "business": "Rss Co", "full_name": "Sam Rss", "first": "Sam", "last": "Rss",
            "email": format!("sam.rss.{i}@rssco{i}.com"), "role": "Owner",
            "website": format!("https://rssco{i}.com"), "industry": "HVAC",
            "sub_industry": "Heating", "region": "Austin, TX",
            "linkedin": "https://linkedin.com/in/samrss"
        });
        let terms = AuctionRequest {
            reserve: Some(TokenAmount::new(1).unwrap()),
            duration_ms: Some(duration_ms),
            pricing: None,
            payout: None,
            off_site: false,
            instant: false,
        };
        seal_lead_with_terms(
            &self.seller,
            &self.keys.intake_key,
            &self.keys.origin,
            &serde_json::to_vec(&lead).unwrap(),
            now,
            Some(terms),
        )
        .unwrap()
    }

    /// Submits `n` leads with `duration_ms` auctions and bids on every `every`-th; returns
    /// each bid-on auction's pending close.
    fn list(&mut self, n: usize, duration_ms: u64, every: usize) -> Vec<Pending> {
        let now = now_ms();
        let leads: Vec<SealedLead> = (0..n).map(|_| self.lead(duration_ms, now)).collect();
        let Response::Submitted { results, .. } = call(
            &mut self.s,
            &Request::Submit {
                leads: leads.clone(),
            },
        ) else {
            panic!("submit")
        };
        let mut pending = Vec::new();
        let mut bids = Vec::new();
        for (k, (r, lead)) in results.into_iter().zip(leads).enumerate() {
            let SubmitOutcome::Logged {
                lead_id,
                accepted: true,
                appended,
                ..
            } = r
            else {
                panic!("not accepted: {r:?}")
            };
            self.tree.store(&appended);
            if k % every == 0 {
                let buyer = &self.buyers[k % self.buyers.len()];
                let (bid, _) = seal_bid(
                    buyer,
                    &self.hpke_pk,
                    &self.keys.intake_key,
                    &self.keys.origin,
                    &lead_id,
                    TokenAmount::new(1_000 + k as u64).unwrap(),
                    [k as u8; 16],
                )
                .unwrap();
                bids.push(bid);
                pending.push(Pending {
                    closes_at: now + duration_ms,
                    input: CloseInput {
                        accepted: appended.leaf.clone(),
                        bids: Vec::new(),
                    },
                    accepted_index: appended.index,
                    lead,
                    id: lead_id,
                });
            }
        }
        if !bids.is_empty() {
            let Response::Bids { results } =
                call(&mut self.s, &Request::Bid { bids: bids.clone() })
            else {
                panic!("bid")
            };
            for ((r, bid), p) in results.into_iter().zip(bids).zip(&mut pending) {
                let BidOutcome::Logged { appended, .. } = r else {
                    panic!("bid refused: {r:?}")
                };
                self.tree.store(&appended);
                p.input.bids.push(LoggedBid {
                    leaf: appended.leaf,
                    sealed: bid,
                });
            }
        }
        self.confirm();
        self.seal_if_due();
        pending
    }

    /// Confirms everything stored, as the host does after its commits (so the journal holds
    /// only the unconfirmed tail).
    fn confirm(&mut self) {
        let size = self.tree.levels[0].len() as u64;
        assert_eq!(call(&mut self.s, &Request::Durable { size }), Response::Ok);
    }

    /// Closes the due auctions of `queue` (the enclave's `Tick` says which), releases every
    /// 100th to its winner. Returns how many closed.
    fn close_due(&mut self, queue: &mut VecDeque<Pending>, released: &mut u64) -> usize {
        let now = now_ms();
        let mut batch = Vec::new();
        while queue.front().is_some_and(|p| p.closes_at + 200 < now) && batch.len() < 1024 {
            batch.extend(queue.pop_front());
        }
        if batch.is_empty() {
            return 0;
        }
        let Response::Due { .. } = call(&mut self.s, &Request::Tick) else {
            panic!("tick")
        };
        let t = Instant::now();
        let Response::Closed { results } = call(
            &mut self.s,
            &Request::Close {
                auctions: batch.iter().map(|p| p.input.clone()).collect(),
            },
        ) else {
            panic!("close")
        };
        self.close_ms
            .push(t.elapsed().as_secs_f64() * 1e3 / batch.len() as f64);
        let mut closes = Vec::new();
        for r in results {
            let CloseOutcome::Logged(a) = r else {
                panic!("close refused: {r:?}")
            };
            self.tree.store(&a);
            closes.push((a.index, a.leaf.to_vec()));
        }
        for (p, (close_index, close_leaf)) in batch.iter().zip(closes) {
            if (close_index % 100) != 0 {
                continue;
            }
            let text = String::from_utf8_lossy(&close_leaf).into_owned();
            let Some(buyer) = self
                .buyers
                .iter()
                .find(|b| text.contains(&hex::encode(b.verifying_key().to_bytes())))
            else {
                panic!("no winner in {text}")
            };
            let proof = leadgate_protocol::boot::sale_proof(
                self.tree.last.clone().unwrap(),
                &self.tree,
                (p.accepted_index, p.input.accepted.to_vec()),
                (close_index, close_leaf),
            )
            .unwrap();
            let t = Instant::now();
            let r = call(
                &mut self.s,
                &Request::Release {
                    request: ReleaseRequest::sign(buyer, &self.keys.origin, &p.id, now_ms()),
                    lead: p.lead.clone(),
                    proof,
                },
            );
            self.release_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let Response::Released { appended, .. } = r else {
                panic!("release refused: {r:?}")
            };
            self.tree.store(&appended);
            *released += 1;
        }
        self.confirm();
        batch.len()
    }

    fn seal_if_due(&mut self) {
        let size = self.tree.levels[0].len() as u64;
        if size - self.sealed_at < 50_000 {
            return;
        }
        self.seal(false);
    }

    fn seal(&mut self, force: bool) {
        let t = Instant::now();
        let Response::SealedState { part: Some(first) } =
            call(&mut self.s, &Request::SealState { part: 0, force })
        else {
            return;
        };
        let mut bytes = first.blob.len();
        for part in 1..first.count {
            let Response::SealedState { part: Some(p) } =
                call(&mut self.s, &Request::SealState { part, force })
            else {
                panic!("part {part}")
            };
            bytes += p.blob.len();
        }
        self.sealed_at = first.size;
        self.seal_ms.push((t.elapsed().as_secs_f64() * 1e3, bytes));
    }
}

fn stats(name: &str, v: &mut [f64]) {
    if v.is_empty() {
        return;
    }
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    println!(
        "{name}: n={} p50={:.3} p99={:.3} max={:.3}",
        v.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (sold, open) = (
        args.first().copied().unwrap_or(1_000_000),
        args.get(1).copied().unwrap_or(200_000),
    );
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("leadgate-enclave");
    let dir = std::env::temp_dir().join(format!("leadgate-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let addr_file = dir.join("addr");
    let mut child = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--addr-file"])
        .arg(&addr_file)
        .arg("--state-dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let s = loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file) {
            let a = a.trim();
            if let Ok(s) = TcpStream::connect(a.strip_prefix("tcp://").unwrap_or(a)) {
                break s;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut s = s;
    // As the host's link does: no Nagle delay on the small request frames.
    s.set_nodelay(true).unwrap();
    let Response::Booted { keys, .. } = call(
        &mut s,
        &Request::Boot {
            sealed_secrets: None,
            tip: None,
            aws_credentials: None,
        },
    ) else {
        panic!()
    };
    let keys = EnclaveKeys::from_attested(Some(&keys), None).unwrap();
    let Response::Started { appended } = call(&mut s, &Request::Start) else {
        panic!()
    };
    let mut tree = Tree::default();
    tree.store(&appended);
    let idle = status_kib(pid, "VmRSS:");
    println!("after start (idle): VmRSS {idle} KiB");
    let (_, hpke_pk) = leadgate_verifier::envelope::keypair_from_seed(&[5u8; 32]);
    let mut d = Driver {
        s,
        keys,
        tree,
        seller: SigningKey::from_bytes(&[3u8; 32]),
        buyers: (0..64u8)
            .map(|i| SigningKey::from_bytes(&[i + 1; 32]))
            .collect(),
        hpke_pk,
        next_lead: 0,
        close_ms: Vec::new(),
        release_ms: Vec::new(),
        seal_ms: Vec::new(),
        sealed_at: 0,
    };
    let start = Instant::now();
    let (mut listed, mut closed, mut released) = (0usize, 0usize, 0u64);
    let mut queue = VecDeque::new();
    while listed < sold {
        let n = (sold - listed).min(MAX_BATCH);
        queue.extend(d.list(n, 1_000, 1));
        listed += n;
        closed += d.close_due(&mut queue, &mut released);
        if listed % 100_000 < MAX_BATCH {
            println!(
                "sold phase: {listed} listed, {closed} closed, {released} released; VmRSS {} KiB ({:.0} s)",
                status_kib(pid, "VmRSS:"),
                start.elapsed().as_secs_f64()
            );
        }
    }
    while closed < sold {
        std::thread::sleep(Duration::from_millis(100));
        closed += d.close_due(&mut queue, &mut released);
    }
    println!(
        "after {sold} sales ({released} released): VmRSS {} KiB ({:.0} s)",
        status_kib(pid, "VmRSS:"),
        start.elapsed().as_secs_f64()
    );
    let mut opened = 0;
    while opened < open {
        let n = (open - opened).min(MAX_BATCH);
        d.list(n, 7 * 86_400_000 - 60_000, 5);
        opened += n;
    }
    let Response::Status(st) = call(&mut d.s, &Request::Status) else {
        panic!()
    };
    let end = status_kib(pid, "VmRSS:");
    println!(
        "after {open} open auctions ({} log entries): VmRSS {end} KiB, {} KiB over idle ({:.0} s)",
        st.size,
        end - idle,
        start.elapsed().as_secs_f64()
    );
    d.seal(true);
    println!(
        "after sealing the state: VmRSS {} KiB, peak VmHWM {} KiB",
        status_kib(pid, "VmRSS:"),
        status_kib(pid, "VmHWM:")
    );
    stats(
        "close, enclave ms per auction (1 bid, batches of up to 1,024)",
        &mut d.close_ms,
    );
    stats("release round trip, ms", &mut d.release_ms);
    let last = d.seal_ms.last().map_or(0, |(_, b)| *b);
    let mut seal: Vec<f64> = d.seal_ms.iter().map(|(ms, _)| *ms).collect();
    stats(
        "sealing the state (all parts, round trips included), ms",
        &mut seal,
    );
    println!("last sealed state: {last} bytes");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
