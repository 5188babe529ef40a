//! The database layer's error type: what a caller can act on is which step failed,
//! and whether waiting for the database would help.
//!
//! tokio-postgres and deadpool print only their own layer ("error
//! connecting to server", "db error") and keep the reason in the source;
//! logs need the reason, so the messages here carry the whole chain, once.

use std::fmt::Write as _;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("bad database configuration: {0}")]
    Config(String),
    #[error("no database connection available: {}", with_causes(.0))]
    Pool(deadpool_postgres::PoolError),
    #[error("database error: {}", with_causes(.0))]
    Db(tokio_postgres::Error),
    #[error("migration failed: {}", with_causes(.0))]
    Migrate(refinery::Error),
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Error::Pool(e)
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::Db(e)
    }
}

impl From<refinery::Error> for Error {
    fn from(e: refinery::Error) -> Self {
        Error::Migrate(e)
    }
}

impl Error {
    /// True when the database was unreachable or not accepting work rather
    /// than the query wrong: the caller waits and retries instead of giving
    /// up. A server starting, shutting down or restarting says so with an
    /// error of its own (SQLSTATE 57P01-57P03), as it does when it has no
    /// connection slot left (53300); those are waited out too.
    pub fn is_connection(&self) -> bool {
        match self {
            // A connection the pool could not make says why, as a direct one does.
            Error::Pool(deadpool_postgres::PoolError::Backend(e)) => is_transient(e),
            Error::Pool(_) => true,
            Error::Db(e) => is_transient(e),
            Error::Migrate(e) => match e.kind() {
                refinery::error::Kind::Connection(_, source) => source
                    .downcast_ref::<tokio_postgres::Error>()
                    .is_some_and(is_transient),
                _ => false,
            },
            Error::Config(_) => false,
        }
    }

    /// The SQLSTATE when the server refused the statement for the values in
    /// it: a data exception (class 22, such as a NUL in text), an integrity
    /// constraint (23) or a value too large (54). Sending the same values
    /// again fails again; other rows sent with them need not.
    pub fn data_error_code(&self) -> Option<&str> {
        let Error::Db(e) = self else { return None };
        let code = e.as_db_error()?.code().code();
        ["22", "23", "54"]
            .iter()
            .any(|class| code.starts_with(class))
            .then_some(code)
    }

    /// The statement referred to a row that is gone (SQLSTATE 23503,
    /// `foreign_key_violation`): a webhook deleted meanwhile, say.
    pub fn is_missing_reference(&self) -> bool {
        let Error::Db(e) = self else { return false };
        e.as_db_error()
            .is_some_and(|db| db.code() == &tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION)
    }
}

/// SQLSTATEs a server sends when it cannot serve now but will later.
const TRANSIENT: [&str; 4] = ["57P01", "57P02", "57P03", "53300"];

fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        // No server message: the socket failed, closed or timed out.
        None => true,
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || TRANSIENT.contains(&code)
        }
    }
}

/// An error and its causes on one line, a cause left out when the message
/// before it already says it.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            let _ = write!(text, ": {more}");
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_says_why() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config: tokio_postgres::Config = format!("postgres://postgres@127.0.0.1:{port}/x")
            .parse()
            .unwrap();
        let e = rt
            .block_on(config.connect(tokio_postgres::NoTls))
            .map(|_| ())
            .unwrap_err();
        let e = Error::from(e);
        assert!(e.is_connection());
        let text = e.to_string();
        assert!(
            text.starts_with("database error: error connecting to server: ")
                && text.to_lowercase().contains("refused"),
            "{text}"
        );
    }
}
