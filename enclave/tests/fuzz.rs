//! Fuzz harnesses (bolero) for the enclave's decoders of outside input: host → enclave
//! request frames (decoded, and whatever decodes handled by a booted enclave), enclave → host
//! answer frames as the host decodes them, the length-prefixed framing itself, and KMS's BER
//! `EnvelopedData` answer. Under `cargo test` each runs its committed seed corpus
//! (`tests/__fuzz__/<harness>/corpus`, frames recorded between a host and an enclave during
//! `scripts/demo`) and random inputs for one second; `scripts/fuzz SECONDS NAME` runs one
//! coverage-guided (libFuzzer).

mod common;

use bolero::check;
use leadgate_protocol::{decode, encode, read_frame, Request, Response};

#[test]
fn request_frames_are_decoded_and_handled_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (enclave, _) = common::Host::default().boot(dir.path(), common::T0);
    // A panic fails the test; nothing observes the enclave after one.
    let enclave = std::sync::Mutex::new(enclave);
    check!().for_each(|bytes: &[u8]| {
        if let Ok(req) = decode::<Request>(bytes) {
            // Re-encoding what decoded gives a frame that decodes to the same request.
            assert_eq!(decode::<Request>(&encode(&req)).unwrap(), req);
            // Boot-time requests would end this enclave's run; the rest must answer.
            if !matches!(req, Request::Reset | Request::Boot { .. }) {
                let mut e = enclave.lock().unwrap_or_else(|p| p.into_inner());
                let _ = e.handle(req, common::T0 + 1_000);
            }
        }
    });
}

#[test]
fn answer_frames() {
    check!().for_each(|bytes: &[u8]| {
        if let Ok(resp) = decode::<Response>(bytes) {
            assert_eq!(decode::<Response>(&encode(&resp)).unwrap(), resp);
        }
    });
}

#[test]
fn framing() {
    let rt = std::panic::AssertUnwindSafe(
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
    );
    check!().for_each(|bytes: &[u8]| {
        let mut input = bytes;
        rt.block_on(async {
            // Frames until the stream ends or breaks; never more than it holds.
            while let Ok(Some(body)) = read_frame(&mut input).await {
                assert!(body.len() <= bytes.len());
            }
        });
    });
}

#[test]
fn kms_enveloped_data() {
    check!().for_each(|bytes: &[u8]| {
        let _ = leadgate_enclave::kms::cms::parse_enveloped(bytes);
    });
}
