//! Every real AWS Nitro attestation document in `verifier/tests/fixtures/nitro/` (sources in its
//! `manifest.json`) goes through the NSM provider's answer path, as `/dev/nsm` would return it
//! (CBOR `Response::Attestation`, decoded as the NSM driver decodes it), and then through the
//! auditor's attestation checks at the manifest's time, which must give the manifest's verdict.

use aws_nitro_enclaves_nsm_api::api::Response;
use leadgate_enclave::attest::document_from_response;
use leadgate_verifier::attestation::parse_attestation;
use leadgate_verifier::audit::{attestation_checks, AttestationExpectations, Status};
use serde_json::Value;
use std::path::PathBuf;

fn fixtures() -> (PathBuf, Vec<Value>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../verifier/tests/fixtures/nitro");
    let manifest: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.len(), 21);
    (dir, manifest)
}

/// What the NSM device hands back: the CBOR of `Response`, decoded as the NSM driver does.
fn as_nsm_answer(document: &[u8]) -> Response {
    let wire = serde_cbor::to_vec(&Response::Attestation {
        document: document.to_vec(),
    })
    .unwrap();
    serde_cbor::from_slice(&wire).unwrap()
}

fn status_of(checks: &[leadgate_verifier::audit::Check], name: &str) -> Status {
    checks.iter().find(|c| c.name == name).unwrap().status
}

#[test]
fn each_fixture_through_the_nsm_path_and_the_audit_gets_its_manifest_verdict() {
    let (dir, manifest) = fixtures();
    let (mut valid, mut rejected, mut debug_flagged) = (0, 0, 0);
    for entry in &manifest {
        let file = entry["file"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(file)).unwrap();
        // What the enclave asked for is what the document binds.
        let doc = match parse_attestation(&bytes) {
            Ok((_, doc)) => doc,
            Err(e) => {
                // Not even a well-formed document: the NSM path refuses it outright.
                assert_eq!(entry["expect"], "reject", "{file}: {e}");
                assert_eq!(
                    document_from_response(as_nsm_answer(&bytes), None, b"", b"")
                        .unwrap_err()
                        .code(),
                    "attestation.provider_bad_document"
                );
                continue_checks(entry, &bytes, &mut valid, &mut rejected, &mut debug_flagged);
                continue;
            }
        };
        let (nonce, user_data, public_key) = (
            doc.nonce.clone(),
            doc.user_data.clone().unwrap_or_default(),
            doc.public_key.clone().unwrap_or_default(),
        );
        if doc.user_data.is_none() || doc.public_key.is_none() {
            // NSM always echoes what leadgate sends (both set): a document without them cannot
            // be the answer to a leadgate request.
            assert!(
                document_from_response(as_nsm_answer(&bytes), nonce.as_deref(), b"x", b"y")
                    .is_err(),
                "{file}"
            );
            continue_checks(entry, &bytes, &mut valid, &mut rejected, &mut debug_flagged);
            continue;
        }
        let out = document_from_response(
            as_nsm_answer(&bytes),
            nonce.as_deref(),
            &user_data,
            &public_key,
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(out, bytes, "{file}");
        // The same answer for another request (another nonce) is refused.
        assert_eq!(
            document_from_response(
                as_nsm_answer(&bytes),
                Some(b"another nonce"),
                &user_data,
                &public_key
            )
            .unwrap_err()
            .code(),
            "attestation.provider_bad_document",
            "{file}"
        );
        continue_checks(entry, &out, &mut valid, &mut rejected, &mut debug_flagged);
    }
    assert_eq!((valid, rejected), (18, 3));
    assert_eq!(debug_flagged, 5);
}

/// The audit's attestation checks at the manifest's time with the manifest's PCR0.
fn continue_checks(
    entry: &Value,
    bytes: &[u8],
    valid: &mut usize,
    rejected: &mut usize,
    debug_flagged: &mut usize,
) {
    let file = entry["file"].as_str().unwrap();
    // Rejected documents have no time of validity: check them at their own timestamp.
    let at = entry["verify_at_unix_ms"].as_u64().unwrap_or_else(|| {
        parse_attestation(bytes).map_or(1_700_000_000_000, |(_, d)| d.timestamp_ms)
    });
    let pcr0 = hex::decode(entry["pcr0"].as_str().unwrap_or_default()).unwrap();
    let debug = entry["debug_mode"].as_bool().unwrap_or(false);
    let exp = AttestationExpectations {
        now_unix_ms: at,
        root_der: None,
        expected_pcr0: Some(&pcr0),
        allow_debug: false,
        nonce: None,
    };
    let (checks, verified) = attestation_checks(bytes, &exp);
    match entry["expect"].as_str().unwrap() {
        "valid" => {
            *valid += 1;
            assert!(verified.is_some(), "{file}");
            for name in [
                "attestation.signature",
                "attestation.chain",
                "attestation.pcr0",
            ] {
                assert_eq!(status_of(&checks, name), Status::Pass, "{file} {name}");
            }
            assert_eq!(status_of(&checks, "attestation.nonce"), Status::Skip);
            if debug {
                *debug_flagged += 1;
                assert_eq!(
                    status_of(&checks, "attestation.debug"),
                    Status::Fail,
                    "{file}"
                );
                let (checks, _) = attestation_checks(
                    bytes,
                    &AttestationExpectations {
                        allow_debug: true,
                        ..exp
                    },
                );
                assert_eq!(
                    status_of(&checks, "attestation.debug"),
                    Status::Pass,
                    "{file}"
                );
            } else {
                assert_eq!(
                    status_of(&checks, "attestation.debug"),
                    Status::Pass,
                    "{file}"
                );
            }
            // Another expected image is flagged.
            let other = [0x5au8; 48];
            let (checks, _) = attestation_checks(
                bytes,
                &AttestationExpectations {
                    expected_pcr0: Some(&other),
                    ..exp
                },
            );
            assert_eq!(
                status_of(&checks, "attestation.pcr0"),
                Status::Fail,
                "{file}"
            );
            // A day after the manifest's time the instance certificate has expired.
            let (checks, _) = attestation_checks(
                bytes,
                &AttestationExpectations {
                    now_unix_ms: at + 86_400_000,
                    ..exp
                },
            );
            assert_eq!(
                status_of(&checks, "attestation.chain"),
                Status::Fail,
                "{file}"
            );
        }
        "reject" => {
            *rejected += 1;
            assert!(verified.is_none(), "{file}");
            assert_eq!(
                status_of(&checks, "attestation.chain"),
                Status::Fail,
                "{file}"
            );
        }
        other => panic!("{file}: unknown verdict {other}"),
    }
}
