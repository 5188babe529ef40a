//! `outboxd run`: wires the stages together and runs them until a signal.
//!
//! Order matters for operators: the probe listener comes up first (so
//! `/healthz` answers and `/readyz` says why it is not ready while the
//! database is away), then migrations and the webhook cache, retried with
//! backoff while the database is unreachable, then the background tasks.
//! One `CancellationToken` stops them all.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use backon::{ExponentialBuilder, Retryable};
use outboxd_core::breaker::BreakerPolicy;
use outboxd_core::descriptors::Needs;
use outboxd_core::retry::RetryPolicy;
use outboxd_db::{
    connect, migrate, DeferredSweeper, Dispatcher, Handoff, Janitor, Listener, PartitionKeeper,
    Pool, Reaper, Room, Sampler, WebhookCache,
};
use outboxd_deliverer::{Clients, Deliverer, Settings, TargetPolicy};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{human, human_or_off, or_none, or_off, RunArgs};

/// How often the pending gauges are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// How often the retention job sweeps at most (the first sweep comes
/// sooner); a short retention is swept every partition width (a quarter
/// of it, at least 10 s), or events and deliveries would pile up for
/// minutes past it at a high rate.
const RETENTION_EVERY: Duration = Duration::from_secs(5 * 60);

pub async fn run(mut args: RunArgs) -> Result<()> {
    let handle = outboxd_metrics::install().context("setting up metrics")?;
    let pg = connect::pg_config(args.db.database_url.as_deref())
        .context("reading DATABASE_URL / PG* variables")?;
    let retry = RetryPolicy {
        max_attempts: args.max_attempts as u32,
        base_delay: args.retry_base_delay,
        max_delay: args.retry_max_delay,
        ..RetryPolicy::default()
    };
    retry
        .validate()
        .context("OUTBOXD_RETRY_BASE_DELAY / OUTBOXD_RETRY_MAX_DELAY / OUTBOXD_MAX_ATTEMPTS")?;
    if args.webhook_concurrency > args.concurrency {
        anyhow::bail!(
            "OUTBOXD_WEBHOOK_CONCURRENCY ({}) must not exceed OUTBOXD_CONCURRENCY ({})",
            args.webhook_concurrency,
            args.concurrency
        );
    }
    if args.lease <= args.request_timeout {
        anyhow::bail!(
            "OUTBOXD_LEASE ({}) must be longer than OUTBOXD_REQUEST_TIMEOUT ({}), or deliveries would be claimed twice while still in flight",
            human(args.lease),
            human(args.request_timeout)
        );
    }
    args.read_admin_token_file().map_err(anyhow::Error::msg)?;
    args.check_admin().map_err(anyhow::Error::msg)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        database = %connect::describe(&pg),
        listen = %args.listen,
        batch_size = args.batch_size,
        concurrency = args.concurrency,
        webhook_concurrency = args.webhook_concurrency,
        poll_interval = %human(args.poll_interval),
        lease = %human(args.lease),
        request_timeout = %human(args.request_timeout),
        max_attempts = args.max_attempts,
        retry_base_delay = %human(args.retry_base_delay),
        retry_max_delay = %human(args.retry_max_delay),
        retries_span = %human(retry.total_span()),
        retention = %human(args.retention),
        allow_private_targets = %or_none(&args.allow_private_targets),
        db_pool_size = args.db_pool_size,
        shutdown_grace = %human(args.shutdown_grace),
        breaker_threshold = args.breaker_threshold,
        breaker_cooldown = %human(args.breaker_cooldown),
        disable_failing_after = %human_or_off(args.disable_failing_after),
        migrate = !args.no_migrate,
        synchronous_commit = args.synchronous_commit,
        admin_listen = %or_off(args.admin_listen.0),
        admin_token = %if args.admin_token.is_some() { "[redacted]" } else { "none" },
        admin_token_file = %args.admin_token_file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none".into()),
        "outboxd starting"
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));

    let session = connect::daemon_session(pg.clone(), args.synchronous_commit);
    let pool = connect::connect_pool(session.clone(), args.db_pool_size as usize)
        .context("setting up the connection pool")?;
    let fan_out_pool =
        connect::connect_pool(session, 1).context("setting up the fan-out's connection")?;
    let limits = listener_limits(&args);
    let (addr, server) = outboxd_metrics::serve(
        args.listen,
        handle,
        readiness(pool.clone()),
        limits,
        shutdown.clone(),
    )
    .await
    .context("OUTBOXD_LISTEN")?;
    let server = tokio::spawn(server);
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");

    let console = match args.admin_listen.0 {
        Some(listen) => {
            let console = outboxd_console::Console::bind(
                outboxd_console::Settings {
                    listen,
                    token: args.admin_token.clone().map(|t| t.0),
                    targets: args.allow_private_targets.policy(),
                    tenant_allowed: args.tenant_allow_private_targets.0.clone(),
                    request_timeout: args.request_timeout,
                    portal: outboxd_console::Portal {
                        base_url: args.portal.console_url.clone(),
                        keys: args.portal.portal_keys.clone().map(|k| k.0),
                        frame_ancestors: args.portal_frame_ancestors.clone(),
                        theme: outboxd_console::Theme {
                            name: args.portal_name.clone(),
                            logo_url: args.portal_logo_url.clone(),
                            accent: args.portal_accent.clone(),
                        },
                        rules: outboxd_admin::tenants::Rules {
                            max_webhooks: args.max_webhooks_per_tenant as i64,
                            allowed: args.tenant_allow_private_targets.0.clone(),
                        },
                    },
                    limits,
                },
                pool.clone(),
            )
            .await
            .context("OUTBOXD_ADMIN_LISTEN")?;
            if let Some(addr) = console.local_addr() {
                tracing::info!(%addr, login = args.admin_token.is_some(), "serving the admin console and API");
            }
            Some(console)
        }
        None => None,
    };

    let cache = WebhookCache::new();
    let started = prepare(&pg, &pool, &cache, !args.no_migrate, &shutdown).await;
    match started {
        Ok(true) => {}
        Ok(false) => {
            let _ = server.await;
            return Ok(());
        }
        Err(e) => return Err(e),
    }

    match outboxd_db::blocked::retry_now(&pool).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            deliveries = n,
            allow_private_targets = %or_none(&args.allow_private_targets),
            "deliveries refused by the SSRF guard are retried now, under this start's OUTBOXD_ALLOW_PRIVATE_TARGETS"
        ),
        Err(e) => tracing::warn!(error = %e,
            "could not make the deliveries refused by the SSRF guard due now; they wait for their next retry"),
    }

    let mut tasks = start_pipeline(Pipeline {
        pg,
        pool: pool.clone(),
        fan_out_pool,
        cache,
        settings: Settings {
            batch_size: args.batch_size as i64,
            concurrency: args.concurrency as usize,
            webhook_concurrency: args.webhook_concurrency as usize,
            lease: args.lease,
            request_timeout: args.request_timeout,
            poll_interval: args.poll_interval,
            retry,
            shutdown_grace: args.shutdown_grace,
            breaker: BreakerPolicy {
                threshold: args.breaker_threshold as u32,
                cooldown: args.breaker_cooldown,
                max_cooldown: args.breaker_cooldown.saturating_mul(20),
            },
            disable_failing_after: args.disable_failing_after,
        },
        targets: args.allow_private_targets.policy(),
        tenant_allowed: args.tenant_allow_private_targets.0.clone(),
        shutdown: shutdown.clone(),
    })?;
    tasks.spawn(
        Sampler {
            pool: pool.clone(),
            interval: SAMPLE_EVERY,
        }
        .run(shutdown.clone()),
    );
    tasks.spawn(
        PartitionKeeper {
            pool: pool.clone(),
            retention: args.retention,
            // Half a partition, at most a minute: partitions are made well
            // ahead of the attempts that need them.
            interval: (outboxd_core::partitions::width(args.retention) / 2)
                .min(Duration::from_secs(60)),
        }
        .run(shutdown.clone()),
    );
    tasks.spawn(
        Janitor {
            pool,
            retention: args.retention,
            interval: outboxd_core::partitions::width(args.retention).min(RETENTION_EVERY),
        }
        .run(shutdown.clone()),
    );
    if let Some(console) = console {
        tasks.spawn(console.run(shutdown.clone()));
    }
    tracing::info!("outboxd running");
    while tasks.join_next().await.is_some() {}
    let _ = server.await;
    tracing::info!("outboxd stopped");
    Ok(())
}

/// Migrates and loads the webhooks, waiting for the database as long as it
/// takes. Returns false when shutdown came first.
async fn prepare(
    pg: &tokio_postgres::Config,
    pool: &Pool,
    cache: &WebhookCache,
    migrate: bool,
    shutdown: &CancellationToken,
) -> Result<bool> {
    let where_ = connect::describe(pg);
    let attempt = || async {
        if migrate {
            let applied = migrate::run(pg).await?;
            if applied > 0 {
                tracing::info!(applied, "migrations applied");
            }
        }
        cache.reload(pool).await
    };
    let ready = attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(15))
                .with_jitter()
                .without_max_times(),
        )
        .when(|e: &outboxd_db::Error| e.is_connection())
        .notify(|e, after| {
            tracing::warn!(database = %where_, error = %e, retry_in = %human(after),
                "database unreachable; /readyz reports not ready until it is");
        });
    tokio::select! {
        _ = shutdown.cancelled() => Ok(false),
        r = ready => {
            let n = r.with_context(|| format!("preparing the database at {where_}"))?;
            tracing::info!(webhooks = n, "webhooks loaded");
            Ok(true)
        }
    }
}

/// The stages of the pipeline, as `run` and `demo` start them.
pub struct Pipeline {
    pub pg: tokio_postgres::Config,
    pub pool: Pool,
    /// The fan-out's own connection: it runs on a thread of its own
    /// (`outboxd_db::dedicated`).
    pub fan_out_pool: Pool,
    pub cache: Arc<WebhookCache>,
    pub settings: Settings,
    /// The SSRF guard's policy for webhook targets.
    pub targets: TargetPolicy,
    /// The private ranges tenants' webhooks may reach.
    pub tenant_allowed: Vec<outboxd_core::address::Allowed>,
    pub shutdown: CancellationToken,
}

pub fn start_pipeline(p: Pipeline) -> Result<JoinSet<()>> {
    let events = Arc::new(Notify::new());
    let deliveries_ready = Arc::new(Notify::new());
    // Many webhooks may point at one host (an integration platform's, or a
    // receiver with a path per customer): keep as many connections idle as
    // may be in flight, or every finished request beyond a webhook's share
    // closes one and the next opens another.
    let clients = Clients::build(
        Duration::from_secs(5),
        p.settings.concurrency,
        p.targets,
        p.tenant_allowed,
    )
    .context("setting up the HTTP client")?;
    let room = Room::new(p.settings.windows());
    let (to_deliverer, handed) = tokio::sync::mpsc::unbounded_channel();
    // The fan-out and the result writer's promotions hand over alike.
    let handoff = Handoff {
        room: room.clone(),
        to_deliverer,
        lease: p.settings.lease,
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(
        Listener {
            config: p.pg,
            pool: p.pool.clone(),
            cache: p.cache.clone(),
            events: events.clone(),
            connected: Arc::new(AtomicBool::new(false)),
        }
        .run(p.shutdown.clone()),
    );
    let dispatcher = Dispatcher {
        pool: p.fan_out_pool,
        cache: p.cache.clone(),
        batch_size: p.settings.batch_size,
        poll_interval: p.settings.poll_interval,
        wake: events,
        deliveries_ready: deliveries_ready.clone(),
        handoff: Some(handoff.clone()),
    };
    tasks.spawn(outboxd_db::dedicated::run(
        "fan-out",
        dispatcher.run(p.shutdown.clone()),
    ));
    tasks.spawn(
        Reaper {
            pool: p.pool.clone(),
            interval: outboxd_db::reaper::INTERVAL,
            deliveries_ready: deliveries_ready.clone(),
        }
        .run(p.shutdown.clone()),
    );
    tasks.spawn(
        DeferredSweeper {
            pool: p.pool.clone(),
            interval: outboxd_db::deferred::SWEEP_EVERY,
            ready: deliveries_ready.clone(),
        }
        .run(p.shutdown.clone()),
    );
    tasks.spawn(
        Deliverer {
            pool: p.pool,
            cache: p.cache,
            clients,
            settings: p.settings,
            ready: deliveries_ready,
            room,
            handed: Some(handed),
            promotions: Some(handoff),
        }
        .run(p.shutdown),
    );
    Ok(tasks)
}

/// Raises the descriptor limit and caps the listeners' connections so that
/// what is left after them covers every delivery and pooled connection.
fn listener_limits(args: &RunArgs) -> outboxd_serve::Limits {
    let needs = Needs {
        deliveries: args.concurrency,
        database: args.db_pool_size,
    };
    let limit = match outboxd_serve::raise_nofile_limit() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the descriptor limit (RLIMIT_NOFILE); assuming 1024");
            outboxd_serve::NofileLimit {
                soft: 1024,
                hard: 1024,
            }
        }
    };
    // An admin connection may hold a test event's connection too.
    let costs: &[u64] = if args.admin_listen.0.is_some() {
        &[1, 2]
    } else {
        &[1]
    };
    let preferred = outboxd_serve::Limits::default().max_connections as u64;
    let plan = needs.plan(limit.soft, costs, preferred);
    if plan.enough {
        tracing::info!(
            nofile = limit.soft,
            nofile_hard = limit.hard,
            reserved = plan.reserved,
            listener_connections = plan.per_listener,
            "descriptors: reserved for deliveries and the pool, the rest capped per listener"
        );
    } else {
        tracing::warn!(
            nofile = limit.soft,
            nofile_hard = limit.hard,
            needed = plan.reserved,
            "the descriptor limit is below what OUTBOXD_CONCURRENCY and OUTBOXD_DB_POOL_SIZE need: raise it (ulimit -n, LimitNOFILE= in systemd) or lower them; deliveries may fail with \"Too many open files\""
        );
    }
    outboxd_serve::Limits {
        max_connections: plan.per_listener as usize,
        ..Default::default()
    }
}

fn readiness(pool: Pool) -> outboxd_metrics::ReadinessCheck {
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            let client = pool
                .get()
                .await
                .map_err(|e| format!("database unreachable: {e}"))?;
            let have = migrate::current_version(&client)
                .await
                .map_err(|e| format!("database unreachable: {e}"))?;
            let want = migrate::latest_version();
            if have < want {
                return Err(format!(
                    "schema at version {have}, this build needs {want}: run `outboxd migrate`"
                ));
            }
            Ok(())
        })
    })
}

async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(
        signal = name,
        "shutting down: no new claims; finishing requests in flight"
    );
    shutdown.cancel();
}
