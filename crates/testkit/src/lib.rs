//! Test support for outboxd's end-to-end tests, all against the real thing:
//! a fresh PostgreSQL database per test (copied from a migrated template),
//! HTTP receivers on 127.0.0.1 whose behaviour a test scripts, and the
//! daemon as a child process that a test can SIGTERM or SIGKILL, raw
//! hostile servers that misbehave byte by byte, and, for the fault tests, a
//! PostgreSQL cluster of their own to stop and restart.

pub mod chaos;
pub mod cluster;
pub mod daemon;
pub mod db;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod receiver;

pub use cluster::ClusterGuard;
pub use daemon::{http_request, Daemon, HttpAnswer};
pub use db::TestDb;
pub use receiver::{Received, Receiver, Reply};

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns true or `timeout` passes;
/// returns whether it became true.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    // The port is free once its listener is dropped, so the system may
    // offer it again before the daemon it is for binds it: a daemon's
    // metrics and console ports, taken one after the other, could be the
    // same. Never hand out one port twice in a test process.
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// Waits until `query` (a `SELECT count(*)`) returns `want`; fails with the
/// daemons' logs otherwise.
pub async fn wait_for_count(
    client: &tokio_postgres::Client,
    query: &str,
    want: i64,
    timeout: Duration,
    daemons: &[&Daemon],
) {
    let reached = wait_until(timeout, || async { db::count(client, query).await == want }).await;
    assert!(
        reached,
        "waited {timeout:?} for `{query}` to be {want}, it is {}\n--- daemon log ---\n{}",
        db::count(client, query).await,
        daemons
            .iter()
            .map(|d| d.log())
            .collect::<Vec<_>>()
            .join("\n--- next daemon ---\n")
    );
}
