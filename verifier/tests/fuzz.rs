//! Fuzz harnesses (bolero) for every decoder of outside input in the verifier library:
//! attestation documents, signed notes and checkpoints, receipts, the sealed submission, bid
//! and release request JSON (as the host's HTTP bodies carry them), Merkle proofs, RFC 8785
//! canonical JSON and the attested key binding. Under `cargo test` each runs its committed
//! seed corpus (`tests/__fuzz__/<harness>/corpus`) and random inputs for one second; a longer
//! coverage-guided run is `scripts/fuzz SECONDS NAME` (libFuzzer, see the README). The property
//! everywhere: an error, never a panic, and anything accepted is self-consistent.

use bolero::check;
use leadgate_verifier::attestation::{decode_document_input, parse_attestation};
use leadgate_verifier::bid::SealedBid;
use leadgate_verifier::checkpoint::{verify_checkpoint, Checkpoint};
use leadgate_verifier::intake::SealedLead;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle;
use leadgate_verifier::note::{Note, NoteVerifier};
use leadgate_verifier::receipt::Receipt;
use leadgate_verifier::release::ReleaseRequest;

const ORIGIN: &str = "leadgate.dev/log";

fn log_key() -> ed25519_dalek::VerifyingKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key()
}

#[test]
fn attestation_documents() {
    check!().for_each(|bytes: &[u8]| {
        let _ = parse_attestation(bytes);
        if let Ok(doc) = decode_document_input(bytes) {
            let _ = parse_attestation(&doc);
        }
    });
}

#[test]
fn signed_notes_and_checkpoints() {
    let verifier = NoteVerifier::new(ORIGIN, log_key()).unwrap();
    check!().for_each(|bytes: &[u8]| {
        if let Ok(note) = Note::parse(bytes) {
            // A parsed note's text is what it signs: parsing it again gives the same.
            let _ = Checkpoint::parse_text(&note.text);
        }
        if let Ok(text) = std::str::from_utf8(bytes) {
            if let Ok(cp) = Checkpoint::parse_text(text) {
                assert_eq!(Checkpoint::parse_text(&cp.to_text()).unwrap(), cp);
            }
        }
        let _ = verify_checkpoint(bytes, &verifier, ORIGIN);
    });
}

#[test]
fn receipts() {
    check!().for_each(|bytes: &[u8]| {
        if let Ok(r) = serde_json::from_slice::<Receipt>(bytes) {
            let _ = r.verify(&log_key(), ORIGIN);
        }
    });
}

#[test]
fn sealed_submissions_bids_and_release_requests() {
    check!().for_each(|bytes: &[u8]| {
        if let Ok(lead) = serde_json::from_slice::<SealedLead>(bytes) {
            if let Ok(d) = lead.decode() {
                let _ = d.verify(ORIGIN);
            }
        }
        if let Ok(leads) = serde_json::from_slice::<Vec<SealedLead>>(bytes) {
            for l in leads {
                let _ = l.decode();
            }
        }
        if let Ok(bid) = serde_json::from_slice::<SealedBid>(bytes) {
            if let Ok(d) = bid.decode() {
                let _ = d.verify(ORIGIN);
            }
        }
        if let Ok(req) = serde_json::from_slice::<ReleaseRequest>(bytes) {
            let _ = req.verify(ORIGIN);
        }
    });
}

/// Proof bytes as the wire gives them: two sizes or an index and a size, then 32-byte hashes.
#[test]
fn merkle_proofs() {
    check!().for_each(|bytes: &[u8]| {
        if bytes.len() < 16 + 64 {
            return;
        }
        let a = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let b = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        let roots: [[u8; 32]; 2] = [
            bytes[16..48].try_into().unwrap(),
            bytes[48..80].try_into().unwrap(),
        ];
        let proof: Vec<[u8; 32]> = bytes[80..]
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap())
            .collect();
        let _ = merkle::verify_inclusion(&roots[0], a, b, &proof, &roots[1]);
        let _ = merkle::verify_consistency(a, b, &proof, &roots[0], &roots[1]);
    });
}

#[test]
fn canonical_json() {
    check!().for_each(|bytes: &[u8]| {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            return;
        };
        if let Ok(canonical) = leadgate_verifier::jcs::to_canonical_string(&value) {
            // Canonical JSON is a fixed point.
            let again: serde_json::Value = serde_json::from_str(&canonical).unwrap();
            assert_eq!(
                leadgate_verifier::jcs::to_canonical_string(&again).unwrap(),
                canonical
            );
        }
    });
}

#[test]
fn attested_key_binding() {
    check!().for_each(|bytes: &[u8]| {
        if let Ok(keys) = EnclaveKeys::from_attested(Some(bytes), None) {
            // What decodes, encodes back to the same binding.
            let again = EnclaveKeys::from_attested(Some(&keys.to_user_data()), None).unwrap();
            assert_eq!(again, keys);
        }
    });
}
