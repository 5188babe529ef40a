//! Hostile receivers: raw TCP listeners on loopback whose every byte the test
//! writes, so a receiver can misbehave as no real HTTP server would (never
//! answer, trickle, lie, reset, present an untrusted certificate), and which
//! count every connection, so a test can prove that nothing reached them.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A listener that hands each accepted connection, with its 0-based number,
/// to the test's handler.
pub struct RawServer {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawServer {
    /// Listens on `addr` (e.g. `127.0.0.1:0`).
    pub async fn start<F, Fut>(addr: &str, handler: F) -> RawServer
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        Self::serve(listener, handler)
    }

    /// Serves a listener the test set up itself (e.g. with small buffers).
    pub fn serve<F, Fut>(listener: TcpListener, handler: F) -> RawServer
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let addr = listener.local_addr().expect("a bound listener");
        let connections = Arc::new(AtomicUsize::new(0));
        let task = {
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let n = connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(handler(stream, n));
                }
            })
        };
        RawServer {
            addr,
            connections,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The `http://` URL of `path` here (IPv6 addresses come bracketed).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request: the head, then a `content-length` body.
/// Returns the head, or `None` if the peer closed first or sent no head
/// within 64 KiB.
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - end;
    while have < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        have += n;
    }
    Some(head)
}

/// Reads until the peer closes the connection (or it breaks), discarding
/// what arrives.
pub async fn wait_for_close<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stream.read(&mut chunk).await {
        if n == 0 {
            break;
        }
    }
}

/// Reads a request and answers it with `response` verbatim, then closes.
pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, response: &[u8]) {
    if read_request(stream).await.is_some() {
        let _ = stream.write_all(response).await;
        let _ = stream.shutdown().await;
    }
}

/// A plain `200 OK` that closes the connection.
pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

/// A TLS acceptor presenting a fresh self-signed certificate for 127.0.0.1
/// (valid, right name, but issued by nobody a client trusts). Made with the
/// `openssl` command; `Err` says why it could not be made, so a test can skip.
pub fn self_signed_acceptor() -> Result<TlsAcceptor, String> {
    let dir = std::env::temp_dir().join(format!(
        "outboxd-test-tls-{}-{}",
        std::process::id(),
        crate::free_port()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let result = make_acceptor(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

const OPENSSL_CONF: &str = "\
[req]
prompt = no
distinguished_name = dn
x509_extensions = server
[dn]
CN = outboxd-test
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
";

fn make_acceptor(dir: &std::path::Path) -> Result<TlsAcceptor, String> {
    let (key, cert, conf): (PathBuf, PathBuf, PathBuf) = (
        dir.join("key.pem"),
        dir.join("cert.pem"),
        dir.join("openssl.cnf"),
    );
    // A server certificate in every respect but its issuer (openssl's own
    // defaults would make a CA certificate, refused for another reason).
    std::fs::write(&conf, OPENSSL_CONF).map_err(|e| format!("writing {}: {e}", conf.display()))?;
    let output = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "2", "-config"])
        .arg(&conf)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .map_err(|e| format!("running openssl: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let certs = CertificateDer::pem_file_iter(&cert)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading the certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("reading the key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Whether this machine can listen and connect on IPv6 loopback (`[::1]`).
pub fn ipv6_loopback_works() -> Result<(), String> {
    let listener = std::net::TcpListener::bind("[::1]:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    Ok(())
}
