//! End-to-end tests against hostile receivers: raw TCP (and TLS) servers on
//! 127.0.0.1 that never answer, trickle, flood, speak broken HTTP, reset,
//! present an untrusted certificate, redirect, or ask for a later retry.
//! Each test asserts the attempt row the daemon recorded (status, error,
//! outcome, body) and that the daemon kept its bounds (time, bytes read,
//! retries). The last test shows a slow webhook does not hold up a fast one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outboxd_testkit::db::{add_webhook, count, publish_many};
use outboxd_testkit::raw::{self, RawServer};
use outboxd_testkit::{wait_for_count, wait_until, Daemon, Receiver, Reply, TestDb};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio_postgres::Client;

use crate::support::{ready, BIN};

/// A short whole-request timeout and two attempts: every test here ends in
/// a few seconds, and "retried" is attempt 1 `retry`, attempt 2 `failed`.
const SHORT: [(&str, &str); 2] = [
    ("OUTBOXD_REQUEST_TIMEOUT", "1s"),
    ("OUTBOXD_MAX_ATTEMPTS", "2"),
];

/// One row of the delivery log.
#[derive(Debug, Clone, PartialEq)]
struct Attempt {
    attempt: i32,
    status_code: Option<i32>,
    error: Option<String>,
    outcome: String,
    response_body: Option<String>,
    duration_ms: f64,
    /// Seconds since the delivery's first attempt started.
    started_after: f64,
}

/// The attempt rows of a webhook's deliveries, in the order written.
async fn attempts_of(client: &Client, webhook_id: i64) -> Vec<Attempt> {
    client
        .query(
            "SELECT attempt, status_code, error, outcome, response_body, duration_ms,
                    extract(epoch FROM started_at - min(started_at) OVER ())::float8
               FROM outbox.delivery_attempts WHERE webhook_id = $1 ORDER BY id",
            &[&webhook_id],
        )
        .await
        .expect("reading attempts")
        .iter()
        .map(|r| Attempt {
            attempt: r.get(0),
            status_code: r.get(1),
            error: r.get(2),
            outcome: r.get(3),
            response_body: r.get(4),
            duration_ms: r.get(5),
            started_after: r.get(6),
        })
        .collect()
}

/// Runs the daemon with `env` until `n` deliveries are in `state`.
async fn run_until(
    db: &TestDb,
    client: &Client,
    state: &str,
    n: i64,
    env: &[(&str, &str)],
) -> Daemon {
    let daemon = Daemon::start(BIN, &db.url, env);
    let query = format!("SELECT count(*) FROM outbox.deliveries WHERE state = '{state}'");
    wait_for_count(client, &query, n, Duration::from_secs(30), &[&daemon]).await;
    daemon
}

/// One raw server per `(name, answer)` that answers every request with
/// those bytes, each behind a webhook of that name for every event.
async fn answering_webhooks(
    client: &Client,
    answers: Vec<(&'static str, Vec<u8>)>,
) -> Vec<(&'static str, i64, RawServer)> {
    let mut servers = Vec::new();
    for (name, answer) in answers {
        let answer: Arc<[u8]> = answer.into();
        let server = RawServer::start("127.0.0.1:0", move |mut s, _| {
            let answer = answer.clone();
            async move { raw::answer(&mut s, &answer).await }
        })
        .await;
        let (hook, _) = add_webhook(client, name, &server.url("/hook"), &["*"]).await;
        servers.push((name, hook, server));
    }
    servers
}

/// The two attempts of a delivery retried once, then failed, both with `error`.
fn assert_retried_with(rows: &[Attempt], status: Option<i32>, error: &str, what: &str) {
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.attempt,
                r.status_code,
                r.error.as_deref(),
                r.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, status, Some(error), "retry"),
            (2, status, Some(error), "failed")
        ],
        "{what}"
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_and_is_retried() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // How long each connection was held open after the request arrived.
    let held = Arc::new(Mutex::new(Vec::new()));
    let server = RawServer::start("127.0.0.1:0", {
        let held = held.clone();
        move |mut s, _| {
            let held = held.clone();
            async move {
                if raw::read_request(&mut s).await.is_some() {
                    let since = Instant::now();
                    raw::wait_for_close(&mut s).await;
                    held.lock().unwrap().push(since.elapsed());
                }
            }
        }
    })
    .await;
    let (hook, _) = add_webhook(&client, "silent", &server.url("/hook"), &["*"]).await;
    publish_many(&client, "order.created", 1).await;

    let daemon = run_until(&db, &client, "failed", 1, &SHORT).await;

    let rows = attempts_of(&client, hook).await;
    assert_retried_with(&rows, None, "timeout", "never answered");
    for r in &rows {
        assert!(
            (900.0..5000.0).contains(&r.duration_ms),
            "attempt {} took {} ms, the timeout is 1 s",
            r.attempt,
            r.duration_ms
        );
    }
    assert!(
        outboxd_testkit::daemon::logged_failure(&daemon.log(), "timeout"),
        "{}",
        daemon.log()
    );
    // The daemon let go of each connection at the timeout, not later.
    assert!(
        wait_until(Duration::from_secs(5), || async {
            held.lock().unwrap().len() == 2
        })
        .await,
        "the daemon kept a connection open: {:?}",
        held.lock().unwrap()
    );
    for d in held.lock().unwrap().iter() {
        assert!(*d < Duration::from_secs(4), "a connection was held {d:?}");
    }
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn a_body_trickled_slower_than_the_timeout_times_out() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // Bytes of body each connection managed to send before the daemon hung up.
    let sent = Arc::new(Mutex::new(Vec::new()));
    let server = RawServer::start("127.0.0.1:0", {
        let sent = sent.clone();
        move |mut s, _| {
            let sent = sent.clone();
            async move {
                if raw::read_request(&mut s).await.is_none() {
                    return;
                }
                let head = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n";
                if s.write_all(head).await.is_err() {
                    return;
                }
                // One byte every 200 ms: no pause is long, the whole is 20 s.
                let mut n = 0;
                while n < 100 && s.write_all(b"x").await.is_ok() && s.flush().await.is_ok() {
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                sent.lock().unwrap().push(n);
            }
        }
    })
    .await;
    let (hook, _) = add_webhook(&client, "trickle", &server.url("/hook"), &["*"]).await;
    publish_many(&client, "order.created", 1).await;

    let _daemon = run_until(&db, &client, "failed", 1, &SHORT).await;

    let rows = attempts_of(&client, hook).await;
    assert_retried_with(&rows, None, "timeout", "trickled body");
    for r in &rows {
        assert!(r.duration_ms < 5000.0, "{r:?}");
        assert_eq!(r.response_body, None);
    }
    assert!(
        wait_until(Duration::from_secs(5), || async {
            sent.lock().unwrap().len() == 2
        })
        .await,
        "the daemon kept reading a trickle: {:?}",
        sent.lock().unwrap()
    );
    for n in sent.lock().unwrap().iter() {
        assert!(*n < 40, "{n} bytes trickled before the daemon hung up");
    }
}

#[tokio::test]
async fn a_huge_response_body_is_read_only_in_part_and_stored_truncated() {
    const HUGE: usize = 10 * 1024 * 1024;
    let db = TestDb::new().await;
    let client = db.client().await;
    // A small send buffer, so what the server "wrote" is close to what the
    // daemon took from the connection.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(32 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let server = RawServer::serve(socket.listen(16).unwrap(), {
        let (written, closed) = (written.clone(), closed.clone());
        move |mut s, _| {
            let (written, closed) = (written.clone(), closed.clone());
            async move {
                if raw::read_request(&mut s).await.is_none() {
                    return;
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {HUGE}\r\n\r\n"
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'a'; 16 * 1024];
                while written.load(Ordering::SeqCst) < HUGE {
                    let write = tokio::time::timeout(Duration::from_secs(10), s.write(&chunk));
                    match write.await {
                        Ok(Ok(n)) if n > 0 => written.fetch_add(n, Ordering::SeqCst),
                        Ok(_) => {
                            closed.store(true, Ordering::SeqCst);
                            return;
                        }
                        // Stalled: the daemon neither reads nor hangs up.
                        Err(_) => return,
                    };
                }
            }
        }
    });
    let (hook, _) = add_webhook(&client, "flood", &server.url("/hook"), &["*"]).await;
    publish_many(&client, "order.created", 1).await;

    let daemon = run_until(&db, &client, "delivered", 1, &SHORT).await;

    let rows = attempts_of(&client, hook).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (r.status_code, r.error.as_deref(), r.outcome.as_str()),
        (Some(200), None, "delivered")
    );
    assert_eq!(
        r.response_body.as_deref(),
        Some("a".repeat(4096).as_str()),
        "the first 4 KiB are kept"
    );
    assert!(
        wait_until(Duration::from_secs(10), || async {
            closed.load(Ordering::SeqCst)
        })
        .await,
        "the daemon did not hang up on a 10 MiB body\n{}",
        daemon.log()
    );
    let written = written.load(Ordering::SeqCst);
    eprintln!("huge body: the server wrote {written} bytes of {HUGE} before the daemon hung up");
    // 64 KiB read, plus what the two sockets' buffers held: far from 10 MiB.
    assert!(
        written < 2 * 1024 * 1024,
        "{written} bytes were taken from a {HUGE}-byte body"
    );
}

#[tokio::test]
async fn broken_http_is_recorded_with_a_short_reason_and_retried() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let endless_head = {
        let mut h = b"HTTP/1.1 200 OK\r\nx-junk: ".to_vec();
        h.resize(1024 * 1024, b'j');
        h
    };
    let answers: Vec<(&'static str, Vec<u8>)> = vec![
        ("hello", b"HELLO\r\n\r\n".to_vec()),
        (
            "garbage",
            b"\x00\xff\xfe\x13\x37\x1b[2J\x7f\xc3(\r\n\r\n".to_vec(),
        ),
        ("endless-head", endless_head),
    ];
    let servers = answering_webhooks(&client, answers).await;
    publish_many(&client, "order.created", 1).await;

    let daemon = run_until(&db, &client, "failed", servers.len() as i64, &SHORT).await;

    for (name, hook, server) in &servers {
        let rows = attempts_of(&client, *hook).await;
        let error = rows[0].error.clone().unwrap_or_default();
        eprintln!("{name}: {error}");
        assert_retried_with(&rows, None, &error, name);
        assert!(
            error.starts_with("protocol: invalid HTTP response"),
            "{name}: {error:?}"
        );
        assert!(
            error.len() <= 80 && !error.contains(['\0', '\u{1b}', '\u{fffd}']),
            "{name}: the reason is short and names no received bytes: {error:?}"
        );
        assert!(
            !error.contains("HELLO") && !error.contains("jjjj"),
            "{name}: {error:?}"
        );
        assert!(
            outboxd_testkit::daemon::logged_failure(&daemon.log(), &error),
            "{name}"
        );
        assert_eq!(server.connections(), 2, "{name}");
    }
}

#[tokio::test]
async fn a_connection_reset_is_recorded_and_retried() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let server = RawServer::start("127.0.0.1:0", |mut s, _| async move {
        if raw::read_request(&mut s).await.is_some() {
            // SO_LINGER 0: close sends RST instead of FIN.
            s.set_zero_linger().unwrap();
            drop(s);
        }
    })
    .await;
    let (hook, _) = add_webhook(&client, "reset", &server.url("/hook"), &["*"]).await;
    publish_many(&client, "order.created", 1).await;

    let daemon = run_until(&db, &client, "failed", 1, &SHORT).await;

    let rows = attempts_of(&client, hook).await;
    assert_retried_with(&rows, None, "connection reset", "reset");
    assert!(outboxd_testkit::daemon::logged_failure(
        &daemon.log(),
        "connection reset"
    ));
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn an_untrusted_tls_certificate_is_refused_with_the_reason_and_retried() {
    let acceptor = match raw::self_signed_acceptor() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("skipping: cannot make a self-signed certificate ({e})");
            return;
        }
    };
    let db = TestDb::new().await;
    let client = db.client().await;
    let handshakes = Arc::new(AtomicUsize::new(0));
    let server = RawServer::start("127.0.0.1:0", {
        let handshakes = handshakes.clone();
        move |s, _| {
            let (acceptor, handshakes) = (acceptor.clone(), handshakes.clone());
            async move {
                let accepted = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(s));
                if let Ok(Ok(mut tls)) = accepted.await {
                    handshakes.fetch_add(1, Ordering::SeqCst);
                    raw::answer(&mut tls, raw::OK).await;
                }
            }
        }
    })
    .await;
    let url = format!("https://{}/hook", server.addr);
    let (hook, _) = add_webhook(&client, "self-signed", &url, &["*"]).await;
    publish_many(&client, "order.created", 1).await;

    let daemon = run_until(&db, &client, "failed", 1, &SHORT).await;

    let rows = attempts_of(&client, hook).await;
    assert_retried_with(
        &rows,
        None,
        "tls: invalid peer certificate: UnknownIssuer",
        "self-signed certificate",
    );
    assert!(outboxd_testkit::daemon::logged_failure(
        &daemon.log(),
        "tls: invalid peer certificate: UnknownIssuer"
    ));
    assert_eq!(server.connections(), 2, "both attempts connected");
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        0,
        "no handshake completed"
    );
}

#[tokio::test]
async fn redirects_are_not_followed_and_recorded_as_such() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let target = RawServer::start("127.0.0.1:0", |mut s, _| async move {
        raw::answer(&mut s, raw::OK).await
    })
    .await;
    let redirect: Arc<[u8]> = format!(
        "HTTP/1.1 302 Found\r\nlocation: {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        target.url("/elsewhere")
    )
    .into_bytes()
    .into();
    let server = RawServer::start("127.0.0.1:0", move |mut s, _| {
        let redirect = redirect.clone();
        async move { raw::answer(&mut s, &redirect).await }
    })
    .await;
    let (hook, _) = add_webhook(&client, "redirect", &server.url("/hook"), &["*"]).await;
    publish_many(&client, "order.created", 1).await;

    let _daemon = run_until(&db, &client, "failed", 1, &SHORT).await;

    let rows = attempts_of(&client, hook).await;
    assert_retried_with(&rows, Some(302), "redirect not followed", "302");
    assert_eq!(server.connections(), 2);
    assert_eq!(target.connections(), 0, "the Location got nothing");
}

#[tokio::test]
async fn retry_after_on_429_and_503_is_honoured_and_capped_at_the_max_delay() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // The first request is told to come back later, the second is accepted.
    let cases = [
        ("429", "429 Too Many Requests", "2"),
        ("503", "503 Service Unavailable", "2"),
        ("503-huge", "503 Service Unavailable", "999999"),
    ];
    let mut hooks = Vec::new();
    let mut servers = Vec::new();
    for (name, status, after) in cases {
        let later: Arc<[u8]> = format!(
            "HTTP/1.1 {status}\r\nretry-after: {after}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .into_bytes()
        .into();
        let server = RawServer::start("127.0.0.1:0", move |mut s, n| {
            let later = later.clone();
            async move {
                let answer: &[u8] = if n == 0 { &later } else { raw::OK };
                raw::answer(&mut s, answer).await
            }
        })
        .await;
        hooks.push(
            add_webhook(&client, name, &server.url("/hook"), &["*"])
                .await
                .0,
        );
        servers.push(server);
    }
    publish_many(&client, "order.created", 1).await;

    // Own backoff 100 ms; the cap 3 s is what the huge Retry-After gets.
    let env = [
        ("OUTBOXD_REQUEST_TIMEOUT", "1s"),
        ("OUTBOXD_RETRY_BASE_DELAY", "100ms"),
        ("OUTBOXD_RETRY_MAX_DELAY", "3s"),
    ];
    let _daemon = run_until(&db, &client, "delivered", 3, &env).await;

    for ((name, _, _), (hook, server)) in cases.iter().zip(hooks.iter().zip(&servers)) {
        let rows = attempts_of(&client, *hook).await;
        assert_eq!(rows.len(), 2, "{name}: {rows:?}");
        let status: i32 = name[..3].parse().unwrap();
        assert_eq!(
            (rows[0].status_code, rows[0].outcome.as_str()),
            (Some(status), "retry"),
            "{name}"
        );
        assert_eq!(
            (rows[1].status_code, rows[1].outcome.as_str()),
            (Some(200), "delivered"),
            "{name}"
        );
        let gap = rows[1].started_after;
        eprintln!("{name}: second attempt {gap:.2} s after the first");
        let (min, max) = if *name == "503-huge" {
            (2.9, 6.0) // capped at 3 s, not 11 days
        } else {
            (1.95, 4.0) // 2 s asked, far above the own 100 ms backoff
        };
        assert!(
            (min..max).contains(&gap),
            "{name}: retried {gap:.2} s later, want {min}..{max}"
        );
        assert_eq!(server.connections(), 2, "{name}");
    }
}

#[tokio::test]
async fn a_slow_webhook_does_not_hold_up_a_fast_one() {
    const EVENTS: i64 = 1000;
    let db = TestDb::new().await;
    let client = db.client().await;
    let fast = Receiver::ok().await;
    let slow = Receiver::start(|_| Reply::ok().after(Duration::from_secs(5))).await;
    let (fast_hook, _) = add_webhook(&client, "fast", &fast.url("/fast"), &["*"]).await;
    // The slow one only gets the second round of events.
    add_webhook(&client, "slow", &slow.url("/slow"), &["mixed.*"]).await;

    let env = [
        ("OUTBOXD_CONCURRENCY", "16"),
        ("OUTBOXD_WEBHOOK_CONCURRENCY", "4"),
        ("OUTBOXD_REQUEST_TIMEOUT", "10s"),
        ("OUTBOXD_LEASE", "30s"),
    ];
    let daemon = Daemon::start(BIN, &db.url, &env);
    ready(&[&daemon]).await;
    let delivered_to_fast = format!(
        "SELECT count(*) FROM outbox.deliveries WHERE webhook_id = {fast_hook} AND state = 'delivered'"
    );

    let started = Instant::now();
    publish_many(&client, "solo.event", EVENTS).await;
    wait_for_count(
        &client,
        &delivered_to_fast,
        EVENTS,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;
    let alone = started.elapsed();

    let started = Instant::now();
    publish_many(&client, "mixed.event", EVENTS).await;
    wait_for_count(
        &client,
        &delivered_to_fast,
        2 * EVENTS,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;
    let beside_slow = started.elapsed();
    let slow_delivered = count(
        &client,
        "SELECT count(*) FROM outbox.deliveries d JOIN outbox.webhooks w ON w.id = d.webhook_id
          WHERE w.name = 'slow' AND d.state = 'delivered'",
    )
    .await;
    eprintln!(
        "fast webhook, {EVENTS} events: {alone:.2?} alone, {beside_slow:.2?} beside the slow one \
         ({} slow requests started, {slow_delivered} finished)",
        slow.count()
    );
    assert!(
        slow.count() > 0,
        "the slow webhook was being served meanwhile"
    );
    let bound = alone * 2 + Duration::from_secs(2);
    assert!(
        beside_slow <= bound,
        "beside the slow webhook the fast one took {beside_slow:?}, alone {alone:?} (bound {bound:?})"
    );
    // Not waiting for the slow one to drain: dropping the daemon kills it.
}

#[tokio::test]
async fn a_webhook_at_its_slot_limit_is_served_again_as_slots_free_not_at_the_next_poll() {
    const EVENTS: i64 = 200;
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    add_webhook(&client, "one", &receiver.url("/one"), &["*"]).await;
    // Every claim can take 4 deliveries of the one webhook; were the next claim
    // left to the 10 s poll, 200 events would take over 8 minutes.
    let env = [
        ("OUTBOXD_CONCURRENCY", "16"),
        ("OUTBOXD_WEBHOOK_CONCURRENCY", "4"),
        ("OUTBOXD_POLL_INTERVAL", "10s"),
    ];
    let daemon = Daemon::start(BIN, &db.url, &env);
    ready(&[&daemon]).await;
    let started = Instant::now();
    publish_many(&client, "order.created", EVENTS).await;
    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        EVENTS,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;
    eprintln!(
        "{EVENTS} events, 4 at a time, 10 s poll: delivered in {:.2?}",
        started.elapsed()
    );
    assert_eq!(receiver.count(), EVENTS as usize);
}

/// `"hello"` gzip-compressed: an ordinary compressed body, NUL bytes and all.
const GZIP_HELLO: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
    0x00, 0x86, 0xa6, 0x10, 0x36, 0x05, 0x00, 0x00, 0x00,
];

#[tokio::test]
async fn a_body_with_nul_bytes_is_stored_safely_and_fails_no_other_webhooks_results() {
    const EVENTS: i64 = 100;
    let db = TestDb::new().await;
    let client = db.client().await;
    let healthy = Receiver::ok().await;
    let nul =
        b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nok\0\0yes".to_vec();
    let mut gzip = format!(
        "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-type: text/plain\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        GZIP_HELLO.len()
    )
    .into_bytes();
    gzip.extend_from_slice(GZIP_HELLO);
    let servers = answering_webhooks(&client, vec![("nul", nul), ("gzip", gzip)]).await;
    let (healthy_hook, _) = add_webhook(&client, "healthy", &healthy.url("/ok"), &["*"]).await;
    publish_many(&client, "order.created", EVENTS).await;

    let _daemon = run_until(&db, &client, "delivered", 3 * EVENTS, &[]).await;

    assert_eq!(
        healthy.count(),
        EVENTS as usize,
        "the healthy receiver got each event once"
    );
    let healthy_rows = attempts_of(&client, healthy_hook).await;
    assert_eq!(healthy_rows.len(), EVENTS as usize);
    for (name, hook, _) in &servers {
        let rows = attempts_of(&client, *hook).await;
        assert_eq!(rows.len(), EVENTS as usize, "{name}: one attempt per event");
        for r in &rows {
            assert_eq!(
                (r.status_code, r.outcome.as_str()),
                (Some(200), "delivered"),
                "{name}"
            );
            let body = r.response_body.as_deref().unwrap_or_default();
            assert!(!body.contains('\0'), "{name}: {body:?}");
            match *name {
                "nul" => assert_eq!(body, "[binary body, 7 bytes: not shown]", "{name}"),
                _ => assert_eq!(body, "[gzip-encoded body, 25 bytes: not shown]", "{name}"),
            }
        }
    }
}
