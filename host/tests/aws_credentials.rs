//! The credentials the host lends the enclave's KMS sealer come from the AWS SDK's providers
//! and are asked afresh at every boot: here an instance role served by a fake EC2 instance
//! metadata service (IMDSv2, the paths and JSON of the AWS EC2 user guide, "Retrieve security
//! credentials from instance metadata") rotates its credentials between two boots.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use leadgate_host::aws_credentials::CredentialSource;
use leadgate_protocol::AwsCredentials;

const TOKEN: &str = "imds-session-token-for-tests";
const ROLE: &str = "leadgate-parent-instance";

#[derive(Default)]
struct Imds {
    /// Credential documents served so far; each one carries a new key (rotation).
    served: AtomicU32,
    /// Requests that came without the IMDSv2 session token.
    without_token: AtomicU32,
    /// Whether the instance has a role at all.
    no_role: bool,
}

fn has_token(imds: &Imds, headers: &HeaderMap) -> bool {
    let ok = headers
        .get("x-aws-ec2-metadata-token")
        .is_some_and(|v| v == TOKEN);
    if !ok {
        imds.without_token.fetch_add(1, Ordering::SeqCst);
    }
    ok
}

async fn token(headers: HeaderMap) -> Response {
    if headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .is_none()
    {
        return StatusCode::BAD_REQUEST.into_response();
    }
    ([("x-aws-ec2-metadata-token-ttl-seconds", "21600")], TOKEN).into_response()
}

async fn roles(State(imds): State<Arc<Imds>>, headers: HeaderMap) -> Response {
    if !has_token(&imds, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if imds.no_role {
        return StatusCode::NOT_FOUND.into_response();
    }
    ROLE.into_response()
}

async fn role(
    State(imds): State<Arc<Imds>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !has_token(&imds, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if name != ROLE || imds.no_role {
        return StatusCode::NOT_FOUND.into_response();
    }
    let n = imds.served.fetch_add(1, Ordering::SeqCst) + 1;
    axum::Json(serde_json::json!({
        "Code": "Success",
        "LastUpdated": "2026-11-26T00:00:00Z",
        "Type": "AWS-HMAC",
        "AccessKeyId": format!("ASIAFAKEROTATION{n:04}"),
        "SecretAccessKey": format!("secret-{n}"),
        "Token": format!("session-{n}"),
        // Far ahead: the provider would stretch an expired one, which is not what is tested.
        "Expiration": "2099-01-01T00:00:00Z",
    }))
    .into_response()
}

async fn serve(imds: Arc<Imds>) -> String {
    let app = Router::new()
        .route("/latest/api/token", put(token))
        .route("/latest/meta-data/iam/security-credentials/", get(roles))
        .route(
            "/latest/meta-data/iam/security-credentials/{name}",
            get(role),
        )
        .with_state(imds);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn instance_role(endpoint: &str) -> CredentialSource {
    let client = aws_config::imds::Client::builder()
        .endpoint(endpoint)
        .expect("endpoint")
        .build();
    let provider = aws_config::imds::credentials::ImdsCredentialsProvider::builder()
        .imds_client(client)
        .build();
    CredentialSource::new(provider)
}

#[tokio::test]
async fn instance_role_credentials_are_asked_afresh_at_each_boot() {
    let imds = Arc::new(Imds::default());
    let source = instance_role(&serve(imds.clone()).await);

    let first = source.resolve().await.expect("first boot");
    let second = source.resolve().await.expect("second boot");
    assert_eq!(first.access_key_id, "ASIAFAKEROTATION0001");
    assert_eq!(first.secret_access_key, "secret-1");
    assert_eq!(first.session_token.as_deref(), Some("session-1"));
    // The role rotated its keys between the two boots, and the second boot lends the new ones.
    assert_eq!(second.access_key_id, "ASIAFAKEROTATION0002");
    assert_eq!(second.session_token.as_deref(), Some("session-2"));
    assert_eq!(imds.served.load(Ordering::SeqCst), 2);
    // IMDSv2 only: every metadata read carried the session token.
    assert_eq!(imds.without_token.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_instance_without_a_role_is_an_error_that_names_the_cause() {
    let imds = Arc::new(Imds {
        no_role: true,
        ..Imds::default()
    });
    let source = instance_role(&serve(imds.clone()).await);
    let err = source.resolve().await.expect_err("no role, no credentials");
    let msg = err.to_string();
    assert!(msg.starts_with("AWS credentials unavailable"), "{msg}");
    assert!(msg.contains("404"), "{msg}");
    assert_eq!(imds.served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn fixed_credentials_are_lent_as_given() {
    let given = AwsCredentials {
        access_key_id: "AKIAFIXEDFORTESTS000".into(),
        secret_access_key: "fixed-secret".into(),
        session_token: None,
    };
    let got = CredentialSource::new(aws_credential_types::Credentials::new(
        given.access_key_id.clone(),
        given.secret_access_key.clone(),
        given.session_token.clone(),
        None,
        "static",
    ))
    .resolve()
    .await
    .expect("fixed");
    assert_eq!(got.access_key_id, given.access_key_id);
    assert_eq!(got.secret_access_key, given.secret_access_key);
    assert_eq!(got.session_token, None);
}
