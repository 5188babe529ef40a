//! End-to-end tests of what operators rely on: the metrics exposition (and
//! promtool's opinion of it and of the alert rules), the probes, graceful
//! shutdown, start-up errors that name the variable, the retention job, the
//! deploy files, and logs that never carry a secret or a payload.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use outboxd_db::{connect_pool, Deleted, Janitor};
use outboxd_testkit::db::{add_webhook, count, publish_many};
use outboxd_testkit::{free_port, wait_until, Daemon, Receiver, Reply, TestDb};

use crate::support::BIN;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The samples of a Prometheus text exposition: series (name and labels,
/// as rendered) to value.
fn samples(exposition: &str) -> HashMap<String, f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Runs a command with a deadline; panics if it does not finish in time.
fn run_with_timeout(cmd: &mut Command, stdin: Option<&str>, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn promtool(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("promtool");
    cmd.args(args);
    if let Err(e) = Command::new("promtool").arg("--version").output() {
        panic!(
            "promtool is needed ({e}): apt-get install -y prometheus (then pkill -x prometheus)"
        );
    }
    run_with_timeout(&mut cmd, stdin, Duration::from_secs(60))
}

/// Removes terminal colour codes, which the text log format may carry.
#[tokio::test]
async fn metrics_scrape_counts_real_deliveries_and_passes_promtool() {
    const PAYLOAD_MARKER: &str = "payload-marker-7f3a9c";
    let db = TestDb::new().await;
    let client = db.client().await;
    let ok = Receiver::ok().await;
    let failing = Receiver::start(|_| Reply::status(500).body("nope")).await;
    add_webhook(&client, "ok", &ok.url("/ok"), &["order.created"]).await;
    let (bad_id, bad_secret) =
        add_webhook(&client, "bad", &failing.url("/bad"), &["order.failed"]).await;
    publish_many(&client, "order.created", 20).await;
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload)
             SELECT 'order.failed', jsonb_build_object('marker', $1::text, 'n', i)
               FROM generate_series(1, 5) AS i",
            &[&PAYLOAD_MARKER],
        )
        .await
        .unwrap();

    let daemon = Daemon::start(BIN, &db.url, &[("OUTBOXD_MAX_ATTEMPTS", "1")]);
    let finished = "SELECT count(*) FROM outbox.deliveries WHERE state IN ('delivered', 'failed')";
    assert!(
        wait_until(Duration::from_secs(30), || async {
            count(&client, finished).await == 25
        })
        .await,
        "25 deliveries should finish; {} did",
        count(&client, finished).await
    );

    // Counters are bumped after the results are written: scrape until they
    // catch up.
    let mut metrics = HashMap::new();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let caught_up = loop {
        if let Some((200, body)) = daemon.get("/metrics").await {
            metrics = samples(&body);
            text = body;
        }
        let done = metrics.get(r#"outboxd_deliveries_total{outcome="failed"}"#) == Some(&5.0)
            && metrics.get(r#"outboxd_deliveries_total{outcome="delivered"}"#) == Some(&20.0);
        if done || Instant::now() >= deadline {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(caught_up, "deliveries counters; exposition:\n{text}");
    assert_eq!(metrics["outboxd_events_dispatched_total"], 25.0, "{text}");
    assert_eq!(
        metrics.get(r#"outboxd_deliveries_total{outcome="retry"}"#),
        None,
        "no retries with OUTBOXD_MAX_ATTEMPTS=1"
    );
    assert_eq!(metrics["outboxd_attempt_duration_seconds_count"], 25.0);
    for le in ["0.001", "0.005", "0.1", "1", "10", "30", "+Inf"] {
        let series = format!(r#"outboxd_attempt_duration_seconds_bucket{{le="{le}"}}"#);
        assert!(metrics.contains_key(&series), "{series} in\n{text}");
    }
    assert_eq!(
        metrics[r#"outboxd_attempt_duration_seconds_bucket{le="+Inf"}"#],
        25.0
    );
    assert!(text.contains("# TYPE outboxd_attempt_duration_seconds histogram"));
    assert!(text.contains("# HELP outboxd_deliveries_total "));

    let checked = promtool(&["check", "metrics"], Some(&text));
    // Lint findings come with a non-zero status; shown either way.
    eprintln!(
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success(),
        "promtool check metrics: {}\n{}\nexposition:\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // The failures were logged with what an operator needs, and nothing
    // that must stay private.
    let log = outboxd_testkit::daemon::strip_ansi(&daemon.log());
    let failed_event: i64 = client
        .query_one(
            "SELECT min(event_id) FROM outbox.deliveries WHERE webhook_id = $1",
            &[&bad_id],
        )
        .await
        .unwrap()
        .get(0);
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("delivery attempt failed"))
        .collect();
    assert_eq!(failures.len(), 5, "one log line per failed attempt:\n{log}");
    assert!(
        failures
            .iter()
            .any(|l| l.contains(&format!("webhook_id={bad_id}"))
                && l.contains(&format!("event_id={failed_event}"))
                && l.contains("attempt=1")
                && l.contains("reason=HTTP 500")),
        "webhook id, event id, attempt and reason are logged:\n{log}"
    );
    assert!(!log.contains(&bad_secret), "the secret leaked into the log");
    let key = bad_secret.trim_start_matches("whsec_");
    assert!(!log.contains(key), "the secret's key leaked into the log");
    assert!(
        !log.contains(PAYLOAD_MARKER),
        "a payload leaked into the log"
    );
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let rules = repo("deploy/prometheus/alerts.yml");
    let tests = repo("deploy/prometheus/alerts_test.yml");
    for args in [
        ["check", "rules", rules.to_str().unwrap()],
        ["test", "rules", tests.to_str().unwrap()],
    ] {
        let out = promtool(&args, None);
        assert!(
            out.status.success(),
            "promtool {}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn readyz_fails_while_the_database_is_unreachable_and_healthz_still_answers() {
    let port = free_port();
    let nowhere = format!("postgres://postgres@127.0.0.1:{port}/x");
    let mut daemon = Daemon::start(BIN, &nowhere, &[]);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            daemon.get("/healthz").await.is_some()
        })
        .await,
        "the listener comes up without a database:\n{}",
        daemon.log()
    );
    assert_eq!(daemon.get("/healthz").await.unwrap().0, 200);
    let (status, body) = daemon.get("/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: database unreachable"),
        "/readyz says why: {body}"
    );
    // No crash loop: it keeps waiting for the database, and says so.
    assert!(
        daemon.wait(Duration::from_secs(3)).await.is_none(),
        "the daemon exited:\n{}",
        daemon.log()
    );
    assert_eq!(daemon.get("/healthz").await.unwrap().0, 200);
    let log = outboxd_testkit::daemon::strip_ansi(&daemon.log());
    assert!(
        log.contains("database unreachable; /readyz reports not ready until it is")
            && log.contains(&format!("127.0.0.1:{port}")),
        "a clear log line naming the database:\n{log}"
    );

    let db = TestDb::new().await;
    let good = Daemon::start(BIN, &db.url, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            matches!(good.get("/readyz").await, Some((200, _)))
        })
        .await,
        "ready with a good database: {:?}\n{}",
        good.get("/readyz").await,
        good.log()
    );
}

#[tokio::test]
async fn sigterm_lets_slow_requests_finish_and_exits_zero() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let slow = Receiver::start(|_| Reply::ok().after(Duration::from_secs(2))).await;
    add_webhook(&client, "slow", &slow.url("/slow"), &["*"]).await;
    publish_many(&client, "order.created", 10).await;
    let mut daemon = Daemon::start(
        BIN,
        &db.url,
        &[
            ("OUTBOXD_SHUTDOWN_GRACE", "10s"),
            ("OUTBOXD_REQUEST_TIMEOUT", "5s"),
            ("OUTBOXD_LEASE", "30s"),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(20), || async { slow.count() >= 10 }).await,
        "10 requests in flight; {} arrived:\n{}",
        slow.count(),
        daemon.log()
    );
    let in_flight = "SELECT count(*) FROM outbox.deliveries WHERE state = 'in_flight'";
    assert_eq!(count(&client, in_flight).await, 10, "all in flight");
    let asked = Instant::now();
    daemon.terminate();
    let status = daemon
        .wait(Duration::from_secs(12))
        .await
        .unwrap_or_else(|| panic!("no exit within the grace period:\n{}", daemon.log()));
    let took = asked.elapsed();
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        daemon.log()
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(10),
        "waited for the slow requests, no longer than the grace: {took:?}"
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'"
        )
        .await,
        10
    );
    assert_eq!(count(&client, in_flight).await, 0);
    assert_eq!(slow.count(), 10, "nothing was sent twice");
}

#[test]
fn bad_values_stop_startup_naming_the_variable() {
    let cases = [
        ("OUTBOXD_BATCH_SIZE", "abc", "whole number from 1 to"),
        ("OUTBOXD_POLL_INTERVAL", "5", "250ms"),
        ("OUTBOXD_POLL_INTERVAL", "soon", "250ms"),
        ("OUTBOXD_LISTEN", "nowhere", "IP:PORT"),
        ("OUTBOXD_ALLOW_PRIVATE_TARGETS", "10.0.0.0/33", "10.0.0.0/8"),
        ("OUTBOXD_RETENTION", "forever", "7d"),
        ("OUTBOXD_LOG_FORMAT", "yaml", "use one of: text, json"),
        ("OUTBOXD_NO_MIGRATE", "maybe", "yes/no"),
        ("OUTBOXD_SYNCHRONOUS_COMMIT", "maybe", "on/off"),
        ("OUTBOXD_ADMIN_LISTEN", "nowhere", "empty/off"),
        (
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:port/x",
            "postgres://user:password@host:5432/dbname",
        ),
    ];
    for (var, value, accepted) in cases {
        let out = run_with_timeout(
            Command::new(BIN)
                .arg("run")
                .env_clear()
                // Unreachable, in case a value were (wrongly) accepted.
                .env(
                    "DATABASE_URL",
                    format!("postgres://postgres@127.0.0.1:{}/x", free_port()),
                )
                .env(var, value),
            None,
            Duration::from_secs(10),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{var}={value} was accepted:\n{stderr}"
        );
        assert!(
            stderr.contains(var) && stderr.contains(accepted),
            "{var}={value}: the message names the variable and what is accepted ({accepted:?}):\n{stderr}"
        );
    }
}

#[test]
fn run_help_lists_every_variable_and_its_default() {
    let out = run_with_timeout(
        Command::new(BIN).args(["run", "--help"]).env_clear(),
        None,
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (var, default) in run_variables() {
        // A secret's variable is listed without its value (hide_env_values).
        let Some(pos) = help
            .find(&format!("[env: {var}="))
            .or_else(|| help.find(&format!("[env: {var}]")))
        else {
            panic!("{var} is not in `run --help`:\n{help}");
        };
        if let Some(default) = default {
            // Clap prints the default after the variable, before the next option.
            let rest = &help[pos..];
            let block = &rest[..rest.find("\n  -").unwrap_or(rest.len())];
            assert!(
                block.contains(&format!("[default: {default}]")),
                "{var}'s default {default} in:\n{block}"
            );
        }
    }
    assert!(help.contains("[env: DATABASE_URL"));
}

/// Every `OUTBOXD_` variable of `outboxd run` declared in the configuration,
/// with its default when it has one, read from the source so that a new
/// setting is checked without editing the tests.
fn run_variables() -> Vec<(&'static str, Option<&'static str>)> {
    let config = include_str!("../../crates/outboxd/src/config/run.rs");
    let run_args = &config[config.find("pub struct RunArgs").unwrap()..];
    let run_args = &run_args[..run_args.find("\n}\n").unwrap()];
    let vars: Vec<_> = run_args
        .split("#[arg(")
        .skip(1)
        .filter_map(|arg| {
            let arg = &arg[..arg.find(")]").unwrap()];
            let at = arg.find("env = \"OUTBOXD_")?;
            let var = arg[at + 7..].split('"').next().unwrap();
            let default = arg
                .find("default_value = \"")
                .map(|d| arg[d + 17..].split('"').next().unwrap());
            Some((var, default))
        })
        .collect();
    assert!(
        vars.len() >= 15,
        "found {} OUTBOXD_ variables in config/run.rs",
        vars.len()
    );
    vars
}

#[test]
fn configuration_doc_lists_every_variable_with_its_default() {
    let doc = include_str!("../../docs/configuration.md");
    for (var, default) in run_variables() {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{var}` |")))
            .unwrap_or_else(|| panic!("{var} has no row in docs/configuration.md"));
        if let Some(default) = default {
            let documented = row.split(" | ").nth(1).unwrap_or_default();
            assert!(
                documented.contains(&format!("`{default}`")),
                "docs/configuration.md gives {var} the default {documented:?}, config/run.rs {default:?}"
            );
        }
    }
}

/// Rows of the retention fixture: each event is named by its payload.
async fn names_left(client: &tokio_postgres::Client, query: &str) -> Vec<String> {
    let mut names: Vec<String> = client
        .query(query, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn retention_deletes_old_finished_rows_and_nothing_pending() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // Attempts are retired by partition (scale::partitions_rotate_...); the
    // janitor deletes by age what lands in the default partition, which
    // takes what no partition covers. Without the (empty) partition of the
    // history before partitioning, these days-old attempts land there.
    client
        .batch_execute(
            "ALTER TABLE outbox.delivery_attempts DETACH PARTITION outbox.delivery_attempts_before_v14;
             DROP TABLE outbox.delivery_attempts_before_v14;
             DELETE FROM outbox.attempt_partitions WHERE name = 'delivery_attempts_before_v14'",
        )
        .await
        .unwrap();
    let (hook, _) = add_webhook(&client, "a", "http://127.0.0.1:9/a", &["*"]).await;
    let (other, _) = add_webhook(&client, "b", "http://127.0.0.1:9/b", &["*"]).await;
    // name, age of the event, then per delivery: (webhook, state, age of
    // its last change, attempt ages). Ages in days.
    type Delivery<'a> = (i64, &'a str, i32, &'a [i32]);
    let fixture: &[(&str, Option<i32>, &[Delivery])] = &[
        (
            "old-delivered",
            Some(10),
            &[(hook, "delivered", 10, &[10, 10])],
        ),
        ("old-failed", Some(10), &[(hook, "failed", 9, &[10, 9])]),
        ("old-cancelled", Some(10), &[(hook, "cancelled", 10, &[])]),
        ("old-no-recipient", Some(10), &[]),
        ("old-pending", Some(10), &[(hook, "pending", 10, &[1])]),
        (
            "old-half-in-flight",
            Some(10),
            &[(hook, "delivered", 10, &[10]), (other, "in_flight", 0, &[])],
        ),
        (
            "old-replayed-lately",
            Some(10),
            &[(hook, "delivered", 1, &[10, 1])],
        ),
        ("old-undispatched", None, &[]),
        ("recent-delivered", Some(1), &[(hook, "delivered", 1, &[1])]),
        ("recent-failed", Some(2), &[(hook, "failed", 2, &[2])]),
    ];
    for (name, age, deliveries) in fixture {
        let event: i64 = client
            .query_one(
                "INSERT INTO outbox.events (event_type, payload, created_at, dispatched_at)
                 VALUES ('order.created', to_jsonb($1::text),
                         now() - coalesce($2::float8, 10) * interval '1 day',
                         now() - $2::float8 * interval '1 day')
                 RETURNING id",
                &[name, &age.map(f64::from)],
            )
            .await
            .unwrap()
            .get(0);
        for (webhook, state, changed, attempts) in deliveries.iter() {
            let delivery: i64 = client
                .query_one(
                    "INSERT INTO outbox.deliveries (event_id, webhook_id, state, attempts,
                                                    created_at, updated_at)
                     VALUES ($1, $2, $3, $4, now() - interval '10 days',
                             now() - $5::float8 * interval '1 day')
                     RETURNING id",
                    &[
                        &event,
                        webhook,
                        state,
                        &(attempts.len() as i32),
                        &f64::from(*changed),
                    ],
                )
                .await
                .unwrap()
                .get(0);
            for (i, days) in attempts.iter().enumerate() {
                client
                    .execute(
                        "INSERT INTO outbox.delivery_attempts (delivery_id, event_id, webhook_id,
                             attempt, started_at, duration_ms, outcome, response_body)
                         VALUES ($1, $2, $3, $4, now() - $5::float8 * interval '1 day', 1, 'retry', $6)",
                        &[
                            &delivery,
                            &event,
                            webhook,
                            &(i as i32 + 1),
                            &f64::from(*days),
                            name,
                        ],
                    )
                    .await
                    .unwrap();
            }
        }
    }
    // Enough old finished rows to need several batches.
    client
        .batch_execute(&format!(
            "WITH e AS (
                INSERT INTO outbox.events (event_type, payload, created_at, dispatched_at)
                SELECT 'bulk.old', to_jsonb('bulk'::text), now() - interval '20 days',
                       now() - interval '20 days'
                  FROM generate_series(1, 2500)
                RETURNING id),
             d AS (
                INSERT INTO outbox.deliveries (event_id, webhook_id, state, attempts,
                                               created_at, updated_at, delivered_at)
                SELECT id, {hook}, 'delivered', 1, now() - interval '20 days',
                       now() - interval '20 days', now() - interval '20 days'
                  FROM e
                RETURNING id, event_id)
             INSERT INTO outbox.delivery_attempts (delivery_id, event_id, webhook_id, attempt,
                                                   started_at, duration_ms, outcome)
             SELECT id, event_id, {hook}, 1, now() - interval '20 days', 1, 'delivered' FROM d"
        ))
        .await
        .unwrap();

    let pool = connect_pool(db.config.clone(), 2).unwrap();
    let janitor = Janitor {
        pool: pool.clone(),
        retention: Duration::from_secs(7 * 86400),
        interval: Duration::from_secs(300),
    };

    // Another replica sweeping: this one does nothing.
    let mut other_replica = db.client().await;
    let tx = other_replica.transaction().await.unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&outboxd_db::janitor::LOCK_KEY],
    )
    .await
    .unwrap();
    let busy = janitor.run_once().await.unwrap();
    assert_eq!(
        busy,
        Deleted {
            busy: true,
            ..Deleted::default()
        }
    );
    tx.rollback().await.unwrap();

    let started = Instant::now();
    let deleted = janitor.run_once().await.unwrap();
    eprintln!("retention sweep of ~7500 rows took {:?}", started.elapsed());
    assert_eq!(
        deleted,
        Deleted {
            // 2500 bulk + delivered, failed, cancelled, no recipient
            events: 2504,
            // 2500 bulk + delivered, failed, cancelled
            deliveries: 2503,
            // 2500 bulk + delivered 2, failed 2, half-in-flight 1, replayed 1
            delivery_attempts: 2506,
            busy: false,
        }
    );
    assert_eq!(
        names_left(&client, "SELECT payload #>> '{}' FROM outbox.events").await,
        [
            "old-half-in-flight",
            "old-pending",
            "old-replayed-lately",
            "old-undispatched",
            "recent-delivered",
            "recent-failed",
        ]
    );
    assert_eq!(
        names_left(
            &client,
            "SELECT (e.payload #>> '{}') || ':' || d.state FROM outbox.deliveries d
               JOIN outbox.events e ON e.id = d.event_id"
        )
        .await,
        [
            "old-half-in-flight:delivered",
            "old-half-in-flight:in_flight",
            "old-pending:pending",
            "old-replayed-lately:delivered",
            "recent-delivered:delivered",
            "recent-failed:failed",
        ]
    );
    assert_eq!(
        names_left(
            &client,
            "SELECT response_body || ':' || attempt FROM outbox.delivery_attempts"
        )
        .await,
        [
            "old-pending:1",
            "old-replayed-lately:2",
            "recent-delivered:1",
            "recent-failed:1",
        ]
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.deliveries d
              WHERE NOT EXISTS (SELECT 1 FROM outbox.events e WHERE e.id = d.event_id)"
        )
        .await,
        0,
        "no delivery outlives its event"
    );
    // Nothing more to do.
    assert_eq!(janitor.run_once().await.unwrap(), Deleted::default());
    drop(pool);

    // The daemon runs it, and the counter is exported from the start.
    let daemon = Daemon::start(BIN, &db.url, &[("OUTBOXD_RETENTION", "3d")]);
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let exported = loop {
        if let Some((200, body)) = daemon.get("/metrics").await {
            text = body;
        }
        let done = ["events", "deliveries", "delivery_attempts"]
            .iter()
            .all(|t| {
                text.contains(&format!(
                    "outboxd_retention_deleted_rows_total{{table=\"{t}\"}}"
                ))
            });
        if done || Instant::now() >= deadline {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exported, "retention counters in:\n{text}\n{}", daemon.log());
    assert!(outboxd_testkit::daemon::strip_ansi(&daemon.log()).contains("retention=3days"));
}

#[test]
fn deploy_files_parse() {
    let yaml = |path: &Path| -> serde_yaml_ng::Value {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
    };

    let compose = yaml(&repo("docker-compose.yml"));
    for service in ["postgres", "outboxd", "receiver", "prometheus"] {
        assert!(
            compose["services"][service].is_mapping(),
            "docker-compose.yml has service {service}"
        );
    }

    let mut manifests = 0;
    let mut deployment = None;
    for entry in std::fs::read_dir(repo("deploy/kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        manifests += 1;
        let doc = yaml(&path);
        assert!(doc["kind"].is_string(), "{} has a kind", path.display());
        if doc["kind"].as_str() == Some("Deployment") {
            deployment = Some(doc);
        }
    }
    assert!(manifests >= 5, "found {manifests} manifests");
    let deployment = deployment.expect("a Deployment in deploy/kubernetes");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(2));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );

    let dashboard = repo("deploy/grafana/outboxd-dashboard.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dashboard).unwrap())
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", dashboard.display()));
    assert!(json["panels"].is_array(), "the dashboard has panels");
}

/// Runs the daemon with JSON logs until it is running, stops it, and
/// returns its log and its "outboxd starting" line.
async fn start_line(url: &str, env: &[(&str, &str)]) -> (String, serde_json::Value) {
    let mut daemon = Daemon::start(BIN, url, env);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            daemon.log().contains("outboxd running")
        })
        .await,
        "{}",
        daemon.log()
    );
    daemon.terminate();
    daemon.wait(Duration::from_secs(10)).await;
    let log = daemon.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let start = lines
        .into_iter()
        .find(|l| l["message"] == "outboxd starting")
        .expect("a start line");
    (log, start)
}

#[tokio::test]
async fn json_logs_show_the_effective_configuration_without_the_password() {
    let db = TestDb::new().await;
    // Trust authentication ignores the password; the log must not show it.
    let url = db.url.replacen("://postgres@", "://postgres:s3cret-pw@", 1);
    assert_ne!(url, db.url, "the test database URL has the expected shape");
    let (log, start) = start_line(&url, &[("OUTBOXD_LOG_FORMAT", "json")]).await;
    assert!(!log.contains("s3cret-pw"), "the password leaked:\n{log}");
    assert!(
        start["database"]
            .as_str()
            .is_some_and(|d| d.starts_with("postgres://postgres@")),
        "{start}"
    );
    for key in [
        "batch_size",
        "concurrency",
        "request_timeout",
        "breaker_threshold",
        "retention",
    ] {
        assert!(start.get(key).is_some(), "{key} missing from {start}");
    }
}

#[tokio::test]
async fn the_start_up_log_reads_as_people_write_settings_with_no_notice() {
    let db = TestDb::new().await;
    // A migrated database, so the migration runner finds its table there.
    let (log, start) = start_line(
        &db.url,
        &[
            ("OUTBOXD_LOG_FORMAT", "JSON"),
            ("OUTBOXD_NO_MIGRATE", "no"),
            ("OUTBOXD_ADMIN_LISTEN", ""),
        ],
    )
    .await;
    assert!(
        !log.contains("NOTICE") && !log.contains("already exists"),
        "a notice of the migration runner was logged:\n{log}"
    );
    for (key, want) in [
        ("retention", "7days"),
        ("request_timeout", "2s"),
        ("poll_interval", "100ms"),
        ("retry_max_delay", "1s"),
        ("disable_failing_after", "5days"),
        ("allow_private_targets", "127.0.0.0/8,::1/128"),
        ("admin_listen", "off"),
        ("admin_token", "none"),
    ] {
        assert_eq!(start[key], want, "{key} in {start}");
    }
    assert_eq!(start["migrate"], true, "{start}");
    let text = start.to_string();
    assert!(!text.contains("Some(") && !text.contains("None"), "{start}");
}
