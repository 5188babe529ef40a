//! The database stage of outboxd: everything that talks SQL.
//!
//! `migrate` applies the embedded schema, `listener` keeps the LISTEN
//! connection, `dispatch` fans events out into deliveries (`handoff` passes
//! those it claims at once to the deliverer), `claim` leases due
//! deliveries (`reaper` puts expired leases back), `rate` shares rate
//! limits between replicas, `results` writes outcomes back, `webhooks` caches
//! subscriptions, `health` makes circuit-breaker pauses durable (`deferred`
//! keeps a paused webhook's new events compact until it recovers), `janitor`
//! deletes what is older than the retention (`partitions` retires the
//! delivery log by whole partitions), `blocked` retries what the SSRF guard
//! refused when a daemon starts. `dedicated` runs the fan-out on a
//! thread of its own.
//! Each query is a `const` next to the one function that runs it.

pub mod blocked;
pub mod claim;
pub mod connect;
pub mod dedicated;
pub mod deferred;
pub mod dispatch;
mod error;
mod every;
pub mod handoff;
pub mod health;
pub mod janitor;
pub mod listener;
pub mod migrate;
pub mod partitions;
pub mod rate;
pub mod reaper;
pub mod results;
pub mod sampler;
pub mod webhooks;

pub use claim::Claimed;
pub use connect::{connect_pool, pg_config};
pub use deferred::DeferredSweeper;
pub use dispatch::Dispatcher;
pub use error::Error;
pub use handoff::{Handed, Handoff, Room};
pub use janitor::{Deleted, Janitor};
pub use listener::Listener;
pub use partitions::PartitionKeeper;
pub use reaper::{Reaped, Reaper};
pub use results::{AttemptRecord, Recorded};
pub use sampler::Sampler;
pub use webhooks::{Webhook, WebhookCache};

/// The pool type every stage shares.
pub type Pool = deadpool_postgres::Pool;

/// One connection taken from the pool; back in the pool when dropped.
pub type PooledClient = deadpool_postgres::Object;
