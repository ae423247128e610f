//! The enclave's escrow reads ([`RpcEscrow`]) against a JSON-RPC server that answers whatever
//! it likes: every buyer has a million USDC and every auction is paid.
//!
//! - Over plain HTTP (dev mode, anvil) the enclave believes it: the decoding, the batch and the
//!   confirmed block are what the enclave uses, and this is why `http://` is for dev only.
//! - Over TLS, a host that puts itself in the RPC provider's place (the vsock proxy on Nitro
//!   relays the enclave's connection, so it can answer it instead) cannot: its certificate does
//!   not chain to the Mozilla roots for the provider's name, and the read fails
//!   (`chain.unavailable`: no bid is accepted and no lead released on it).

mod tls_server;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use leadgate_enclave::chain::{selector, EscrowChain, EscrowTerms, Rpc, RpcEscrow};
use leadgate_protocol::transport::Endpoint;
use serde_json::{json, Value};

const PROVIDER: &str = "rpc.example.com";

fn word(n: u128) -> String {
    format!("{n:064x}")
}

/// The lying node's answer to one JSON-RPC call; records the block each `eth_call` names.
fn answer(call: &Value, blocks: &Mutex<Vec<String>>) -> Value {
    let id = call["id"].clone();
    let result = match call["method"].as_str() {
        Some("eth_blockNumber") => json!("0x64"),
        Some("eth_call") => {
            blocks
                .lock()
                .unwrap()
                .push(call["params"][1].as_str().unwrap_or("").to_owned());
            let data = call["params"][0]["data"].as_str().unwrap_or("");
            let sel = |s: &str| format!("0x{}", hex::encode(selector(s)));
            let out = if data.starts_with(&sel("accountOf(address)")) {
                format!("{}{}{}", word(1_000_000_000_000), word(0), word(0))
            } else if data.starts_with(&sel("settled(bytes16)")) {
                word(1)
            } else if data.starts_with(&sel("feeBps()")) {
                word(250)
            } else if data.starts_with(&sel("feeRecipient()")) {
                format!("{}{}", "0".repeat(24), "fe".repeat(20))
            } else if data.starts_with(&sel("withdrawalDelay()")) {
                word(1_000_000)
            } else {
                return json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": "revert"}});
            };
            json!(format!("0x{out}"))
        }
        _ => return json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601}}),
    };
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

struct Node {
    http: u16,
    https: u16,
    blocks: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

/// Starts the lying node on two ports: plain HTTP, and TLS with a certificate for
/// [`PROVIDER`] from a CA of its own.
fn start() -> Node {
    let (config, _) = tls_server::server_config(PROVIDER);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let runtime = tls_server::runtime();
    let blocks = Arc::new(Mutex::new(Vec::new()));
    let mut ports = Vec::new();
    for tls in [false, true] {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        ports.push(listener.local_addr().unwrap().port());
        let (acceptor, blocks) = (acceptor.clone(), blocks.clone());
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, blocks) = (acceptor.clone(), blocks.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let blocks = blocks.clone();
                            async move {
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                let out = match &v {
                                    Value::Array(calls) => Value::Array(
                                        calls.iter().map(|c| answer(c, &blocks)).collect(),
                                    ),
                                    call => answer(call, &blocks),
                                };
                                Ok::<_, Infallible>(
                                    http::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(out.to_string())))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let http = hyper::server::conn::http1::Builder::new();
                    if tls {
                        if let Ok(s) = acceptor.accept(tcp).await {
                            let _ = http
                                .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                                .await;
                        }
                    } else {
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                            .await;
                    }
                });
            }
        });
    }
    Node {
        http: ports[0],
        https: ports[1],
        blocks,
        _runtime: runtime,
    }
}

#[test]
fn over_plain_http_the_enclave_believes_whoever_answers() {
    let node = start();
    let escrow = RpcEscrow {
        rpc: Rpc {
            url: format!("http://127.0.0.1:{}/", node.http),
            via: None,
        },
        escrow: [0xe5; 20],
        confirmations: 12,
    };
    assert_eq!(
        escrow.terms().unwrap(),
        EscrowTerms {
            fee_bps: 250,
            fee_recipient: [0xfe; 20],
            withdrawal_delay_s: 1_000_000,
        }
    );
    let reads = escrow
        .deposits(&[([0xa1; 20], vec![[1; 16], [2; 16]]), ([0xa2; 20], vec![])])
        .unwrap();
    assert_eq!(reads.len(), 2);
    assert_eq!(reads[0].balance, 1_000_000_000_000);
    assert_eq!(reads[0].settled, [true, true]);
    assert_eq!((reads[1].requested, reads[1].block), (0, 100 - 12));
    assert!(escrow.settled(&[3; 16]).unwrap());
    // Terms at the newest block; deposits and payments 12 blocks below it (0x64 − 12 = 0x58),
    // every call of a batch at the same block.
    let blocks = node.blocks.lock().unwrap().clone();
    assert_eq!(&blocks[..3], ["latest"; 3]);
    assert_eq!(&blocks[3..], ["0x58"; 5]);
}

#[test]
fn a_host_in_the_rpc_providers_place_cannot_answer_over_tls() {
    let node = start();
    // The enclave asks for https://rpc.example.com through the proxy; the host answers on
    // the proxy's port itself, with a certificate for that name from a CA of its own.
    let escrow = RpcEscrow {
        rpc: Rpc {
            url: format!("https://{PROVIDER}/"),
            via: Some(Endpoint::Tcp(format!("127.0.0.1:{}", node.https))),
        },
        escrow: [0xe5; 20],
        confirmations: 0,
    };
    for why in [
        escrow.terms().unwrap_err(),
        escrow.deposits(&[([0xa1; 20], vec![[1; 16]])]).unwrap_err(),
        escrow.settled(&[1; 16]).unwrap_err(),
    ] {
        assert!(why.contains("TLS"), "{why}");
    }
    assert!(node.blocks.lock().unwrap().is_empty());
}
