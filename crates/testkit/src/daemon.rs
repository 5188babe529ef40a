//! The daemon as a real child process: started against a test database with
//! fast polling, its log kept in a file, stoppable with SIGTERM or SIGKILL.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct Daemon {
    child: Child,
    pub metrics_port: u16,
    pub log_path: PathBuf,
}

impl Daemon {
    /// Starts `outboxd run` (`bin` is `env!("CARGO_BIN_EXE_outboxd")`) with
    /// test-friendly settings; `env` adds or overrides variables.
    pub fn start(bin: &str, database_url: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with_nofile(bin, database_url, env, None)
    }

    /// As `start`, with the descriptor limit (soft and hard) set to `nofile`
    /// when given, as `ulimit -n` would before starting it.
    pub fn start_with_nofile(
        bin: &str,
        database_url: &str,
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Daemon {
        let metrics_port = crate::free_port();
        let log_path = std::env::temp_dir().join(format!(
            "outboxd-test-{}-{}.log",
            std::process::id(),
            metrics_port
        ));
        let log = std::fs::File::create(&log_path).expect("creating the daemon log");
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("OUTBOXD_LISTEN", format!("127.0.0.1:{metrics_port}"))
            .env("OUTBOXD_POLL_INTERVAL", "100ms")
            .env("OUTBOXD_RETRY_BASE_DELAY", "100ms")
            .env("OUTBOXD_RETRY_MAX_DELAY", "1s")
            .env("OUTBOXD_REQUEST_TIMEOUT", "2s")
            .env("OUTBOXD_LEASE", "5s")
            .env("OUTBOXD_ALLOW_PRIVATE_TARGETS", "127.0.0.0/8,::1/128")
            // Tests of retries script failures on purpose; the breaker's own
            // tests turn it on.
            .env("OUTBOXD_BREAKER_THRESHOLD", "0")
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(n) = nofile {
            let limit = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            // SAFETY: between fork and exec only setrlimit runs, which is
            // async-signal-safe and reads the struct copied into the child.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting outboxd");
        Daemon {
            child,
            metrics_port,
            log_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the daemon is running")
    }

    /// Starts the daemon with its admin console on a free loopback port
    /// (`OUTBOXD_ADMIN_LISTEN`, and `OUTBOXD_ADMIN_TOKEN` when given) and
    /// waits until the console answers; returns the console's port too.
    pub async fn start_with_console(
        bin: &str,
        database_url: &str,
        token: Option<&str>,
        env: &[(&str, &str)],
    ) -> (Daemon, u16) {
        let port = crate::free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec![("OUTBOXD_ADMIN_LISTEN", listen.as_str())];
        if let Some(t) = token {
            all.push(("OUTBOXD_ADMIN_TOKEN", t));
        }
        all.extend_from_slice(env);
        let daemon = Daemon::start(bin, database_url, &all);
        let up = crate::wait_until(Duration::from_secs(20), || async {
            http_request(port, "GET", "/api/openapi.json", &[], "")
                .await
                .is_some()
        })
        .await;
        assert!(
            up,
            "the admin console did not come up:\n{}",
            daemon.plain_log()
        );
        (daemon, port)
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        signal(self.pid(), "-TERM");
    }

    /// SIGKILL: the crash the tests want, no chance to clean up.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("sending SIGKILL");
        let _ = self.child.wait().await;
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The log without terminal colour codes, for matching and quoting lines.
    pub fn plain_log(&self) -> String {
        strip_ansi(&self.log())
    }

    /// Whether the log has a failed delivery attempt with this reason.
    pub fn logged_failure(&self, reason: &str) -> bool {
        logged_failure(&self.log(), reason)
    }

    pub fn metrics_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.metrics_port, path)
    }

    /// GETs a path on the operations listener: (status, body); None if it
    /// does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.metrics_port, path).await
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::env::var_os("OUTBOXD_TEST_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {sig} {pid} failed");
}

/// A minimal HTTP/1.1 GET on 127.0.0.1, enough for probes and scrapes.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path, &[], "")
        .await
        .map(|r| (r.status, r.body))
}

/// An answer of `http_request`.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A minimal HTTP/1.1 request on 127.0.0.1 (`connection: close`, body sent
/// with its length); None if nothing answers.
pub async fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<HttpAnswer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("host: 127.0.0.1:{port}\r\n"));
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).await.ok()?;
    s.write_all(body.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(HttpAnswer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// `text` without terminal colour codes. The daemon writes none unless its
/// stderr is a terminal, but a person running the tests may force them.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence ends with its first letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a daemon log has a failed delivery attempt with this reason.
pub fn logged_failure(log: &str, reason: &str) -> bool {
    strip_ansi(log)
        .lines()
        .any(|l| l.contains("delivery attempt failed") && l.contains(&format!("reason={reason}")))
}
