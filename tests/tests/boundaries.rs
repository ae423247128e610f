//! The workspace's dependency boundaries, from Cargo's own resolution (`cargo tree` per crate,
//! with the features that crate builds with, normal dependencies only; `cargo metadata` for
//! declared `rust-version`s):
//!
//! - each crate depends only on the roles below it: verifier ← protocol ← enclave, host;
//!   the CLI on the verifier alone; the image builder on none;
//! - the verifier library stays pure (no async runtime, HTTP, database, chain client, CLI
//!   parser or TLS stack), and the protocol crate links no enclave-only stack;
//! - the untrusted host links neither the enclave crate nor NSM, RSA or a KMS client;
//! - the verifier's and the protocol's declared `rust-version` is at least every dependency's,
//!   so the MSRV they claim is not contradicted by what they pull in.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    c
}

/// `(name, version)` of every package in `package`'s normal-dependency tree, itself included.
fn tree(package: &str) -> BTreeSet<(String, String)> {
    let out = cargo()
        .args([
            "tree",
            "--locked",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next()?;
            let version = parts.next()?.trim_start_matches('v');
            Some((name.to_owned(), version.to_owned()))
        })
        .collect()
}

fn names(package: &str) -> BTreeSet<String> {
    tree(package).into_iter().map(|(n, _)| n).collect()
}

/// Fails naming every forbidden package found in `package`'s tree. A pattern ending in `*`
/// matches a name prefix.
fn assert_excludes(package: &str, forbidden: &[&str]) {
    let deps = names(package);
    let found: Vec<&String> = deps
        .iter()
        .filter(|d| {
            forbidden.iter().any(|f| match f.strip_suffix('*') {
                Some(prefix) => d.starts_with(prefix),
                None => d.as_str() == *f,
            })
        })
        .collect();
    assert!(
        found.is_empty(),
        "{package} depends on {found:?} (see `cargo tree -p {package} -e normal -i NAME`)"
    );
}

/// The workspace crates in `package`'s tree, other than itself.
fn workspace_deps(package: &str) -> BTreeSet<String> {
    names(package)
        .into_iter()
        .filter(|n| n.starts_with("leadgate-") && n != package)
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn each_crate_depends_only_on_the_roles_below_it() {
    assert_eq!(workspace_deps("leadgate-verifier"), set(&[]));
    assert_eq!(
        workspace_deps("leadgate-protocol"),
        set(&["leadgate-verifier"])
    );
    assert_eq!(
        workspace_deps("leadgate-enclave"),
        set(&["leadgate-verifier", "leadgate-protocol"])
    );
    assert_eq!(
        workspace_deps("leadgate-host"),
        set(&["leadgate-verifier", "leadgate-protocol"])
    );
    assert_eq!(workspace_deps("leadgate-cli"), set(&["leadgate-verifier"]));
    assert_eq!(workspace_deps("leadgate-eif"), set(&[]));
}

/// I/O stacks, CLI parsers and TLS: none belongs in the pure verifier library.
const NOT_PURE: &[&str] = &[
    "tokio",
    "mio",
    "hyper",
    "axum",
    "sqlx*",
    "alloy*",
    "ureq",
    "reqwest",
    "clap",
    "anyhow",
    "indicatif",
    "ring",
    "aws-lc*",
    "openssl*",
    "rustls",
    "aws-*",
];

/// What only the enclave runs: the Nitro Security Module API, the KMS recipient's RSA key,
/// SigV4 request signing, and the AWS SDK's KMS client.
const ENCLAVE_ONLY: &[&str] = &[
    "aws-nitro-enclaves-nsm-api",
    "rsa",
    "aws-sdk-kms",
    "leadgate-enclave",
];

#[test]
fn the_verifier_library_is_pure() {
    assert_excludes("leadgate-verifier", NOT_PURE);
}

#[test]
fn the_protocol_links_no_enclave_or_server_stack() {
    assert_excludes("leadgate-protocol", ENCLAVE_ONLY);
    assert_excludes(
        "leadgate-protocol",
        &[
            "aws-*", "hyper", "axum", "sqlx*", "alloy*", "ring", "openssl*",
        ],
    );
}

#[test]
fn the_host_links_neither_the_enclave_nor_nsm_rsa_or_kms() {
    assert_excludes("leadgate-host", ENCLAVE_ONLY);
}

#[test]
fn the_enclave_links_no_host_stack() {
    assert_excludes(
        "leadgate-enclave",
        &["leadgate-host", "axum", "sqlx*", "alloy*", "openssl*"],
    );
}

/// The checker itself: a forbidden name that is present is reported.
#[test]
#[should_panic(expected = "depends on")]
fn a_present_dependency_is_caught() {
    assert_excludes("leadgate-host", &["leadgate-protocol"]);
}

fn version(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().expect("numeric")).collect()
}

/// `(name, rust-version)` of the dependencies that declare a newer Rust than `package` does.
fn newer_than_declared(package: &str) -> Vec<(String, String)> {
    let out = cargo()
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata --offline needs every locked crate's manifest, for every platform \
         (run `cargo fetch --locked` once; scripts/test does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let declared: BTreeMap<(String, String), String> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| {
            Some((
                (
                    p["name"].as_str()?.to_owned(),
                    p["version"].as_str()?.to_owned(),
                ),
                p["rust_version"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let tree = tree(package);
    let own = tree
        .iter()
        .find(|(n, _)| n == package)
        .and_then(|k| declared.get(k))
        .unwrap_or_else(|| panic!("{package} declares no rust-version"));
    tree.iter()
        .filter_map(|k| {
            let theirs = declared.get(k)?;
            (version(theirs) > version(own)).then(|| (k.0.clone(), theirs.clone()))
        })
        .collect()
}

#[test]
fn declared_msrv_covers_every_dependency() {
    for package in ["leadgate-verifier", "leadgate-protocol"] {
        let newer = newer_than_declared(package);
        assert!(
            newer.is_empty(),
            "{package}'s rust-version is older than its dependencies need: {newer:?}"
        );
    }
}
