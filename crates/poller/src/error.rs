//! The poller's error type: what a caller can act on is which step failed.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("bad database configuration: {0}")]
    Config(String),
    #[error("no database connection available: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] refinery::Error),
}

impl Error {
    /// True when the database was unreachable rather than the query wrong:
    /// the caller retries instead of reporting a bug.
    pub fn is_connection(&self) -> bool {
        match self {
            Error::Pool(_) => true,
            Error::Db(e) => e.is_closed() || e.as_db_error().is_none(),
            _ => false,
        }
    }
}
