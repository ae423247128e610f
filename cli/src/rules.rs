//! `leadgate buyer rules set|show|cancel`: a buyer's auto-bid rule set, sealed to the attested
//! enclave; the buyer keeps each rule set it set (the log holds only commitments) in a local
//! file, which `verify auction --my-rules` checks the enclave's bids against.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use leadgate_verifier::api::{RuleChanges, RulesAnswer};
use leadgate_verifier::autobid::{seal_rules, RuleSet, RulesCancel};
use leadgate_verifier::bid::hex32;
use leadgate_verifier::event::Event;
use leadgate_verifier::keys::EnclaveKeys;
use serde::Deserialize as _;
use serde_json::{json, Value};

use crate::buyer::{read_key, BuyerKeys};
use crate::http::{agent, attest_gateway, error_code, get_typed, now_ms, TrustArgs};

/// A rule set this buyer set, as kept in its rules file (one JSON line each).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeptRules {
    /// The rule set's commitment, hex.
    pub commitment: String,
    /// Leaf index of its `rules.set`.
    pub index: u64,
    /// The rule set as sealed.
    pub rules: RuleSet,
}

/// The rule sets kept in `path` (none if it does not exist).
pub fn read_kept(path: &Path) -> anyhow::Result<Vec<KeptRules>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        if !line.trim().is_empty() {
            out.push(serde_json::from_str(&line).context("a rules file line")?);
        }
    }
    Ok(out)
}

/// Options of `buyer rules set`.
pub struct SetArgs {
    pub gateway: String,
    pub trust: TrustArgs,
    pub key: PathBuf,
    /// The rule set without `buyer`, `buyer_hpke` and `issued_at_ms` (filled in here).
    pub rules: PathBuf,
    pub account: Option<leadgate_verifier::settlement::EthAddress>,
    pub out: PathBuf,
}

/// `buyer rules set`: fills in the buyer's keys and the time, seals the rule set to the
/// attested intake key, signs and posts it, checks the receipt and its `rules.set` entry, and
/// appends `{commitment, index, rules}` to the rules file. Prints that record.
pub fn set(a: SetArgs) -> anyhow::Result<()> {
    let http = agent();
    let (_, keys) =
        attest_gateway(&http, &a.gateway, &a.trust).context("refusing to seal rules")?;
    let buyer = read_key(&a.key)?;
    let text = std::fs::read(&a.rules).with_context(|| format!("reading {}", a.rules.display()))?;
    let mut v: Value = serde_json::from_slice(&text).context("the rules file is not JSON")?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| anyhow!("the rules file is a JSON object"))?;
    obj.insert("buyer".into(), json!(buyer.id()));
    obj.insert("buyer_hpke".into(), json!(hex::encode(buyer.hpke_public)));
    obj.insert("issued_at_ms".into(), json!(now_ms()));
    if let Some(acc) = a.account {
        obj.insert("account".into(), json!(acc.to_string()));
    }
    let rules = RuleSet::deserialize(&v).context("not a rule set")?;
    let (sealed, commitment) = seal_rules(&buyer.signing, &keys.intake_key, &keys.origin, &rules)
        .map_err(|e| anyhow!("{}: {e}", e.code().as_str()))?;
    let mut resp = http
        .post(&format!("{}/v1/rules", a.gateway))
        .send_json(&sealed)
        .context("POST /v1/rules")?;
    let status = resp.status().as_u16();
    let body: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        bail!("{status} {}", error_code(&body));
    }
    let answer = RulesAnswer::deserialize(&body).context("not a rules answer")?;
    check_logged(&http, &a.gateway, &keys, &answer, &buyer, "rules.set")?;
    if answer.commitment != hex::encode(commitment) {
        bail!("the gateway answered for another commitment");
    }
    let kept = KeptRules {
        commitment: answer.commitment,
        index: answer.index,
        rules,
    };
    let line = serde_json::to_string(&kept)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)
        .with_context(|| format!("opening {}", a.out.display()))?;
    writeln!(f, "{line}")?;
    println!("{line}");
    Ok(())
}

/// Checks a rule change's receipt is the attested log's, and that its entry is the change
/// this buyer asked for.
fn check_logged(
    http: &ureq::Agent,
    gateway: &str,
    keys: &EnclaveKeys,
    answer: &RulesAnswer,
    buyer: &BuyerKeys,
    kind: &str,
) -> anyhow::Result<()> {
    let receipt = answer
        .receipt
        .verify(&keys.log_key, &keys.origin)
        .map_err(|e| anyhow!("rules receipt: {}", e.code()))?;
    let leaf = crate::http::get_bytes(http, &format!("{gateway}/v1/entries/{}", answer.index))?;
    if receipt.index != answer.index
        || leadgate_verifier::merkle::leaf_hash(&leaf) != receipt.leaf_hash
    {
        bail!("entry {} is not the one the receipt signs", answer.index);
    }
    let (b, c) = match Event::from_leaf(&leaf)? {
        Event::RulesSet(e) if kind == "rules.set" => (e.buyer, e.commitment),
        Event::RulesCancelled(e) if kind == "rules.cancelled" => (e.buyer, e.commitment),
        other => bail!("entry {} is a {}, not a {kind}", answer.index, other.kind()),
    };
    if b != buyer.id() || c != answer.commitment {
        bail!("entry {} is another buyer's or rule set's", answer.index);
    }
    Ok(())
}

/// `buyer rules show`: the buyer's logged rule changes, with the rules of each commitment
/// this buyer kept; fails if the log's active rule set is not the last one kept.
pub fn show(gateway: &str, key: &Path, kept_path: &Path) -> anyhow::Result<()> {
    let http = agent();
    let buyer = read_key(key)?;
    let changes: RuleChanges = get_typed(&http, &format!("{gateway}/v1/rules/{}", buyer.id()))?;
    let kept = read_kept(kept_path)?;
    for c in &changes.changes {
        let rules = kept
            .iter()
            .find(|k| k.commitment == c.commitment)
            .map(|k| serde_json::to_value(&k.rules))
            .transpose()?;
        println!(
            "{}",
            json!({"index": c.index, "kind": c.kind, "commitment": c.commitment, "rules": rules})
        );
    }
    let last_set = kept.last().map(|k| k.commitment.clone());
    match (&changes.active, &last_set) {
        (Some(a), Some(k)) if a != k => {
            bail!("the log's active rule set {a} is not the last one you set ({k})")
        }
        (Some(a), None) => bail!(
            "the log's active rule set {a} is not in {}",
            kept_path.display()
        ),
        _ => Ok(()),
    }
}

/// `buyer rules cancel`: signs a cancellation of the active rule set and posts it.
pub fn cancel(gateway: &str, trust: &TrustArgs, key: &Path) -> anyhow::Result<()> {
    let http = agent();
    let (_, keys) = attest_gateway(&http, gateway, trust)?;
    let buyer = read_key(key)?;
    let changes: RuleChanges = get_typed(&http, &format!("{gateway}/v1/rules/{}", buyer.id()))?;
    let active = changes
        .active
        .ok_or_else(|| anyhow!("no active rule set to cancel"))?;
    let commitment = hex32(&active).ok_or_else(|| anyhow!("the gateway sent a bad commitment"))?;
    let cancel = RulesCancel::sign(&buyer.signing, &keys.origin, &commitment, now_ms());
    let mut resp = http
        .post(&format!("{gateway}/v1/rules/cancel"))
        .send_json(&cancel)
        .context("POST /v1/rules/cancel")?;
    let status = resp.status().as_u16();
    let body: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        bail!("{status} {}", error_code(&body));
    }
    let answer = RulesAnswer::deserialize(&body).context("not a rules answer")?;
    check_logged(&http, gateway, &keys, &answer, &buyer, "rules.cancelled")?;
    println!("{}", serde_json::to_string(&body)?);
    Ok(())
}
