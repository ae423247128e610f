//! Where the host gets the AWS credentials it lends the enclave at every boot.
//!
//! On Nitro the enclave's KMS sealer (`--sealing kms`) signs its `GenerateDataKey` and
//! `Decrypt` calls (SigV4) with credentials the host lends it in `Request::Boot`; the KMS key
//! policy still requires the enclave's attestation, so the credentials alone open nothing.
//! An EC2 instance role's credentials are temporary (about 6 hours) and rotate, so the host
//! asks for them again at every boot instead of reading them once at start: an enclave that
//! restarts days after the host still unseals.

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use leadgate_enclave::kms::AwsCredentials;

/// Why credentials could not be had (the provider's own message; never the secret).
#[derive(Debug, thiserror::Error)]
#[error("AWS credentials unavailable: {0}")]
pub struct CredentialsError(pub String);

/// A source of AWS credentials, asked at every enclave boot.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// The same credentials every time (tests; long-lived keys).
    Fixed(AwsCredentials),
    /// An AWS SDK credentials provider, asked afresh at each boot.
    Provider(SharedCredentialsProvider),
}

impl CredentialSource {
    /// The AWS SDK's default chain, as the AWS CLI uses it: `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, the shared config and credentials files,
    /// web identity, the container endpoint, then EC2 instance metadata (IMDSv2) for the
    /// instance role. See the AWS SDKs and Tools reference guide, "Standardized credential
    /// providers".
    pub async fn default_chain() -> Self {
        let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .build()
            .await;
        CredentialSource::Provider(SharedCredentialsProvider::new(chain))
    }

    /// Current credentials.
    ///
    /// # Errors
    /// [`CredentialsError`] when the provider has none (no role, metadata service down, expired
    /// keys); the caller's boot fails and is retried.
    pub async fn resolve(&self) -> Result<AwsCredentials, CredentialsError> {
        match self {
            CredentialSource::Fixed(c) => Ok(c.clone()),
            CredentialSource::Provider(p) => {
                let c = p
                    .provide_credentials()
                    .await
                    .map_err(|e| CredentialsError(error_chain(&e)))?;
                Ok(AwsCredentials {
                    access_key_id: c.access_key_id().to_owned(),
                    secret_access_key: c.secret_access_key().to_owned(),
                    session_token: c.session_token().map(str::to_owned),
                })
            }
        }
    }
}

/// The error and its sources on one line (the SDK's top-level messages are terse).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
