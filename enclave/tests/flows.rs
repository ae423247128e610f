//! Host ↔ enclave flows in memory: the corpus verdicts, bad input that must change nothing,
//! restart recovery, and tampered restart state.

mod common;

use common::{corpus, seal, Host, ORIGIN, T0};
use ed25519_dalek::SigningKey;
use leadgate_enclave::attest::DevAttestationProvider;
use leadgate_enclave::core::{Enclave, EnclaveConfig};
use leadgate_enclave::sealing::DevFileSealer;
use leadgate_protocol::{decode, encode, Request, Response, SubmitOutcome, Tip};
use leadgate_verifier::event::Event;
use leadgate_verifier::intake::{seal_lead, SealedLead};
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle;
use serde_bytes::ByteBuf;

#[test]
fn every_corpus_lead_gets_its_labelled_verdict_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    let seller = SigningKey::from_bytes(&[1u8; 32]);
    let lines = corpus();
    assert_eq!(lines.len(), 2000);
    let mut mismatches = Vec::new();
    // First half before a restart, second half after: duplicate state must survive.
    let (first, second) = lines.split_at(1000);
    let mut check = |host: &mut Host,
                     e: &mut Enclave,
                     keys: &EnclaveKeys,
                     part: &[serde_json::Value],
                     offset: usize| {
        for (batch_no, batch) in part.chunks(100).enumerate() {
            let sealed = batch
                .iter()
                .map(|l| seal(&seller, keys, &l["lead"], T0))
                .collect();
            let results = host.submit(e, sealed, T0 + 1);
            for (i, (line, r)) in batch.iter().zip(results).enumerate() {
                let SubmitOutcome::Logged {
                    accepted, reason, ..
                } = r
                else {
                    panic!("refused: {r:?}")
                };
                let got = if accepted {
                    "ok".to_string()
                } else {
                    reason.unwrap()
                };
                let want = line["why"].as_str().unwrap();
                let want_verdict = line["expect"].as_str().unwrap() == "accept";
                if got != want || accepted != want_verdict {
                    mismatches.push(format!(
                        "line {}: want {want}, got {got}",
                        offset + batch_no * 100 + i + 1
                    ));
                }
            }
        }
    };
    check(&mut host, &mut e, &keys, first, 0);
    drop(e);
    let (mut e2, keys2) = host.boot(dir.path(), T0 + 10);
    assert_eq!(keys2, keys, "keys survive a restart");
    check(&mut host, &mut e2, &keys2, second, 1000);
    assert!(
        mismatches.is_empty(),
        "{} mismatches: {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(20)]
    );
    // 2000 leads + two log.epoch events.
    assert_eq!(host.leaves.len(), 2002);
    let Event::LogEpoch(epoch) = Event::from_leaf(&host.leaves[1001]).unwrap() else {
        panic!()
    };
    assert_eq!((epoch.epoch, epoch.previous_size), (2, 1001));
    // Every receipt is in a checkpoint signed now.
    let Response::Checkpoint {
        note: Some(note), ..
    } = e2.handle(
        Request::Checkpoint {
            force: true,
            anchor: None,
        },
        T0 + 20,
    )
    else {
        panic!()
    };
    let verifier = keys.note_verifier().unwrap();
    let cp = leadgate_verifier::checkpoint::verify_checkpoint(&note, &verifier, ORIGIN).unwrap();
    assert_eq!(cp.checkpoint().size, 2002);
    let leaf_hashes: Vec<[u8; 32]> = host.leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
    assert_eq!(
        merkle::root_from_leaf_hashes(&leaf_hashes),
        cp.checkpoint().root
    );
    for i in [0u64, 999, 1001, 2001] {
        let proof = merkle::inclusion_proof(&host, i, 2002).unwrap();
        merkle::verify_inclusion(
            &leaf_hashes[i as usize],
            i,
            2002,
            &proof,
            &cp.checkpoint().root,
        )
        .unwrap();
    }
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    let seller = SigningKey::from_bytes(&[2u8; 32]);
    let lead = corpus()[0]["lead"].clone();
    let good = seal(&seller, &keys, &lead, T0);
    assert!(matches!(
        host.submit(&mut e, vec![good.clone()], T0)[0],
        SubmitOutcome::Logged { accepted: true, .. }
    ));
    let size = host.leaves.len();

    let mut garbled = good.clone();
    garbled.ciphertext = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ct = b64.decode(&garbled.ciphertext).unwrap();
        ct[0] ^= 1;
        b64.encode(ct)
    };
    let mut truncated = good.clone();
    truncated.ciphertext.truncate(8);
    let mut bad_sig = seal(&seller, &keys, &lead, T0);
    bad_sig.signature = good.signature.clone();
    let wrong_origin = seal_lead(&seller, &keys.intake_key, "other.origin/log", b"{}", T0).unwrap();
    let not_json = seal_lead(&seller, &keys.intake_key, ORIGIN, b"{\"business\": ", T0).unwrap();
    let stale = seal(&seller, &keys, &lead, T0 - 3_600_000);
    let cases: Vec<(SealedLead, &str)> = vec![
        (garbled, "submission.bad_signature"),
        (truncated, "submission.malformed"),
        (bad_sig, "submission.bad_signature"),
        (wrong_origin, "submission.bad_signature"),
        (not_json, "lead.malformed_json"),
        (stale, "submission.stale"),
        (good, "submission.replayed"),
    ];
    for (lead, code) in cases {
        match &host.submit(&mut e, vec![lead], T0 + 5)[0] {
            SubmitOutcome::Refused(err) => assert_eq!(err.code, code),
            other => panic!("expected {code}, got {other:?}"),
        }
    }
    assert_eq!(host.leaves.len(), size, "refusals append nothing");
    let Response::Status(s) = e.handle(Request::Status, T0 + 6) else {
        panic!()
    };
    assert_eq!(s.size as usize, size);

    // Malformed frames decode to errors, never panics.
    for garbage in [
        &b""[..],
        b"\xff\xff",
        b"\xa1\x61x\x01",
        &encode(&Request::Status)[..1],
    ] {
        assert!(decode::<Request>(garbage).is_err());
    }
    let mut trailing = encode(&Request::Status);
    trailing.push(0);
    assert!(decode::<Request>(&trailing).is_err());
}

#[test]
fn tampered_restart_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    let seller = SigningKey::from_bytes(&[3u8; 32]);
    let sealed = corpus()[..5]
        .iter()
        .map(|l| seal(&seller, &keys, &l["lead"], T0))
        .collect();
    host.submit(&mut e, sealed, T0);
    let Response::Checkpoint {
        note: Some(note), ..
    } = e.handle(
        Request::Checkpoint {
            force: true,
            anchor: None,
        },
        T0,
    )
    else {
        panic!()
    };
    host.checkpoint = Some(note);
    let sealed = corpus()[5..9]
        .iter()
        .map(|l| seal(&seller, &keys, &l["lead"], T0))
        .collect();
    host.submit(&mut e, sealed, T0);
    drop(e);

    let fresh = |dir: &std::path::Path| {
        Enclave::new(
            EnclaveConfig::new(ORIGIN),
            Box::new(DevFileSealer::open_or_create(dir).unwrap()),
            Box::new(DevAttestationProvider::open_or_create(dir, T0).unwrap()),
        )
    };
    // The error code a freshly started enclave (key file in `dir`) answers `Boot` with.
    let boot_error =
        |dir: &std::path::Path, sealed: Option<ByteBuf>, tip: Option<Tip>| match fresh(dir).handle(
            Request::Boot {
                sealed_secrets: sealed,
                tip,
                aws_credentials: None,
            },
            T0,
        ) {
            Response::Error(err) => err.code,
            other => panic!("booted: {other:?}"),
        };
    let d = dir.path();
    // A frontier that does not hash to the receipt's root.
    let mut tip = host.tip().unwrap();
    tip.peaks[0] = ByteBuf::from(vec![0u8; 32]);
    assert_eq!(
        boot_error(d, host.sealed.clone(), Some(tip)),
        "boot.tip_invalid"
    );
    // A receipt that was altered.
    let mut tip = host.tip().unwrap();
    tip.receipt.index += 1;
    assert_eq!(
        boot_error(d, host.sealed.clone(), Some(tip)),
        "boot.tip_invalid"
    );
    // A tip that does not extend the stored checkpoint (consistency proof tampered or missing).
    let mut tip = host.tip().unwrap();
    assert!(!tip.checkpoint_consistency.is_empty());
    tip.checkpoint_consistency[0] = ByteBuf::from(vec![7u8; 32]);
    assert_eq!(
        boot_error(d, host.sealed.clone(), Some(tip)),
        "boot.tip_invalid"
    );
    let mut tip = host.tip().unwrap();
    tip.checkpoint_consistency.clear();
    assert_eq!(
        boot_error(d, host.sealed.clone(), Some(tip)),
        "boot.tip_invalid"
    );
    // Sealed secrets from another enclave's key file.
    let other = tempfile::tempdir().unwrap();
    assert_eq!(
        boot_error(other.path(), host.sealed.clone(), host.tip()),
        "sealing.unseal_failed"
    );
    // A tip without secrets.
    assert_eq!(boot_error(d, None, host.tip()), "boot.no_secrets");
    // Submitting before start-up is refused.
    let r = fresh(dir.path()).handle(Request::Submit { leads: vec![] }, T0);
    assert!(
        matches!(r, Response::Error(ref err) if err.code == "enclave.not_ready"),
        "{r:?}"
    );
    // The genuine tip still boots.
    let (_, keys2) = host.boot(dir.path(), T0 + 1);
    assert_eq!(keys2, keys);
}

/// What a submitter learns from one outcome.
fn summary(r: &SubmitOutcome) -> String {
    match r {
        SubmitOutcome::Logged {
            lead_id,
            accepted,
            reason,
            score,
            appended,
            ..
        } => format!(
            "{lead_id} {accepted} {reason:?} {score:?} {}",
            appended.index
        ),
        SubmitOutcome::Refused(e) => e.code.to_string(),
    }
}

#[test]
fn parallel_batches_give_the_same_outcomes_as_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut one = Host::default();
    let mut config = EnclaveConfig::new(ORIGIN);
    config.workers = 1;
    let (mut e1, keys) = one.boot_with(dir.path(), T0, config);
    // The same keys and an empty log for the parallel enclave.
    let mut many = Host {
        sealed: one.sealed.clone(),
        ..Host::default()
    };
    let mut config = EnclaveConfig::new(ORIGIN);
    config.workers = 3;
    let (mut e3, keys3) = many.boot_with(dir.path(), T0, config);
    assert_eq!(keys, keys3);

    let seller = SigningKey::from_bytes(&[3u8; 32]);
    let lines = corpus();
    let mut batch: Vec<SealedLead> = lines[..80]
        .iter()
        .map(|l| seal(&seller, &keys, &l["lead"], T0))
        .collect();
    let accepted = lines[..80]
        .iter()
        .position(|l| l["expect"] == "accept")
        .unwrap();
    // Order-dependent cases inside one batch: the same email sealed again (a duplicate only
    // after the first), the same submission twice (a replay only the second time), an
    // unsigned copy placed before its genuine submission, and a stale one.
    batch.push(seal(&seller, &keys, &lines[accepted]["lead"], T0));
    batch.push(batch[accepted + 1].clone());
    let genuine = seal(&seller, &keys, &lines[100]["lead"], T0);
    let mut forged = genuine.clone();
    forged.signature = batch[0].signature.clone();
    batch.push(forged);
    batch.push(genuine);
    batch.push(seal(&seller, &keys, &lines[101]["lead"], T0 - 3_600_000));

    let r1 = one.submit(&mut e1, batch.clone(), T0 + 1);
    let r3 = many.submit(&mut e3, batch, T0 + 1);
    let (s1, s3): (Vec<String>, Vec<String>) = (
        r1.iter().map(summary).collect(),
        r3.iter().map(summary).collect(),
    );
    assert_eq!(s1, s3);
    let n = s1.len();
    assert!(
        s1[n - 5].contains("Some(\"duplicate_email\")"),
        "{}",
        s1[n - 5]
    );
    assert_eq!(s1[n - 4], "submission.replayed");
    assert_eq!(s1[n - 3], "submission.bad_signature");
    assert!(
        matches!(r1[n - 2], SubmitOutcome::Logged { .. }),
        "the genuine submission behind its unsigned copy is logged: {}",
        s1[n - 2]
    );
    assert_eq!(s1[n - 1], "submission.stale");
    // Both logs are the same shape and every receipt is signed over its own tree.
    assert_eq!(one.leaves.len(), many.leaves.len());
    let vk = keys.log_key;
    for r in &r3 {
        if let SubmitOutcome::Logged { appended, .. } = r {
            appended.receipt.verify(&vk, ORIGIN).unwrap();
        }
    }
}

/// A checkpoint asked for with an anchor target carries the anchor key's EIP-712 signature over
/// exactly that checkpoint and deployment; a bad target is refused and signs nothing.
#[test]
fn checkpoint_anchor_signature_binds_the_attested_key() {
    use leadgate_protocol::AnchorTarget;
    use leadgate_verifier::anchor::{address_of_sec1, recover_signer, AnchorDomain};
    use leadgate_verifier::checkpoint::Checkpoint;
    use leadgate_verifier::note::Note;

    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    let seller = SigningKey::from_bytes(&[3u8; 32]);
    let sealed = corpus()[..4]
        .iter()
        .map(|l| seal(&seller, &keys, &l["lead"], T0))
        .collect();
    host.submit(&mut e, sealed, T0);
    let domain = AnchorDomain {
        chain_id: 31337,
        contract: [0x5f; 20],
    };
    let target = AnchorTarget {
        chain_id: domain.chain_id,
        contract: serde_bytes::ByteBuf::from(domain.contract.to_vec()),
    };
    let Response::Checkpoint {
        note: Some(note),
        anchor_signature: Some(sig),
    } = e.handle(
        Request::Checkpoint {
            force: true,
            anchor: Some(target),
        },
        T0,
    )
    else {
        panic!("no anchor signature")
    };
    let cp = Checkpoint::parse_text(&Note::parse(&note).unwrap().text).unwrap();
    let digest = domain.checkpoint_digest(ORIGIN, cp.size, &cp.root);
    let attested = address_of_sec1(&keys.anchor_key).unwrap();
    assert_eq!(recover_signer(&digest, &sig).unwrap(), attested);
    // Over another deployment or checkpoint, the same signature names someone else.
    let other = AnchorDomain {
        chain_id: 1,
        ..domain
    };
    let elsewhere = other.checkpoint_digest(ORIGIN, cp.size, &cp.root);
    assert_ne!(recover_signer(&elsewhere, &sig).ok(), Some(attested));
    let bigger = domain.checkpoint_digest(ORIGIN, cp.size + 1, &cp.root);
    assert_ne!(recover_signer(&bigger, &sig).ok(), Some(attested));

    let bad = AnchorTarget {
        chain_id: 1,
        contract: serde_bytes::ByteBuf::from(vec![1u8; 19]),
    };
    let Response::Error(err) = e.handle(
        Request::Checkpoint {
            force: true,
            anchor: Some(bad),
        },
        T0,
    ) else {
        panic!("a 19-byte contract was accepted")
    };
    assert_eq!(err.code, "protocol.bad_anchor_target");
}
