//! Command line and configuration: every option is a flag mirrored by an
//! environment variable, with the defaults docs/configuration.md lists.
//!
//! Values are parsed by small functions whose errors say what is accepted;
//! `main` prefixes them with the variable's name, so a bad value stops
//! start-up with a message a person can act on.

mod commands;
mod run;
#[cfg(test)]
mod tests;
mod values;

pub use commands::*;
pub use run::*;
pub use values::*;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "outboxd",
    version,
    about = "Delivers PostgreSQL outbox events to webhooks: signed, retried, logged.",
    long_about = None,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (applies migrations first unless --no-migrate).
    Run(Box<RunArgs>),
    /// Apply the database migrations and exit.
    Migrate(DbArgs),
    /// A first look: a demo database, a sample receiver, events delivered before your eyes.
    Demo(DemoArgs),
    /// A sample receiver that prints each delivery and whether its signature verifies.
    Receiver(ReceiverArgs),
    /// Manage webhooks: list, add, enable, disable, rotate-secret, remove.
    Webhooks(WebhooksArgs),
    /// The event catalog (outbox.event_types): list, add, remove.
    EventTypes(EventTypesArgs),
    /// Send one signed test request to a webhook now, from this process, and record it.
    TestEvent(TestEventArgs),
    /// The recent delivery log, or `deliveries show <id>` for one delivery.
    Deliveries(DeliveriesArgs),
    /// Put deliveries back in the queue with a fresh attempt budget.
    Replay(ReplayArgs),
    /// Ordering keys of ordered webhooks: halted (list), skip.
    Keys(KeysArgs),
    /// Queue depth, lag, and per-webhook failures over the last hour.
    Stats(StatsArgs),
    /// Print a link that signs a tenant's customer in to its portal (once, until it expires).
    PortalLink(PortalLinkArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// PostgreSQL connection string; else the libpq PGHOST, PGPORT, PGUSER,
    /// PGDATABASE, PGPASSWORD; else postgres://postgres@localhost:5432/postgres
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
