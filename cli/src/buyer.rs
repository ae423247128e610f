//! `leadgate buyer`: keys, browsing auctions, sealed bids, and decrypting won leads (only
//! after the `lead.released` event is proven in a checkpoint).

use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context as _};
use ed25519_dalek::SigningKey;
use leadgate_verifier::api::{AuctionList, BidAnswer, ReleaseAnswer};
use leadgate_verifier::auction::TokenAmount;
use leadgate_verifier::bid::seal_bid_from;
use leadgate_verifier::envelope::{keypair_from_seed, HpkeSecret};
use leadgate_verifier::event::Event;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::release::ReleaseRequest;
use rand_core::RngCore as _;
use serde::Deserialize as _;
use serde_json::{json, Value};

use crate::http::{
    agent, attest_gateway, error_code, get_typed, now_ms, write_key_file, TrustArgs,
};
use crate::verify::{checkpoint_covering, receipt_entry};

/// A buyer's keys: Ed25519 (its id and signatures) and X25519 (HPKE, where won leads go).
pub struct BuyerKeys {
    pub signing: SigningKey,
    pub hpke: HpkeSecret,
    pub hpke_public: [u8; 32],
}

impl BuyerKeys {
    /// Buyer id: the Ed25519 public key, hex.
    pub fn id(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }
}

/// Writes a new buyer key file: JSON `{"ed25519_secret", "x25519_seed", "buyer",
/// "hpke_public"}` (hex), mode 0600. Prints the buyer id.
pub fn keygen(out: &Path) -> anyhow::Result<()> {
    let signing = SigningKey::generate(&mut rand_core::OsRng);
    let mut seed = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut seed);
    let (_, hpke_public) = keypair_from_seed(&seed);
    let body = json!({
        "ed25519_secret": hex::encode(signing.to_bytes()),
        "x25519_seed": hex::encode(seed),
        "buyer": hex::encode(signing.verifying_key().to_bytes()),
        "hpke_public": hex::encode(hpke_public),
    });
    write_key_file(out, &body)?;
    println!("{}", body["buyer"].as_str().unwrap_or_default());
    Ok(())
}

/// Reads a key file written by [`keygen`].
pub fn read_key(path: &Path) -> anyhow::Result<BuyerKeys> {
    let v: Value = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    let field = |k: &str| -> anyhow::Result<[u8; 32]> {
        hex::decode(v[k].as_str().ok_or_else(|| anyhow!("no {k}"))?)?
            .try_into()
            .map_err(|_| anyhow!("{k} must be 32 bytes"))
    };
    let (hpke, hpke_public) = keypair_from_seed(&field("x25519_seed")?);
    Ok(BuyerKeys {
        signing: SigningKey::from_bytes(&field("ed25519_secret")?),
        hpke,
        hpke_public,
    })
}

/// Filters for `buyer auctions`.
pub struct AuctionsArgs {
    pub gateway: String,
    pub trust: TrustArgs,
    pub status: String,
    pub industry: Option<String>,
    pub region: Option<String>,
    pub min_score: Option<u8>,
    pub limit: u32,
}

/// `buyer auctions`: prints matching auctions, one JSON object per line.
pub fn auctions(a: AuctionsArgs) -> anyhow::Result<()> {
    let http = agent();
    attest_gateway(&http, &a.gateway, &a.trust)?;
    let mut url = format!(
        "{}/v1/auctions?status={}&limit={}",
        a.gateway,
        enc(&a.status),
        a.limit
    );
    for (k, v) in [("industry", &a.industry), ("region", &a.region)] {
        if let Some(v) = v {
            url.push_str(&format!("&{k}={}", enc(v)));
        }
    }
    if let Some(m) = a.min_score {
        url.push_str(&format!("&min_score={m}"));
    }
    let list: AuctionList = get_typed(&http, &url)?;
    for auction in list.auctions {
        println!("{}", serde_json::to_string(&auction)?);
    }
    Ok(())
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Options for `buyer bid`.
pub struct BidArgs {
    pub gateway: String,
    pub trust: TrustArgs,
    pub key: std::path::PathBuf,
    /// One bid, or …
    pub auction: Option<String>,
    pub amount: Option<u64>,
    /// … a plan: JSON lines `{"auction": ID, "amount": N}`.
    pub plan: Option<std::path::PathBuf>,
    /// The deposit address sealed in every bid.
    pub account: Option<leadgate_verifier::settlement::EthAddress>,
    /// Where the buyer's own record of its bids is appended (JSON lines).
    pub out: std::path::PathBuf,
    pub concurrency: usize,
}

/// `buyer bid`: seals each bid to the attested intake key, signs and posts it; appends
/// `{auction_id, amount, commitment, index, receipt}` per bid to `out` (the amount stays with
/// the buyer: `verify auction --my-bids` needs it). Fails if any bid was refused.
pub fn bid(a: BidArgs) -> anyhow::Result<()> {
    let http = agent();
    let (_, keys) = attest_gateway(&http, &a.gateway, &a.trust).context("refusing to bid")?;
    let buyer = read_key(&a.key)?;
    let plan: Vec<(String, u64)> = match (&a.auction, a.amount, &a.plan) {
        (Some(id), Some(n), None) => vec![(id.clone(), n)],
        (None, None, Some(p)) => {
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            let mut out = Vec::new();
            for line in std::io::BufReader::new(f).lines() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(&line)?;
                out.push((
                    v["auction"]
                        .as_str()
                        .ok_or_else(|| anyhow!("plan line without auction"))?
                        .to_owned(),
                    v["amount"]
                        .as_u64()
                        .ok_or_else(|| anyhow!("plan line without amount"))?,
                ));
            }
            out
        }
        _ => bail!("give --auction ID --amount N, or --plan FILE"),
    };
    // Each bid is appended to `out` (and flushed) as soon as it is answered, so a buyer
    // killed midway keeps every bid the gateway took.
    let out = Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&a.out)
            .with_context(|| format!("opening {}", a.out.display()))?,
    );
    let failed = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..a.concurrency.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((id, amount)) = plan.get(i) else {
                    break;
                };
                match post_bid(&http, &a.gateway, &keys, &buyer, id, *amount, a.account) {
                    Ok(v) => {
                        let mut f = out.lock().unwrap_or_else(|p| p.into_inner());
                        if let Err(e) = writeln!(f, "{v}").and_then(|()| f.flush()) {
                            eprintln!("writing {}: {e}", a.out.display());
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        eprintln!("bid on {id} refused: {e:#}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let failed = failed.into_inner();
    eprintln!(
        "{} bids placed, {failed} refused; your bids are in {}",
        plan.len() - failed,
        a.out.display()
    );
    if failed > 0 {
        bail!("{failed} bids were refused");
    }
    Ok(())
}

fn post_bid(
    http: &ureq::Agent,
    gateway: &str,
    keys: &EnclaveKeys,
    buyer: &BuyerKeys,
    auction: &str,
    amount: u64,
    account: Option<leadgate_verifier::settlement::EthAddress>,
) -> anyhow::Result<Value> {
    let mut nonce = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut nonce);
    let (sealed, commitment) = seal_bid_from(
        &buyer.signing,
        &buyer.hpke_public,
        &keys.intake_key,
        &keys.origin,
        auction,
        TokenAmount::new(amount)?,
        nonce,
        account,
    )?;
    // Retries send the same sealed bid: one the gateway took before is answered with its
    // original receipt.
    let mut delay = std::time::Duration::from_millis(100);
    for _ in 0..40 {
        let Ok(mut resp) = http.post(&format!("{gateway}/v1/bids")).send_json(&sealed) else {
            std::thread::sleep(delay);
            delay = (delay * 2).min(std::time::Duration::from_secs(2));
            continue;
        };
        let status = resp.status().as_u16();
        let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        match status {
            200..=299 => {
                let answer = BidAnswer::deserialize(&v).context("not a bid answer")?;
                let receipt = answer.receipt;
                receipt
                    .verify(&keys.log_key, &keys.origin)
                    .map_err(|e| anyhow!("bid receipt: {}", e.code()))?;
                if answer.commitment != hex::encode(commitment) {
                    bail!("the gateway answered for another commitment");
                }
                return Ok(json!({
                    "auction_id": auction,
                    "buyer": buyer.id(),
                    "amount": amount,
                    "commitment": hex::encode(commitment),
                    "index": answer.index,
                    "receipt": receipt,
                }));
            }
            503 => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
            _ => bail!("{status} {}", error_code(&v)),
        }
    }
    bail!("gateway kept answering 503")
}

/// Options for `buyer decrypt`.
pub struct DecryptArgs {
    pub gateway: String,
    pub trust: TrustArgs,
    pub key: std::path::PathBuf,
    /// One lead and its output file, or …
    pub lead: Option<String>,
    pub out: Option<std::path::PathBuf>,
    /// … every lead this buyer won, into `out_dir/{lead_id}.json`.
    pub won: bool,
    pub out_dir: Option<std::path::PathBuf>,
}

/// `buyer decrypt`: asks for each lead with a signed request, then checks, before opening
/// anything, that the receipt is the enclave's, that the `lead.released` entry is in a
/// checkpoint signed by the attested log key, names this lead and buyer, and commits to the
/// envelope received. Only then decrypts and writes the lead.
pub fn decrypt(a: DecryptArgs) -> anyhow::Result<()> {
    let http = agent();
    let (_, keys) = attest_gateway(&http, &a.gateway, &a.trust)?;
    let buyer = read_key(&a.key)?;
    let targets: Vec<(String, std::path::PathBuf)> = match (&a.lead, &a.out, a.won, &a.out_dir) {
        (Some(l), Some(o), false, None) => vec![(l.clone(), o.clone())],
        (None, None, true, Some(dir)) => {
            std::fs::create_dir_all(dir)?;
            let list: AuctionList = get_typed(
                &http,
                &format!(
                    "{}/v1/auctions?status=sold&winner={}&limit=1000",
                    a.gateway,
                    buyer.id()
                ),
            )?;
            list.auctions
                .into_iter()
                .map(|x| {
                    let out = dir.join(format!("{}.json", x.auction_id));
                    (x.auction_id, out)
                })
                .collect()
        }
        _ => bail!("give --lead ID --out FILE, or --won --out-dir DIR"),
    };
    let mut released = Vec::new();
    let mut latencies = Vec::with_capacity(targets.len());
    for (lead, out) in &targets {
        let req = ReleaseRequest::sign(&buyer.signing, &keys.origin, lead, now_ms());
        let started = std::time::Instant::now();
        let mut resp = http
            .post(&format!("{}/v1/leads/{lead}/release", a.gateway))
            .send_json(&req)?;
        latencies.push(started.elapsed());
        let status = resp.status().as_u16();
        let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            bail!("lead {lead}: refused: {status} {}", error_code(&v));
        }
        let answer = ReleaseAnswer::deserialize(&v).context("not a release answer")?;
        released.push((lead, out, answer.receipt, answer.released));
    }
    let max = released.iter().map(|r| r.2.index + 1).max().unwrap_or(0);
    let cp = checkpoint_covering(&http, &a.gateway, &keys, max)?;
    let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
    for (lead, out, receipt, env) in &released {
        let event = receipt_entry(&http, &a.gateway, &keys, size, &root, receipt)
            .with_context(|| format!("lead {lead}: release event"))?;
        let Event::LeadReleased(e) = event else {
            bail!("lead {lead}: the receipt is not for a lead.released event");
        };
        let sealed = env.sealed_sha256()?;
        if &e.lead_id != *lead
            || e.buyer != buyer.id()
            || e.sealed_sha256 != hex::encode(sealed)
            || &env.lead_id != *lead
        {
            bail!("lead {lead}: the logged release is for another lead, buyer or envelope");
        }
        let plaintext = zeroize::Zeroizing::new(
            env.open(&keys.origin, &buyer.hpke)
                .map_err(|e| anyhow!("lead {lead}: {}", e.code()))?,
        );
        std::fs::write(out, &*plaintext).with_context(|| format!("writing {}", out.display()))?;
    }
    latencies.sort_unstable();
    let ms = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    eprintln!(
        "{} leads released (release round trip p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms), their lead.released events proven in checkpoint {size}, decrypted",
        released.len(),
        ms(0.5),
        ms(0.99),
        ms(1.0)
    );
    Ok(())
}
