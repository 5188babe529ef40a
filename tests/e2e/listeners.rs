//! End-to-end tests of the daemon's HTTP listeners under a flood of
//! connections that never finish their request: the probes and the admin
//! API keep answering, the half-sent connections are closed by the header
//! timeout, deliveries keep their descriptors, and the daemon does not spin.

use std::time::Duration;

use outboxd_testkit::db::{add_webhook, publish_many};
use outboxd_testkit::{http_request, process, wait_for_count, Daemon, Receiver, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::BIN;

/// The daemon's header-read timeout (outboxd_serve's default).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens `n` connections that each send half a request header.
async fn half_open(port: u16, n: usize) -> Vec<TcpStream> {
    outboxd_serve::raise_nofile_limit().expect("raising the test's descriptor limit");
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        // A connect that waits is a full backlog: the daemon stopped accepting.
        let connect = TcpStream::connect(("127.0.0.1", port));
        let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
            break;
        };
        let _ = s
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-half: ")
            .await;
        conns.push(s);
    }
    assert!(
        conns.len() >= n * 9 / 10,
        "only {} of {n} connected",
        conns.len()
    );
    conns
}

/// How many of `conns` the daemon closes (EOF or reset) within `within`.
async fn closed_within(conns: Vec<TcpStream>, within: Duration) -> usize {
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                loop {
                    match tokio::time::timeout(within, s.read(&mut buf)).await {
                        Err(_) => return false,
                        Ok(Ok(0)) | Ok(Err(_)) => return true,
                        Ok(Ok(_)) => continue,
                    }
                }
            })
        })
        .collect();
    let mut closed = 0;
    for t in tasks {
        if t.await.unwrap_or(false) {
            closed += 1;
        }
    }
    closed
}

#[tokio::test]
async fn half_open_connections_neither_stop_the_probes_nor_outlive_the_header_timeout() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    add_webhook(&client, "ok", &receiver.url("/ok"), &["order.created"]).await;
    let (daemon, admin_port) = Daemon::start_with_console(BIN, &db.url, None, &[]).await;

    let flood = half_open(daemon.metrics_port, 3000).await;
    let admin_flood = half_open(admin_port, 3000).await;
    for _ in 0..3 {
        assert_eq!(
            daemon.get("/healthz").await.map(|r| r.0),
            Some(200),
            "/healthz during the flood:\n{}",
            daemon.plain_log()
        );
        let api = http_request(admin_port, "GET", "/api/webhooks", &[], "").await;
        assert_eq!(
            api.map(|a| a.status),
            Some(200),
            "the admin API during the flood"
        );
    }
    publish_many(&client, "order.created", 20).await;
    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        20,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;

    let slack = Duration::from_secs(20);
    let (closed, admin_closed) = tokio::join!(
        closed_within(flood, HEADER_TIMEOUT + slack),
        closed_within(admin_flood, HEADER_TIMEOUT + slack)
    );
    assert!(
        closed >= 2700 && admin_closed >= 2700,
        "half-open connections still open after the header timeout: \
         operations {closed} closed, admin {admin_closed} closed"
    );
    assert!(!daemon.log().contains("Too many open files"));
}

#[tokio::test]
async fn a_low_descriptor_limit_keeps_deliveries_going_and_the_daemon_does_not_spin() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    add_webhook(&client, "ok", &receiver.url("/ok"), &["order.created"]).await;
    let daemon = Daemon::start_with_nofile(
        BIN,
        &db.url,
        &[
            ("OUTBOXD_CONCURRENCY", "16"),
            ("OUTBOXD_WEBHOOK_CONCURRENCY", "8"),
            ("OUTBOXD_DB_POOL_SIZE", "4"),
        ],
        Some(200),
    );
    let up = outboxd_testkit::wait_until(Duration::from_secs(20), || async {
        daemon.get("/readyz").await.map(|r| r.0) == Some(200)
    })
    .await;
    assert!(
        up,
        "the daemon did not become ready:\n{}",
        daemon.plain_log()
    );

    let flood = half_open(daemon.metrics_port, 3000).await;
    let pid = daemon.pid();
    let before = process::cpu_time(pid).unwrap();
    publish_many(&client, "order.created", 50).await;
    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        50,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;
    assert_eq!(daemon.get("/healthz").await.map(|r| r.0), Some(200));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spent = process::cpu_time(pid).unwrap() - before;
    let fds = process::open_descriptors(pid).unwrap();
    assert!(fds < 200, "{fds} descriptors open, the limit is 200");
    drop(flood);

    assert!(
        spent < Duration::from_secs(2),
        "the daemon used {spent:?} of CPU under the flood:\n{}",
        daemon.plain_log()
    );
    let log = daemon.plain_log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(
        log.contains("listener_connections="),
        "the limits are logged:\n{log}"
    );
    let back = outboxd_testkit::wait_until(Duration::from_secs(10), || async {
        daemon.get("/healthz").await.map(|r| r.0) == Some(200)
    })
    .await;
    assert!(back, "/healthz after the flood");
}
