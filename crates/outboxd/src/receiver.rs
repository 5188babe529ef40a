//! `outboxd receiver`: a sample webhook receiver, for the demo, for
//! docker-compose, and as a reference for developers writing their own.
//!
//! It verifies the Standard Webhooks signature when given the secret,
//! rejects stale timestamps (replay protection, 5 minutes as the scheme
//! suggests), prints one line per delivery, and answers 204. Requests to a
//! path ending in `/flaky` are refused with 503 the first time each message
//! arrives, to show a retry.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use outboxd_core::signing::{self, Secret};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ReceiverArgs;

const TOLERANCE_SECS: i64 = 300;

pub async fn run(args: ReceiverArgs) -> Result<()> {
    let secret = args
        .secret
        .as_deref()
        .map(Secret::parse)
        .transpose()
        .context("RECEIVER_SECRET / --secret")?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    println!(
        "receiver listening on http://{}/ ({})",
        listener.local_addr()?,
        if secret.is_some() {
            "verifying signatures"
        } else {
            "not verifying signatures: pass --secret"
        }
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    serve(listener, secret, shutdown).await;
    Ok(())
}

/// Serves until `shutdown`; each delivery is printed on standard output.
pub async fn serve(listener: TcpListener, secret: Option<Secret>, shutdown: CancellationToken) {
    let seen = Arc::new(Mutex::new(HashSet::<String>::new()));
    let secret = Arc::new(secret);
    let service = hyper::service::service_fn(move |req| handle(req, secret.clone(), seen.clone()));
    outboxd_serve::serve(
        "receiver",
        listener,
        service,
        outboxd_serve::Limits::default(),
        shutdown,
    )
    .await;
}

async fn handle(
    req: Request<Incoming>,
    secret: Arc<Option<Secret>>,
    seen: Arc<Mutex<HashSet<String>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (id, ts, sig) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let flaky = req.uri().path().ends_with("/flaky");
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::PAYLOAD_TOO_LARGE)),
    };
    // Only `type` is read: `data` is skipped unparsed, however deep it is.
    #[derive(serde::Deserialize)]
    struct Envelope {
        r#type: String,
    }
    let event_type = serde_json::from_slice::<Envelope>(&body)
        .map(|e| e.r#type)
        .unwrap_or_else(|_| "?".into());
    let verdict = match (secret.as_ref(), ts.parse::<i64>()) {
        (None, _) => "signature not checked",
        (Some(_), Err(_)) => "bad timestamp",
        (Some(s), Ok(t)) => {
            let now = chrono::Utc::now().timestamp();
            if (now - t).abs() > TOLERANCE_SECS {
                "timestamp too old"
            } else if signing::verify(s, &id, t, &body, &sig) {
                "signature ok"
            } else {
                "SIGNATURE INVALID"
            }
        }
    };
    let status = if secret.is_some() && verdict != "signature ok" {
        StatusCode::UNAUTHORIZED
    } else if flaky && seen.lock().expect("seen lock").insert(id.clone()) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    };
    println!(
        "  received {event_type:<20} {id:<10} {verdict:<22} -> {}",
        status.as_u16()
    );
    Ok(reply(status))
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .expect("static response parts")
}
