//! A TCP proxy on 127.0.0.1 between a daemon and its database, that a test
//! makes misbehave as a bad network would: `stall` stops every byte both
//! ways (connections stay open, nothing arrives) and `cut` closes every
//! connection at once. New connections are accepted throughout.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    stalled: Arc<watch::Sender<bool>>,
    cuts: Arc<watch::Sender<u64>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Forwards connections on a free port to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let addr = listener.local_addr().expect("a bound proxy");
        let stalled = Arc::new(watch::channel(false).0);
        let cuts = Arc::new(watch::channel(0u64).0);
        let task = {
            let (stalled, cuts) = (stalled.clone(), cuts.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let (stalled, cut) = (stalled.subscribe(), cuts.subscribe());
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        forward(client, server, stalled, cut).await;
                    });
                }
            })
        };
        Proxy {
            addr,
            stalled,
            cuts,
            task,
        }
    }

    /// `postgres://` URL of database `db` through the proxy.
    pub fn postgres_url(&self, db: &str) -> String {
        format!("postgres://postgres@{}/{db}", self.addr)
    }

    /// Stops (true) or resumes (false) every byte through the proxy.
    pub fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }

    /// Closes every connection open now.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    stalled: watch::Receiver<bool>,
    mut cut: watch::Receiver<u64>,
) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, stalled.clone());
    let down = pump(sr, cw, stalled);
    cut.mark_unchanged();
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.changed() => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
