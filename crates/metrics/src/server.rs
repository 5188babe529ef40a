//! The operations listener: `/metrics`, `/healthz`, `/readyz`.
//!
//! `/healthz` answers as long as the process serves HTTP; `/readyz` runs the
//! caller's check (database reachable, schema current) with a short timeout
//! and answers 503 with the reason when it fails. Plain hyper, one small
//! service, HTTP/1.1: probes and scrapers need nothing more. Connections are
//! accepted by `outboxd_serve`, so no client can hold the listener or the
//! process's descriptors.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use outboxd_serve::Limits;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up metrics: {0}")]
    Metrics(String),
}

/// The readiness check: Ok when ready, else the reason.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Binds now (so a bad address fails start-up) and serves until shutdown.
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    ready: ReadinessCheck,
    limits: Limits,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, impl Future<Output = ()>), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let service = hyper::service::service_fn(move |req| route(req, handle.clone(), ready.clone()));
    Ok((
        local,
        outboxd_serve::serve("operations", listener, service, limits, shutdown),
    ))
}

async fn route(
    req: Request<Incoming>,
    handle: PrometheusHandle,
    ready: ReadinessCheck,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts")
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into()));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            handle.run_upkeep();
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                .body(Full::new(Bytes::from(handle.render())))
                .expect("static response parts")
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match tokio::time::timeout(Duration::from_secs(3), ready()).await {
            Ok(Ok(())) => text(StatusCode::OK, "ready\n".into()),
            Ok(Err(reason)) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
            Err(_) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: database check timed out\n".into(),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    })
}
