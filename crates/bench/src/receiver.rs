//! The bench's receiver on loopback: counts the requests it answers and
//! remembers when each event id first arrived.
//!
//! It runs on a runtime of its own with one thread, as a separate small
//! service would, so the bench's database work does not delay it. Paths
//! choose how it answers: `/hook` at once, `/slow/<ms>` after that many
//! milliseconds; [`Receiver::hanging_url`] is a second port that reads
//! requests and never answers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// What the receiver saw.
#[derive(Default)]
pub struct Tally {
    /// Requests answered.
    pub count: AtomicU64,
    /// While `Some`, the first arrival of each event id (from `webhook-id`).
    pub arrivals: Mutex<Option<HashMap<i64, SystemTime>>>,
    /// While `Some`, which event ids arrived, for runs too long to keep a
    /// time per event.
    pub seen: Mutex<Option<Seen>>,
}

/// Event ids seen, as bits from a first id on.
pub struct Seen {
    first: i64,
    bits: Vec<u64>,
}

impl Seen {
    pub fn from(first: i64) -> Seen {
        Seen {
            first,
            bits: Vec::new(),
        }
    }

    pub fn insert(&mut self, id: i64) {
        let Ok(i) = usize::try_from(id - self.first) else {
            return;
        };
        if self.bits.len() <= i / 64 {
            self.bits.resize(i / 64 + 1, 0);
        }
        self.bits[i / 64] |= 1 << (i % 64);
    }

    pub fn contains(&self, id: i64) -> bool {
        let Ok(i) = usize::try_from(id - self.first) else {
            return false;
        };
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// How many of the ids in `range` were not seen.
    pub fn missing_in(&self, range: RangeInclusive<i64>) -> u64 {
        range.filter(|&id| !self.contains(id)).count() as u64
    }
}

pub struct Receiver {
    /// `http://127.0.0.1:<port>`, without a path.
    base: String,
    hanging: String,
    pub tally: Arc<Tally>,
    /// Runs the two listeners; dropped last, outside the bench's runtime.
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
        let hang = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let hanging = format!("http://{}/hang", hang.local_addr()?);
        runtime.spawn(never_answer(hang));
        Ok(Receiver {
            base,
            hanging,
            tally,
            _runtime: runtime,
        })
    }

    /// Answers 204 at once.
    pub fn url(&self) -> String {
        format!("{}/hook", self.base)
    }

    /// Answers 204 after `delay`.
    pub fn slow_url(&self, delay: Duration) -> String {
        format!("{}/slow/{}", self.base, delay.as_millis())
    }

    /// Accepts connections, reads what comes, never answers.
    pub fn hanging_url(&self) -> String {
        self.hanging.clone()
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
                    let delay = req
                        .uri()
                        .path()
                        .strip_prefix("/slow/")
                        .and_then(|ms| ms.parse::<u64>().ok())
                        .map(Duration::from_millis);
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
                        if let Some(seen) = tally.seen.lock().unwrap().as_mut() {
                            seen.insert(id);
                        }
                    }
                    if let Some(delay) = delay {
                        tokio::time::sleep(delay).await;
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

/// Holds every connection open, reading and dropping what the client
/// sends, until the client gives up.
async fn never_answer(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Seen;

    #[test]
    fn seen_counts_the_ids_that_never_arrived() {
        let mut seen = Seen::from(10);
        for id in [10, 11, 13, 200, 9, 10] {
            seen.insert(id);
        }
        assert_eq!(seen.missing_in(10..=13), 1);
        assert_eq!(seen.missing_in(10..=200), 187);
        assert!(seen.contains(200) && !seen.contains(12) && !seen.contains(9));
        assert_eq!(Seen::from(5).missing_in(5..=6), 2);
    }
}
