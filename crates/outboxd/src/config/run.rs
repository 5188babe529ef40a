//! The daemon's settings (`outboxd run`): listeners, database, delivery,
//! retention, the console and the tenant portal, each a flag and an
//! environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::*;

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

    /// Comma-separated CIDRs that tenants' webhooks may be delivered to
    /// despite being private (empty: none; OUTBOXD_ALLOW_PRIVATE_TARGETS
    /// never applies to them)
    #[arg(long, env = "OUTBOXD_TENANT_ALLOW_PRIVATE_TARGETS", value_parser = parse_allow_list, default_value_t, hide_default_value = true, value_name = "CIDRS")]
    pub tenant_allow_private_targets: AllowList,

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

    /// Database connections in the pool (the LISTEN connection and the fan-out's are two more)
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
    #[command(flatten)]
    pub portal: PortalArgs,

    /// Origins that may show the tenant portal in an iframe, comma-separated
    /// (e.g. https://app.example.com); empty: none may
    #[arg(long, env = "OUTBOXD_PORTAL_FRAME_ANCESTORS", value_delimiter = ',', value_parser = parse_origin, value_name = "ORIGINS")]
    pub portal_frame_ancestors: Vec<String>,

    /// The platform's name in the portal's header
    #[arg(long, env = "OUTBOXD_PORTAL_NAME", value_name = "NAME")]
    pub portal_name: Option<String>,

    /// The platform's logo in the portal's header (an https:// URL)
    #[arg(long, env = "OUTBOXD_PORTAL_LOGO_URL", value_parser = parse_logo_url, value_name = "URL")]
    pub portal_logo_url: Option<String>,

    /// The portal's accent colour, #rgb or #rrggbb
    #[arg(long, env = "OUTBOXD_PORTAL_ACCENT", value_parser = parse_colour, value_name = "COLOUR")]
    pub portal_accent: Option<String>,

    /// Most webhooks one tenant may have
    #[arg(long, env = "OUTBOXD_MAX_WEBHOOKS_PER_TENANT", default_value = "50", value_parser = count(1, 100_000), value_name = "N")]
    pub max_webhooks_per_tenant: u64,
}

/// Where portal links point and how they are signed: shared by `run` and
/// `portal-link`, so a link made by either opens on every replica.
#[derive(Debug, Clone, Args)]
pub struct PortalArgs {
    /// The console's address as users reach it (the base of portal links),
    /// e.g. https://webhooks.example.com; default: http://<OUTBOXD_ADMIN_LISTEN>
    #[arg(long, env = "OUTBOXD_CONSOLE_URL", value_parser = parse_console_url, value_name = "URL")]
    pub console_url: Option<String>,

    /// Portal-link signing keys, comma-separated, the first signing (rotate
    /// by putting the new key first); default: a key derived from OUTBOXD_ADMIN_TOKEN
    #[arg(long, env = "OUTBOXD_PORTAL_KEYS", hide_env_values = true, value_parser = parse_token, value_name = "KEYS")]
    pub portal_keys: Option<Token>,
}

pub(crate) fn parse_console_url(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && s.parse::<hyper::Uri>().is_ok_and(|u| u.host().is_some());
    if ok {
        Ok(s.to_owned())
    } else {
        Err("is not a URL; use the address people open the console at, e.g. https://webhooks.example.com".into())
    }
}

/// A CSP source: a scheme and host, optionally a port, nothing else.
pub(crate) fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    let ok = (s.starts_with("https://") || s.starts_with("http://"))
        && !s.contains([' ', ';', ',', '\'', '"'])
        && s.parse::<hyper::Uri>()
            .is_ok_and(|u| u.host().is_some() && u.path() == "/");
    if ok {
        Ok(s.to_owned())
    } else {
        Err("is not an origin; use scheme://host[:port], e.g. https://app.example.com".into())
    }
}

pub(crate) fn parse_logo_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.starts_with("https://")
        && !s.contains([' ', ';', ',', '\'', '"'])
        && s.parse::<hyper::Uri>().is_ok()
    {
        Ok(s.to_owned())
    } else {
        Err("is not an https:// URL without spaces, quotes, commas or semicolons".into())
    }
}

pub(crate) fn parse_colour(s: &str) -> Result<String, String> {
    let s = s.trim();
    let hex = s.strip_prefix('#').unwrap_or("");
    if matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_owned())
    } else {
        Err("is not a colour; use #rgb or #rrggbb, e.g. #0a7c59".into())
    }
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

pub(crate) fn parse_token(s: &str) -> Result<Token, String> {
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
