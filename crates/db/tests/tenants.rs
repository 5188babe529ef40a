//! A tenant's webhook keeps the tenant's header rule whoever writes the
//! row: plain SQL inserts, edits and moves into a tenant are refused by the
//! schema (V24) with the header named and its value not shown, and the SQL
//! rule agrees with crates/core's.

use outboxd_core::matching::{
    tenant_may_set_header, TENANT_FORBIDDEN_NAMES, TENANT_FORBIDDEN_PREFIXES,
};
use outboxd_testkit::TestDb;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

const SECRET_VALUE: &str = "sekrit-5e1f";

/// The refusal of `sql`: its SQLSTATE, constraint and message.
async fn refusal(client: &Client, sql: &str) -> (SqlState, String, String) {
    let e = client
        .batch_execute(sql)
        .await
        .expect_err(&format!("{sql} should be refused"));
    let db = e.as_db_error().expect("a database error");
    (
        db.code().clone(),
        db.constraint().unwrap_or_default().to_owned(),
        db.message().to_owned(),
    )
}

#[tokio::test]
async fn the_sql_tenant_header_rule_agrees_with_core() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let mut names: Vec<String> = TENANT_FORBIDDEN_NAMES
        .iter()
        .map(|n| n.to_string())
        .collect();
    for p in TENANT_FORBIDDEN_PREFIXES {
        names.push(format!("{p}x"));
        names.push(p.to_ascii_uppercase() + "Y");
        names.push(p.trim_end_matches('-').to_owned());
    }
    names.extend(
        [
            "authorization",
            "x-api-key",
            "Host",
            "hostname",
            "x-host",
            "webhook",
            "x-webhook-id",
            "contents",
            "x_forwarded_for",
            "viaduct",
        ]
        .map(String::from),
    );
    for name in &names {
        let sql: bool = client
            .query_one("SELECT outbox.is_tenant_header($1)", &[name])
            .await
            .unwrap()
            .get(0);
        assert_eq!(sql, tenant_may_set_header(name), "{name}");
    }
}

#[tokio::test]
async fn plain_sql_cannot_give_a_tenants_webhook_a_forbidden_header() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let insert = format!(
        "INSERT INTO outbox.webhooks (name, url, tenant, headers)
         VALUES ('t', 'https://hooks.example.com/', 'acme', '{{\"x-forwarded-for\": \"{SECRET_VALUE}\"}}')"
    );
    let (code, constraint, message) = refusal(&client, &insert).await;
    assert_eq!(code, SqlState::CHECK_VIOLATION);
    assert_eq!(constraint, "tenant_headers");
    assert!(message.contains("x-forwarded-for"), "{message}");
    assert!(!message.contains(SECRET_VALUE), "{message}");

    // The platform's own webhook may carry it; moving it into a tenant may not.
    client
        .batch_execute(&format!(
            "INSERT INTO outbox.webhooks (name, url, headers)
             VALUES ('p', 'https://hooks.example.com/', '{{\"X-Forwarded-For\": \"{SECRET_VALUE}\"}}')"
        ))
        .await
        .expect("a platform webhook may set forwarding headers");
    let (_, constraint, message) = refusal(
        &client,
        "UPDATE outbox.webhooks SET tenant = 'acme' WHERE name = 'p'",
    )
    .await;
    assert_eq!(constraint, "tenant_headers");
    assert!(!message.contains(SECRET_VALUE), "{message}");

    // A tenant's webhook edited in SQL: its headers are held to the rule.
    client
        .batch_execute(
            "INSERT INTO outbox.webhooks (name, url, tenant, headers)
             VALUES ('t', 'https://hooks.example.com/', 'acme', '{\"authorization\": \"Bearer x\"}')",
        )
        .await
        .expect("a tenant may set authorization");
    for headers in [
        r#"{"authorization": "Bearer x", "content-encoding": "gzip"}"#,
        r#"{"Via": "1.1 proxy"}"#,
        r#"{"forwarded": "for=10.0.0.1"}"#,
    ] {
        let (code, constraint, _) = refusal(
            &client,
            &format!("UPDATE outbox.webhooks SET headers = '{headers}' WHERE name = 't'"),
        )
        .await;
        assert_eq!(
            (code, constraint.as_str()),
            (SqlState::CHECK_VIOLATION, "tenant_headers"),
            "{headers}"
        );
    }
    // Other edits of it go through.
    client
        .batch_execute("UPDATE outbox.webhooks SET name = 't2', rate_limit = 5 WHERE name = 't'")
        .await
        .expect("an edit that keeps the headers");
}
