//! Bounds on input and least privilege, against a real database: oversized
//! payloads and unsafe webhook headers and URLs are refused by the schema with
//! a clear error, and the roles of deploy/postgres/roles.sql let each kind of
//! user do its job and nothing more — the daemon included, run as a real
//! process under its restricted role.

use std::time::Duration;

use outboxd_testkit::db::{add_webhook, count};
use outboxd_testkit::{wait_until, Daemon, Receiver, TestDb};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::support::BIN;

/// Runs `sql` expecting a refusal; returns the server's error.
async fn refused(client: &Client, sql: &str) -> tokio_postgres::error::DbError {
    let err = client
        .batch_execute(sql)
        .await
        .expect_err(&format!("`{sql}` should be refused"));
    err.as_db_error()
        .unwrap_or_else(|| panic!("`{sql}`: not a database error: {err}"))
        .clone()
}

#[tokio::test]
async fn a_payload_over_the_limit_is_refused_at_insert_with_its_size_and_the_limit() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let big = "INSERT INTO outbox.events (event_type, payload)
               VALUES ('file.uploaded', jsonb_build_object('blob', repeat('a', 2000000)))";
    let err = refused(&client, big).await;
    assert_eq!(err.code(), &SqlState::CHECK_VIOLATION);
    assert!(
        err.message().starts_with("outbox event payload is 20000")
            && err.message().ends_with("over the limit of 1048576 bytes"),
        "{}",
        err.message()
    );
    assert!(err
        .hint()
        .unwrap_or("")
        .contains("UPDATE outbox.limits SET max_payload_bytes"));
    // publish goes through the same check.
    let err = refused(
        &client,
        "SELECT outbox.publish('file.uploaded', jsonb_build_object('blob', repeat('a', 2000000)))",
    )
    .await;
    assert_eq!(err.code(), &SqlState::CHECK_VIOLATION);
    // Under the limit passes; the schema's owner changes the limit.
    client
        .batch_execute(
            "INSERT INTO outbox.events (event_type, payload)
             VALUES ('file.uploaded', jsonb_build_object('blob', repeat('a', 1000000)))",
        )
        .await
        .unwrap();
    client
        .batch_execute("UPDATE outbox.limits SET max_payload_bytes = 1000")
        .await
        .unwrap();
    let err = refused(
        &client,
        "INSERT INTO outbox.events (event_type, payload) VALUES ('a.b', jsonb_build_object('x', repeat('a', 2000)))",
    )
    .await;
    assert!(
        err.message().contains("over the limit of 1000 bytes"),
        "{}",
        err.message()
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.events").await,
        1,
        "nothing of the refused statements was written"
    );
}

#[tokio::test]
async fn the_publisher_can_neither_lift_nor_dodge_the_payload_limit() {
    let db = TestDb::new().await;
    let owner = db.client().await;
    install_roles(&owner).await;
    let over = "INSERT INTO outbox.events (event_type, payload)
                VALUES ('file.uploaded', jsonb_build_object('blob', repeat('a', 2000000)))";

    // A setting of the session, or of the connection (PGOPTIONS), is not the limit.
    let app = as_role(&db, "outbox_publisher").await;
    app.batch_execute("SET outbox.max_payload_bytes = '999999999999'")
        .await
        .unwrap();
    let err = refused(&app, over).await;
    assert_eq!(err.code(), &SqlState::CHECK_VIOLATION, "{}", err.message());
    let mut config = db.config.clone();
    config.options("-c outbox.max_payload_bytes=999999999999");
    let (with_option, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    with_option
        .batch_execute("SET ROLE outbox_publisher")
        .await
        .unwrap();
    let err = refused(&with_option, over).await;
    assert_eq!(err.code(), &SqlState::CHECK_VIOLATION, "{}", err.message());

    // A payload that compresses well is measured uncompressed: stored in a
    // table first, it arrives compressed (pg_column_size about 60 kB).
    let err = refused(
        &app,
        "CREATE TEMP TABLE big AS SELECT jsonb_build_object('blob', repeat('a', 5000000)) AS p;
         INSERT INTO outbox.events (event_type, payload) SELECT 'file.uploaded', p FROM big",
    )
    .await;
    assert_eq!(err.code(), &SqlState::CHECK_VIOLATION, "{}", err.message());
    assert!(
        err.message().starts_with("outbox event payload is 5000"),
        "{}",
        err.message()
    );

    // The limit lives where only the schema's owner writes it.
    denied(
        &app,
        "UPDATE outbox.limits SET max_payload_bytes = 999999999999",
    )
    .await;
    denied(
        &as_role(&db, "outbox_admin").await,
        "UPDATE outbox.limits SET max_payload_bytes = 999999999999",
    )
    .await;
    assert_eq!(
        count(&owner, "SELECT count(*) FROM outbox.events").await,
        0,
        "nothing of the refused statements was written"
    );
}

#[tokio::test]
async fn unsafe_webhook_headers_and_urls_are_refused_by_the_schema() {
    let db = TestDb::new().await;
    let client = db.client().await;
    for (headers, why) in [
        (r#"{"x-evil": "a\r\nx-injected: 1"}"#, "CR/LF"),
        (r#"{"x-evil": "a\u0000b"}"#, "NUL"),
        (r#"{"webhook-signature": "v1,forged"}"#, "signed header"),
        (r#"{"Content-Type": "text/plain"}"#, "outboxd's own header"),
        (r#"{"transfer-encoding": "chunked"}"#, "hop-by-hop"),
        (r#"{"bad name": "x"}"#, "not a token"),
        (r#"{"x-number": 5}"#, "not a string"),
    ] {
        let sql = format!(
            "INSERT INTO outbox.webhooks (name, url, headers) VALUES ('h', 'https://example.com/', '{}')",
            headers.replace('\'', "''")
        );
        let err = client.batch_execute(&sql).await.expect_err(why);
        let db_err = err.as_db_error();
        // A NUL inside a JSON string is refused by jsonb itself.
        let constraint = db_err.and_then(|e| e.constraint());
        assert!(
            constraint == Some("headers_valid") || why == "NUL",
            "{why}: {err:?}"
        );
    }
    for url in [
        "https://user:password@example.com/hook",
        "https://example.com/a hook",
        "https://exa mple.com/",
        "ftp://example.com/",
        "example.com/hook",
    ] {
        let err = refused(
            &client,
            &format!("INSERT INTO outbox.webhooks (name, url) VALUES ('u', '{url}')"),
        )
        .await;
        assert_eq!(err.constraint(), Some("url_scheme"), "{url}");
    }
    client
        .batch_execute(
            r#"INSERT INTO outbox.webhooks (name, url, headers)
               VALUES ('ok', 'https://example.com/hook?x=1', '{"authorization": "Bearer abc", "x-tenant": "acme\tone"}')"#,
        )
        .await
        .expect("good headers pass");
}

/// Runs deploy/postgres/roles.sql as the owner; returns the script.
async fn install_roles(owner: &Client) -> String {
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/postgres/roles.sql"
    ))
    .unwrap();
    // Roles are cluster-wide and parallel test binaries may run the script
    // at once: the lock keeps its CREATE ROLEs from racing.
    owner
        .batch_execute(&format!(
            "SELECT pg_advisory_lock(4243); {script}; SELECT pg_advisory_unlock(4243);"
        ))
        .await
        .expect("roles.sql runs");
    script
}

/// A connection as `role` (a NOLOGIN group role), by SET ROLE from the
/// superuser test connection.
async fn as_role(db: &TestDb, role: &str) -> Client {
    let client = db.client().await;
    client
        .batch_execute(&format!("SET ROLE {role}"))
        .await
        .unwrap();
    client
}

async fn denied(client: &Client, sql: &str) {
    let err = refused(client, sql).await;
    assert_eq!(
        err.code(),
        &SqlState::INSUFFICIENT_PRIVILEGE,
        "`{sql}`: {}",
        err.message()
    );
}

#[tokio::test]
async fn roles_let_each_user_do_its_job_and_nothing_more() {
    let db = TestDb::new().await;
    let owner = db.client().await;
    let script = install_roles(&owner).await;
    // Twice is fine.
    owner.batch_execute(&script).await.expect("roles.sql again");
    let receiver = Receiver::ok().await;
    let (hook, secret) = add_webhook(&owner, "orders", &receiver.url("/"), &["*"]).await;

    let app = as_role(&db, "outbox_publisher").await;
    app.batch_execute(
        "INSERT INTO outbox.events (event_type, payload) VALUES ('order.created', '{\"n\": 1}')",
    )
    .await
    .expect("the application inserts events");
    let first: i64 = app
        .query_one(
            "SELECT outbox.publish('order.created', '{\"n\": 2}', 'k-1')",
            &[],
        )
        .await
        .expect("the application calls publish")
        .get(0);
    let again: i64 = app
        .query_one(
            "SELECT outbox.publish('order.created', '{\"n\": 2}', 'k-1')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(first, again);
    denied(&app, "SELECT payload FROM outbox.events").await;
    denied(&app, "SELECT idempotency_key FROM outbox.events").await;
    denied(&app, "SELECT secret FROM outbox.webhook_secrets").await;
    denied(&app, "SELECT * FROM outbox.delivery_log").await;
    denied(&app, "UPDATE outbox.deliveries SET state = 'delivered'").await;
    denied(&app, "DELETE FROM outbox.events").await;
    denied(
        &app,
        "INSERT INTO outbox.webhooks (name, url) VALUES ('x', 'https://example.com/')",
    )
    .await;
    denied(&app, &format!("SELECT outbox.send_test_event({hook})")).await;

    let admin = as_role(&db, "outbox_admin").await;
    admin
        .batch_execute(
            "INSERT INTO outbox.event_types (name, description) VALUES ('order.created', 'An order');
             INSERT INTO outbox.webhooks (name, url, event_types) VALUES ('other', 'https://example.com/', '{order.*}');
             UPDATE outbox.webhooks SET enabled = false WHERE name = 'other';",
        )
        .await
        .expect("admins manage webhooks and the catalog");
    admin
        .query_one(
            &format!("SELECT outbox.send_test_event({hook}, 'order.created')"),
            &[],
        )
        .await
        .expect("admins send test events");
    admin
        .batch_execute(
            "SELECT count(*) FROM outbox.delivery_log;
             SELECT count(*) FROM outbox.undispatched_events;",
        )
        .await
        .expect("admins read the delivery log and the backlog");
    // Replays, yes (below); rewriting a delivery's identity or lease, no.
    for column in [
        "event_id = 1",
        "webhook_id = 1",
        "lease = 0",
        "created_at = now()",
    ] {
        denied(&admin, &format!("UPDATE outbox.deliveries SET {column}")).await;
    }
    admin
        .batch_execute("SELECT outbox.replay_failed(1, now() - interval '1 day')")
        .await
        .expect("admins replay");
    denied(&admin, "DELETE FROM outbox.events").await;
    denied(&admin, "DELETE FROM outbox.delivery_attempts").await;
    denied(&admin, "TRUNCATE outbox.deliveries").await;
    denied(&admin, "DROP TABLE outbox.events").await;

    // The daemon as a real process under a login role of outbox_daemon.
    let login = format!("outboxd_test_daemon_{}", std::process::id());
    owner
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {login}; CREATE ROLE {login} LOGIN IN ROLE outbox_daemon"
        ))
        .await
        .unwrap();
    let host = match &db.config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let url = format!(
        "postgres://{login}@{host}:{}/{}",
        db.config.get_ports()[0],
        db.name
    );
    let mut daemon = Daemon::start(BIN, &url, &[("OUTBOXD_NO_MIGRATE", "true")]);
    let delivered = wait_until(Duration::from_secs(20), || async {
        count(
            &owner,
            "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        )
        .await
            == 3
    })
    .await;
    let ready = daemon.get("/readyz").await;
    daemon.terminate();
    let status = daemon.wait(Duration::from_secs(10)).await;
    owner
        .batch_execute(&format!("DROP ROLE IF EXISTS {login}"))
        .await
        .unwrap();
    assert!(delivered, "the daemon's role delivers:\n{}", daemon.log());
    assert_eq!(ready.map(|(code, _)| code), Some(200), "{}", daemon.log());
    assert!(status.is_some_and(|s| s.success()), "{}", daemon.log());
    assert!(
        !daemon.log().contains("permission denied"),
        "{}",
        daemon.log()
    );
    // What the daemon runs when a database was restored into another
    // cluster (tests/pipeline.rs) works under its role too.
    let daemon_role = as_role(&db, "outbox_daemon").await;
    daemon_role
        .batch_execute("SELECT outbox.restart_stream(); SELECT * FROM outbox.next_events(10);")
        .await
        .expect("the daemon's role starts the stream over");
    let r = receiver.requests();
    assert_eq!(r.len(), 3);
    assert!(
        !daemon.log().contains(&secret),
        "the secret never reaches the log"
    );
}

#[tokio::test]
async fn webhook_errors_name_the_field_and_never_show_the_secret() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let (id, secret) = add_webhook(&client, "ok", "https://example.com/hook", &["*"]).await;
    for (sql, constraint, names) in [
        (
            format!("UPDATE outbox.webhooks SET url = 'ftp://example.com/' WHERE id = {id}"),
            "url_scheme",
            "ftp://example.com/",
        ),
        (
            format!(
                "UPDATE outbox.webhooks SET url = 'https://me:pw@example.com/' WHERE id = {id}"
            ),
            "url_scheme",
            "credentials not shown",
        ),
        (
            format!("UPDATE outbox.webhooks SET event_types = '{{Bad}}' WHERE id = {id}"),
            "event_types_syntax",
            "{Bad}",
        ),
        (
            format!(
                r#"UPDATE outbox.webhooks SET headers = '{{"authorization": "Bearer s3cret\r\n"}}' WHERE id = {id}"#
            ),
            "headers_valid",
            "'authorization'",
        ),
        (
            format!("UPDATE outbox.webhook_secrets SET secret = 'whsec_not base64!' WHERE webhook_id = {id}"),
            "secret_format",
            "not shown",
        ),
    ] {
        let err = refused(&client, &sql).await;
        assert_eq!(
            err.constraint(),
            Some(constraint),
            "{sql}: {}",
            err.message()
        );
        assert!(err.message().contains(constraint), "{}", err.message());
        assert!(err.message().contains(names), "{}", err.message());
        let everything = format!("{} {:?} {:?}", err.message(), err.detail(), err.hint());
        assert!(
            !everything.contains(&secret),
            "the secret shows: {everything}"
        );
        assert!(
            !everything.contains("s3cret") && !everything.contains("pw@"),
            "{everything}"
        );
    }
}

#[tokio::test]
async fn a_test_event_for_a_webhook_that_does_not_exist_and_an_endless_url_are_refused() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let err = refused(
        &client,
        "INSERT INTO outbox.events (event_type, payload, target_webhook_id) VALUES ('a.b', '{}', 999)",
    )
    .await;
    assert_eq!(
        err.code(),
        &SqlState::FOREIGN_KEY_VIOLATION,
        "{}",
        err.message()
    );
    assert!(err.message().contains("webhook 999"), "{}", err.message());
    let (id, _) = add_webhook(&client, "ok", "https://example.com/hook", &["*"]).await;
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload, target_webhook_id) VALUES ('a.b', '{}', $1)",
            &[&id],
        )
        .await
        .expect("an existing target is fine");

    let long = format!("https://example.com/{}", "a".repeat(9000));
    let err = refused(
        &client,
        &format!("INSERT INTO outbox.webhooks (name, url) VALUES ('long', '{long}')"),
    )
    .await;
    assert_eq!(err.constraint(), Some("url_length"), "{}", err.message());
    assert!(err.message().len() < 400, "the URL is not echoed whole");
}

#[tokio::test]
async fn no_failing_row_message_shows_a_secret_or_a_header_value() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let (id, secret) = add_webhook(&client, "ok", "https://example.com/hook", &["*"]).await;
    client
        .execute(
            r#"UPDATE outbox.webhooks SET headers = '{"authorization": "Bearer s3cret"}' WHERE id = $1"#,
            &[&id],
        )
        .await
        .unwrap();
    for sql in [
        format!("UPDATE outbox.webhooks SET enabled = NULL WHERE id = {id}"),
        format!("UPDATE outbox.webhooks SET created_at = NULL WHERE id = {id}"),
        "INSERT INTO outbox.webhooks (name, url, enabled) VALUES ('n', 'https://example.com/', NULL)"
            .into(),
        format!("UPDATE outbox.webhook_secrets SET secret = NULL WHERE webhook_id = {id}"),
        format!("UPDATE outbox.webhook_secrets SET previous_secret = '{secret}' WHERE webhook_id = {id}"),
    ] {
        let err = refused(&client, &sql).await;
        let everything = format!("{} {:?} {:?}", err.message(), err.detail(), err.hint());
        // The secrets table's own messages say what a secret looks like
        // ("whsec_ followed by base64"), never what it is.
        let shown = everything.replace("whsec_ followed", "");
        assert!(
            !shown.contains("whsec_") && !shown.contains("s3cret"),
            "{sql}: {everything}"
        );
        assert!(
            err.code() == &SqlState::NOT_NULL_VIOLATION || err.code() == &SqlState::CHECK_VIOLATION,
            "{sql}: {everything}"
        );
    }
}

#[tokio::test]
async fn an_oversized_event_from_before_the_limit_is_still_dispatched_and_delivered() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    add_webhook(&client, "big", &receiver.url("/"), &["*"]).await;
    // As if written before the limit existed.
    client
        .batch_execute(
            "ALTER TABLE outbox.events DISABLE TRIGGER events_insert;
             INSERT INTO outbox.events (event_type, payload)
             VALUES ('file.uploaded', jsonb_build_object('blob', repeat('a', 1100000)));
             ALTER TABLE outbox.events ENABLE TRIGGER events_insert;",
        )
        .await
        .unwrap();
    let daemon = Daemon::start(BIN, &db.url, &[]);
    let delivered = wait_until(Duration::from_secs(20), || async {
        count(
            &client,
            "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        )
        .await
            == 1
    })
    .await;
    assert!(delivered, "{}", daemon.log());
}
