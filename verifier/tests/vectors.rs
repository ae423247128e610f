//! The test vectors of `docs/PROTOCOL.md`, in `docs/vectors/*.json`.
//!
//! Every vector is computed here from fixed inputs (key seeds, HPKE `ikmE`, times, nonces)
//! through this crate's own functions, then compared with the committed file: a change to any
//! signed text, AAD, encoding or hash breaks this test before it breaks a client written from
//! the spec. Each vector is also checked in the direction a client relies on (the enclave's
//! decoder accepts the sealed request, the buyer opens the released lead, the verifier accepts
//! the receipt, note and proofs).
//!
//! `LEADGATE_WRITE_VECTORS=1 cargo test -p leadgate-verifier --test vectors` rewrites the
//! files (review the diff: it is a format change).
//!
//! HPKE sealing is randomized; for a vector, the sender's ephemeral key is derived from a
//! fixed `ikmE` with RFC 9180 §7.1.3 DeriveKeyPair, as in RFC 9180's own test vectors, so
//! another implementation can reproduce `enc` and the ciphertext byte for byte.

use std::path::PathBuf;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ed25519_dalek::SigningKey;
use hpke::{aead::AesGcm256, kdf::HkdfSha256, kem::X25519HkdfSha256, Deserializable as _};
use hpke::{OpModeS, Serializable as _};
use leadgate_verifier::auction::{
    commitments_root, seed_message, tie_rank, verify_seed, Pricing, TokenAmount,
};
use leadgate_verifier::bid::{bid_aad, sign_sealed_bid, SealedBid, BID_INFO};
use leadgate_verifier::checkpoint::{verify_checkpoint, Checkpoint};
use leadgate_verifier::envelope::keypair_from_seed;
use leadgate_verifier::event::Event;
use leadgate_verifier::intake::{lead_aad, sign_sealed, AuctionRequest, SealedLead, HPKE_INFO};
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle::{self, leaf_hash, node_hash, Hash};
use leadgate_verifier::note::{ed25519_key_id, Note, NoteSigner};
use leadgate_verifier::receipt::Receipt;
use leadgate_verifier::release::{release_aad, ReleaseRequest, ReleasedLead, RELEASE_INFO};
use serde_json::{json, Value};

/// An RNG that hands out fixed bytes: HPKE's sender asks it for exactly the 32 bytes of `ikmE`.
struct FixedRng(Vec<u8>);

impl rand_core::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        unreachable!("HPKE asks only for bytes")
    }
    fn next_u64(&mut self) -> u64 {
        unreachable!("HPKE asks only for bytes")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(
            dest.len() <= self.0.len(),
            "more randomness asked than ikmE"
        );
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for FixedRng {}

/// HPKE base-mode single-shot seal with the ephemeral key derived from `ikm_e`.
fn seal_with(
    recipient: &[u8; 32],
    ikm_e: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    pt: &[u8],
) -> ([u8; 32], Vec<u8>) {
    let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(recipient).unwrap();
    let mut rng = FixedRng(ikm_e.to_vec());
    let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &pk,
        info,
        pt,
        aad,
        &mut rng,
    )
    .unwrap();
    assert!(rng.0.is_empty(), "HPKE used all 32 bytes of ikmE");
    (enc.to_bytes().into(), ct)
}

fn seed(byte: u8) -> [u8; 32] {
    [byte; 32]
}

const ORIGIN: &str = "leadgate.dev/log";

fn log_key() -> SigningKey {
    SigningKey::from_bytes(&seed(0x01))
}

/// The enclave's intake key pair: DeriveKeyPair(ikm = 32 × 0x02).
fn intake() -> (leadgate_verifier::envelope::HpkeSecret, [u8; 32]) {
    keypair_from_seed(&seed(0x02))
}

fn intake_vectors() -> Value {
    let seller = SigningKey::from_bytes(&seed(0x03));
    let (intake_sk, intake_pk) = intake();
    let lead = r#"{"business":"Acme Heating LLC","full_name":"Dana Smith","first":"Dana","last":"Smith","email":"dana.smith@acmeheating.com","role":"Owner","website":"https://acmeheating.com","industry":"HVAC","sub_industry":"Heating","region":"Austin, TX","linkedin":"https://linkedin.com/in/danasmith","phone_numbers":["+1-512-555-0100"],"founded_year":1999}"#;
    let cases = [
        ("no auction terms (the enclave's defaults)", None, 0x04),
        (
            "with auction terms: reserve 2.5 USDC, 10 minutes, second price",
            Some(AuctionRequest {
                reserve: Some(TokenAmount::new(2_500_000).unwrap()),
                duration_ms: Some(600_000),
                pricing: Some(Pricing::SecondPrice),
                payout: None,
                off_site: false,
                instant: false,
            }),
            0x05,
        ),
        (
            "with one auction term (reserve only): the others sign as `default`",
            Some(AuctionRequest {
                reserve: Some(TokenAmount::new(1_000_000).unwrap()),
                ..Default::default()
            }),
            0x06,
        ),
        (
            "with a payout address only: the three terms sign as `default`, then the address",
            Some(AuctionRequest {
                payout: Some(
                    "0x5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"
                        .parse()
                        .unwrap(),
                ),
                ..Default::default()
            }),
            0x07,
        ),
        (
            "marked off-site, with a payout address: the address line, then `off_site`",
            Some(AuctionRequest {
                payout: Some(
                    "0x5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"
                        .parse()
                        .unwrap(),
                ),
                off_site: true,
                ..Default::default()
            }),
            0x0d,
        ),
        (
            "an instant auction (no duration): the three terms, then `instant`",
            Some(AuctionRequest {
                instant: true,
                ..Default::default()
            }),
            0x0e,
        ),
    ];
    let issued_at_ms = 1_764_547_200_000u64;
    let mut out = Vec::new();
    for (name, terms, ikm) in cases {
        let ikm_e = seed(ikm);
        let aad = lead_aad(ORIGIN, &seller.verifying_key().to_bytes());
        let (enc, ct) = seal_with(&intake_pk, &ikm_e, HPKE_INFO, &aad, lead.as_bytes());
        let mut sealed = sign_sealed(&seller, ORIGIN, &enc, &ct, issued_at_ms, terms);
        sealed.auction = terms.map(Into::into);
        // The enclave's side: decode, verify the signature, open.
        let verified = sealed.decode().unwrap().verify(ORIGIN).unwrap();
        let opened =
            leadgate_verifier::envelope::open(&intake_sk, &enc, HPKE_INFO, &aad, &ct).unwrap();
        assert_eq!(opened, lead.as_bytes());
        let d = |v: Option<String>| v.unwrap_or_else(|| "default".into());
        let terms_lines = terms
            .map(|t| {
                format!(
                    "{}\n{}\n{}\n{}{}{}",
                    d(t.reserve.map(|r| r.units().to_string())),
                    d(t.duration_ms.map(|v| v.to_string())),
                    d(t.pricing.map(|p| p.as_str().to_owned())),
                    t.payout.map(|a| format!("{a}\n")).unwrap_or_default(),
                    if t.off_site { "off_site\n" } else { "" },
                    if t.instant { "instant\n" } else { "" }
                )
            })
            .unwrap_or_default();
        let signed_text = format!(
            "leadgate.submit.v1\n{ORIGIN}\n{}\n{}\n{issued_at_ms}\n{terms_lines}",
            sealed.seller,
            hex::encode(verified.ciphertext_sha256)
        );
        // The signature in the body is over exactly this text.
        let sig: [u8; 64] = B64.decode(&sealed.signature).unwrap().try_into().unwrap();
        seller
            .verifying_key()
            .verify_strict(
                signed_text.as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&sig),
            )
            .unwrap();
        out.push(json!({
            "name": name,
            "origin": ORIGIN,
            "seller_seed": hex::encode(seed(0x03)),
            "seller": sealed.seller,
            "intake_ikm": hex::encode(seed(0x02)),
            "intake_key": hex::encode(intake_pk),
            "info": std::str::from_utf8(HPKE_INFO).unwrap(),
            "plaintext": lead,
            "aad": String::from_utf8(aad).unwrap(),
            "ikm_e": hex::encode(ikm_e),
            "enc": hex::encode(enc),
            "ciphertext": hex::encode(&ct),
            "ciphertext_sha256": hex::encode(verified.ciphertext_sha256),
            "lead_id": verified.lead_id(),
            "issued_at_ms": issued_at_ms,
            "signed_text": signed_text,
            "signature": hex::encode(sig),
            "body": serde_json::to_value(&sealed).unwrap(),
        }));
    }
    // A body with the fields in another order, or a signature over other terms, is refused.
    let body: SealedLead = serde_json::from_value(out[1]["body"].clone()).unwrap();
    let mut other = body.clone();
    other.auction = None;
    assert!(other.decode().unwrap().verify(ORIGIN).is_err());
    json!({ "intake": out })
}

fn bid_vectors() -> Value {
    let buyer = SigningKey::from_bytes(&seed(0x07));
    let (_, buyer_hpke) = keypair_from_seed(&seed(0x08));
    let (intake_sk, intake_pk) = intake();
    let auction_id = "0f3c6e1d2b4a59687766554433221100";
    let nonce = [0x09u8; 16];
    let account = "0xb0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
    let mut out = Vec::new();
    for (name, with_account, ikm) in [
        ("a 3.25 USDC bid", false, 0x0a),
        (
            "a 3.25 USDC bid naming its deposit account (a gateway that settles on chain)",
            true,
            0x0b,
        ),
    ] {
        let mut plaintext = json!({
            "auction_id": auction_id,
            "amount": 3_250_000u64,
            "buyer": hex::encode(buyer.verifying_key().to_bytes()),
            "buyer_hpke": hex::encode(buyer_hpke),
            "nonce": hex::encode(nonce),
        });
        if with_account {
            plaintext["account"] = json!(account);
        }
        let plaintext = plaintext.to_string();
        let aad = bid_aad(ORIGIN, auction_id, &buyer.verifying_key().to_bytes());
        let ikm_e = seed(ikm);
        let (enc, ct) = seal_with(&intake_pk, &ikm_e, BID_INFO, &aad, plaintext.as_bytes());
        let (sealed, commitment) = sign_sealed_bid(&buyer, ORIGIN, auction_id, &enc, &ct);
        let signed_text = format!(
            "leadgate.bid.v1\n{ORIGIN}\n{auction_id}\n{}\n{}\n",
            sealed.buyer,
            hex::encode(commitment)
        );
        // The enclave's side: verify, open, read the plaintext.
        let verified = sealed.verify(ORIGIN).unwrap();
        assert_eq!(verified.commitment, commitment);
        let content = leadgate_verifier::bid::open_bid(&intake_sk, ORIGIN, &verified).unwrap();
        assert_eq!(content.amount.units(), 3_250_000);
        assert_eq!(content.buyer_hpke, buyer_hpke);
        assert_eq!(content.nonce, nonce);
        assert_eq!(
            content.account.map(|a| a.to_string()).as_deref(),
            with_account.then_some(account)
        );
        let sig = B64.decode(&sealed.signature).unwrap();
        out.push(json!({
            "name": name,
            "origin": ORIGIN,
            "buyer_seed": hex::encode(seed(0x07)),
            "buyer": sealed.buyer,
            "buyer_hpke_ikm": hex::encode(seed(0x08)),
            "buyer_hpke": hex::encode(buyer_hpke),
            "intake_key": hex::encode(intake_pk),
            "info": std::str::from_utf8(BID_INFO).unwrap(),
            "plaintext": plaintext,
            "aad": String::from_utf8(aad).unwrap(),
            "ikm_e": hex::encode(ikm_e),
            "enc": hex::encode(enc),
            "ciphertext": hex::encode(&ct),
            "commitment": hex::encode(commitment),
            "signed_text": signed_text,
            "signature": hex::encode(sig),
            "body": serde_json::to_value(&sealed).unwrap(),
        }));
    }
    json!({ "bid": out })
}

fn release_vectors() -> Value {
    let buyer = SigningKey::from_bytes(&seed(0x07));
    let buyer_pk = buyer.verifying_key().to_bytes();
    let (buyer_hpke_sk, buyer_hpke) = keypair_from_seed(&seed(0x08));
    let lead_id = "0f3c6e1d2b4a59687766554433221100";
    let issued_at_ms = 1_764_547_800_000u64;
    let request = ReleaseRequest::sign(&buyer, ORIGIN, lead_id, issued_at_ms);
    assert_eq!(request.verify(ORIGIN).unwrap(), buyer_pk);
    let signed_text = format!(
        "leadgate.release.v1\n{ORIGIN}\n{lead_id}\n{}\n{issued_at_ms}\n",
        request.buyer
    );
    // The enclave re-seals the lead to the winning bid's HPKE key.
    let lead = r#"{"business":"Acme Heating LLC","email":"dana.smith@acmeheating.com"}"#;
    let aad = release_aad(ORIGIN, lead_id, &buyer_pk);
    let ikm_e = seed(0x0b);
    let (enc, ct) = seal_with(&buyer_hpke, &ikm_e, RELEASE_INFO, &aad, lead.as_bytes());
    let released = ReleasedLead {
        lead_id: lead_id.into(),
        buyer: hex::encode(buyer_pk),
        enc: B64.encode(enc),
        ciphertext: B64.encode(&ct),
    };
    assert_eq!(
        released.open(ORIGIN, &buyer_hpke_sk).unwrap(),
        lead.as_bytes()
    );
    json!({ "release": [{
        "name": "the winner asks for its lead; the enclave re-seals it to the winning bid's key",
        "origin": ORIGIN,
        "buyer_seed": hex::encode(seed(0x07)),
        "lead_id": lead_id,
        "issued_at_ms": issued_at_ms,
        "signed_text": signed_text,
        "signature": hex::encode(B64.decode(&request.signature).unwrap()),
        "request_body": serde_json::to_value(&request).unwrap(),
        "buyer_hpke_ikm": hex::encode(seed(0x08)),
        "buyer_hpke": hex::encode(buyer_hpke),
        "info": std::str::from_utf8(RELEASE_INFO).unwrap(),
        "plaintext": lead,
        "aad": String::from_utf8(aad).unwrap(),
        "ikm_e": hex::encode(ikm_e),
        "enc": hex::encode(enc),
        "ciphertext": hex::encode(&ct),
        "sealed_sha256": hex::encode(released.sealed_sha256().unwrap()),
        "released": serde_json::to_value(&released).unwrap(),
    }]})
}

/// RFC 9162 §2.1.1 MTH over leaf hashes (the reference definition, recursive).
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => merkle::empty_root(),
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.3.1 PATH(m, D[n]).
fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return vec![];
    }
    let k = n.next_power_of_two() / 2;
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b).
fn subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete { vec![] } else { vec![mth(leaves)] };
    }
    let k = n.next_power_of_two() / 2;
    if m <= k {
        let mut p = subproof(m, &leaves[..k], complete);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

fn merkle_vectors() -> Value {
    let leaves: Vec<Vec<u8>> = (0..7).map(|i| format!("leaf {i}").into_bytes()).collect();
    let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
    let roots: Vec<String> = (0..=7).map(|n| hex::encode(mth(&hashes[..n]))).collect();
    assert_eq!(merkle::root_from_leaf_hashes(&hashes), mth(&hashes));
    let inclusion: Vec<Value> = [(0usize, 1usize), (3, 7), (6, 7), (4, 5)]
        .iter()
        .map(|&(i, n)| {
            let p = path(i, &hashes[..n]);
            merkle::verify_inclusion(&hashes[i], i as u64, n as u64, &p, &mth(&hashes[..n]))
                .unwrap();
            json!({"index": i, "size": n, "proof": p.iter().map(hex::encode).collect::<Vec<_>>()})
        })
        .collect();
    let consistency: Vec<Value> = [(1usize, 7usize), (3, 7), (4, 7), (6, 7)]
        .iter()
        .map(|&(m, n)| {
            let p = subproof(m, &hashes[..n], true);
            merkle::verify_consistency(
                m as u64,
                n as u64,
                &p,
                &mth(&hashes[..m]),
                &mth(&hashes[..n]),
            )
            .unwrap();
            json!({"from": m, "to": n, "proof": p.iter().map(hex::encode).collect::<Vec<_>>()})
        })
        .collect();
    json!({
        "leaves": leaves.iter().map(|l| String::from_utf8(l.clone()).unwrap()).collect::<Vec<_>>(),
        "leaf_hashes": hashes.iter().map(hex::encode).collect::<Vec<_>>(),
        "roots_by_size": roots,
        "inclusion": inclusion,
        "consistency": consistency,
    })
}

fn log_vectors() -> Value {
    let key = log_key();
    let pk = key.verifying_key().to_bytes();
    // An event, its canonical (RFC 8785) bytes, its leaf hash.
    let event_json = json!({
        "kind": "lead.rejected", "time": 1_764_547_200_123u64,
        "lead_id": "00112233445566778899aabbccddeeff",
        "seller": hex::encode(SigningKey::from_bytes(&seed(0x03)).verifying_key().to_bytes()),
        "ciphertext_sha256": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "reason": "generic_mailbox",
    });
    let event: Event = serde_json::from_value(event_json).unwrap();
    let leaf = event.to_leaf().unwrap();
    assert_eq!(Event::from_leaf(&leaf).unwrap(), event);
    let lh = leaf_hash(&leaf);
    // A receipt for it as leaf 0 of a one-leaf tree, epoch 1.
    let receipt = Receipt::sign(&key, ORIGIN, 1, 0, &lh, &lh, 1_764_547_200_123);
    let verified = receipt.verify(&key.verifying_key(), ORIGIN).unwrap();
    assert_eq!(verified.leaf_hash, lh);
    let receipt_text = format!(
        "leadgate.receipt.v1\n{ORIGIN}\n1\n0\n{}\n{}\n1764547200123\n",
        hex::encode(lh),
        hex::encode(lh)
    );
    // A checkpoint over the 7-leaf tree of the Merkle vectors.
    let hashes: Vec<Hash> = (0..7)
        .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
        .collect();
    let root = mth(&hashes);
    let text = Checkpoint {
        origin: ORIGIN.into(),
        size: 7,
        root,
        extensions: vec![],
    }
    .to_text();
    let signer = NoteSigner::new(ORIGIN, &key).unwrap();
    let note = signer.sign(&text).unwrap();
    let note_bytes = note.to_bytes();
    assert_eq!(Note::parse(&note_bytes).unwrap().text, text);
    let verified = verify_checkpoint(&note_bytes, signer.verifier(), ORIGIN).unwrap();
    assert_eq!(verified.checkpoint().root, root);
    // The attestation's user_data for these keys.
    let keys = EnclaveKeys {
        origin: ORIGIN.into(),
        log_key: key.verifying_key(),
        intake_key: intake().1,
        anchor_key: k256::SecretKey::from_slice(&seed(0x0c))
            .unwrap()
            .public_key()
            .to_sec1_bytes()
            .as_ref()
            .try_into()
            .unwrap(),
    };
    let user_data = keys.to_user_data();
    assert_eq!(
        EnclaveKeys::from_attested(Some(&user_data), Some(&keys.intake_key)).unwrap(),
        keys
    );
    // An auction's tie-break seed and commitments root.
    let auction_id = "0f3c6e1d2b4a59687766554433221100";
    let seed_text = seed_message(ORIGIN, auction_id);
    let seed_sig: [u8; 64] = ed25519_dalek::Signer::sign(&key, seed_text.as_bytes()).to_bytes();
    verify_seed(&key.verifying_key(), ORIGIN, auction_id, &seed_sig).unwrap();
    let commitments: Vec<Hash> = [0x21u8, 0x11, 0x31].iter().map(|&b| [b; 32]).collect();
    json!({
        "log_key_seed": hex::encode(seed(0x01)),
        "log_key": hex::encode(pk),
        "origin": ORIGIN,
        "event": {
            "leaf": String::from_utf8(leaf).unwrap(),
            "leaf_hash": hex::encode(lh),
        },
        "receipt": {
            "signed_text": receipt_text,
            "json": serde_json::to_value(&receipt).unwrap(),
        },
        "checkpoint": {
            "key_id": hex::encode(ed25519_key_id(ORIGIN, &pk)),
            "vkey": signer.verifier().to_vkey_string(),
            "text": text,
            "note": String::from_utf8(note_bytes).unwrap(),
        },
        "user_data": {
            "intake_key": hex::encode(keys.intake_key),
            "anchor_key_seed": hex::encode(seed(0x0c)),
            "anchor_key": hex::encode(keys.anchor_key),
            "cbor": hex::encode(&user_data),
        },
        "auction": {
            "auction_id": auction_id,
            "seed_text": seed_text,
            "seed": hex::encode(seed_sig),
            "commitments": commitments.iter().map(hex::encode).collect::<Vec<_>>(),
            "tie_ranks": commitments.iter().map(|c| hex::encode(tie_rank(&seed_sig, c))).collect::<Vec<_>>(),
            "commitments_root": hex::encode(commitments_root(&commitments)),
        },
    })
}

fn check(file: &str, computed: Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/vectors")
        .join(file);
    let pretty = serde_json::to_string_pretty(&computed).unwrap() + "\n";
    if std::env::var_os("LEADGATE_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (LEADGATE_WRITE_VECTORS=1 writes it)",
            path.display()
        )
    });
    let committed: Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(
        committed, computed,
        "{file} differs from what this code computes"
    );
}

#[test]
fn submission() {
    check("intake.json", intake_vectors());
}

#[test]
fn bid() {
    check("bid.json", bid_vectors());
}

#[test]
fn release() {
    check("release.json", release_vectors());
}

#[test]
fn merkle_tree() {
    check("merkle.json", merkle_vectors());
}

#[test]
fn log() {
    check("log.json", log_vectors());
}

/// The committed bid body is what a client posts; it decodes to the same commitment.
#[test]
fn committed_bodies_decode() {
    let bid = bid_vectors();
    let body: SealedBid = serde_json::from_value(bid["bid"][0]["body"].clone()).unwrap();
    assert_eq!(
        hex::encode(body.decode().unwrap().commitment),
        bid["bid"][0]["commitment"].as_str().unwrap()
    );
}

/// `docs/PROTOCOL.md` lists every error code with its HTTP status and meaning, exactly the
/// table in `verifier/src/error_code.rs` (rewritten with `LEADGATE_WRITE_VECTORS=1`).
#[test]
fn protocol_lists_every_error_code() {
    use leadgate_verifier::ErrorCode;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- error-codes:begin -->\n", "<!-- error-codes:end -->");
    let start = doc.find(begin).expect("begin marker") + begin.len();
    let stop = doc.find(end).expect("end marker");
    let mut table = String::from("| code | HTTP status | meaning |\n|---|---|---|\n");
    for code in ErrorCode::ALL {
        table.push_str(&format!(
            "| `{}` | {} | {} |\n",
            code.as_str(),
            code.http_status(),
            code.meaning().trim()
        ));
    }
    if std::env::var_os("LEADGATE_WRITE_VECTORS").is_some() {
        let updated = format!("{}{table}{}", &doc[..start], &doc[stop..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(
        &doc[start..stop],
        table,
        "docs/PROTOCOL.md's error table is stale"
    );
}
