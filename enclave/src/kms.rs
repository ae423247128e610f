//! AWS KMS from inside a Nitro Enclave: `GenerateDataKey` and `Decrypt` with the enclave's
//! attestation document as `Recipient`, so that KMS answers only with the key encrypted to an
//! RSA key that lives in this enclave (`CiphertextForRecipient`), and only if the key policy's
//! `kms:RecipientAttestation:ImageSha384` condition matches the enclave's PCR0.
//!
//! The enclave has no network: it opens a stream through the host's vsock proxy
//! (`vsock-proxy 8000 kms.REGION.amazonaws.com 443` on the parent, `vsock://3:8000` here),
//! runs TLS to `kms.REGION.amazonaws.com` itself (rustls, Mozilla's roots), and signs each
//! call with AWS Signature Version 4 using credentials the host lends it. The host sees only
//! TLS records and cannot answer for KMS.
//!
//! Protocol: AWS JSON 1.1 (`POST /`, `X-Amz-Target: TrentService.<Operation>`), see the AWS
//! KMS API Reference for `GenerateDataKey` and `Decrypt`, and "Cryptographic attestation
//! support in AWS KMS" in the AWS KMS Developer Guide.

pub mod cms;
pub mod recipient;

use leadgate_verifier::ErrorCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;

use leadgate_protocol::transport::Endpoint;
pub use leadgate_protocol::AwsCredentials;

/// Largest KMS answer read, bytes (a `Decrypt` answer with a recipient is about 1.5 KiB).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How long one KMS call may take, connect to last byte.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors from KMS calls. Codes: `sealing.kms_*`, `sealing.no_credentials`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The key is not a KMS key ARN (`arn:PARTITION:kms:REGION:ACCOUNT:key/ID`). Aliases are
    /// refused: an alias can be pointed at another key after the image is measured.
    #[error("not a KMS key ARN: {0}")]
    BadKeyArn(String),
    /// No credentials were lent by the host.
    #[error("no AWS credentials for KMS (start the host with --forward-aws-credentials)")]
    NoCredentials,
    /// KMS refused: the key policy does not allow this caller or this attestation
    /// (`AccessDeniedException`), or the signature is wrong.
    #[error("KMS refused: {kind}: {message}")]
    Denied {
        /// KMS error type (`__type`).
        kind: String,
        /// KMS message.
        message: String,
    },
    /// KMS answered with another error.
    #[error("KMS error {status}: {kind}: {message}")]
    Service {
        /// HTTP status.
        status: u16,
        /// KMS error type (`__type`).
        kind: String,
        /// KMS message.
        message: String,
    },
    /// Connecting, TLS or HTTP failed, or the call timed out.
    #[error("KMS unreachable: {0}")]
    Unreachable(String),
    /// The answer is not what the API promises (JSON, base64, CMS).
    #[error("KMS answer malformed: {0}")]
    BadResponse(String),
    /// The attestation provider failed.
    #[error("attestation for KMS: {0}")]
    Attestation(#[from] crate::attest::ProviderError),
}

impl KmsError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            KmsError::BadKeyArn(_) => ErrorCode::SealingKmsBadKey,
            KmsError::NoCredentials => ErrorCode::SealingNoCredentials,
            KmsError::Denied { .. } => ErrorCode::SealingKmsDenied,
            KmsError::Service { .. } => ErrorCode::SealingKmsFailed,
            KmsError::Unreachable(_) => ErrorCode::SealingKmsUnreachable,
            KmsError::BadResponse(_) => ErrorCode::SealingKmsBadResponse,
            KmsError::Attestation(e) => e.code(),
        }
    }
}

impl From<cms::CmsError> for KmsError {
    fn from(e: cms::CmsError) -> Self {
        KmsError::BadResponse(e.to_string())
    }
}

/// A KMS key named by its ARN, with the region and endpoint host it implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKey {
    arn: String,
    region: String,
    host: String,
}

impl KmsKey {
    /// Parses `arn:PARTITION:kms:REGION:ACCOUNT:key/KEY_ID`.
    ///
    /// # Errors
    /// [`KmsError::BadKeyArn`], also for alias ARNs.
    pub fn from_arn(arn: &str) -> Result<Self, KmsError> {
        let bad = || KmsError::BadKeyArn(arn.to_string());
        let parts: Vec<&str> = arn.split(':').collect();
        let [_, partition, service, region, account, resource] = parts[..] else {
            return Err(bad());
        };
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let key_ok = resource.strip_prefix("key/").is_some_and(|id| {
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if parts[0] != "arn"
            || service != "kms"
            || !region_ok
            || account.len() != 12
            || !account.bytes().all(|b| b.is_ascii_digit())
            || !key_ok
        {
            return Err(bad());
        }
        let domain = match partition {
            "aws" | "aws-us-gov" => "amazonaws.com",
            "aws-cn" => "amazonaws.com.cn",
            _ => return Err(bad()),
        };
        Ok(Self {
            arn: arn.to_string(),
            region: region.to_string(),
            host: format!("kms.{region}.{domain}"),
        })
    }

    /// The ARN.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The region, e.g. `eu-west-1`.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The endpoint host name, e.g. `kms.eu-west-1.amazonaws.com`: TLS server name and `Host`.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// A KMS client bound to one key, reaching KMS through `proxy`.
#[derive(Clone)]
pub struct KmsClient {
    key: KmsKey,
    proxy: Endpoint,
    tls: Arc<rustls::ClientConfig>,
}

/// The `Recipient` of a KMS call: an attestation document whose `public_key` is the RSA key
/// KMS must encrypt to.
struct Recipient<'a>(&'a [u8]);

impl Serialize for Recipient<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("AttestationDocument", &B64.encode(self.0))?;
        m.serialize_entry("KeyEncryptionAlgorithm", "RSAES_OAEP_SHA_256")?;
        m.end()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(alias = "Message", default)]
    message: String,
}

impl KmsClient {
    /// A client that trusts Mozilla's root CAs (webpki-roots), as KMS's certificates chain to
    /// Amazon's roots there.
    pub fn new(key: KmsKey, proxy: Endpoint) -> Self {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(key, proxy, roots)
    }

    /// A client that trusts only `roots` (tests use their own CA).
    pub fn with_roots(key: KmsKey, proxy: Endpoint, roots: rustls::RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            key,
            proxy,
            tls: Arc::new(tls),
        }
    }

    /// The key this client uses.
    pub fn key(&self) -> &KmsKey {
        &self.key
    }

    /// `GenerateDataKey` (AES_256) for `recipient`: returns `(CiphertextBlob,
    /// CiphertextForRecipient)`. KMS leaves `Plaintext` empty when a recipient is given.
    ///
    /// # Errors
    /// Any [`KmsError`].
    pub async fn generate_data_key(
        &self,
        credentials: &AwsCredentials,
        attestation_document: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), KmsError> {
        let body = serde_json::json!({
            "KeyId": self.key.arn,
            "KeySpec": "AES_256",
            "Recipient": Recipient(attestation_document),
        });
        let answer = self.call("GenerateDataKey", &body, credentials).await?;
        Ok((
            b64_field(&answer, "CiphertextBlob")?,
            b64_field(&answer, "CiphertextForRecipient")?,
        ))
    }

    /// `Decrypt` of a `CiphertextBlob` this key made, for `recipient`: returns
    /// `CiphertextForRecipient`.
    ///
    /// # Errors
    /// Any [`KmsError`].
    pub async fn decrypt(
        &self,
        credentials: &AwsCredentials,
        ciphertext_blob: &[u8],
        attestation_document: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let body = serde_json::json!({
            "KeyId": self.key.arn,
            "CiphertextBlob": B64.encode(ciphertext_blob),
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            "Recipient": Recipient(attestation_document),
        });
        let answer = self.call("Decrypt", &body, credentials).await?;
        b64_field(&answer, "CiphertextForRecipient")
    }

    async fn call(
        &self,
        operation: &str,
        body: &serde_json::Value,
        credentials: &AwsCredentials,
    ) -> Result<serde_json::Value, KmsError> {
        let body = serde_json::to_vec(body).map_err(|e| KmsError::BadResponse(e.to_string()))?;
        let request = self.signed_request(operation, body, credentials, SystemTime::now())?;
        let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, self.send(request))
            .await
            .map_err(|_| KmsError::Unreachable(format!("no answer within {CALL_TIMEOUT:?}")))??;
        if status != 200 {
            let e: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
                kind: String::new(),
                message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            });
            // `__type` may carry a namespace prefix ("com.amazonaws.kms#AccessDeniedException").
            let kind = e.kind.rsplit('#').next().unwrap_or_default().to_string();
            return Err(match kind.as_str() {
                "AccessDeniedException"
                | "IncompleteSignatureException"
                | "InvalidSignatureException"
                | "UnrecognizedClientException" => KmsError::Denied {
                    kind,
                    message: e.message,
                },
                _ => KmsError::Service {
                    status,
                    kind,
                    message: e.message,
                },
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| KmsError::BadResponse(format!("JSON: {e}")))
    }

    /// The HTTP request for `operation`, signed with SigV4 (service `kms`) at `time`.
    fn signed_request(
        &self,
        operation: &str,
        body: Vec<u8>,
        credentials: &AwsCredentials,
        time: SystemTime,
    ) -> Result<http::Request<Full<bytes::Bytes>>, KmsError> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let target = format!("TrentService.{operation}");
        let uri = format!("https://{}/", self.key.host);
        let headers = [
            ("host", self.key.host.as_str()),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        let identity = aws_credential_types::Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
            credentials.session_token.clone(),
            None,
            "leadgate-host",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.key.region)
            .name("kms")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| KmsError::Unreachable(format!("SigV4 parameters: {e}")))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            &uri,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| KmsError::Unreachable(format!("SigV4: {e}")))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| KmsError::Unreachable(format!("SigV4: {e}")))?
            .into_parts();
        let mut builder = http::Request::builder().method("POST").uri("/");
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let mut request = builder
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| KmsError::Unreachable(format!("request: {e}")))?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }

    async fn send(
        &self,
        request: http::Request<Full<bytes::Bytes>>,
    ) -> Result<(u16, bytes::Bytes), KmsError> {
        let unreachable = |what: &str, e: &dyn std::fmt::Display| {
            KmsError::Unreachable(format!("{what} ({}): {e}", self.proxy))
        };
        let stream = leadgate_protocol::transport::connect(&self.proxy)
            .await
            .map_err(|e| unreachable("connect", &e))?;
        let name = rustls::pki_types::ServerName::try_from(self.key.host.clone())
            .map_err(|e| unreachable("server name", &e))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, stream)
            .await
            .map_err(|e| unreachable("TLS", &e))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| unreachable("HTTP", &e))?;
        let driver = tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable("HTTP", &e))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| unreachable("HTTP body", &*e))?
            .to_bytes();
        driver.abort();
        Ok((status, body))
    }
}

fn b64_field(answer: &serde_json::Value, field: &str) -> Result<Vec<u8>, KmsError> {
    let text = answer
        .get(field)
        .and_then(|v| v.as_str())
        .ok_or_else(|| KmsError::BadResponse(format!("no {field}")))?;
    B64.decode(text)
        .map_err(|_| KmsError::BadResponse(format!("{field} is not base64")))
}

/// Runs a KMS future to completion from synchronous code, inside or outside a Tokio runtime:
/// on a scoped thread with its own current-thread runtime.
///
/// # Errors
/// [`KmsError::Unreachable`] if the runtime cannot start; otherwise the future's.
pub fn block_on<T: Send>(
    future: impl std::future::Future<Output = Result<T, KmsError>> + Send,
) -> Result<T, KmsError> {
    crate::blocking::run(future).unwrap_or_else(|e| Err(KmsError::Unreachable(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_arns() {
        let k = KmsKey::from_arn(
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        )
        .unwrap();
        assert_eq!(k.region(), "eu-west-1");
        assert_eq!(k.host(), "kms.eu-west-1.amazonaws.com");
        let cn = KmsKey::from_arn("arn:aws-cn:kms:cn-north-1:111122223333:key/abc").unwrap();
        assert_eq!(cn.host(), "kms.cn-north-1.amazonaws.com.cn");
        for bad in [
            "arn:aws:kms:eu-west-1:111122223333:alias/leadgate",
            "arn:aws:kms:eu-west-1:1111:key/abc",
            "arn:aws:s3:eu-west-1:111122223333:key/abc",
            "arn:aws:kms:eu-west-1:111122223333:key/",
            "arn:aws:kms:EU_WEST:111122223333:key/abc",
            "arn:evil:kms:eu-west-1:111122223333:key/abc",
            "arn:aws:kms:eu-west-1:111122223333:key/abc:extra",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "",
        ] {
            assert!(
                matches!(KmsKey::from_arn(bad), Err(KmsError::BadKeyArn(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn credentials_debug_redacts_secrets() {
        let c = AwsCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI".into(),
            session_token: Some("FwoGZXIvYXdzE".into()),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("ASIAEXAMPLE"));
        assert!(!shown.contains("wJalrXUtnFEMI") && !shown.contains("FwoGZXIvYXdzE"));
    }
}
