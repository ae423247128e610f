//! The OpenAPI document (`GET /openapi.json`) against what it describes: the committed copy
//! (`docs/openapi.json`), the endpoint table of `docs/PROTOCOL.md` §5, and the routes the host
//! really serves.
//!
//! `LEADGATE_WRITE_OPENAPI=1 cargo test -p leadgate-host --test openapi` rewrites the
//! committed copy (review the diff: it is an API change).

mod common;

use common::RunningHost;
use leadgate_host::HostConfig;
use leadgate_protocol::transport::{Endpoint, InProcess};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every (method, path) the document describes.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let generated = leadgate_host::api::openapi_json();
    let path = root().join("docs/openapi.json");
    if std::env::var_os("LEADGATE_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert_eq!(committed, generated, "docs/openapi.json is stale");
    let doc: Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // The contract types are all there, with their fields.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "SealedLead",
        "SubmitAnswer",
        "BatchAnswer",
        "ErrorBody",
        "Receipt",
        "SealedBid",
        "BidAnswer",
        "ReleaseRequest",
        "ReleaseAnswer",
        "AuctionDetail",
        "Health",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap();
    assert_eq!(codes.len(), leadgate_verifier::ErrorCode::ALL.len());
}

#[test]
fn the_protocol_table_lists_exactly_the_documented_endpoints() {
    let spec = std::fs::read_to_string(root().join("docs/PROTOCOL.md")).unwrap();
    let start = spec.find("## 5. The HTTP API").expect("HTTP API section");
    let section = &spec[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let mut listed = BTreeSet::new();
    for line in section[..end].lines().filter(|l| l.starts_with("| `")) {
        let first = line.split(" | ").next().unwrap_or_default();
        for cell in first.split('`').skip(1).step_by(2) {
            let (method, path) = cell.split_once(' ').expect("METHOD /path");
            let path = path.split('?').next().unwrap_or(path);
            listed.insert((method.to_owned(), path.to_owned()));
        }
    }
    let doc: Value = serde_json::from_str(&leadgate_host::api::openapi_json()).unwrap();
    assert_eq!(
        listed,
        documented(&doc),
        "docs/PROTOCOL.md table vs OpenAPI paths"
    );
}

/// One request, with `{}` as the body of a POST; the body of the answer as text.
async fn request(addr: &str, method: &str, path: &str) -> (u16, String) {
    let body: &[u8] = if method == "POST" { b"{}" } else { b"" };
    let (status, answer) = common::http(addr, method, path, body).await;
    (status, String::from_utf8_lossy(&answer).into_owned())
}

/// The `error.code` of an error body, if the body is one.
fn error_code(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v["error"]["code"].as_str().map(str::to_owned)
}

/// Every documented path is routed (none falls through to `request.not_found`), and the
/// served document is the generated one. The host runs in process with no enclave (every
/// answer that needs one is 503), which is enough to see the router.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_path_is_served() {
    let dir = tempfile::tempdir().unwrap();
    // An in-process link nothing listens on: every connection is refused.
    let enclave = Endpoint::InProcess(InProcess::new());
    let host = RunningHost::start(HostConfig::new(enclave, dir.path().join("host.db"))).await;
    let addr = host.addr.clone();

    let (status, served) = request(&addr, "GET", "/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(served, leadgate_host::api::openapi_json());
    let doc: Value = serde_json::from_str(&served).unwrap();
    let zeros = "0".repeat(32);
    for (method, path) in documented(&doc) {
        let concrete = path
            .replace("{lead_id}", &zeros)
            .replace("{id}", &zeros)
            .replace("{index}", "0");
        let (status, body) = request(&addr, &method, &concrete).await;
        assert!(
            error_code(&body).as_deref() != Some("request.not_found"),
            "{method} {path} is documented but not routed ({status} {body})"
        );
    }
    // And the fallback does answer request.not_found, so the check above can fail.
    let (status, body) = request(&addr, "GET", "/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body).as_deref(), Some("request.not_found"));

    host.stop().await;
}
