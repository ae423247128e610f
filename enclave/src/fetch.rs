//! One HTTP/1.1 request from inside the enclave to a server outside it: the floor sources
//! ([`crate::floor`]) and the chain reads ([`crate::chain`]).
//!
//! The request goes to the URL's host directly, or through `via` (on Nitro a `vsock-proxy`
//! to that host, as the KMS calls go). `https://` URLs are TLS with the Mozilla roots
//! (`webpki-roots`), checked against the URL's host name, so a proxy the host runs relays
//! bytes it can neither read nor change; `http://` is for a local server in dev only.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use leadgate_protocol::transport::Endpoint;
use tokio_rustls::rustls;

/// Largest answer body read, bytes (64 KiB).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub(crate) struct Url<'a> {
    tls: bool,
    host: &'a str,
    authority: &'a str,
    path: &'a str,
}

pub(crate) fn parse_url(url: &str) -> Result<Url<'_>, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url}: not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(Url {
        tls,
        host,
        authority,
        path,
    })
}

/// One HTTP/1.1 request: GET, or POST of `post` as `application/json`; returns the status
/// and the body (at most [`MAX_ANSWER_BYTES`]).
///
/// # Errors
/// A message naming what failed: the URL, the connection, TLS (an unknown certificate, a
/// name mismatch), HTTP, or a body over the limit.
pub async fn request(
    url: &str,
    via: Option<&Endpoint>,
    post: Option<Vec<u8>>,
) -> Result<(u16, Bytes), String> {
    let u = parse_url(url)?;
    let endpoint = match via {
        Some(v) => v.clone(),
        None => {
            let port = if u.authority.contains(':') {
                u.authority.to_owned()
            } else {
                format!("{}:{}", u.authority, if u.tls { 443 } else { 80 })
            };
            Endpoint::Tcp(port)
        }
    };
    let stream = leadgate_protocol::transport::connect(&endpoint)
        .await
        .map_err(|e| format!("connect {endpoint}: {e}"))?;
    let mut builder = http::Request::builder()
        .uri(u.path)
        .header(http::header::HOST, u.authority)
        .header(http::header::USER_AGENT, "leadgate-enclave");
    builder = match &post {
        Some(_) => builder
            .method("POST")
            .header(http::header::CONTENT_TYPE, "application/json"),
        None => builder.method("GET"),
    };
    let request = builder
        .body(Full::new(Bytes::from(post.unwrap_or_default())))
        .map_err(|e| format!("request: {e}"))?;
    let response = if u.tls {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // The provider named, as the KMS client does: with both of rustls's providers
        // compiled in (feature unification in a workspace build), `builder()` cannot choose.
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(u.host.to_owned())
            .map_err(|e| format!("server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(hyper_util::rt::TokioIo::new(tls), request).await?
    } else {
        send(hyper_util::rt::TokioIo::new(stream), request).await?
    };
    Ok(response)
}

async fn send<T>(io: T, request: http::Request<Full<Bytes>>) -> Result<(u16, Bytes), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("HTTP body: {e}"))?
        .to_bytes();
    driver.abort();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:9000/bucket/log/checkpoint").unwrap();
        assert_eq!(
            (u.tls, u.host, u.authority, u.path),
            (
                false,
                "127.0.0.1",
                "127.0.0.1:9000",
                "/bucket/log/checkpoint"
            )
        );
        let u = parse_url("https://example.com").unwrap();
        assert_eq!((u.tls, u.host, u.path), (true, "example.com", "/"));
        assert!(parse_url("ftp://x/y").is_err());
        assert!(parse_url("http:///y").is_err());
    }
}
