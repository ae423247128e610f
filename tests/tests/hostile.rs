//! Hostile HTTP clients against a real host: slow headers, unfinished bodies, floods of
//! connections, wrong content types, ids in another case. Each must get a clean error (or be
//! dropped) and leave the gateway serving everyone else. Memory and latency figures under
//! these attacks are measured by `scripts/chaos`, not here.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use leadgate_e2e::{corpus, seal, Stack};
use serde_json::Value;

fn host_args(extra: &[&str]) -> Vec<String> {
    extra.iter().map(|s| s.to_string()).collect()
}

fn addr(stack: &Stack) -> String {
    stack.gateway.trim_start_matches("http://").to_owned()
}

/// Reads whatever the server sends until it closes (or 20 s pass).
fn read_answer(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn slow_and_unfinished_requests_are_dropped_and_healthz_keeps_answering() {
    let stack = Stack::start_with(
        100_000,
        &host_args(&[
            "--max-connections",
            "64",
            "--header-timeout-secs",
            "1",
            "--body-timeout-secs",
            "2",
            "--max-buffered-bytes",
            "1048576",
        ]),
        tempfile::tempdir().unwrap(),
    );
    // 200 connections that send half a request head and stall: four times the cap.
    let mut slow: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(addr(&stack)).ok())
        .collect();
    for s in &mut slow {
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
    }
    // The gateway still answers: each new connection evicts the oldest idle one.
    for _ in 0..20 {
        let v = stack.get_json("/healthz");
        assert_eq!(v["status"], "ok", "{v}");
    }
    // A stalled head is closed after the header timeout.
    let mut s = TcpStream::connect(addr(&stack)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let answer = read_answer(&mut s);
    assert!(!answer.contains("200 OK"), "{answer}");
    drop(slow);

    // A body announced but never finished: 408 after the body timeout, and its share of the
    // budget is given back.
    let mut s = TcpStream::connect(addr(&stack)).unwrap();
    s.write_all(
        b"POST /v1/leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 60000\r\n\r\n{\"seller\":",
    )
    .unwrap();
    let answer = read_answer(&mut s);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request.timeout"), "{answer}");

    // Bodies over the shared budget (1 MiB here) are refused before they are read: 503 with
    // Retry-After. 20 unfinished 60 KB bodies hold 1.2 MB; the 18th or so must be refused.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr(&stack)).unwrap();
        s.write_all(
            b"POST /v1/leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 60000\r\n\r\n{",
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 503"), "{text}");
                assert!(text.to_ascii_lowercase().contains("retry-after"), "{text}");
                assert!(text.contains("server.busy"), "{text}");
                refused += 1;
            }
            _ => held.push(s),
        }
    }
    assert!(refused >= 2, "only {refused} refused");
    drop(held);
    // Everything else still works.
    let keys = stack.keys();
    let seller = SigningKey::from_bytes(&[3; 32]);
    let (status, v) = stack.post(&seal(&seller, &keys, &corpus()[0]["lead"]));
    assert_eq!(status, 200, "{v}");
}

#[test]
fn content_types_and_id_case_are_checked_the_same_way_everywhere() {
    let stack = Stack::start();
    let keys = stack.keys();
    let seller = SigningKey::from_bytes(&[4; 32]);
    let lead = seal(&seller, &keys, &corpus()[0]["lead"]);
    let body = serde_json::to_vec(&lead).unwrap();
    for (path, ct) in [
        ("/v1/leads", Some("text/plain")),
        ("/v1/leads", None),
        ("/v1/leads/batch", Some("application/x-www-form-urlencoded")),
        ("/v1/bids", Some("text/json")),
    ] {
        let mut req = stack.http.post(&format!("{}{path}", stack.gateway));
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let mut r = req.send(&body[..]).unwrap();
        assert_eq!(r.status(), 415, "{path} {ct:?}");
        let v: Value = r.body_mut().read_json().unwrap();
        assert_eq!(v["error"]["code"], "request.unsupported_media_type");
    }
    assert_eq!(stack.size(), 1, "nothing was logged");
    // With parameters and in any case, JSON is JSON.
    let mut r = stack
        .http
        .post(&format!("{}/v1/leads", stack.gateway))
        .header("content-type", "Application/JSON; charset=utf-8")
        .send(&body[..])
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.body_mut().read_json().unwrap();
    let id = v["lead_id"].as_str().unwrap().to_owned();
    // Ids are lowercase hex: the id as logged is found, an uppercase spelling is refused.
    for (resource, field) in [("leads", "lead_id"), ("auctions", "auction_id")] {
        let found = stack.get_json(&format!("/v1/{resource}/{id}"));
        assert_eq!(found[field].as_str(), Some(id.as_str()));
        let mut r = stack
            .http
            .get(&format!(
                "{}/v1/{resource}/{}",
                stack.gateway,
                id.to_ascii_uppercase()
            ))
            .call()
            .unwrap();
        assert_eq!(r.status(), 400, "{resource}");
        let v: Value = r.body_mut().read_json().unwrap();
        assert_eq!(v["error"]["code"], "request.bad_id");
    }
}
