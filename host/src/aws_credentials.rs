//! Where the host gets the AWS credentials it lends the enclave at every boot.
//!
//! On Nitro the enclave's KMS sealer (`--sealing kms`) signs its `GenerateDataKey` and
//! `Decrypt` calls (SigV4) with credentials the host lends it in `Request::Boot`; the KMS key
//! policy still requires the enclave's attestation, so the credentials alone open nothing.
//! An EC2 instance role's credentials are temporary (about 6 hours) and rotate, so the host
//! asks for them again at every boot instead of reading them once at start: an enclave that
//! restarts days after the host still unseals.

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use leadgate_protocol::AwsCredentials;

/// Why credentials could not be had (the provider's own message; never the secret).
#[derive(Debug, thiserror::Error)]
#[error("AWS credentials unavailable: {0}")]
pub struct CredentialsError(pub String);

/// A source of AWS credentials, asked at every enclave boot: any AWS SDK credentials provider
/// (the default chain in production; a static `Credentials` or an IMDS provider in tests).
#[derive(Debug, Clone)]
pub struct CredentialSource(SharedCredentialsProvider);

impl CredentialSource {
    /// A source that asks `provider` at every boot.
    pub fn new(provider: impl ProvideCredentials + 'static) -> Self {
        CredentialSource(SharedCredentialsProvider::new(provider))
    }

    /// The AWS SDK's default chain, as the AWS CLI uses it: `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, the shared config and credentials files,
    /// web identity, the container endpoint, then EC2 instance metadata (IMDSv2) for the
    /// instance role. See the AWS SDKs and Tools reference guide, "Standardized credential
    /// providers".
    pub async fn default_chain() -> Self {
        Self::new(
            aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                .build()
                .await,
        )
    }

    /// Current credentials.
    ///
    /// # Errors
    /// [`CredentialsError`] when the provider has none (no role, metadata service down, expired
    /// keys), with the provider's reasons; the caller's boot fails and is retried.
    pub async fn resolve(&self) -> Result<AwsCredentials, CredentialsError> {
        let c = self
            .0
            .provide_credentials()
            .await
            // `{:#}`: the error and its sources on one line (the SDK's top level is terse).
            .map_err(|e| CredentialsError(format!("{:#}", anyhow::Error::new(e))))?;
        Ok(AwsCredentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: c.secret_access_key().to_owned(),
            session_token: c.session_token().map(str::to_owned),
        })
    }
}
