//! What a client gets from a listener under `outboxd_serve::serve`: half-sent
//! headers are closed after the header timeout, and a full listener still
//! serves a client that sends its request at once.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

async fn start(limits: outboxd_serve::Limits) -> (std::net::SocketAddr, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = hyper::service::service_fn(|_req| async {
        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
            b"ok",
        ))))
    });
    let shutdown = CancellationToken::new();
    tokio::spawn(outboxd_serve::serve(
        "test",
        listener,
        service,
        limits,
        shutdown.clone(),
    ));
    (addr, shutdown)
}

async fn half_open(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    s
}

/// True when the server closed the connection (EOF or reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

async fn get(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut text)).await;
    text
}

#[tokio::test]
async fn a_half_sent_header_is_closed_after_the_header_timeout() {
    let (addr, _stop) = start(outboxd_serve::Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let mut s = half_open(addr).await;
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let (addr, _stop) = start(outboxd_serve::Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn a_full_listener_closes_idle_connections_and_serves_a_newcomer() {
    let (addr, _stop) = start(outboxd_serve::Limits {
        max_connections: 8,
        header_read_timeout: Duration::from_secs(600),
        ..Default::default()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(half_open(addr).await);
    }
    assert!(get(addr).await.starts_with("HTTP/1.1 200"));
    // All but the newest few were closed to make room.
    let mut closed = 0;
    for s in &mut idle {
        if closed_within(s, Duration::from_millis(200)).await {
            closed += 1;
        }
    }
    assert!(
        closed >= 50 - 8,
        "only {closed} of 50 idle connections closed"
    );
}
