//! A listener that cannot accept (the process is out of descriptors) pauses
//! between tries instead of spinning, and serves the waiting clients once
//! descriptors are free. Its own test binary: it lowers the process's
//! descriptor limit and takes every descriptor left.

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio_util::sync::CancellationToken;

fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_accept_loop_waits_and_recovers() {
    let low = libc::rlimit {
        rlim_cur: 256,
        rlim_max: 256,
    };
    // SAFETY: setrlimit reads the struct it is given.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    // Waiting in the backlog, each with a whole request.
    let mut clients: Vec<std::net::TcpStream> = (0..5)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .unwrap();
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            c
        })
        .collect();
    let mut hog = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hog.push(f);
    }

    let service = hyper::service::service_fn(|_req| async {
        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
            b"ok",
        ))))
    });
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(outboxd_serve::serve(
        "test",
        listener,
        service,
        outboxd_serve::Limits::default(),
        shutdown.clone(),
    ));

    let before = cpu_time();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_time() - before;
    assert!(
        spent < Duration::from_millis(500),
        "the accept loop used {spent:?} of CPU in 2 s while out of descriptors"
    );

    drop(hog);
    let answers = tokio::task::spawn_blocking(move || {
        clients
            .iter_mut()
            .map(|c| {
                let mut text = String::new();
                let _ = c.read_to_string(&mut text);
                text
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for a in &answers {
        assert!(a.starts_with("HTTP/1.1 200"), "answer: {a:?}");
    }
    shutdown.cancel();
    server.await.unwrap();
}
