//! The enclave never signs a tree that does not extend the newest tree it signed: a host
//! that comes back behind it (a database restored from a backup) is refused with
//! `log.rollback` until the entries are back, a host with another tree of that size is
//! refused with `log.fork`, a `Reset` that would drop unconfirmed entries is refused, and a
//! full journal refuses appends instead of dropping entries.

mod common;

use common::{corpus, seal, Host, ORIGIN, T0};
use ed25519_dalek::SigningKey;
use leadgate_enclave::core::{Enclave, EnclaveConfig};
use leadgate_protocol::{Request, Response, SubmitOutcome};
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::ErrorCode;

fn submit_n(host: &mut Host, e: &mut Enclave, keys: &EnclaveKeys, from: usize, n: usize) {
    let seller = SigningKey::from_bytes(&[3u8; 32]);
    let sealed = corpus()[from..from + n]
        .iter()
        .map(|l| seal(&seller, keys, &l["lead"], T0))
        .collect();
    for r in host.submit(e, sealed, T0) {
        assert!(matches!(r, SubmitOutcome::Logged { .. }), "{r:?}");
    }
}

fn code(resp: &Response) -> ErrorCode {
    match resp {
        Response::Error(e) => e.code,
        other => panic!("not an error: {other:?}"),
    }
}

fn durable(e: &mut Enclave, host: &Host) {
    let size = host.leaves.len() as u64;
    assert_eq!(e.handle(Request::Durable { size }, T0), Response::Ok);
}

#[test]
fn a_host_restored_from_a_backup_is_refused_until_the_entries_are_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    submit_n(&mut host, &mut e, &keys, 0, 20);
    durable(&mut e, &host);
    let signed = host.leaves.len() as u64;

    // The database is restored from a backup taken 10 entries earlier; the host resets the
    // enclave (its journal is empty: everything was confirmed) and boots it from the backup.
    let mut backup = host.truncated(signed as usize - 10);
    assert_eq!(e.handle(Request::Reset, T0), Response::Ok);
    let refused = backup.reboot(&mut e, T0);
    assert_eq!(code(&refused), ErrorCode::LogRollback, "{refused:?}");
    let Response::Error(err) = &refused else {
        unreachable!()
    };
    assert!(
        err.message
            .contains(&format!("entries {}..{signed}", signed - 10)),
        "{}",
        err.message
    );
    // Nothing was signed over the backup: it stays refused, any number of times.
    assert_eq!(code(&backup.reboot(&mut e, T0)), ErrorCode::LogRollback);
    assert_eq!(
        code(&e.handle(Request::Status, T0)),
        ErrorCode::EnclaveNotReady
    );
    // An empty store (the database deleted) is refused the same way.
    let mut empty = Host {
        sealed: host.sealed.clone(),
        ..Host::default()
    };
    assert_eq!(code(&empty.reboot(&mut e, T0)), ErrorCode::LogRollback);

    // With the entries back, it boots: a new epoch that extends the signed tree.
    let Response::Started { appended } = host.reboot(&mut e, T0) else {
        panic!("the full store must boot")
    };
    assert_eq!(appended.index, signed);
    submit_n(&mut host, &mut e, &keys, 20, 3);
}

#[test]
fn reset_is_refused_while_entries_are_unconfirmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    submit_n(&mut host, &mut e, &keys, 0, 5);
    // Only the first 3 entries are confirmed durable.
    assert_eq!(e.handle(Request::Durable { size: 3 }, T0), Response::Ok);
    let refused = e.handle(Request::Reset, T0);
    assert_eq!(code(&refused), ErrorCode::LogResetRefused, "{refused:?}");
    // Still serving, and the unconfirmed tail can still be fetched.
    let Response::Journal { entries } = e.handle(Request::Journal { from: 3 }, T0) else {
        panic!()
    };
    assert_eq!(entries.len(), 3);
    durable(&mut e, &host);
    assert_eq!(e.handle(Request::Reset, T0), Response::Ok);
}

#[test]
fn another_tree_of_the_signed_size_is_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    // One enclave process signs 9 entries (epoch 1 and 8 leads).
    let mut a = Host::default();
    let (mut e1, keys) = a.boot(dir.path(), T0);
    submit_n(&mut a, &mut e1, &keys, 0, 8);
    drop(e1);
    // A second process with the same key is booted from a 4-entry copy (as a restart with
    // no floor source configured allows) and takes other leads up to the same size.
    let mut b = a.truncated(4);
    let (mut e2, _) = b.boot(dir.path(), T0);
    submit_n(&mut b, &mut e2, &keys, 100, 4);
    assert_eq!(b.leaves.len(), a.leaves.len());
    assert_ne!(
        b.receipts.last().unwrap().root,
        a.receipts.last().unwrap().root
    );

    // A third process serves `a`'s log, then is reset: its floor is `a`'s tree.
    let (mut e3, _) = a.boot(dir.path(), T0);
    durable(&mut e3, &a);
    let size = a.leaves.len();
    assert_eq!(e3.handle(Request::Reset, T0), Response::Ok);
    // `b` grown to `a`'s size: the tip itself is the fork.
    submit_n(&mut b, &mut e2, &keys, 110, 1);
    assert_eq!(b.leaves.len(), size);
    assert_eq!(code(&b.reboot(&mut e3, T0)), ErrorCode::LogFork);
    // `b` grown past it: the replay passes through `a`'s size with another root.
    submit_n(&mut b, &mut e2, &keys, 111, 5);
    assert_eq!(code(&b.reboot(&mut e3, T0)), ErrorCode::LogFork);
    // `a` itself still boots.
    assert!(matches!(a.reboot(&mut e3, T0), Response::Started { .. }));
}

#[test]
fn a_full_journal_refuses_appends_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let mut config = EnclaveConfig::new(ORIGIN);
    config.journal_max_entries = 4;
    let (mut e, keys) = host.boot_with(dir.path(), T0, config);
    // log.epoch and 3 leads: at the bound.
    submit_n(&mut host, &mut e, &keys, 0, 3);
    let seller = SigningKey::from_bytes(&[3u8; 32]);
    let sealed = corpus()[3..5]
        .iter()
        .map(|l| seal(&seller, &keys, &l["lead"], T0))
        .collect();
    let size = host.leaves.len();
    for r in host.submit(&mut e, sealed, T0) {
        match r {
            SubmitOutcome::Refused(w) => assert_eq!(w.code, ErrorCode::JournalFull),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(host.leaves.len(), size, "nothing appended");
    // Every unconfirmed entry is still there.
    let Response::Journal { entries } = e.handle(Request::Journal { from: 0 }, T0) else {
        panic!()
    };
    assert_eq!(entries.len(), size);
    // Once confirmed, appends go on.
    durable(&mut e, &host);
    submit_n(&mut host, &mut e, &keys, 3, 2);
}

/// Serves `body` with `status` to every request on a loopback port; returns the base URL.
fn serve(status: u16, body: Vec<u8>) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://{addr}")
}

fn with_floor(url: String) -> EnclaveConfig {
    let mut config = EnclaveConfig::new(ORIGIN);
    config.floor_sources = vec![leadgate_enclave::floor::FloorSource::Checkpoint {
        url: format!("{url}/log/checkpoint"),
        via: None,
    }];
    config
}

/// A freshly started enclave learns the floor from the published checkpoint before it signs
/// anything: a host whose store is behind it is refused, whatever the enclave process; a
/// source that cannot be read, or a checkpoint not signed by the log, stops the boot.
#[test]
fn a_restarted_enclave_learns_its_floor_from_the_published_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    submit_n(&mut host, &mut e, &keys, 0, 12);
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
    drop(e);
    let published = serve(200, note.to_vec());
    let size = host.leaves.len();

    // The store rolled back by 5 entries; a new enclave process reads the floor.
    let mut backup = host.truncated(size - 5);
    let fresh = |config: EnclaveConfig| {
        Enclave::new(
            config,
            Box::new(leadgate_enclave::sealing::DevFileSealer::open_or_create(dir.path()).unwrap()),
            Box::new(
                leadgate_enclave::attest::DevAttestationProvider::open_or_create(dir.path(), T0)
                    .unwrap(),
            ),
        )
    };
    let mut e2 = fresh(with_floor(published.clone()));
    let refused = backup.reboot(&mut e2, T0);
    assert_eq!(code(&refused), ErrorCode::LogRollback, "{refused:?}");
    let Response::Error(err) = &refused else {
        unreachable!()
    };
    assert!(err.message.contains(&published), "{}", err.message);
    // Without a floor source the same enclave code would have booted it (a new epoch).
    let mut e3 = fresh(EnclaveConfig::new(ORIGIN));
    assert!(matches!(
        backup.clone().reboot(&mut e3, T0),
        Response::Started { .. }
    ));
    // The full store boots.
    assert!(matches!(host.reboot(&mut e2, T0), Response::Started { .. }));

    // A source that is down, answers 500, or holds a note by another key: no boot at all.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let other = {
        let key = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
        let body = leadgate_verifier::checkpoint::Checkpoint {
            origin: ORIGIN.into(),
            size: 1,
            root: [0u8; 32],
            extensions: Vec::new(),
        };
        leadgate_verifier::note::NoteSigner::new(ORIGIN, &key)
            .unwrap()
            .sign(&body.to_text())
            .unwrap()
            .to_bytes()
    };
    for url in [down, serve(500, Vec::new()), serve(200, other)] {
        let mut e4 = fresh(with_floor(url));
        let r = host.clone().reboot(&mut e4, T0);
        assert_eq!(code(&r), ErrorCode::LogFloorUnavailable, "{r:?}");
    }
    // Nothing published yet (404): no floor beyond the host's tip.
    let mut e5 = fresh(with_floor(serve(404, Vec::new())));
    assert!(matches!(
        host.clone().reboot(&mut e5, T0),
        Response::Started { .. }
    ));
}
