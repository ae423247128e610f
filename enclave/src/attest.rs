//! Attestation providers: the NSM provider for AWS Nitro ([`NsmAttestationProvider`]) and the
//! dev provider for any Linux box ([`DevAttestationProvider`]). Both produce the same document
//! format (COSE_Sign1 over the NSM payload) binding the same fields: `public_key` = the intake
//! key, `user_data` = the bound keys, `nonce` = the requester's.

use leadgate_verifier::ErrorCode;

mod dev;
mod nsm;

pub use dev::DevAttestationProvider;
pub use nsm::{document_from_response, NsmAttestationProvider, NSM_DEVICE};

/// Errors from attestation providers. Codes: `attestation.provider_*`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// A field is over the NSM limits (1024 bytes for nonce, user data, public key).
    #[error("attestation request field too large")]
    TooLarge,
    /// Creating or reading the dev CA failed.
    #[error("dev CA: {0}")]
    DevCa(String),
    /// `/dev/nsm` could not be opened (not inside a Nitro Enclave?).
    #[error("cannot open {0}")]
    NsmUnavailable(&'static str),
    /// The NSM answered with an error code (AWS NSM API `ErrorCode`).
    #[error("NSM error: {0}")]
    Nsm(String),
    /// The NSM answer is not an attestation document that binds exactly what was asked.
    #[error("NSM answer rejected: {0}")]
    BadDocument(String),
}

impl ProviderError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProviderError::TooLarge => ErrorCode::AttestationProviderTooLarge,
            ProviderError::DevCa(_) | ProviderError::NsmUnavailable(_) | ProviderError::Nsm(_) => {
                ErrorCode::AttestationProviderFailed
            }
            ProviderError::BadDocument(_) => ErrorCode::AttestationProviderBadDocument,
        }
    }
}

/// Checks the NSM API's bounds on an `Attestation` request: `nonce`, `user_data` and
/// `public_key` of at most 1024 bytes each.
///
/// # Errors
/// [`ProviderError::TooLarge`].
pub fn check_request_sizes(
    nonce: Option<&[u8]>,
    user_data: &[u8],
    public_key: &[u8],
) -> Result<(), ProviderError> {
    let limit = leadgate_verifier::attestation::MAX_OPTIONAL_FIELD_LEN;
    if nonce.is_some_and(|n| n.len() > limit) || user_data.len() > limit || public_key.len() > limit
    {
        return Err(ProviderError::TooLarge);
    }
    Ok(())
}

/// Produces attestation documents binding the given fields (the NSM `Attestation` request).
pub trait AttestationProvider: Send + Sync {
    /// A COSE_Sign1 attestation document, raw bytes.
    ///
    /// # Errors
    /// [`ProviderError`].
    fn attest(
        &self,
        now_unix_ms: u64,
        nonce: Option<&[u8]>,
        user_data: &[u8],
        public_key: &[u8],
    ) -> Result<Vec<u8>, ProviderError>;
}
