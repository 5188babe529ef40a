//! The `outboxd` binary: parses the command line, sets up logging, and hands
//! over to the command. Errors reach the person as one readable chain.

mod admin;
mod config;
mod daemon;
mod demo;
mod receiver;

use std::io::IsTerminal;
use std::process::ExitCode;

use std::error::Error as _;

use clap::{CommandFactory, FromArgMatches};
use config::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// Every delivery allocates and frees its request, response and rows on
/// whichever worker thread polls it; mimalloc's thread-local free lists
/// make that much cheaper than glibc's allocator. Built without transparent
/// huge pages (`no_thp`), which would inflate the peak RSS for no speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let format = match &cli.command {
        Command::Run(a) => a.log_format,
        _ => LogFormat::Text,
    };
    let default_level = match &cli.command {
        Command::Demo(_) | Command::Receiver(_) => "warn",
        _ => "info",
    };
    init_logs(format, default_level);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("outboxd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => daemon::run(*args).await,
            Command::Migrate(db) => migrate(db).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Receiver(args) => receiver::run(args).await,
            Command::Webhooks(args) => admin::webhooks::run(args.command).await,
            Command::EventTypes(args) => admin::event_types::run(args.command).await,
            Command::TestEvent(args) => admin::test_event::run(args).await,
            Command::Deliveries(args) => admin::deliveries::run(args).await,
            Command::Replay(args) => admin::replay::run(args).await,
            Command::Keys(args) => admin::keys::run(args).await,
            Command::Stats(args) => admin::stats::run(args).await,
            Command::PortalLink(args) => admin::portal::run(args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outboxd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line; a bad value is reported with the environment
/// variable it came from (or would come from), since that is where ops set it.
fn parse() -> Result<Cli, ExitCode> {
    let mut command = Cli::command();
    let matches = match command.try_get_matches_from_mut(std::env::args_os()) {
        Ok(m) => m,
        Err(e) => return Err(report_clap(e, &command)),
    };
    Cli::from_arg_matches(&matches).map_err(|e| report_clap(e, &command))
}

fn report_clap(e: clap::Error, command: &clap::Command) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() == ErrorKind::ValueValidation || e.kind() == ErrorKind::InvalidValue {
        let arg = match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(s)) => s.clone(),
            _ => String::new(),
        };
        let value = match e.get(ContextKind::InvalidValue) {
            Some(ContextValue::String(s)) => s.clone(),
            _ => String::new(),
        };
        let long = arg
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_start_matches("--");
        let env = std::iter::once(command)
            .chain(command.get_subcommands())
            .flat_map(|c| c.get_arguments())
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env())
            .map(|v| v.to_string_lossy().into_owned());
        if let Some(env) = env {
            let reason = e
                .source()
                .map(|s| s.to_string())
                .unwrap_or_else(|| not_one_of(&value, e.get(ContextKind::ValidValue)));
            eprintln!("outboxd: {env} (--{long}): {reason}");
            return ExitCode::from(2);
        }
    }
    let code = if e.use_stderr() { 2 } else { 0 };
    let _ = e.print();
    ExitCode::from(code)
}

/// Libraries that log every statement's parameters at debug level, webhook
/// header values and payloads among them: kept at info unless `RUST_LOG`
/// names them, so `RUST_LOG=debug` shows no credential.
const QUIET_UNLESS_NAMED: &[&str] = &["tokio_postgres", "postgres_protocol", "deadpool"];

fn log_filter(given: Option<&str>, default_level: &str) -> EnvFilter {
    let mut filter = given
        .and_then(|g| EnvFilter::try_new(g).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    let named = given.unwrap_or("");
    for target in QUIET_UNLESS_NAMED {
        if !named.contains(target) {
            if let Ok(directive) = format!("{target}=info").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

/// "\"JSON\" is not accepted; use one of: text, json" for a value outside a
/// fixed set, which clap reports with the set but no message of ours.
fn not_one_of(value: &str, valid: Option<&clap::error::ContextValue>) -> String {
    match valid {
        Some(clap::error::ContextValue::Strings(valid)) => {
            format!(
                "{value:?} is not accepted; use one of: {}",
                valid.join(", ")
            )
        }
        _ => format!("{value:?} is not accepted"),
    }
}

fn init_logs(format: LogFormat, default_level: &str) {
    let given = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let filter = log_filter(given.as_deref(), default_level);
    // Colours only for a person at a terminal, not in files or journald.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn migrate(db: config::DbArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let pg = outboxd_db::pg_config(db.database_url.as_deref())?;
    let where_ = outboxd_db::connect::describe(&pg);
    let applied = outboxd_db::migrate::run(&pg)
        .await
        .with_context(|| format!("migrating the database at {where_}"))?;
    println!(
        "{where_}: {applied} migration(s) applied; schema at version {}",
        outboxd_db::migrate::latest_version()
    );
    Ok(())
}
