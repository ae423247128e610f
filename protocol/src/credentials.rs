//! The AWS credentials the host lends the enclave for its KMS calls.

use serde::{Deserialize, Serialize};

/// AWS credentials the host lends the enclave for signing KMS calls (the instance role's, from
/// IMDS). They grant nothing by themselves: the key policy also requires the attestation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsCredentials {
    /// Access key id (`AKIA…` or `ASIA…`).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials, if any.
    #[serde(default)]
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}
