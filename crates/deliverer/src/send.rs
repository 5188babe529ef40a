//! One HTTP attempt: send, read a bounded response, name what went wrong.
//!
//! The timeout covers the whole exchange, body included, so a receiver that
//! trickles its answer cannot hold a slot. At most 64 KiB of the body is
//! read (so the connection can be reused) and 4 KiB kept for the log; a
//! larger body is abandoned with its connection. What is kept is text the
//! database stores (`outboxd_core::stored`): a compressed or binary body is
//! described, not copied. Transport failures become the short reasons the
//! delivery log shows (`timeout`, `tls: ...`).

use std::error::Error as StdError;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use outboxd_core::message::{MAX_RESPONSE_BODY_KEPT, MAX_RESPONSE_BODY_READ};
use outboxd_core::outcome::{parse_retry_after, AttemptResult, TransportError};
use outboxd_core::stored;

use crate::guard::Blocked;
use crate::HttpClient;

/// What came back from one attempt.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub result: AttemptResult,
    pub response_body: Option<String>,
    pub elapsed: Duration,
}

pub async fn send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Exchange {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, exchange(client, request)).await;
    let (result, response_body) = match outcome {
        Ok(r) => r,
        Err(_) => (AttemptResult::Transport(TransportError::Timeout), None),
    };
    Exchange {
        result,
        response_body,
        elapsed: started.elapsed(),
    }
}

async fn exchange(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> (AttemptResult, Option<String>) {
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(e) => return (AttemptResult::Transport(transport_error(&e)), None),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, unix_now()));
    let encoding = response
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut body = response.into_body();
    let mut kept = Vec::new();
    let mut read = 0usize;
    while read < MAX_RESPONSE_BODY_READ {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read += data.len();
                    let room = MAX_RESPONSE_BODY_KEPT.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            // The status already arrived: a body cut short does not change
            // the verdict, it only loses the connection.
            Some(Err(_)) | None => break,
        }
    }
    let text = stored::response_body(&kept, read, encoding.as_deref());
    (
        AttemptResult::Response {
            status,
            retry_after,
        },
        text,
    )
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Walks the error's causes for the most telling one, looking inside
/// `io::Error`s too (the SSRF guard's `Blocked` and rustls's errors travel
/// wrapped in them).
pub fn transport_error(error: &(dyn StdError + 'static)) -> TransportError {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    let mut deepest = error.to_string();
    let mut dns = false;
    while let Some(e) = cause {
        if let Some(b) = e.downcast_ref::<Blocked>() {
            return TransportError::Blocked(b.to_string());
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return TransportError::Tls(tls.to_string());
        }
        let io = e.downcast_ref::<std::io::Error>();
        if let Some(io) = io {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => return TransportError::ConnectionRefused,
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
                    return TransportError::ConnectionReset
                }
                TimedOut => return TransportError::Timeout,
                _ => {}
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                return TransportError::Protocol(format!("invalid HTTP response: {h}"));
            }
            if h.is_incomplete_message() {
                return TransportError::ConnectionReset;
            }
            if h.is_timeout() {
                return TransportError::Timeout;
            }
        }
        let text = e.to_string();
        if text.starts_with("dns error") {
            dns = true;
        }
        deepest = text;
        // An io::Error's source() skips the error it wraps, and hyper-rustls
        // wraps tokio-rustls's io::Error (which wraps the rustls::Error) in
        // another one: step into the wrapped error itself.
        cause = match io.and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    if dns {
        TransportError::Dns(deepest)
    } else {
        TransportError::Other(deepest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn errors_wrapped_in_io_errors_are_found() {
        let tls = || rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let blocked = || Blocked {
            addr: "10.0.0.5".parse().unwrap(),
            kind: "private",
        };
        let cases: Vec<(Box<dyn StdError + Send + Sync>, TransportError)> = vec![
            // tokio-rustls's error, as hyper-rustls hands it on: io inside io.
            (
                Box::new(io::Error::other(io::Error::new(
                    io::ErrorKind::InvalidData,
                    tls(),
                ))),
                TransportError::Tls("invalid peer certificate: UnknownIssuer".into()),
            ),
            (
                Box::new(io::Error::new(io::ErrorKind::InvalidData, tls())),
                TransportError::Tls("invalid peer certificate: UnknownIssuer".into()),
            ),
            (
                Box::new(tls()),
                TransportError::Tls("invalid peer certificate: UnknownIssuer".into()),
            ),
            // The guard's refusal from the resolver, and from the connector.
            (
                Box::new(io::Error::other(blocked())),
                TransportError::Blocked(
                    "10.0.0.5 is private; to allow it, add 10.0.0.5/32 to OUTBOXD_ALLOW_PRIVATE_TARGETS (comma-separated CIDRs)".into(),
                ),
            ),
            (
                Box::new(blocked()),
                TransportError::Blocked(
                    "10.0.0.5 is private; to allow it, add 10.0.0.5/32 to OUTBOXD_ALLOW_PRIVATE_TARGETS (comma-separated CIDRs)".into(),
                ),
            ),
            (
                Box::new(io::Error::from(io::ErrorKind::ConnectionReset)),
                TransportError::ConnectionReset,
            ),
            (
                Box::new(io::Error::other(io::Error::from(
                    io::ErrorKind::ConnectionRefused,
                ))),
                TransportError::ConnectionRefused,
            ),
            (
                Box::new(io::Error::other("boom")),
                TransportError::Other("boom".into()),
            ),
        ];
        for (error, want) in cases {
            assert_eq!(transport_error(&*error), want, "{error:?}");
        }
    }
}
