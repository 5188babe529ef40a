//! A PostgreSQL cluster of the fault tests' own, which they may stop and
//! restart without disturbing the shared server on 5432 that every other
//! test uses in parallel.
//!
//! It is a Debian `postgresql-common` cluster (`pg_createcluster`,
//! `pg_ctlcluster`), created on first use and left running. A test holds
//! [`ClusterGuard`], an exclusive file lock, for as long as it uses the
//! cluster: creation is then safe when two test binaries start at once, and
//! two tests never restart it under each other.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;

/// Where `postgresql-common` keeps cluster configurations.
const CONF_ROOT: &str = "/etc/postgresql";

/// A cluster on 127.0.0.1 that only the holder of this guard stops or
/// restarts. Dropping the guard releases the lock; the cluster keeps running.
pub struct ClusterGuard {
    pub version: String,
    pub name: String,
    pub port: u16,
    _lock: std::fs::File,
}

/// Why the cluster cannot be had: the PostgreSQL server tools are absent.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The newest PostgreSQL major version `postgresql-common` knows, if the
/// server tools are installed.
fn installed_version() -> Result<String, Unavailable> {
    for tool in ["pg_createcluster", "pg_ctlcluster"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(Unavailable(format!(
                "{tool} is not installed (Debian's postgresql-common); \
                 apt-get install postgresql to run this test"
            )));
        }
    }
    let mut versions: Vec<(u32, String)> = std::fs::read_dir(CONF_ROOT)
        .map_err(|e| Unavailable(format!("{CONF_ROOT}: {e}")))?
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            Some((name.split('.').next()?.parse().ok()?, name))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, v)| v)
        .ok_or_else(|| Unavailable(format!("no PostgreSQL version under {CONF_ROOT}")))
}

/// Runs a command; panics with its output unless it exits with one of `ok`.
async fn run(program: &str, args: &[&str], ok: &[i32]) -> i32 {
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let code = out.status.code().unwrap_or(-1);
    assert!(
        ok.contains(&code),
        "{program} {} exited with {code}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    code
}

impl ClusterGuard {
    /// Takes the cluster `name` for this test: creates it on `port` if it
    /// does not exist (trust authentication, not started at boot), starts it
    /// if it is down, and waits until it accepts connections. Waits for any
    /// other holder first. `Err` only when the server tools are absent.
    pub async fn acquire(name: &str, port: u16) -> Result<ClusterGuard, Unavailable> {
        let version = installed_version()?;
        let lock_path = std::env::temp_dir().join(format!("outboxd-testkit-cluster-{name}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", lock_path.display()));
        // flock: exclusive between processes and between handles in one process.
        let lock = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .expect("the lock task")
            .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));

        let conf = Path::new(CONF_ROOT).join(&version).join(name);
        let port = if conf.join("postgresql.conf").is_file() {
            configured_port(&conf).unwrap_or(port)
        } else {
            eprintln!("creating PostgreSQL cluster {version}/{name} on port {port}");
            let port_arg = port.to_string();
            run(
                "pg_createcluster",
                &[
                    "--port",
                    &port_arg,
                    "--start-conf",
                    "manual",
                    &version,
                    name,
                    "--",
                    "--auth-host=trust",
                    "--auth-local=trust",
                ],
                &[0],
            )
            .await;
            port
        };
        let guard = ClusterGuard {
            version,
            name: name.to_owned(),
            port,
            _lock: lock,
        };
        if !guard.is_running().await {
            guard.start().await;
        }
        guard.wait_ready(Duration::from_secs(30)).await;
        Ok(guard)
    }

    /// The server's `postgres` database, as `TestDb::on` wants it.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub async fn is_running(&self) -> bool {
        // 0: running, 3: not running (pg_ctl status).
        run(
            "pg_ctlcluster",
            &[&self.version, &self.name, "status"],
            &[0, 3, 4],
        )
        .await
            == 0
    }

    /// Starts the server and returns once it accepts connections.
    pub async fn start(&self) {
        self.ctl("start").await;
        self.wait_ready(Duration::from_secs(30)).await;
    }

    /// Stops the server in fast mode: clients are disconnected at once and
    /// open transactions rolled back, as in a real restart.
    pub async fn stop(&self) {
        self.ctl("stop").await;
    }

    async fn ctl(&self, action: &str) {
        run(
            "pg_ctlcluster",
            &[
                "--skip-systemctl-redirect",
                &self.version,
                &self.name,
                action,
                "-m",
                "fast",
            ],
            &[0],
        )
        .await;
    }

    /// The server log, for failure messages.
    pub fn log_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/var/log/postgresql/postgresql-{}-{}.log",
            self.version, self.name
        ))
    }

    async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let url = self.url();
        loop {
            match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    let conn = tokio::spawn(conn);
                    let ok = client.simple_query("SELECT 1").await.is_ok();
                    drop(client);
                    let _ = conn.await;
                    if ok {
                        return;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "cluster {}/{} accepts connections but no queries",
                        self.version,
                        self.name
                    );
                }
                Err(e) if Instant::now() >= deadline => panic!(
                    "cluster {}/{} on port {} not ready after {timeout:?}: {e} (see {})",
                    self.version,
                    self.name,
                    self.port,
                    self.log_path().display()
                ),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The `port = N` line of an existing cluster's postgresql.conf.
fn configured_port(conf_dir: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(conf_dir.join("postgresql.conf")).ok()?;
    text.lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        if key.trim() != "port" {
            return None;
        }
        value.split('#').next()?.trim().parse().ok()
    })
}
