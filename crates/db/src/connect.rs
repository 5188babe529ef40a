//! Connection settings and the shared pool.
//!
//! `DATABASE_URL` wins; else the libpq variables (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGDATABASE`, `PGPASSWORD`) are read as psql would; else the local default.
//! TCP keepalives are on so that a dead server is noticed by the LISTEN
//! connection, which otherwise only ever reads.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::Error;

pub const DEFAULT_URL: &str = "postgres://postgres@localhost:5432/postgres";

/// Valid connection strings of both forms, for the error about an invalid
/// one (which is not repeated: it may hold a password).
const EXAMPLE_URL: &str = "postgres://user:password@host:5432/dbname";
const EXAMPLE_KEY_VALUE: &str = "'host=localhost port=5432 user=postgres dbname=app'";

/// Builds the connection settings from a URL or, when there is none, from the
/// libpq environment variables.
pub fn pg_config(url: Option<&str>) -> Result<tokio_postgres::Config, Error> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut config = match url {
        Some(url) => url.parse::<tokio_postgres::Config>().map_err(|e| {
            Error::Config(format!(
                "cannot parse the connection string ({e}); use a URL such as {EXAMPLE_URL} \
                     or key=value pairs such as {EXAMPLE_KEY_VALUE}"
            ))
        })?,
        None if ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"]
            .iter()
            .any(|k| env(k).is_some()) =>
        {
            let mut c = tokio_postgres::Config::new();
            let user = env("PGUSER").unwrap_or_else(|| "postgres".into());
            for host in env("PGHOST")
                .unwrap_or_else(|| "localhost".into())
                .split(',')
            {
                c.host(host);
            }
            let port = env("PGPORT").unwrap_or_else(|| "5432".into());
            c.port(port.parse().map_err(|_| {
                Error::Config(format!("PGPORT must be a port number, got {port:?}"))
            })?);
            c.dbname(env("PGDATABASE").unwrap_or_else(|| user.clone()));
            if let Some(p) = env("PGPASSWORD") {
                c.password(p);
            }
            c.user(user);
            c
        }
        None => DEFAULT_URL.parse().expect("the default URL parses"),
    };
    if config.get_application_name().is_none() {
        config.application_name("outboxd");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    Ok(config)
}

/// The daemon's session settings on top of `config`:
/// - `enable_seqscan = off`, `enable_bitmapscan = off`: every query of the
///   daemon is written for an index (claims, result writes, fan-out, the
///   sampler, retention), and the queue tables change faster than their
///   statistics. With plans from stale statistics PostgreSQL scanned the
///   whole of `outbox.deliveries` for each result batch, or read and sorted
///   every waiting event to claim 500 of them. These settings only make
///   other plans look expensive: a query with no usable index still runs.
/// - `jit = off`: those "expensive" plans would otherwise cross the JIT
///   thresholds, and a one-row read of `outbox.wakeup` or of the fan-out's
///   progress row would be JIT-compiled, at a cost far above the query's,
///   per statement (and per event in the insert trigger of a test event). No statement of the daemon is
///   long enough to gain from JIT.
/// - unless `synchronous_commit` is asked for, `synchronous_commit = off`: a
///   commit returns before its WAL is flushed to disk. Every write of the
///   daemon can be redone (a lost fan-out is fanned out again, a lost result
///   makes the lease expire and the delivery is sent again), so a crash of
///   PostgreSQL can cost a duplicate, never an event; and the daemon does
///   not wait for a disk flush per statement.
pub fn daemon_session(
    mut config: tokio_postgres::Config,
    synchronous_commit: bool,
) -> tokio_postgres::Config {
    let mut options: Vec<String> = config
        .get_options()
        .filter(|o| !o.trim().is_empty())
        .map(|o| vec![o.to_owned()])
        .unwrap_or_default();
    options.push("-c enable_seqscan=off -c enable_bitmapscan=off -c jit=off".into());
    if !synchronous_commit {
        options.push("-c synchronous_commit=off".into());
    }
    config.options(options.join(" "));
    config
}

/// The pool of connections that claims and writes results. A connection that
/// broke (database restart) is dropped at recycle and a new one made.
pub fn connect_pool(config: tokio_postgres::Config, size: usize) -> Result<Pool, Error> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| Error::Config(e.to_string()))
}

/// Describes where a config points, without its password, for logs.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{}:{}/{}",
        config.get_user().unwrap_or("?"),
        host,
        port,
        config.get_dbname().unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_connection_string_is_answered_with_examples_of_good_ones() {
        let e = pg_config(Some("postgres://user:secret@host:notaport/db"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("postgres://user:password@host:5432/dbname"),
            "{e}"
        );
        assert!(e.contains("host=localhost port=5432"), "{e}");
        assert!(!e.contains("secret"), "the password is not repeated: {e}");
        for good in [
            EXAMPLE_URL,
            "host=localhost port=5432 user=postgres dbname=app",
        ] {
            assert!(pg_config(Some(good)).is_ok(), "{good}");
        }
    }
}
