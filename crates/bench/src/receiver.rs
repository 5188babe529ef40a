//! The bench's receiver on loopback: counts the requests it answers and
//! remembers when each event id first arrived.
//!
//! It runs on a runtime of its own with one thread, as a separate small
//! service would, so the bench's database work does not delay it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// What the receiver saw.
#[derive(Default)]
pub struct Tally {
    /// Requests answered.
    pub count: AtomicU64,
    /// While `Some`, the first arrival of each event id (from `webhook-id`).
    pub arrivals: Mutex<Option<HashMap<i64, SystemTime>>>,
}

pub struct Receiver {
    /// `http://127.0.0.1:<port>`, without a path.
    base: String,
    pub tally: Arc<Tally>,
    /// Runs the listener; dropped last, outside the bench's runtime.
    _runtime: Runtime,
}

impl Receiver {
    pub fn start() -> Result<Receiver> {
        let tally = Arc::new(Tally::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let base = format!("http://{}", listener.local_addr()?);
        runtime.spawn(receive(listener, tally.clone()));
        Ok(Receiver {
            base,
            tally,
            _runtime: runtime,
        })
    }

    /// Answers 204 at once.
    pub fn url(&self) -> String {
        format!("{}/hook", self.base)
    }
}

/// Serves the fast receiver on `listener`, counting into `tally`.
pub async fn receive(listener: TcpListener, tally: Arc<Tally>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tally = tally.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let tally = tally.clone();
                async move {
                    let id = req
                        .headers()
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("evt_"))
                        .and_then(|v| v.parse::<i64>().ok());
                    let _ = req.into_body().collect().await;
                    let now = SystemTime::now();
                    if let Some(id) = id {
                        if let Some(map) = tally.arrivals.lock().unwrap().as_mut() {
                            map.entry(id).or_insert(now);
                        }
                    }
                    tally.count.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(204)
                            .body(Full::new(Bytes::new()))
                            .unwrap(),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
