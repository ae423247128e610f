//! The HTTP contract of `docs/PROTOCOL.md` where it names a code, a limit or an encoding rule,
//! against the host and the real enclave core in one process (`common::InProcessStack`).
//! Each case is a request a client could send and the exact answer the spec gives for it;
//! each refusal is checked to leave the log as it was.

mod common;

use std::time::Duration;

use ed25519_dalek::SigningKey;
use leadgate_verifier::api::{ErrorBody, ReleaseAnswer, SubmitAnswer};
use leadgate_verifier::auction::{TokenAmount, MAX_AMOUNT};
use leadgate_verifier::bid::{bid_aad, seal_bid, sign_sealed_bid, BID_INFO};
use leadgate_verifier::intake::{
    lead_aad, seal_lead_with_terms, sign_sealed, AuctionRequest, SealedLead, HPKE_INFO,
    MAX_LEAD_BYTES,
};
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::release::ReleaseRequest;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use common::{eventually, http, InProcessStack};

fn now_ms() -> u64 {
    leadgate_host::clock::now_ms()
}

/// A lead that passes every intake rule; `i` makes its email unique.
fn lead(i: u32) -> Value {
    json!({
        "business": format!("Acme Heating {i}"), "full_name": "Dana Smith", "first": "Dana",
        "last": "Smith", "email": format!("dana.smith{i}@acmeheating{i}.com"), "role": "Owner",
        "website": format!("https://acmeheating{i}.com"), "industry": "HVAC",
        "sub_industry": "Heating", "region": "Austin, TX",
        "linkedin": "https://linkedin.com/in/danasmith",
    })
}

/// `lead` sealed and signed by `seller` for the enclave of `keys`, with `terms` if given.
fn seal(
    keys: &EnclaveKeys,
    seller: &SigningKey,
    lead: &Value,
    terms: Option<AuctionRequest>,
) -> SealedLead {
    seal_lead_with_terms(
        seller,
        &keys.intake_key,
        &keys.origin,
        lead.to_string().as_bytes(),
        now_ms(),
        terms,
    )
    .unwrap()
}

/// One raw HTTP/1.1 request; the status, the head (lowercased) and the body.
async fn raw(addr: &str, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("an answer within 30 s")
        .unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    (status, head, out[split..].to_vec())
}

/// The `error.code` of an error answer; panics if the body is not the documented shape.
fn code(body: &[u8]) -> String {
    let e: ErrorBody = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not an error body: {}", String::from_utf8_lossy(body)));
    e.error.code.as_str().to_owned()
}

async fn post(addr: &str, path: &str, body: &Value) -> (u16, Vec<u8>) {
    http(addr, "POST", path, body.to_string().as_bytes()).await
}

async fn log_size(addr: &str) -> u64 {
    common::health(addr).await.size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_has_the_documented_body_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let stack = InProcessStack::start(dir.path(), |_| {}).await;
    let addr = stack.addr();
    let size = log_size(addr).await;

    // Unknown route: 404 request.not_found.
    let (status, body) = http(addr, "GET", "/v2/nothing", b"").await;
    assert_eq!((status, code(&body).as_str()), (404, "request.not_found"));

    // A known route with another method: 405 request.method_not_allowed, and `Allow` names
    // the methods the route takes (RFC 9110 §15.5.6).
    for (method, path, allow) in [
        ("DELETE", "/v1/leads", "post"),
        ("GET", "/v1/bids", "post"),
        ("PUT", "/v1/checkpoint", "get,post"),
        ("POST", "/healthz", "get"),
    ] {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let (status, head, body) = raw(addr, req.as_bytes()).await;
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(code(&body), "request.method_not_allowed");
        let allowed: String = head
            .lines()
            .find_map(|l| l.strip_prefix("allow:"))
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header in {head}"))
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        assert!(
            allowed
                .split(',')
                .all(|m| allow.split(',').any(|a| a == m || m == "head")),
            "{method} {path}: Allow {allowed}"
        );
        assert!(allowed.contains(allow.split(',').next().unwrap()));
    }

    // A body that is not JSON by its content type: 415 request.unsupported_media_type.
    let req = "POST /v1/leads HTTP/1.1\r\nhost: t\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
    let (status, _, body) = raw(addr, req.as_bytes()).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (415, "request.unsupported_media_type")
    );

    // Over the body limit, announced or not: 413 request.too_large.
    let over = leadgate_host::HostConfig::DEFAULT_MAX_BODY_BYTES + 1;
    let (status, body) = http(addr, "POST", "/v1/leads", &vec![b' '; over]).await;
    assert_eq!((status, code(&body).as_str()), (413, "request.too_large"));
    let req = format!(
        "POST /v1/bids HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{over:x}\r\n{}\r\n0\r\n\r\n",
        " ".repeat(over)
    );
    let (status, _, body) = raw(addr, req.as_bytes()).await;
    assert_eq!((status, code(&body).as_str()), (413, "request.too_large"));

    // `null` where a field may only be absent: 400 request.malformed_json.
    let seller = SigningKey::from_bytes(&[3; 32]);
    let keys = &stack.keys;
    let sealed = seal(keys, &seller, &lead(1), None);
    for nulled in [
        json!({"auction": null}),
        json!({"auction": {"reserve": null}}),
        json!({"auction": {"pricing": null}}),
    ] {
        let mut body = serde_json::to_value(&sealed).unwrap();
        body.as_object_mut()
            .unwrap()
            .extend(nulled.as_object().unwrap().clone());
        let (status, answer) = post(addr, "/v1/leads", &body).await;
        assert_eq!(
            (status, code(&answer).as_str()),
            (400, "request.malformed_json"),
            "{nulled}"
        );
    }

    assert_eq!(log_size(addr).await, size, "no refusal appended anything");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hex_is_lowercase_only_and_sizes_and_terms_have_one_code_each() {
    let dir = tempfile::tempdir().unwrap();
    let stack = InProcessStack::start(dir.path(), |_| {}).await;
    let addr = stack.addr();
    let keys = &stack.keys;
    let seller = SigningKey::from_bytes(&[3; 32]);

    // One accepted lead (and so an open auction) to aim bids and ids at.
    let sealed = seal(keys, &seller, &lead(1), None);
    let (status, body) = post(addr, "/v1/leads", &serde_json::to_value(&sealed).unwrap()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let accepted: SubmitAnswer = serde_json::from_slice(&body).unwrap();
    let size = log_size(addr).await;

    // The same submission with its keys in another order and spaces between them is the same
    // submission: the stored answer, nothing appended.
    let v = serde_json::to_value(&sealed).unwrap();
    let reordered = format!(
        "{{ \"signature\": {}, \"issued_at_ms\": {}, \"ciphertext\": {}, \"enc\": {}, \"seller\": {} }}",
        v["signature"], v["issued_at_ms"], v["ciphertext"], v["enc"], v["seller"]
    );
    let (status, body) = http(addr, "POST", "/v1/leads", reordered.as_bytes()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let again: SubmitAnswer = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (again.index, &again.receipt),
        (accepted.index, &accepted.receipt)
    );

    // Uppercase hex is refused wherever hex is read, with the field's code.
    let upper_id = accepted.lead_id.to_ascii_uppercase();
    assert_ne!(upper_id, accepted.lead_id);
    for path in [
        format!("/v1/leads/{upper_id}"),
        format!("/v1/auctions/{upper_id}"),
    ] {
        let (status, body) = http(addr, "GET", &path, b"").await;
        assert_eq!(
            (status, code(&body).as_str()),
            (400, "request.bad_id"),
            "{path}"
        );
    }
    let (status, body) = http(addr, "GET", "/attest?nonce=ABCD", b"").await;
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "attestation.bad_nonce")
    );
    let (status, _) = http(addr, "GET", "/attest?nonce=abcd", b"").await;
    assert_eq!(status, 200);
    let mut upper_seller = serde_json::to_value(&sealed).unwrap();
    upper_seller["seller"] = json!(sealed.seller.to_ascii_uppercase());
    let (status, body) = post(addr, "/v1/leads", &upper_seller).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (422, "submission.malformed")
    );
    let buyer = SigningKey::from_bytes(&[7; 32]);
    let (bid, _) = seal_bid(
        &buyer,
        &[8; 32],
        &keys.intake_key,
        &keys.origin,
        &accepted.lead_id,
        TokenAmount::new(1).unwrap(),
        [1; 16],
    )
    .unwrap();
    let mut upper_buyer = serde_json::to_value(&bid).unwrap();
    upper_buyer["buyer"] = json!(bid.buyer.to_ascii_uppercase());
    let (status, body) = post(addr, "/v1/bids", &upper_buyer).await;
    assert_eq!((status, code(&body).as_str()), (422, "bid.malformed"));
    let release = ReleaseRequest::sign(&buyer, &keys.origin, &accepted.lead_id, now_ms());
    let (status, body) = post(
        addr,
        &format!("/v1/leads/{upper_id}/release"),
        &serde_json::to_value(&release).unwrap(),
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (400, "request.bad_id"));

    // A lead over 16,384 bytes is `lead.too_large` however far over it is (the host reads
    // the size off the ciphertext: plaintext = ciphertext − 16-byte tag).
    for over in [1usize, 2, 3, 100, 4_000] {
        let plaintext = vec![b'x'; MAX_LEAD_BYTES + over];
        let (enc, ct) = leadgate_verifier::envelope::seal(
            &keys.intake_key,
            HPKE_INFO,
            &lead_aad(&keys.origin, &seller.verifying_key().to_bytes()),
            &plaintext,
        )
        .unwrap();
        let big = sign_sealed(&seller, &keys.origin, &enc, &ct, now_ms(), None);
        let (status, body) = post(addr, "/v1/leads", &serde_json::to_value(&big).unwrap()).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (422, "lead.too_large"),
            "{over} bytes over"
        );
    }

    // Terms out of range are `submission.bad_terms`, whether the gateway or the enclave's
    // configuration rules them out.
    let terms = |reserve: Option<u64>, duration_ms: Option<u64>, pricing: Option<&str>| {
        let s = seal(keys, &seller, &lead(2), Some(AuctionRequest::default()));
        let mut v = serde_json::to_value(&s).unwrap();
        v["auction"] = json!({});
        if let Some(r) = reserve {
            v["auction"]["reserve"] = json!(r);
        }
        if let Some(d) = duration_ms {
            v["auction"]["duration_ms"] = json!(d);
        }
        if let Some(p) = pricing {
            v["auction"]["pricing"] = json!(p);
        }
        v
    };
    for (case, body) in [
        ("reserve 2^53", terms(Some(MAX_AMOUNT + 1), None, None)),
        ("reserve 2^64 - 1", terms(Some(u64::MAX), None, None)),
        (
            "pricing third_price",
            terms(None, None, Some("third_price")),
        ),
        (
            "pricing First_Price",
            terms(None, None, Some("First_Price")),
        ),
    ] {
        let (status, answer) = post(addr, "/v1/leads", &body).await;
        assert_eq!(
            (status, code(&answer).as_str()),
            (422, "submission.bad_terms"),
            "{case}"
        );
    }
    // Within the encoding but outside the enclave's bounds (1 s to 7 days): signed properly.
    for duration_ms in [999, 7 * 86_400_000 + 1] {
        let terms = AuctionRequest {
            duration_ms: Some(duration_ms),
            ..AuctionRequest::default()
        };
        let s = seal(keys, &seller, &lead(3), Some(terms));
        let (status, answer) = post(addr, "/v1/leads", &serde_json::to_value(&s).unwrap()).await;
        assert_eq!(
            (status, code(&answer).as_str()),
            (422, "submission.bad_terms"),
            "{duration_ms} ms"
        );
    }

    // A sealed amount over 2^53 − 1 is `auction.amount_too_large` (sealed by hand: the
    // library's TokenAmount cannot hold it).
    for amount in [MAX_AMOUNT + 1, u64::MAX] {
        let plaintext = json!({
            "auction_id": accepted.lead_id, "amount": amount,
            "buyer": hex::encode(buyer.verifying_key().to_bytes()), "buyer_hpke": "08".repeat(32),
            "nonce": "09".repeat(16),
        });
        let (enc, ct) = leadgate_verifier::envelope::seal(
            &keys.intake_key,
            BID_INFO,
            &bid_aad(
                &keys.origin,
                &accepted.lead_id,
                &buyer.verifying_key().to_bytes(),
            ),
            plaintext.to_string().as_bytes(),
        )
        .unwrap();
        let (bid, _) = sign_sealed_bid(&buyer, &keys.origin, &accepted.lead_id, &enc, &ct);
        let (status, answer) = post(addr, "/v1/bids", &serde_json::to_value(&bid).unwrap()).await;
        assert_eq!(
            (status, code(&answer).as_str()),
            (422, "auction.amount_too_large"),
            "{amount}"
        );
    }

    // `/v1/auctions?limit=` is 1 to 1,000.
    for (limit, want) in [(0, 400), (1, 200), (1_000, 200), (1_001, 400)] {
        let (status, body) = http(addr, "GET", &format!("/v1/auctions?limit={limit}"), b"").await;
        assert_eq!(
            status,
            want,
            "limit={limit}: {}",
            String::from_utf8_lossy(&body)
        );
        if want == 400 {
            assert_eq!(code(&body), "request.bad_query");
        }
    }

    assert_eq!(log_size(addr).await, size, "no refusal appended anything");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_name_unknown_and_rejected_leads_and_each_release_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let stack = InProcessStack::start(dir.path(), |_| {}).await;
    let addr = stack.addr();
    let keys = &stack.keys;
    let seller = SigningKey::from_bytes(&[3; 32]);
    let buyer = SigningKey::from_bytes(&[7; 32]);
    let release = |lead_id: &str| {
        serde_json::to_value(ReleaseRequest::sign(
            &buyer,
            &keys.origin,
            lead_id,
            now_ms(),
        ))
        .unwrap()
    };

    // Unknown: no such lead.
    let unknown = "ab".repeat(16);
    let (status, body) = post(
        addr,
        &format!("/v1/leads/{unknown}/release"),
        &release(&unknown),
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (404, "lead.unknown"));

    // Rejected at intake: the lead exists, its auction never did.
    let mut bad = lead(4);
    bad["email"] = json!("not-an-email");
    let sealed = seal(keys, &seller, &bad, None);
    let (_, body) = post(addr, "/v1/leads", &serde_json::to_value(&sealed).unwrap()).await;
    let rejected: SubmitAnswer = serde_json::from_slice(&body).unwrap();
    assert_eq!(rejected.reason.as_deref(), Some("malformed_email"));
    let (status, body) = post(
        addr,
        &format!("/v1/leads/{}/release", rejected.lead_id),
        &release(&rejected.lead_id),
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (404, "auction.unknown"));

    // Sold: a one-second auction with one bid; each release by the winner appends its own
    // `lead.released` (a fresh `issued_at_ms` each time).
    let terms = AuctionRequest {
        duration_ms: Some(1_000),
        ..AuctionRequest::default()
    };
    let sealed = seal(keys, &seller, &lead(5), Some(terms));
    let (_, body) = post(addr, "/v1/leads", &serde_json::to_value(&sealed).unwrap()).await;
    let sold: SubmitAnswer = serde_json::from_slice(&body).unwrap();
    let (bid, _) = seal_bid(
        &buyer,
        &[8; 32],
        &keys.intake_key,
        &keys.origin,
        &sold.lead_id,
        TokenAmount::new(5).unwrap(),
        [2; 16],
    )
    .unwrap();
    let (status, body) = post(addr, "/v1/bids", &serde_json::to_value(&bid).unwrap()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let path = format!("/v1/auctions/{}", sold.lead_id);
    eventually("the auction closes", || async {
        let (_, body) = http(addr, "GET", &path, b"").await;
        serde_json::from_slice::<Value>(&body).unwrap()["status"] == "sold"
    })
    .await;
    let mut indexes = Vec::new();
    for _ in 0..2 {
        let (status, body) = post(
            addr,
            &format!("/v1/leads/{}/release", sold.lead_id),
            &release(&sold.lead_id),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let answer: ReleaseAnswer = serde_json::from_slice(&body).unwrap();
        let (_, leaf) = http(addr, "GET", &format!("/v1/entries/{}", answer.index), b"").await;
        let event: Value = serde_json::from_slice(&leaf).unwrap();
        assert_eq!(event["kind"], "lead.released");
        indexes.push(answer.index);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(indexes[1] > indexes[0], "{indexes:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_over_its_daily_limit_is_told_when_it_resets() {
    let dir = tempfile::tempdir().unwrap();
    let stack = InProcessStack::start(dir.path(), |c| c.seller_daily_limit = 2).await;
    let addr = stack.addr();
    let keys = &stack.keys;
    let seller = SigningKey::from_bytes(&[3; 32]);
    for i in 0..3u32 {
        let sealed = seal(keys, &seller, &lead(10 + i), None);
        let body = serde_json::to_vec(&sealed).unwrap();
        let req = [
            format!("POST /v1/leads HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).into_bytes(),
            body,
        ]
        .concat();
        let before = now_ms();
        let (status, head, answer) = raw(addr, &req).await;
        if i < 2 {
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
            continue;
        }
        assert_eq!((status, code(&answer).as_str()), (429, "rate.limited"));
        let retry: u64 = head
            .lines()
            .find_map(|l| l.strip_prefix("retry-after:"))
            .expect("Retry-After")
            .trim()
            .parse()
            .unwrap();
        let (early, late) = (
            leadgate_host::ratelimit::secs_to_reset(now_ms()),
            leadgate_host::ratelimit::secs_to_reset(before),
        );
        assert!(
            (early..=late).contains(&retry),
            "Retry-After {retry}, the reset is {early}..{late} s away"
        );
    }
    stack.stop().await;
}
