//! Accepting HTTP connections safely, for every listener of outboxd (the
//! operations listener, the admin console, the sample receiver).
//!
//! A client that opens connections and never finishes a request must not be
//! able to take the process's descriptors, its CPU or the listener itself:
//! each connection has a header-read timeout (which also ends idle
//! keep-alive connections) and a lifetime; a listener holds at most
//! `Limits::max_connections` descriptors, and when full it closes its
//! longest-idle connection to take the new one, so a probe that sends its
//! request at once is served however many half-sent ones there are (when
//! every connection is in a request it stops accepting until one ends);
//! accept errors such as EMFILE back off instead of spinning.

mod nofile;
mod table;

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use nofile::{raise_nofile_limit, NofileLimit};
use table::{Slot, Table};

/// What a listener allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once; beyond it the longest-idle one is closed
    /// for the newcomer, or, when every connection is in a request, the
    /// listener stops accepting until one ends.
    pub max_connections: usize,
    /// Time to send a whole request header, counted from the connection's
    /// start or the end of its previous response: also the keep-alive limit.
    pub header_read_timeout: Duration,
    /// Longest life of a connection; then it finishes its request and closes.
    pub max_connection_age: Duration,
    /// After shutdown or the age limit, how long a request may still take.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(5 * 60),
            grace: Duration::from_secs(30),
        }
    }
}

/// First and longest pause after an accept error that is not about one
/// connection (EMFILE, ENFILE, ENOBUFS): long enough not to spin, short
/// enough to pick up again as soon as descriptors are free.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// Warnings about a full listener or accept errors, at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Read buffer per connection: room for any sane request header (hyper's
/// least is 8 KiB) without letting a full listener hold much memory.
const MAX_BUF: usize = 64 * 1024;

/// Serves HTTP/1.1 on `listener` until `shutdown`, each connection with
/// `service`; `name` appears in the logs. Returns once it stops accepting;
/// connections then finish their requests within `Limits::grace`.
pub async fn serve<S, B>(
    name: &'static str,
    listener: TcpListener,
    service: S,
    limits: Limits,
    shutdown: CancellationToken,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let table = Arc::new(Table::new());
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = BACKOFF_MIN;
    let mut warned = Warned::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = BACKOFF_MIN;
                stream
            }
            Err(e) if about_one_connection(&e) => continue,
            Err(e) => {
                warned.warn(|n| {
                    tracing::warn!(listener = name, error = %e, errors = n,
                        "cannot accept connections; pausing between tries")
                });
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        // A permit is a descriptor: it is released when the evicted
        // connection's socket is closed, not when it is told to close.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let evicted = table.evict_idlest();
                warned.warn(|n| {
                    tracing::warn!(listener = name, max_connections = limits.max_connections,
                        times = n, every_connection_busy = !evicted,
                        "listener full: closing the longest-idle connection, or waiting for a request to end")
                });
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                }
            }
        };
        let slot = table.join();
        let service = Tracked {
            inner: service.clone(),
            slot: slot.clone(),
        };
        tokio::spawn(connection(
            stream,
            service,
            slot,
            table.clone(),
            permit,
            limits,
            shutdown.clone(),
        ));
    }
}

async fn connection<S, B>(
    stream: tokio::net::TcpStream,
    service: Tracked<S>,
    slot: Arc<Slot>,
    table: Arc<Table>,
    _permit: OwnedSemaphorePermit,
    limits: Limits,
    shutdown: CancellationToken,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let _leave = table.leave_on_drop(slot.id());
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let closing = tokio::select! {
        _ = conn.as_mut() => return,
        // Evicted to make room: closed at once, its request unread.
        _ = slot.evicted() => return,
        _ = tokio::time::sleep(limits.max_connection_age) => true,
        _ = shutdown.cancelled() => true,
    };
    if closing {
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(limits.grace, conn).await;
    }
}

/// Accept errors that concern the one connection being accepted; the next
/// accept may well succeed at once.
fn about_one_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::Interrupted
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

/// The service of one connection: marks the connection busy from a
/// request's head to the end of its response body, so a full listener
/// closes idle connections only.
struct Tracked<S> {
    inner: S,
    slot: Arc<Slot>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: Body + Unpin,
{
    type Response = Response<Guarded<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let busy = self.slot.busy();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = fut.await?;
            Ok(response.map(|body| Guarded { body, _busy: busy }))
        })
    }
}

/// A response body that keeps its connection marked busy until sent.
pub struct Guarded<B> {
    body: B,
    _busy: table::Busy,
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Counts occurrences and lets a warning through at most every `WARN_EVERY`.
#[derive(Default)]
struct Warned {
    last: Option<Instant>,
    since: u64,
}

impl Warned {
    fn warn(&mut self, log: impl FnOnce(u64)) {
        self.since += 1;
        if self.last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            log(self.since);
            self.last = Some(Instant::now());
            self.since = 0;
        }
    }
}
