//! Every real AWS Nitro attestation document in `tests/fixtures/nitro/` (collected from public
//! projects; sources in its `manifest.json`) gets its manifest verdict at its
//! `verify_at_unix_ms`; every valid one is rejected one day later (expired chain) and when any of
//! a few hundred single bytes is flipped.

use leadgate_verifier::attestation::{
    decode_document_input, parse_attestation, verify_attestation, AttestationError,
    AttestationPolicy,
};
use serde_json::Value;
use std::path::PathBuf;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn fixtures() -> (PathBuf, Vec<Value>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nitro");
    let manifest: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.len(), 21);
    (dir, manifest)
}

fn policy(now: u64, allow_debug: bool) -> AttestationPolicy<'static> {
    AttestationPolicy {
        now_unix_ms: now,
        root_der: None,
        expected_pcr0: None,
        allow_debug,
        expected_nonce: None,
    }
}

#[test]
fn each_fixture_gets_its_manifest_verdict() {
    let (dir, manifest) = fixtures();
    let mut valid = 0;
    for entry in &manifest {
        let file = entry["file"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let debug = entry["debug_mode"].as_bool().unwrap_or(false);
        match entry["expect"].as_str().unwrap() {
            "valid" => {
                valid += 1;
                let at = entry["verify_at_unix_ms"].as_u64().unwrap();
                let v = verify_attestation(&bytes, &policy(at, debug))
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
                assert_eq!(v.is_debug(), debug, "{file}");
                assert_eq!(v.document().module_id, entry["module_id"].as_str().unwrap());
                assert_eq!(
                    hex::encode(v.pcr(0).unwrap()),
                    entry["pcr0"].as_str().unwrap(),
                    "{file}"
                );
                assert_eq!(
                    v.document().pcrs.len() as u64,
                    entry["num_pcrs"].as_u64().unwrap()
                );
                assert_eq!(
                    v.document().public_key.is_some(),
                    entry["public_key"].as_bool().unwrap(),
                    "{file}"
                );
                assert_eq!(
                    v.document().nonce.is_some(),
                    entry["nonce"].as_bool().unwrap(),
                    "{file}"
                );
                // Expected PCR0 enforced both ways.
                let pcr0 = hex::decode(entry["pcr0"].as_str().unwrap()).unwrap();
                let mut p = policy(at, debug);
                p.expected_pcr0 = Some(&pcr0);
                assert!(verify_attestation(&bytes, &p).is_ok());
                let mut wrong = pcr0.clone();
                wrong[0] ^= 1;
                p.expected_pcr0 = Some(&wrong);
                assert_eq!(
                    verify_attestation(&bytes, &p),
                    Err(AttestationError::PcrMismatch)
                );
                // A nonce that is not the document's.
                let mut p = policy(at, debug);
                p.expected_nonce = Some(b"not the nonce");
                assert_eq!(
                    verify_attestation(&bytes, &p),
                    Err(AttestationError::NonceMismatch)
                );
                // Debug documents are refused unless debug is allowed.
                if debug {
                    assert_eq!(
                        verify_attestation(&bytes, &policy(at, false)),
                        Err(AttestationError::DebugMode)
                    );
                }
                // One day later the leaf certificate (valid ~3 hours) has expired.
                let err = verify_attestation(&bytes, &policy(at + DAY_MS, true)).unwrap_err();
                assert_eq!(err.code(), "attestation.expired", "{file}");
            }
            "reject" => {
                // No time makes these valid: try the manifest's time, if any, and a few others.
                let times = [
                    entry["verify_at_unix_ms"].as_u64(),
                    Some(1_700_000_000_000),
                    Some(1_725_719_859_545),
                    Some(1_745_922_759_691),
                ];
                for at in times.into_iter().flatten() {
                    let err = verify_attestation(&bytes, &policy(at, true)).unwrap_err();
                    assert!(
                        matches!(
                            err,
                            AttestationError::UntrustedRoot
                                | AttestationError::ChainInvalid(_)
                                | AttestationError::Malformed(_)
                        ),
                        "{file}: {err:?}"
                    );
                }
            }
            other => panic!("unknown verdict {other}"),
        }
    }
    assert_eq!(valid, 18);
}

#[test]
fn every_flipped_byte_of_a_valid_document_is_rejected() {
    let (dir, manifest) = fixtures();
    let mut tried = 0usize;
    for entry in manifest.iter().filter(|e| e["expect"] == "valid") {
        let bytes = std::fs::read(dir.join(entry["file"].as_str().unwrap())).unwrap();
        let at = entry["verify_at_unix_ms"].as_u64().unwrap();
        // The first 64 bytes (COSE structure, protected header, payload map start), the last
        // 128 (signature), and 200 positions spread over the rest.
        let n = bytes.len();
        let mut positions: Vec<usize> = (0..64).chain(n - 128..n).collect();
        positions.extend((0..200).map(|k| 64 + k * (n - 192) / 200));
        for pos in positions {
            let mut m = bytes.clone();
            m[pos] ^= 0x01;
            assert!(
                verify_attestation(&m, &policy(at, true)).is_err(),
                "{} byte {pos} flipped still verifies",
                entry["file"]
            );
            tried += 1;
        }
    }
    assert!(tried > 18 * 300);
}

#[test]
fn text_encodings_and_garbage() {
    let (dir, manifest) = fixtures();
    let entry = manifest.iter().find(|e| e["expect"] == "valid").unwrap();
    let bytes = std::fs::read(dir.join(entry["file"].as_str().unwrap())).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    assert_eq!(decode_document_input(b64.as_bytes()).unwrap(), bytes);
    assert_eq!(
        decode_document_input(hex::encode(&bytes).as_bytes()).unwrap(),
        bytes
    );
    assert_eq!(decode_document_input(&bytes).unwrap(), bytes);
    for garbage in [&b""[..], b"\x84", b"\x84\x40\xa0\x40\x40", &[0xffu8; 64]] {
        assert!(parse_attestation(garbage).is_err());
    }
    assert_eq!(
        parse_attestation(&vec![0x84; 20_000]).unwrap_err(),
        AttestationError::TooLarge
    );
    // Truncations never verify and never panic.
    for cut in (0..bytes.len()).step_by(97) {
        assert!(verify_attestation(&bytes[..cut], &policy(0, true)).is_err());
    }
}
