//! The admin commands' arguments (webhooks, event types, test events,
//! deliveries, replay, halted ordering keys, stats, portal links) and the demo's and sample
//! receiver's.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use outboxd_core::DeliveryState;

use super::*;

#[derive(Debug, Clone, Args)]
pub struct PortalLinkArgs {
    /// The tenant whose portal the link opens
    #[arg(long, value_name = "TENANT")]
    pub tenant: String,

    /// How long the link may be opened (at most 7d)
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Duration,

    #[command(flatten)]
    pub portal: PortalArgs,

    /// The admin console's address, the links' base unless OUTBOXD_CONSOLE_URL is set
    #[arg(long, env = "OUTBOXD_ADMIN_LISTEN", value_parser = parse_addr, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// The admin token, from which the signing key is derived unless OUTBOXD_PORTAL_KEYS is set
    #[arg(long, env = "OUTBOXD_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_token, value_name = "TOKEN")]
    pub admin_token: Option<Token>,
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
pub struct WebhookListArgs {
    #[command(flatten)]
    pub list: ListArgs,

    /// Only this tenant's webhooks
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    pub command: WebhooksCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum WebhooksCommand {
    /// Every webhook with its recent delivery health.
    List(WebhookListArgs),
    /// One webhook: its settings and health.
    Show(WebhookShowArgs),
    /// Add a webhook; prints its id and its secret (shown this once).
    Add(WebhookAddArgs),
    /// Change a webhook: only the settings given, the rest stay as they are.
    Edit(WebhookEditArgs),
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

    /// The customer the webhook is for: it gets that tenant's events only
    /// (default: a platform webhook, which gets every event)
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,

    /// At most this many requests per second, all replicas together, or
    /// none (the default) for no limit
    #[arg(long, value_name = "PER_SECOND|none")]
    pub rate_limit: Option<String>,

    /// Send the events of one ordering key one at a time, in order
    #[arg(long, value_name = "true|false", default_value = "false", action = clap::ArgAction::Set)]
    pub ordered: bool,

    /// When a delivery of an ordered key finally fails: skip (the next event
    /// goes) or halt (the key waits for an admin)
    #[arg(long, value_name = "skip|halt", default_value = "skip")]
    pub ordering_policy: String,

    /// Print the new webhook as JSON
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub rules: WebhookRuleArgs,
}

/// What a webhook being written is judged by, as the daemon and the
/// console judge it.
#[derive(Debug, Clone, Args)]
pub struct WebhookRuleArgs {
    /// Most webhooks one tenant may have (as for `run`)
    #[arg(long, env = "OUTBOXD_MAX_WEBHOOKS_PER_TENANT", default_value = "50", value_parser = count(1, 100_000), value_name = "N")]
    pub max_webhooks_per_tenant: u64,

    /// Private ranges a tenant's webhook may name anyway (as for `run`)
    #[arg(long, env = "OUTBOXD_TENANT_ALLOW_PRIVATE_TARGETS", value_parser = parse_allow_list, default_value_t, hide_default_value = true, value_name = "CIDRS")]
    pub tenant_allow_private_targets: AllowList,

    /// The daemon's allowlist of private targets (as for `run`), to warn
    /// when the URL would be refused
    #[arg(long, env = "OUTBOXD_ALLOW_PRIVATE_TARGETS", value_parser = parse_allow_list, default_value_t, hide_default_value = true, value_name = "CIDRS")]
    pub allow_private_targets: AllowList,
}

#[derive(Debug, Clone, Args)]
pub struct WebhookEditArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Webhook id or name
    #[arg(value_name = "WEBHOOK")]
    pub webhook: String,

    /// A new name
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// A new endpoint URL, http:// or https://
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// New event types, comma-separated: exact (payment.received), prefix (payment.*) or *
    #[arg(long, value_delimiter = ',', value_name = "PATTERNS")]
    pub events: Option<Vec<String>>,

    /// Extra request header, NAME=VALUE (repeatable): the webhook's headers
    /// become exactly these
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,

    /// Remove every custom header
    #[arg(long, conflicts_with = "headers")]
    pub clear_headers: bool,

    /// Move the webhook to this tenant (held to its rules), or none to make
    /// it a platform webhook (which gets every tenant's events)
    #[arg(long, value_name = "TENANT|none")]
    pub tenant: Option<String>,

    /// At most this many requests per second, all replicas together, or
    /// none for no limit
    #[arg(long, value_name = "PER_SECOND|none")]
    pub rate_limit: Option<String>,

    /// Send the events of one ordering key one at a time, in order
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    pub ordered: Option<bool>,

    /// When a delivery of an ordered key finally fails: skip (the next event
    /// goes) or halt (the key waits for an admin)
    #[arg(long, value_name = "skip|halt")]
    pub ordering_policy: Option<String>,

    /// Print the webhook as saved as JSON
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub rules: WebhookRuleArgs,
}

#[derive(Debug, Clone, Args)]
pub struct WebhookShowArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Webhook id or name
    #[arg(value_name = "WEBHOOK")]
    pub webhook: String,

    /// Print JSON instead of lines
    #[arg(long)]
    pub json: bool,
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

    /// Comma-separated CIDRs that tenants' webhooks may be delivered to despite being private (as for `run`)
    #[arg(long, env = "OUTBOXD_TENANT_ALLOW_PRIVATE_TARGETS", value_parser = parse_allow_list, default_value_t, hide_default_value = true, value_name = "CIDRS")]
    pub tenant_allow_private_targets: AllowList,
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

    /// Only deliveries to this tenant's webhooks
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,

    /// Only deliveries now in this state: pending, in_flight, held, delivered, failed or cancelled
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
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Keys of halt webhooks waiting for an admin: their failed delivery and how many wait behind it.
    Halted(KeysHaltedArgs),
    /// Let a halted key go on: its failed delivery stays failed, the next one is sent.
    Skip(KeysSkipArgs),
}

#[derive(Debug, Clone, Args)]
pub struct KeysHaltedArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Only this webhook (id or name)
    #[arg(long, value_name = "WEBHOOK")]
    pub webhook: Option<String>,

    /// Only this tenant's webhooks
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,

    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct KeysSkipArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// The failed delivery that halts the key (`outboxd keys halted` lists them)
    #[arg(value_name = "DELIVERY_ID")]
    pub delivery: i64,
}

#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Only this tenant's webhooks and events
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,

    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}
