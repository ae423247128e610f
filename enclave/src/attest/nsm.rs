//! The NSM attestation provider: inside an AWS Nitro Enclave, attestation documents come from
//! the Nitro Secure Module, the device `/dev/nsm`, through AWS's `aws-nitro-enclaves-nsm-api`
//! (CBOR request `Attestation { user_data, nonce, public_key }` over an `ioctl`; answer
//! `Attestation { document }`, a COSE_Sign1 signed by the instance's NSM key with a chain to
//! the AWS Nitro root G1). See "Nitro Enclaves attestation process" in the AWS Nitro
//! Enclaves User Guide and the NSM API's `api` module.
//!
//! Every answer goes through [`document_from_response`], which the tests feed with the real
//! documents in `verifier/tests/fixtures/nitro/`: it accepts only a well-formed document that
//! binds exactly the requested `public_key`, `user_data` and `nonce`, so a confused or
//! malicious device answer never reaches a client.

use std::sync::Mutex;

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver::{nsm_exit, nsm_init, nsm_process_request};
use leadgate_verifier::attestation::parse_attestation;
use serde_bytes::ByteBuf;

use super::{check_request_sizes, AttestationProvider, ProviderError};

/// The NSM device node, present only inside a Nitro Enclave.
pub const NSM_DEVICE: &str = "/dev/nsm";

/// Attestation by the Nitro Secure Module (see module docs).
pub struct NsmAttestationProvider {
    /// File descriptor of `/dev/nsm`; requests on it are serialised.
    fd: Mutex<i32>,
}

impl NsmAttestationProvider {
    /// Whether this process can see an NSM device (that is, runs inside a Nitro Enclave).
    pub fn available() -> bool {
        std::path::Path::new(NSM_DEVICE).exists()
    }

    /// Opens `/dev/nsm`.
    ///
    /// # Errors
    /// [`ProviderError::NsmUnavailable`] outside a Nitro Enclave.
    pub fn open() -> Result<Self, ProviderError> {
        let fd = nsm_init();
        if fd < 0 {
            return Err(ProviderError::NsmUnavailable(NSM_DEVICE));
        }
        Ok(Self { fd: Mutex::new(fd) })
    }
}

impl Drop for NsmAttestationProvider {
    fn drop(&mut self) {
        let fd = *self.fd.get_mut().unwrap_or_else(|p| p.into_inner());
        nsm_exit(fd);
    }
}

impl AttestationProvider for NsmAttestationProvider {
    /// `now_unix_ms` is unused: NSM stamps the document with its own clock.
    fn attest(
        &self,
        _now_unix_ms: u64,
        nonce: Option<&[u8]>,
        user_data: &[u8],
        public_key: &[u8],
    ) -> Result<Vec<u8>, ProviderError> {
        check_request_sizes(nonce, user_data, public_key)?;
        let request = Request::Attestation {
            user_data: Some(ByteBuf::from(user_data)),
            nonce: nonce.map(ByteBuf::from),
            public_key: Some(ByteBuf::from(public_key)),
        };
        let response = {
            let fd = self.fd.lock().unwrap_or_else(|p| p.into_inner());
            nsm_process_request(*fd, request)
        };
        document_from_response(response, nonce, user_data, public_key)
    }
}

/// Takes the NSM's answer to an `Attestation` request for (`nonce`, `user_data`,
/// `public_key`) and returns the document (raw COSE_Sign1 bytes, at most 16 KiB).
///
/// The document is parsed with the verifier's own parser (COSE_Sign1 envelope, NSM payload
/// field types and sizes, SHA384 digest) and must echo exactly the three requested fields.
/// Signature and chain are for the document's verifiers to check, at their own time.
///
/// # Errors
/// [`ProviderError::Nsm`] for an NSM error code; [`ProviderError::BadDocument`] for another
/// answer, a malformed document or one that binds other fields.
pub fn document_from_response(
    response: Response,
    nonce: Option<&[u8]>,
    user_data: &[u8],
    public_key: &[u8],
) -> Result<Vec<u8>, ProviderError> {
    let document = match response {
        Response::Attestation { document } => document,
        Response::Error(code) => return Err(ProviderError::Nsm(format!("{code:?}"))),
        _ => {
            return Err(ProviderError::BadDocument(
                "answer is not an attestation document".into(),
            ))
        }
    };
    let (_, doc) = parse_attestation(&document)
        .map_err(|e| ProviderError::BadDocument(format!("{}: {e}", e.code())))?;
    if doc.digest != "SHA384" {
        return Err(ProviderError::BadDocument(format!(
            "PCR digest is {}, not SHA384",
            doc.digest
        )));
    }
    if doc.public_key.as_deref() != Some(public_key)
        || doc.user_data.as_deref() != Some(user_data)
        || doc.nonce.as_deref() != nonce
    {
        return Err(ProviderError::BadDocument(
            "the document does not bind the requested public_key, user_data and nonce".into(),
        ));
    }
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_nitro_enclaves_nsm_api::api::ErrorCode;

    #[test]
    fn nsm_errors_and_other_answers_are_refused() {
        let e = document_from_response(Response::Error(ErrorCode::InvalidArgument), None, b"", b"")
            .unwrap_err();
        assert!(matches!(e, ProviderError::Nsm(ref s) if s == "InvalidArgument"));
        assert_eq!(e.code(), "attestation.provider_failed");
        let e = document_from_response(Response::LockPCRs, None, b"", b"").unwrap_err();
        assert_eq!(e.code(), "attestation.provider_bad_document");
        let e = document_from_response(
            Response::Attestation {
                document: b"\x84\x40\xa0\x40\x40".to_vec(),
            },
            None,
            b"",
            b"",
        )
        .unwrap_err();
        assert_eq!(e.code(), "attestation.provider_bad_document");
    }

    #[test]
    fn outside_an_enclave_open_fails_cleanly() {
        if NsmAttestationProvider::available() {
            eprintln!("skipped: {NSM_DEVICE} exists (inside a Nitro Enclave)");
            return;
        }
        assert!(matches!(
            NsmAttestationProvider::open(),
            Err(ProviderError::NsmUnavailable(_))
        ));
    }
}
