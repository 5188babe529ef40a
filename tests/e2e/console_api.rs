//! End-to-end tests of the admin console's JSON API and its protections:
//! the real daemon with OUTBOXD_ADMIN_LISTEN set, a fresh database per test,
//! receivers on 127.0.0.1. Each endpoint is called as a script or Zapier
//! would call it, including without the token, with a wrong one, across
//! origins, and with bad input.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outboxd_testkit::db::count;
use outboxd_testkit::{free_port, wait_until, Daemon, HttpAnswer, Receiver, Reply, TestDb};
use serde_json::json;

use crate::support::{Console, BIN};
const TOKEN: &str = "test-token-0123456789abcdef";

async fn catalog(db: &TestDb) {
    db.client()
        .await
        .batch_execute(
            "INSERT INTO outbox.event_types (name, description, example_payload) VALUES
               ('payment.received', 'A payment was captured.', '{\"amount\": 4200}'),
               ('payment.refunded', 'A refund was made.', '{\"amount\": 100}')",
        )
        .await
        .unwrap();
}

fn assert_error(r: &HttpAnswer, status: u16, contains: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let e = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(e.contains(contains), "{e:?} should mention {contains:?}");
}

#[tokio::test]
async fn the_api_refuses_requests_without_the_right_token() {
    let db = TestDb::new().await;
    let admin = Console::start(&db, Some(TOKEN), &[]).await;
    let none = admin.raw("GET", "/api/webhooks", &[], "").await;
    assert_error(&none, 401, "token");
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let wrong = admin
        .raw(
            "GET",
            "/api/webhooks",
            &[("authorization", "Bearer wrong-token-0123456789")],
            "",
        )
        .await;
    assert_error(&wrong, 401, "token");
    let basic = admin
        .raw("POST", "/api/webhooks", &[("authorization", TOKEN)], "{}")
        .await;
    assert_error(&basic, 401, "token");
    // The document is public; the data is not.
    let doc = admin.raw("GET", "/api/openapi.json", &[], "").await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json()["openapi"], "3.1.0");
    // The right token, from another site: refused as well.
    let auth = format!("Bearer {TOKEN}");
    let cross = admin
        .raw(
            "GET",
            "/api/webhooks",
            &[("authorization", &auth), ("origin", "http://evil.example")],
            "",
        )
        .await;
    assert_error(&cross, 403, "cross-origin");
    assert_eq!(admin.call("GET", "/api/webhooks", None).await.status, 200);
    // The token never reaches the log.
    assert!(
        !admin.daemon.log().contains(TOKEN),
        "{}",
        admin.daemon.plain_log()
    );
}

#[tokio::test]
async fn webhooks_are_added_edited_and_removed_over_the_api() {
    let db = TestDb::new().await;
    catalog(&db).await;
    let admin = Console::start(&db, Some(TOKEN), &[]).await;
    let created = admin
        .call(
            "POST",
            "/api/webhooks",
            Some(
                json!({"name": "Billing", "url": "https://billing.example/hooks",
                        "event_types": ["payment.*"], "headers": {"X-Tenant": "acme"}}),
            ),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let c = created.json();
    let id = c["id"].as_i64().unwrap();
    assert!(c["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(c["headers"]["x-tenant"], "(hidden)");

    let list = admin.call("GET", "/api/webhooks", None).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "Billing");
    assert!(
        list[0].get("secret").is_none(),
        "a list never shows the secret"
    );
    assert_eq!(list[0]["pending"], 0);

    let put = admin
        .call(
            "PUT",
            &format!("/api/webhooks/{id}"),
            Some(
                json!({"name": "Billing v2", "url": "https://billing.example/v2",
                        "event_types": ["payment.received", "payment.refunded"]}),
            ),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["url"], "https://billing.example/v2");
    assert_eq!(put.json()["event_types"][1], "payment.refunded");

    let disabled = admin
        .call(
            "POST",
            &format!("/api/webhooks/{id}/disable"),
            Some(json!({"reason": "maintenance"})),
        )
        .await;
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    let got = admin
        .call("GET", &format!("/api/webhooks/{id}"), None)
        .await
        .json();
    assert_eq!(got["enabled"], false);
    assert_eq!(got["disabled_reason"], "maintenance");
    let enabled = admin
        .call("POST", &format!("/api/webhooks/{id}/enable"), None)
        .await;
    assert_eq!(enabled.json()["changed"], true);

    let old: String = db
        .client()
        .await
        .query_one(
            "SELECT secret FROM outbox.webhook_secrets WHERE webhook_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let rotated = admin
        .call(
            "POST",
            &format!("/api/webhooks/{id}/rotate-secret"),
            Some(json!({"overlap": "1h"})),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let secret = rotated.json()["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && secret != old);
    assert!(rotated.json()["previous_secret_expires_at"].is_string());

    let removed = admin
        .call("DELETE", &format!("/api/webhooks/{id}"), None)
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_error(
        &admin
            .call("GET", &format!("/api/webhooks/{id}"), None)
            .await,
        404,
        "no webhook",
    );
    assert_error(
        &admin
            .call("DELETE", &format!("/api/webhooks/{id}"), None)
            .await,
        404,
        "no webhook",
    );
}

#[tokio::test]
async fn bad_input_is_answered_with_400_and_the_reason() {
    let db = TestDb::new().await;
    catalog(&db).await;
    let admin = Console::start(&db, Some(TOKEN), &[]).await;
    let add = |body: serde_json::Value| {
        let admin = &admin;
        async move { admin.call("POST", "/api/webhooks", Some(body)).await }
    };
    let r = add(json!({"name": "n", "url": "example.com/hook", "event_types": ["*"]})).await;
    assert_error(&r, 400, "must start with http");
    assert_eq!(r.json()["field"], "url");
    let r =
        add(json!({"name": "n", "url": "https://a.example/", "event_types": ["Payment.*"]})).await;
    assert_error(&r, 400, "not a valid pattern");
    assert_eq!(r.json()["field"], "events");
    let r =
        add(json!({"name": "n", "url": "https://a.example/", "event_types": ["paymnt.*"]})).await;
    assert_error(&r, 400, "matches no event type in the catalog");
    let r = add(json!({"name": " ", "url": "https://a.example/", "event_types": ["*"]})).await;
    assert_error(&r, 400, "blank");
    let r = add(
        json!({"name": "n", "url": "https://a.example/", "event_types": ["*"],
                       "headers": {"webhook-signature": "x"}}),
    )
    .await;
    assert_error(&r, 400, "set by outboxd");
    let auth = format!("Bearer {TOKEN}");
    let r = admin
        .raw(
            "POST",
            "/api/webhooks",
            &[("authorization", &auth)],
            "{\"name\": \"n\",",
        )
        .await;
    assert_error(&r, 400, "malformed JSON");
    let r = add(json!({"name": "n"})).await;
    assert_error(&r, 400, "missing field");
    let r = admin.call("GET", "/api/deliveries?state=lost", None).await;
    assert_error(&r, 400, "not a delivery state; use one of pending");
    let r = admin
        .call("GET", "/api/deliveries?since=yesterday", None)
        .await;
    assert_error(&r, 400, "RFC 3339");
    let r = admin
        .call(
            "POST",
            "/api/event-types",
            Some(json!({"name": "Bad Name"})),
        )
        .await;
    assert_error(&r, 400, "is invalid");
    let r = admin
        .call(
            "POST",
            "/api/event-types",
            Some(json!({"name": "payment.received"})),
        )
        .await;
    assert_error(&r, 409, "already");
    assert_error(&admin.call("GET", "/api/nope", None).await, 404, "openapi");
    let patch = admin.call("PATCH", "/api/webhooks", None).await;
    assert_error(&patch, 405, "GET, POST");
    assert_eq!(patch.header("allow"), Some("GET, POST"));
    assert_eq!(
        count(&db.client().await, "SELECT count(*) FROM outbox.webhooks").await,
        0
    );
}

#[tokio::test]
async fn test_events_deliveries_and_replays_over_the_api() {
    let db = TestDb::new().await;
    catalog(&db).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let receiver = Receiver::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::ok().body("thanks")
        } else {
            Reply::status(503).body("try later")
        }
    })
    .await;
    let admin = Console::start(&db, Some(TOKEN), &[]).await;
    let c = admin
        .call(
            "POST",
            "/api/webhooks",
            Some(json!({"name": "R", "url": receiver.url("/hook"), "event_types": ["payment.*"]})),
        )
        .await
        .json();
    let id = c["id"].as_i64().unwrap();
    let t = admin
        .call(
            "POST",
            &format!("/api/webhooks/{id}/test"),
            Some(json!({"event_type": "payment.received"})),
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.body);
    let t = t.json();
    assert_eq!(t["success"], true, "{t}");
    assert_eq!(t["status"], 200);
    assert_eq!(t["response_body"], "thanks");
    assert!(t["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(receiver.requests()[0].json()["data"]["amount"], 4200);

    // The second answer is a 503: reported as a failure with its reason.
    let failed = admin
        .call("POST", &format!("/api/webhooks/{id}/test"), None)
        .await
        .json();
    assert_eq!(failed["success"], false);
    assert!(
        failed["failure"].as_str().unwrap().contains("503"),
        "{failed}"
    );
    let delivery_id = failed["delivery_id"].as_i64().unwrap();

    let log = admin
        .call(
            "GET",
            &format!("/api/deliveries?webhook_id={id}&state=failed&since=1h"),
            None,
        )
        .await;
    assert_eq!(log.status, 200, "{}", log.body);
    let log = log.json();
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
    assert_eq!(log[0]["delivery_id"], delivery_id);
    let shown = admin
        .call("GET", &format!("/api/deliveries/{delivery_id}"), None)
        .await
        .json();
    assert_eq!(shown["state"], "failed");
    assert_eq!(shown["attempt_log"][0]["response_body"], "try later");

    let replayed = admin
        .call(
            "POST",
            &format!("/api/deliveries/{delivery_id}/replay"),
            None,
        )
        .await;
    assert_eq!(replayed.status, 200, "{}", replayed.body);
    assert_eq!(replayed.json()["replayed"], 1);
    // The daemon sends it again (the receiver keeps answering 503).
    let again = wait_until(Duration::from_secs(10), || async { receiver.count() >= 3 }).await;
    assert!(again, "the replayed delivery was not sent again");
    let r = admin
        .call(
            "POST",
            &format!("/api/webhooks/{id}/replay-failed"),
            Some(json!({"since": "1h"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["replayed"].is_i64());
    assert_error(
        &admin
            .call("POST", "/api/deliveries/999999/replay", None)
            .await,
        404,
        "no delivery",
    );
    let stats = admin.call("GET", "/api/stats", None).await.json();
    assert!(
        stats["attempts_last_hour"].as_i64().unwrap() >= 2,
        "{stats}"
    );
}

#[tokio::test]
async fn the_event_catalog_over_the_api() {
    let db = TestDb::new().await;
    let admin = Console::start(&db, Some(TOKEN), &[]).await;
    let r = admin
        .call(
            "POST",
            "/api/event-types",
            Some(json!({"name": "order.shipped", "description": "Shipped.", "example_payload": {"order": 7}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin
        .call(
            "PUT",
            "/api/event-types/order.shipped",
            Some(json!({"description": "Left the warehouse."})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = admin
        .call("GET", "/api/event-types/order.shipped", None)
        .await
        .json();
    assert_eq!(got["description"], "Left the warehouse.");
    assert_eq!(
        got["example_payload"]["order"], 7,
        "an update without an example keeps it"
    );
    assert_eq!(
        admin
            .call("GET", "/api/event-types", None)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        admin
            .call("DELETE", "/api/event-types/order.shipped", None)
            .await
            .status,
        200
    );
    assert_error(
        &admin
            .call("GET", "/api/event-types/order.shipped", None)
            .await,
        404,
        "not in the catalog",
    );
}

#[tokio::test]
async fn zapier_subscribes_receives_and_unsubscribes() {
    let db = TestDb::new().await;
    catalog(&db).await;
    let receiver = Receiver::ok().await;
    let admin = Console::start(&db, Some(TOKEN), &[]).await;
    let sample = admin
        .call("GET", "/api/hooks/sample?event=payment.received", None)
        .await;
    assert_eq!(sample.status, 200, "{}", sample.body);
    assert_eq!(sample.json()[0]["data"]["amount"], 4200);
    assert_eq!(sample.json()[0]["type"], "payment.received");
    assert_error(
        &admin
            .call("GET", "/api/hooks/sample?event=nope.nope", None)
            .await,
        404,
        "not in the catalog",
    );

    let sub = admin
        .call(
            "POST",
            "/api/hooks",
            Some(json!({"target_url": receiver.url("/zap"), "event": "payment.received"})),
        )
        .await;
    assert_eq!(sub.status, 201, "{}", sub.body);
    let id = sub.json()["id"].as_i64().unwrap();
    let client = db.client().await;
    client
        .execute(
            "SELECT outbox.publish('payment.received', '{\"amount\": 1}')",
            &[],
        )
        .await
        .unwrap();
    let got = wait_until(Duration::from_secs(10), || async { receiver.count() == 1 }).await;
    assert!(
        got,
        "the subscriber got nothing:\n{}",
        admin.daemon.plain_log()
    );
    assert_eq!(receiver.requests()[0].json()["type"], "payment.received");

    assert_error(
        &admin
            .call(
                "POST",
                "/api/hooks",
                Some(json!({"target_url": "ftp://x", "event": "payment.received"})),
            )
            .await,
        400,
        "must start with http",
    );
    assert_error(
        &admin
            .call(
                "POST",
                "/api/hooks",
                Some(json!({"target_url": receiver.url("/z"), "event": "no.such"})),
            )
            .await,
        400,
        "catalog",
    );
    let del = admin
        .call("DELETE", &format!("/api/hooks/{id}"), None)
        .await;
    assert_eq!(del.status, 200, "{}", del.body);
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.webhooks").await,
        0
    );
}

#[tokio::test]
async fn console_forms_need_a_session_and_its_csrf_token() {
    let db = TestDb::new().await;
    catalog(&db).await;
    let admin = Console::start(&db, Some(TOKEN), &[]).await;
    // Not logged in: sent to the login form.
    let r = admin.raw("GET", "/webhooks", &[], "").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));
    let bad = admin.login("wrong").await;
    assert_eq!(bad.status, 401);
    assert!(bad.body.contains("wrong token"), "{}", bad.body);
    let login = admin.login(TOKEN).await;
    assert_eq!(login.status, 303, "{}", login.body);
    let set_cookie = login.header("set-cookie").unwrap().to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let csrf = admin.csrf(&cookie, "/webhooks/new").await;
    let form = "name=A&url=https%3A%2F%2Fa.example%2F&events=payment.received";
    let form_headers = |extra: Option<(&'static str, &'static str)>| {
        let mut h = vec![
            ("cookie", cookie.clone()),
            (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
        ];
        if let Some((n, v)) = extra {
            h.push((n, v.to_owned()));
        }
        h
    };
    let send = |headers: Vec<(&'static str, String)>, body: String| {
        let admin = &admin;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            admin.raw("POST", "/webhooks/new", &h, &body).await
        }
    };
    let no_csrf = send(form_headers(None), form.to_owned()).await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    assert!(no_csrf.body.contains("CSRF"), "{}", no_csrf.body);
    let forged = send(form_headers(None), format!("{form}&csrf=forged")).await;
    assert_eq!(forged.status, 403);
    let cross = send(
        form_headers(Some(("origin", "http://evil.example"))),
        format!("{form}&csrf={csrf}"),
    )
    .await;
    assert_eq!(cross.status, 403);
    let client = db.client().await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.webhooks").await,
        0
    );
    let ok = send(form_headers(None), format!("{form}&csrf={csrf}")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("whsec_"), "the new secret is shown once");
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.webhooks").await,
        1
    );
    let list = admin
        .raw("GET", "/webhooks", &[("cookie", &cookie)], "")
        .await;
    assert!(
        !list.body.contains("whsec_"),
        "the list never shows a secret"
    );
}

#[tokio::test]
async fn a_public_admin_listener_without_a_token_stops_start_up() {
    let db = TestDb::new().await;
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let mut daemon = Daemon::start(BIN, &db.url, &[("OUTBOXD_ADMIN_LISTEN", &listen)]);
    let status = daemon
        .wait(Duration::from_secs(20))
        .await
        .expect("outboxd exits");
    assert!(!status.success());
    let log = daemon.plain_log();
    assert!(
        log.contains("OUTBOXD_ADMIN_TOKEN") && log.contains("OUTBOXD_ADMIN_LISTEN"),
        "{log}"
    );
}

#[tokio::test]
async fn on_loopback_without_a_token_the_api_is_open_to_local_callers_only() {
    let db = TestDb::new().await;
    let admin = Console::start(&db, None, &[]).await;
    let r = admin.raw("GET", "/api/webhooks", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A DNS-rebinding page reaches 127.0.0.1 under another name.
    let rebound = admin
        .raw("GET", "/api/webhooks", &[("host", "evil.example")], "")
        .await;
    assert_eq!(rebound.status, 403);
}

#[tokio::test]
async fn saving_a_webhook_the_ssrf_guard_would_refuse_warns_with_the_setting() {
    let db = TestDb::new().await;
    catalog(&db).await;
    let admin = Console::start(&db, Some(TOKEN), &[("OUTBOXD_ALLOW_PRIVATE_TARGETS", "")]).await;
    let body =
        |url: &str| json!({"name": "local", "url": url, "event_types": ["payment.received"]});

    let local = admin
        .call(
            "POST",
            "/api/webhooks",
            Some(body("http://127.0.0.1:9/hook")),
        )
        .await;
    assert_eq!(local.status, 201, "{}", local.body);
    let warnings = local.json()["warnings"].clone();
    assert_eq!(
        warnings,
        json!(["deliveries to http://127.0.0.1:9/hook would be blocked: 127.0.0.1 is loopback; to allow it, add 127.0.0.1/32 to OUTBOXD_ALLOW_PRIVATE_TARGETS (comma-separated CIDRs)"]),
        "{}",
        local.body
    );
    let id = local.json()["id"].as_i64().unwrap();
    let edited = admin
        .call(
            "PUT",
            &format!("/api/webhooks/{id}"),
            Some(body("http://10.0.0.5/hook")),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    let warning = edited.json()["warnings"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        warning.contains("add 10.0.0.5/32 to OUTBOXD_ALLOW_PRIVATE_TARGETS"),
        "{}",
        edited.body
    );
    let public = admin
        .call(
            "PUT",
            &format!("/api/webhooks/{id}"),
            Some(body("http://93.184.215.14/hook")),
        )
        .await;
    assert_eq!(public.json()["warnings"], json!([]), "{}", public.body);

    // The console's form shows the same warning above the new secret.
    let cookie = admin.admin_session().await;
    let csrf = admin.csrf(&cookie, "/webhooks/new").await;
    let saved = admin
        .post_form(
            &cookie,
            "/webhooks/new",
            &format!(
                "name=B&url=http%3A%2F%2Flocalhost%3A9%2F&events=payment.received&csrf={csrf}"
            ),
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(saved.body.contains("whsec_"), "{}", saved.body);
    assert!(
        saved.body.contains("class=\"warning\"")
            && saved.body.contains("OUTBOXD_ALLOW_PRIVATE_TARGETS"),
        "{}",
        saved.body
    );
}

#[tokio::test]
async fn test_events_to_a_hanging_endpoint_hold_no_database_connection() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let hanging =
        outboxd_testkit::raw::RawServer::start("127.0.0.1:0", |mut stream, _| async move {
            let _ = outboxd_testkit::raw::read_request(&mut stream).await;
            tokio::time::sleep(Duration::from_secs(120)).await;
            drop(stream);
        })
        .await;
    let ok = Receiver::ok().await;
    let (hang_id, _) =
        outboxd_testkit::db::add_webhook(&client, "hangs", &hanging.url("/"), &["none.ever"]).await;
    outboxd_testkit::db::add_webhook(&client, "ok", &ok.url("/ok"), &["order.created"]).await;
    let admin = Arc::new(
        Console::start(
            &db,
            Some(TOKEN),
            &[("OUTBOXD_REQUEST_TIMEOUT", "30s"), ("OUTBOXD_LEASE", "60s")],
        )
        .await,
    );

    // 16 test events at once, twice the pool, all waiting on the endpoint.
    let tests: Vec<_> = (0..16)
        .map(|_| {
            let admin = admin.clone();
            tokio::spawn(async move {
                admin
                    .call("POST", &format!("/api/webhooks/{hang_id}/test"), None)
                    .await
            })
        })
        .collect();
    // At least as many as the pool holds, whether or not each took one.
    assert!(
        wait_until(Duration::from_secs(20), || async {
            hanging.connections() >= 8
        })
        .await,
        "the test events did not reach the endpoint ({} did)",
        hanging.connections()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    outboxd_testkit::db::publish_many(&client, "order.created", 1).await;
    for _ in 0..3 {
        assert_eq!(
            admin.daemon.get("/readyz").await.map(|r| r.0),
            Some(200),
            "/readyz while test events wait"
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || async { ok.count() == 1 }).await,
        "an ordinary event was not delivered while test events waited:\n{}",
        admin.daemon.plain_log()
    );
    for t in tests {
        t.abort();
    }
}

const HEADER_VALUE: &str = "Bearer sekrit-header-value-5e1f";

/// Adds a webhook with a credential in a custom header through the API,
/// then edits it as a script would: sending back what it was shown.
async fn webhook_with_a_credential(admin: &Console, url: &str) -> i64 {
    catalog_types(admin).await;
    let created = admin
        .call(
            "POST",
            "/api/webhooks",
            Some(json!({"name": "with credential", "url": url,
                        "event_types": ["payment.received"],
                        "headers": {"x-pass": HEADER_VALUE, "x-tenant": "acme"}})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(!created.body.contains(HEADER_VALUE), "{}", created.body);
    let id = created.json()["id"].as_i64().unwrap();
    let shown = admin
        .call("GET", &format!("/api/webhooks/{id}"), None)
        .await;
    let mut edited = shown.json();
    edited["name"] = json!("renamed");
    let put = admin
        .call("PUT", &format!("/api/webhooks/{id}"), Some(edited))
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    id
}

async fn catalog_types(admin: &Console) {
    let r = admin
        .call(
            "POST",
            "/api/event-types",
            Some(json!({"name": "payment.received", "description": "paid"})),
        )
        .await;
    assert!(r.status == 201 || r.status == 409, "{}", r.body);
}

#[tokio::test]
async fn the_api_shows_header_names_but_no_values_unless_asked() {
    let db = TestDb::new().await;
    let ok = Receiver::ok().await;
    let admin = Console::start(&db, Some(TOKEN), &[]).await;
    let id = webhook_with_a_credential(&admin, &ok.url("/hook")).await;

    let list = admin.call("GET", "/api/webhooks", None).await;
    assert!(!list.body.contains(HEADER_VALUE), "{}", list.body);
    assert!(!list.body.contains("acme"), "{}", list.body);
    let headers = &list.json()[0]["headers"];
    assert_eq!(headers["x-pass"], "(hidden)", "{headers}");
    assert_eq!(headers["x-tenant"], "(hidden)", "{headers}");
    let one = admin
        .call("GET", &format!("/api/webhooks/{id}"), None)
        .await;
    assert!(!one.body.contains(HEADER_VALUE), "{}", one.body);

    let revealed = admin
        .call("GET", &format!("/api/webhooks/{id}?reveal=headers"), None)
        .await;
    assert_eq!(revealed.json()["headers"]["x-pass"], HEADER_VALUE);
    assert_eq!(revealed.json()["name"], "renamed");

    // The edit kept the stored values: the receiver gets the real ones.
    let test = admin
        .call("POST", &format!("/api/webhooks/{id}/test"), None)
        .await;
    assert_eq!(test.json()["success"], true, "{}", test.body);
    assert_eq!(ok.requests()[0].header("x-pass"), HEADER_VALUE);
    assert_eq!(ok.requests()[0].header("x-tenant"), "acme");
}

#[tokio::test]
async fn debug_logs_never_show_a_header_value() {
    let db = TestDb::new().await;
    let ok = Receiver::ok().await;
    let admin = Console::start(&db, Some(TOKEN), &[("RUST_LOG", "debug")]).await;
    let id = webhook_with_a_credential(&admin, &ok.url("/hook")).await;
    let test = admin
        .call("POST", &format!("/api/webhooks/{id}/test"), None)
        .await;
    assert_eq!(test.json()["success"], true, "{}", test.body);
    db.client()
        .await
        .execute(
            "INSERT INTO outbox.events (event_type, payload) VALUES ('payment.received', '{}')",
            &[],
        )
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || async { ok.count() == 2 }).await);
    let log = admin.daemon.plain_log();
    assert!(log.contains("DEBUG"), "RUST_LOG=debug took effect");
    assert!(
        !log.contains("sekrit-header-value"),
        "a header value in the log:\n{}",
        log.lines()
            .filter(|l| l.contains("sekrit"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn the_admin_token_read_from_a_file_shows_neither_in_ps_nor_in_the_environment() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("outboxd-token-e2e-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("admin-token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let (daemon, port) = Daemon::start_with_console(
        BIN,
        &db.url,
        None,
        &[("OUTBOXD_ADMIN_TOKEN_FILE", file.to_str().unwrap())],
    )
    .await;
    let admin = Console::at(port, daemon, TOKEN);
    assert_eq!(admin.call("GET", "/api/webhooks", None).await.status, 200);
    let none = admin.raw("GET", "/api/webhooks", &[], "").await;
    assert_eq!(none.status, 401);
    let pid = admin.daemon.pid();
    for part in ["cmdline", "environ"] {
        let bytes = std::fs::read(format!("/proc/{pid}/{part}")).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(TOKEN),
            "the token shows in /proc/{pid}/{part}"
        );
    }

    std::fs::remove_file(&file).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["run", "--admin-token-file"])
        .arg(&file)
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("OUTBOXD_ADMIN_TOKEN_FILE"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn deeply_nested_payloads_and_examples_are_shown_not_a_crash() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let deep = "(repeat('[', 200) || repeat(']', 200))::jsonb";
    let delivery: i64 = client
        .query_one(
            &format!(
                "WITH w AS (INSERT INTO outbox.webhooks (name, url) VALUES ('deep', 'http://127.0.0.1:9/') RETURNING id),
                 t AS (INSERT INTO outbox.event_types (name, example_payload) VALUES ('deep.event', {deep})),
                 e AS (INSERT INTO outbox.events (event_type, payload) VALUES ('deep.event', {deep}) RETURNING id)
                 INSERT INTO outbox.deliveries (event_id, webhook_id, state)
                 SELECT e.id, w.id, 'failed' FROM e, w RETURNING id"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let admin = Console::start(&db, Some(TOKEN), &[]).await;
    for path in [
        format!("/api/deliveries/{delivery}"),
        "/api/event-types".into(),
        "/api/event-types/deep.event".into(),
    ] {
        let r = admin.call("GET", &path, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(r.body.contains(&nested), "{path}: {}", r.body);
    }
    let cookie = admin.admin_session().await;
    for path in [
        format!("/deliveries/{delivery}"),
        "/event-types".into(),
        "/event-types/deep.event/edit".into(),
        "/webhooks/new".into(),
    ] {
        let r = admin.raw("GET", &path, &[("cookie", &cookie)], "").await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        // The webhook form lists the catalog's names, not its examples.
        if !path.starts_with("/webhooks") {
            assert!(r.body.contains("[[[["), "{path}: {}", r.body);
        }
    }
}

#[tokio::test]
async fn null_headers_a_lowercase_bearer_and_an_endless_url_are_handled() {
    let db = TestDb::new().await;
    let admin = Console::start(&db, Some(TOKEN), &[]).await;
    let created = admin
        .call(
            "POST",
            "/api/webhooks",
            Some(json!({"name": "n", "url": "https://example.com/h", "event_types": ["*"], "headers": null})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    // The scheme of an Authorization header is case-insensitive (RFC 7235).
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = admin
            .raw(
                "GET",
                "/api/webhooks",
                &[("authorization", &format!("{scheme} {TOKEN}"))],
                "",
            )
            .await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.body);
    }
    let r = admin
        .raw(
            "GET",
            "/api/webhooks",
            &[("authorization", &format!("Basic {TOKEN}"))],
            "",
        )
        .await;
    assert_eq!(r.status, 401);
    let long = format!("https://example.com/{}", "a".repeat(9000));
    let r = admin
        .call(
            "POST",
            "/api/webhooks",
            Some(json!({"name": "long", "url": long, "event_types": ["*"]})),
        )
        .await;
    assert_error(&r, 400, "8192");
    assert_eq!(r.json()["field"], "url");
}
