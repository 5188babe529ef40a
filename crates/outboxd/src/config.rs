//! Command line and configuration: every option is a flag mirrored by an
//! environment variable, with the defaults docs/configuration.md lists.
//!
//! Values are parsed by small functions whose errors say what is accepted;
//! `main` prefixes them with the variable's name, so a bad value stops
//! start-up with a message a person can act on.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use outboxd_core::address::Allowed;
use outboxd_core::DeliveryState;

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
    /// Queue depth, lag, and per-webhook failures over the last hour.
    Stats(StatsArgs),
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

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Address serving /metrics, /healthz and /readyz
    #[arg(long, env = "OUTBOXD_LISTEN", default_value = "127.0.0.1:9187", value_parser = parse_addr, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// The most rows taken per claim (events and deliveries); the fan-out takes fewer while the deliverer has room for fewer
    #[arg(long, env = "OUTBOXD_BATCH_SIZE", default_value = "500", value_parser = count(1, 10_000), value_name = "N")]
    pub batch_size: u64,

    /// HTTP requests in flight, all webhooks together
    #[arg(long, env = "OUTBOXD_CONCURRENCY", default_value = "256", value_parser = count(1, 100_000), value_name = "N")]
    pub concurrency: u64,

    /// HTTP requests in flight to one webhook
    #[arg(long, env = "OUTBOXD_WEBHOOK_CONCURRENCY", default_value = "32", value_parser = count(1, 100_000), value_name = "N")]
    pub webhook_concurrency: u64,

    /// Safety-net poll when no notification arrives
    #[arg(long, env = "OUTBOXD_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub poll_interval: Duration,

    /// How long a claimed delivery stays reserved for this worker
    #[arg(long, env = "OUTBOXD_LEASE", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub lease: Duration,

    /// Whole-request timeout (connect, send, response and body)
    #[arg(long, env = "OUTBOXD_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,

    /// Attempts per delivery before it is marked failed
    #[arg(long, env = "OUTBOXD_MAX_ATTEMPTS", default_value = "17", value_parser = count(1, 1000), value_name = "N")]
    pub max_attempts: u64,

    /// Delay after the first failed attempt; doubles with each further one
    #[arg(long, env = "OUTBOXD_RETRY_BASE_DELAY", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub retry_base_delay: Duration,

    /// Longest delay between two attempts
    #[arg(long, env = "OUTBOXD_RETRY_MAX_DELAY", default_value = "6h", value_parser = parse_duration, value_name = "DURATION")]
    pub retry_max_delay: Duration,

    /// Age after which finished events and attempts are deleted
    #[arg(long, env = "OUTBOXD_RETENTION", default_value = "7d", value_parser = parse_duration, value_name = "DURATION")]
    pub retention: Duration,

    /// Comma-separated CIDRs that may be delivered to despite being private
    /// (empty: none)
    #[arg(long, env = "OUTBOXD_ALLOW_PRIVATE_TARGETS", value_parser = parse_allow_list, default_value_t, hide_default_value = true, value_name = "CIDRS[:PORT]")]
    pub allow_private_targets: AllowList,

    /// Log format: text or json
    #[arg(
        long,
        env = "OUTBOXD_LOG_FORMAT",
        default_value = "text",
        ignore_case = true,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    /// Consecutive failed attempts that pause a webhook (circuit breaker); 0 turns it off
    #[arg(long, env = "OUTBOXD_BREAKER_THRESHOLD", default_value = "10", value_parser = count(0, 1_000_000), value_name = "N")]
    pub breaker_threshold: u64,

    /// First pause of a failing webhook; doubled after each failed probe, up to 20 times this
    #[arg(long, env = "OUTBOXD_BREAKER_COOLDOWN", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub breaker_cooldown: Duration,

    /// Disable a webhook that has had no successful delivery for this long while failing; `off` never disables
    #[arg(long, env = "OUTBOXD_DISABLE_FAILING_AFTER", default_value = "5d", value_parser = parse_duration_or_off, value_name = "DURATION")]
    pub disable_failing_after: Duration,

    /// Database connections in the pool (the LISTEN connection is one more)
    #[arg(long, env = "OUTBOXD_DB_POOL_SIZE", default_value = "8", value_parser = count(2, 1000), value_name = "N")]
    pub db_pool_size: u64,

    /// On SIGTERM/SIGINT, how long requests in flight may take to finish
    #[arg(long, env = "OUTBOXD_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Duration,

    /// Do not apply migrations at start (true/false, yes/no, on/off, 1/0)
    #[arg(long, env = "OUTBOXD_NO_MIGRATE", value_parser = parse_bool, action = clap::ArgAction::Set,
          num_args = 0..=1, default_value = "false", default_missing_value = "true", value_name = "BOOL")]
    pub no_migrate: bool,

    /// Whether the daemon's own writes (fan-out, claims, results) wait for
    /// the WAL flush: `off` saves a disk flush per statement; after a crash
    /// of PostgreSQL itself the last fraction of a second of that
    /// bookkeeping may be lost, and those deliveries are sent again (never
    /// lost). The application's inserts are not affected.
    #[arg(long, env = "OUTBOXD_SYNCHRONOUS_COMMIT", default_value = "off", value_parser = parse_bool, action = clap::ArgAction::Set, value_name = "on|off")]
    pub synchronous_commit: bool,

    /// Address of the admin console and JSON API (off unless set; empty or `off` is off too)
    #[arg(long, env = "OUTBOXD_ADMIN_LISTEN", value_parser = parse_optional_addr, default_value_t, hide_default_value = true, value_name = "ADDR")]
    pub admin_listen: OptionalAddr,

    /// Token for the admin console and API; required unless OUTBOXD_ADMIN_LISTEN is a loopback address
    #[arg(long, env = "OUTBOXD_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_token, value_name = "TOKEN")]
    pub admin_token: Option<Token>,

    /// File holding the admin token (read at start; a trailing newline is ignored), so it shows neither in `ps` nor in the environment
    #[arg(
        long,
        env = "OUTBOXD_ADMIN_TOKEN_FILE",
        value_name = "PATH",
        conflicts_with = "admin_token"
    )]
    pub admin_token_file: Option<std::path::PathBuf>,
}

/// A secret given on the command line or in the environment; its Debug
/// form is redacted so no log of the configuration shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

fn parse_token(s: &str) -> Result<Token, String> {
    let t = s.trim();
    if t.len() < 16 {
        return Err(
            "is too short; use at least 16 characters, e.g. from `openssl rand -hex 24`".into(),
        );
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace".into());
    }
    Ok(Token(t.to_owned()))
}

impl RunArgs {
    /// Reads `OUTBOXD_ADMIN_TOKEN_FILE` into `admin_token`, if set.
    pub fn read_admin_token_file(&mut self) -> Result<(), String> {
        let Some(path) = &self.admin_token_file else {
            return Ok(());
        };
        let setting = format!("OUTBOXD_ADMIN_TOKEN_FILE ({})", path.display());
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{setting}: cannot read the token: {e}"))?;
        let token = parse_token(text.trim_end_matches(['\n', '\r']))
            .map_err(|reason| format!("{setting}: the token {reason}"))?;
        self.admin_token = Some(token);
        Ok(())
    }

    /// The admin listener's rule: without a token only loopback may be used,
    /// since anyone who reaches the listener could otherwise add webhooks.
    pub fn check_admin(&self) -> Result<(), String> {
        match (self.admin_listen.0, &self.admin_token) {
            (Some(addr), None) if !addr.ip().is_loopback() => Err(format!(
                "OUTBOXD_ADMIN_TOKEN (or OUTBOXD_ADMIN_TOKEN_FILE) must be set when OUTBOXD_ADMIN_LISTEN ({addr}) is not a loopback address: the admin console and API would be open to anyone who reaches it"
            )),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Name of the demo database (dropped and created anew)
    #[arg(long, default_value = "outboxd_demo", value_name = "NAME")]
    pub database: String,

    /// Events to publish
    #[arg(long, default_value = "6", value_parser = count(1, 100_000), value_name = "N")]
    pub events: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ReceiverArgs {
    /// Address to listen on
    #[arg(long, env = "RECEIVER_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_addr, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Webhook secret (whsec_...) to verify signatures with
    #[arg(
        long,
        env = "RECEIVER_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub secret: Option<String>,
}

/// `--json` for the commands that print tables.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Print JSON (one array) instead of a table, for scripts
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    pub command: WebhooksCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum WebhooksCommand {
    /// Every webhook with its recent delivery health.
    List(ListArgs),
    /// Add a webhook; prints its id and its secret (shown this once).
    Add(WebhookAddArgs),
    /// Enable a webhook: new events reach it again.
    Enable(WebhookRefArgs),
    /// Disable a webhook: its waiting deliveries are cancelled.
    Disable(WebhookDisableArgs),
    /// New secret; the old one keeps signing during the overlap window.
    RotateSecret(WebhookRotateArgs),
    /// Delete a webhook; its waiting deliveries are cancelled.
    Remove(WebhookRefArgs),
}

#[derive(Debug, Clone, Args)]
pub struct WebhookAddArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// A name people recognise, e.g. "Billing service"
    #[arg(long, value_name = "NAME")]
    pub name: String,

    /// Endpoint URL, http:// or https://
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// Event types to deliver, comma-separated: exact (payment.received), prefix (payment.*) or *
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "PATTERNS",
        default_value = "*"
    )]
    pub events: Vec<String>,

    /// Extra request header, NAME=VALUE (repeatable)
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,

    /// At most this many requests per second, all replicas together (default: no limit)
    #[arg(long, value_name = "PER_SECOND")]
    pub rate_limit: Option<i64>,

    /// Print the new webhook as JSON
    #[arg(long)]
    pub json: bool,

    /// The daemon's allowlist of private targets (as for `run`), to warn
    /// when the URL would be refused
    #[arg(long, env = "OUTBOXD_ALLOW_PRIVATE_TARGETS", value_parser = parse_allow_list, default_value_t, hide_default_value = true, value_name = "CIDRS")]
    pub allow_private_targets: AllowList,
}

impl AllowList {
    /// The SSRF guard's policy with this allowlist.
    pub fn policy(&self) -> outboxd_deliverer::TargetPolicy {
        outboxd_deliverer::TargetPolicy {
            enabled: true,
            allowed: self.0.clone(),
        }
    }
}

/// A webhook by id or by name.
#[derive(Debug, Clone, Args)]
pub struct WebhookRefArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Webhook id or name
    #[arg(value_name = "WEBHOOK")]
    pub webhook: String,
}

#[derive(Debug, Clone, Args)]
pub struct WebhookDisableArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Webhook id or name
    #[arg(value_name = "WEBHOOK")]
    pub webhook: String,

    /// Why, kept in disabled_reason
    #[arg(long, default_value = "disabled by an admin", value_name = "TEXT")]
    pub reason: String,
}

#[derive(Debug, Clone, Args)]
pub struct WebhookRotateArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Webhook id or name
    #[arg(value_name = "WEBHOOK")]
    pub webhook: String,

    /// How long the old secret keeps signing too (0 for not at all)
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub overlap: String,
}

#[derive(Debug, Clone, Args)]
pub struct EventTypesArgs {
    #[command(subcommand)]
    pub command: EventTypesCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum EventTypesCommand {
    /// The catalog, with descriptions and example payloads.
    List(ListArgs),
    /// Add an event type (or, with --replace, update it).
    Add(EventTypeAddArgs),
    /// Remove an event type from the catalog (subscriptions are not touched).
    Remove(EventTypeRemoveArgs),
}

#[derive(Debug, Clone, Args)]
pub struct EventTypeAddArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Event type, lowercase [a-z0-9_.:-], e.g. payment.received
    #[arg(value_name = "NAME")]
    pub name: String,

    /// What the event means, for people subscribing to it
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub description: String,

    /// Example payload (JSON), also sent by test events of this type
    #[arg(long, value_name = "JSON")]
    pub example: Option<String>,

    /// Update the entry if it exists
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, Clone, Args)]
pub struct EventTypeRemoveArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Event type to remove
    #[arg(value_name = "NAME")]
    pub name: String,
}

#[derive(Debug, Clone, Args)]
pub struct TestEventArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Webhook id or name
    #[arg(long, value_name = "WEBHOOK")]
    pub webhook: String,

    /// Event type; the payload is its catalog example, else {"test": true}
    #[arg(long, default_value = "webhook.test", value_name = "TYPE")]
    pub event_type: String,

    /// Whole-request timeout
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub timeout: String,

    /// Comma-separated CIDRs that may be delivered to despite being private (as for `run`)
    #[arg(long, env = "OUTBOXD_ALLOW_PRIVATE_TARGETS", value_parser = parse_allow_list, default_value_t, hide_default_value = true, value_name = "CIDRS[:PORT]")]
    pub allow_private_targets: AllowList,
}

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeliveriesArgs {
    #[command(subcommand)]
    pub command: Option<DeliveriesCommand>,

    #[command(flatten)]
    pub filter: DeliveriesFilter,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DeliveriesCommand {
    /// One delivery: its event, every attempt and the stored response bodies.
    Show(DeliveryShowArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DeliveriesFilter {
    #[command(flatten)]
    pub db: DbArgs,

    /// Only this webhook (id or name)
    #[arg(long, value_name = "WEBHOOK")]
    pub webhook: Option<String>,

    /// Only deliveries now in this state: pending, in_flight, delivered, failed or cancelled
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub state: Option<DeliveryState>,

    /// Only this event type
    #[arg(long, value_name = "TYPE")]
    pub event_type: Option<String>,

    /// Only attempts since: a duration back from now (1h, 30m, 7d) or an RFC 3339 time
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,

    /// At most this many attempts, newest first
    #[arg(long, default_value = "50", value_parser = count(1, 100_000), value_name = "N")]
    pub limit: u64,

    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DeliveryShowArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Delivery id (the DELIVERY column of `outboxd deliveries`)
    #[arg(value_name = "ID")]
    pub id: i64,

    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Which finished deliveries `replay --webhook` puts back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayState {
    Failed,
    Cancelled,
    Delivered,
    /// failed, cancelled and delivered
    Finished,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["delivery", "webhook"])))]
pub struct ReplayArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// One delivery, whatever its finished state
    #[arg(long, value_name = "ID", conflicts_with_all = ["webhook", "since"])]
    pub delivery: Option<i64>,

    /// Every delivery of this webhook (id or name) created since --since
    #[arg(long, value_name = "WEBHOOK", requires = "since")]
    pub webhook: Option<String>,

    /// A duration back from now (1h, 7d) or an RFC 3339 time
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,

    /// Which deliveries of the webhook to replay
    #[arg(long, default_value = "failed", value_name = "STATE")]
    pub state: ReplayState,
}

#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|_| {
        format!(
            "{s:?} is not a duration; use a number and a unit, such as 250ms, 30s, 5m, 6h or 7d"
        )
    })?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

/// A duration, or `off` (also `0`) for none: `Duration::ZERO`.
pub fn parse_duration_or_off(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "off" | "0" => Ok(Duration::ZERO),
        _ => parse_duration(s).map_err(|e| format!("{e}, or off")),
    }
}

/// A boolean as people write them in environment files, any case.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "{s:?} is not a boolean; use true or false (also 1/0, yes/no, on/off)"
        )),
    }
}

fn parse_state(s: &str) -> Result<DeliveryState, String> {
    s.trim()
        .parse()
        .map_err(|e: outboxd_core::state::UnknownState| e.to_string())
}

fn count(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, String> + Clone {
    move |s: &str| match s.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a whole number from {min} to {max}")),
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!("{s:?} is not an address; use IP:PORT, such as 0.0.0.0:9187 or [::1]:9187")
    })
}

/// An address that may be left out: empty (so `VAR=` in an environment file
/// turns the listener off, as leaving the variable out does) or `off`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl std::fmt::Display for OptionalAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => Ok(()),
        }
    }
}

fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    match s.trim() {
        "" | "off" => Ok(OptionalAddr(None)),
        _ => parse_addr(s)
            .map(|a| OptionalAddr(Some(a)))
            .map_err(|e| format!("{e}, or empty/off for none")),
    }
}

/// A duration as a person writes it: `7days`, `30s`, `1s 500ms`.
pub fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A duration, or `off` for zero (the settings where zero turns a feature off).
pub fn human_or_off(d: Duration) -> String {
    if d.is_zero() {
        "off".into()
    } else {
        human(d)
    }
}

/// An optional value for the log: the value, or `off`.
pub fn or_off(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "off".into(), |v| v.to_string())
}

/// A list for the log: its items, or `none`.
pub fn or_none(list: &AllowList) -> String {
    if list.0.is_empty() {
        "none".into()
    } else {
        list.to_string()
    }
}

/// The SSRF allowlist: CIDRs (or bare addresses), each with every port or
/// one (`10.0.0.0/8:8443`, `[fd00::1]:443`), that may be delivered to
/// despite being private. Parsed from one comma-separated value, so an empty
/// variable (`OUTBOXD_ALLOW_PRIVATE_TARGETS=`) means "none" rather than a
/// bad entry, and a trailing comma is harmless.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(pub Vec<Allowed>);

impl std::fmt::Display for AllowList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

fn parse_allow_list(s: &str) -> Result<AllowList, String> {
    s.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(parse_cidr)
        .collect::<Result<_, _>>()
        .map(AllowList)
}

fn parse_cidr(s: &str) -> Result<Allowed, String> {
    s.parse::<Allowed>().map_err(|e| {
        format!("{e}; separate entries with commas, such as 10.0.0.0/8,192.168.1.5:8443")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_human_readable() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(6 * 3600));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_duration("5").unwrap_err().contains("250ms"));
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn counts_are_bounded() {
        assert_eq!(count(1, 10)("10").unwrap(), 10);
        assert!(count(1, 10)("0").unwrap_err().contains("from 1 to 10"));
        assert!(count(1, 10)("ten").is_err());
    }

    #[test]
    fn cidrs_accept_bare_addresses() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert_eq!(
            parse_cidr("10.0.0.0/8:8443").unwrap().to_string(),
            "10.0.0.0/8:8443"
        );
        assert_eq!(
            parse_cidr("[fd00::1]:443").unwrap().to_string(),
            "[fd00::1/128]:443"
        );
    }

    #[test]
    fn an_empty_allow_list_means_none() {
        let nets = |s: &str| parse_allow_list(s).map(|a| a.0.len());
        assert_eq!(nets(""), Ok(0));
        assert_eq!(nets(" "), Ok(0));
        assert_eq!(nets("127.0.0.0/8,::1/128"), Ok(2));
        assert_eq!(nets(" 10.0.0.0/8 , 192.168.1.5 ,"), Ok(2));
        assert!(nets("10.0.0.0/8,nope").unwrap_err().contains("\"nope\""));
    }

    #[test]
    fn an_empty_allow_list_flag_is_accepted() {
        let parse = |value: &str| match Cli::parse_from([
            "outboxd",
            "run",
            "--allow-private-targets",
            value,
        ])
        .command
        {
            Command::Run(args) => args.allow_private_targets.0,
            other => panic!("parsed as {other:?}"),
        };
        assert!(parse("").is_empty());
        assert_eq!(parse("127.0.0.0/8,::1/128").len(), 2);
    }

    #[test]
    fn a_public_admin_listener_needs_a_token() {
        let parse =
            |args: &[&str]| match Cli::parse_from([&["outboxd", "run"], args].concat()).command {
                Command::Run(args) => args,
                other => panic!("parsed as {other:?}"),
            };
        assert!(parse(&[]).check_admin().is_ok());
        assert!(parse(&["--admin-listen", "127.0.0.1:9188"])
            .check_admin()
            .is_ok());
        let open = parse(&["--admin-listen", "0.0.0.0:9188"])
            .check_admin()
            .unwrap_err();
        assert!(open.contains("OUTBOXD_ADMIN_TOKEN"), "{open}");
        let args = parse(&[
            "--admin-listen",
            "0.0.0.0:9188",
            "--admin-token",
            "0123456789abcdef0",
        ]);
        assert!(args.check_admin().is_ok());
        assert!(!format!("{args:?}").contains("0123456789abcdef0"));
        assert!(parse_token("short").is_err());
    }

    fn run_args(args: &[&str]) -> Result<RunArgs, String> {
        match Cli::try_parse_from([&["outboxd", "run"], args].concat()) {
            Ok(Cli {
                command: Command::Run(args),
            }) => Ok(*args),
            Ok(other) => panic!("parsed as {other:?}"),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn booleans_take_the_usual_spellings() {
        for (value, want) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("yes", true),
            ("On", true),
            ("false", false),
            ("0", false),
            ("no", false),
            ("OFF", false),
        ] {
            assert_eq!(parse_bool(value), Ok(want), "{value}");
            let flag = format!("--no-migrate={value}");
            assert_eq!(run_args(&[&flag]).unwrap().no_migrate, want, "{flag}");
            let flag = format!("--synchronous-commit={value}");
            assert_eq!(
                run_args(&[&flag]).unwrap().synchronous_commit,
                want,
                "{flag}"
            );
        }
        assert!(run_args(&["--no-migrate"]).unwrap().no_migrate);
        assert!(!run_args(&[]).unwrap().no_migrate);
        let refused = parse_bool("maybe").unwrap_err();
        assert!(
            refused.contains("true or false") && refused.contains("yes/no"),
            "{refused}"
        );
    }

    #[test]
    fn the_log_format_is_case_insensitive() {
        assert_eq!(
            run_args(&["--log-format", "JSON"]).unwrap().log_format,
            LogFormat::Json
        );
        assert_eq!(
            run_args(&["--log-format", "Text"]).unwrap().log_format,
            LogFormat::Text
        );
        let refused = run_args(&["--log-format", "yaml"]).unwrap_err();
        assert!(
            refused.contains("text") && refused.contains("json"),
            "{refused}"
        );
    }

    #[test]
    fn an_empty_admin_listen_means_off() {
        assert_eq!(
            run_args(&["--admin-listen", ""]).unwrap().admin_listen.0,
            None
        );
        assert_eq!(
            run_args(&["--admin-listen", "off"]).unwrap().admin_listen.0,
            None
        );
        assert_eq!(run_args(&[]).unwrap().admin_listen.0, None);
        assert_eq!(
            run_args(&["--admin-listen", "127.0.0.1:9188"])
                .unwrap()
                .admin_listen
                .0,
            Some("127.0.0.1:9188".parse().unwrap())
        );
        let refused = parse_optional_addr("nope").unwrap_err();
        assert!(
            refused.contains("IP:PORT") && refused.contains("off"),
            "{refused}"
        );
    }

    #[test]
    fn settings_are_logged_as_people_write_them() {
        assert_eq!(human(Duration::from_secs(7 * 86400)), "7days");
        assert_eq!(human(Duration::from_secs(30)), "30s");
        assert_eq!(human(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(human_or_off(Duration::ZERO), "off");
        assert_eq!(human_or_off(Duration::from_secs(5 * 86400)), "5days");
        assert_eq!(or_off(None::<SocketAddr>), "off");
        assert_eq!(
            or_off(Some("127.0.0.1:9188".parse::<SocketAddr>().unwrap())),
            "127.0.0.1:9188"
        );
        assert_eq!(or_none(&AllowList::default()), "none");
        assert_eq!(
            or_none(&parse_allow_list("127.0.0.0/8,::1").unwrap()),
            "127.0.0.0/8,::1/128"
        );
    }

    #[test]
    fn every_refusal_says_what_is_accepted() {
        for (args, accepted) in [
            (&["--batch-size", "0"][..], "from 1 to 10000"),
            (&["--lease", "soon"][..], "30s"),
            (&["--disable-failing-after", "never"][..], "or off"),
            (&["--listen", "9187"][..], "IP:PORT"),
            (&["--allow-private-targets", "localhost"][..], "10.0.0.0/8"),
            (&["--admin-token", "short"][..], "16 characters"),
            (&["--no-migrate=maybe"][..], "true or false"),
            (&["--log-format", "JSON5"][..], "json"),
        ] {
            let refused = run_args(args).unwrap_err();
            assert!(refused.contains(accepted), "{args:?}: {refused}");
        }
    }

    #[test]
    fn a_state_filter_is_one_of_the_delivery_states() {
        let parse =
            |state: &str| match Cli::try_parse_from(["outboxd", "deliveries", "--state", state]) {
                Ok(Cli {
                    command: Command::Deliveries(args),
                }) => Ok(args.filter.state),
                Ok(other) => panic!("parsed as {other:?}"),
                Err(e) => Err(e.to_string()),
            };
        assert_eq!(parse("in_flight"), Ok(Some(DeliveryState::InFlight)));
        let refused = parse("done").unwrap_err();
        assert!(
            refused.contains("pending, in_flight, delivered, failed, cancelled"),
            "{refused}"
        );
    }

    #[test]
    fn the_admin_token_can_come_from_a_file() {
        let run = |args: &[&str]| {
            Cli::try_parse_from([&["outboxd", "run"], args].concat()).map(|c| match c.command {
                Command::Run(args) => *args,
                other => panic!("parsed as {other:?}"),
            })
        };
        let dir = std::env::temp_dir().join(format!("outboxd-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
        let path = file.to_str().unwrap();
        let mut args = run(&["--admin-token-file", path]).unwrap();
        args.read_admin_token_file().unwrap();
        assert_eq!(args.admin_token, Some(Token("0123456789abcdef0123".into())));

        let both = run(&[
            "--admin-token-file",
            path,
            "--admin-token",
            "0123456789abcdef0",
        ]);
        assert!(both.is_err(), "the token and its file are exclusive");

        let missing = dir.join("missing");
        let mut args = run(&["--admin-token-file", missing.to_str().unwrap()]).unwrap();
        let e = args.read_admin_token_file().unwrap_err();
        assert!(e.starts_with("OUTBOXD_ADMIN_TOKEN_FILE ("), "{e}");

        std::fs::write(&file, "short\n").unwrap();
        let mut args = run(&["--admin-token-file", path]).unwrap();
        let e = args.read_admin_token_file().unwrap_err();
        assert!(
            e.contains("OUTBOXD_ADMIN_TOKEN_FILE") && e.contains("too short"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
