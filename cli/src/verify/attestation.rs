//! `leadgate verify attestation`: a document from a file or a gateway, against the trust policy.

use std::path::Path;

use anyhow::{anyhow, bail, Context as _};
use leadgate_verifier::attestation::{
    decode_document_input, verify_attestation, AttestationPolicy,
};
use serde_json::json;

use crate::http::{agent, attest_gateway, check_trust, now_ms, root_der, TrustArgs};

/// `verify attestation`.
pub fn attestation(
    file: Option<&Path>,
    gateway: Option<&str>,
    at: Option<u64>,
    trust: &TrustArgs,
    as_json: bool,
) -> anyhow::Result<()> {
    let result = match (file, gateway) {
        (Some(f), None) => {
            let pcr0 = crate::http::expected_pcr0(trust)?;
            let root = root_der(trust)?;
            let raw = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            let doc = decode_document_input(&raw).map_err(|e| anyhow!("{}: {e}", e.code()))?;
            let policy = AttestationPolicy {
                now_unix_ms: at.unwrap_or_else(now_ms),
                root_der: root.as_deref(),
                expected_pcr0: pcr0.as_deref(),
                allow_debug: trust.allow_debug,
                expected_nonce: None,
            };
            verify_attestation(&doc, &policy).map_err(|e| (e.code().as_str(), e.to_string()))
        }
        (None, Some(g)) => {
            if at.is_some() {
                bail!("--at applies to a FILE; a gateway's fresh document is checked at the current time");
            }
            check_trust(trust)?;
            attest_gateway(&agent(), g, trust)
                .map(|(v, _)| v)
                .map_err(|e| ("attestation.rejected", format!("{e:#}")))
        }
        _ => bail!("give exactly one of FILE or --gateway URL"),
    };
    match result {
        Ok(v) => {
            let d = v.document();
            let keys = v.enclave_keys().ok();
            if as_json {
                println!(
                    "{}",
                    json!({
                        "valid": true, "debug": v.is_debug(), "module_id": d.module_id, "timestamp_ms": d.timestamp_ms,
                        "pcr0": v.pcr(0).map(hex::encode), "pcr1": v.pcr(1).map(hex::encode), "pcr2": v.pcr(2).map(hex::encode),
                        "origin": keys.as_ref().map(|k| k.origin.clone()),
                        "log_key": keys.as_ref().and_then(|k| k.note_verifier().ok()).map(|n| n.to_vkey_string()),
                    })
                );
            } else {
                println!(
                    "attestation valid{}",
                    if v.is_debug() {
                        " (DEBUG MODE: PCRs all zero)"
                    } else {
                        ""
                    }
                );
                println!("module_id  {}", d.module_id);
                println!("timestamp  {}", d.timestamp_ms);
                for i in 0..3 {
                    println!(
                        "pcr{i}       {}",
                        v.pcr(i).map(hex::encode).unwrap_or_default()
                    );
                }
                if let Some(k) = keys {
                    println!("origin     {}", k.origin);
                    if let Ok(n) = k.note_verifier() {
                        println!("log key    {}", n.to_vkey_string());
                    }
                }
            }
            Ok(())
        }
        Err((code, msg)) => {
            if as_json {
                println!("{}", json!({"valid": false, "code": code, "message": msg}));
            } else {
                eprintln!("attestation INVALID: {code}: {msg}");
            }
            std::process::exit(1);
        }
    }
}
