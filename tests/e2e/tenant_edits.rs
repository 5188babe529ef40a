//! A tenant's webhook keeps the tenant's rules whoever writes it: an admin
//! adding one with a tenant, editing one, or moving a webhook into a
//! tenant, through the API, the console's form, the CLI or plain SQL, is
//! held to the SSRF rule, the header rule and the tenant's webhook limit,
//! as the tenant itself is in the portal.

use std::time::Duration;

use outboxd_testkit::db::count;
use outboxd_testkit::{wait_until, Daemon, Receiver, TestDb};
use serde_json::json;

use crate::support::{
    assert_api_error, catalog_order_created, cli, cli_env, csrf_of, form, form_error, Console, BIN,
    PUBLIC_URL,
};

const TOKEN: &str = "tenant-edits-token-0123456789abcdef";

fn hook(
    name: &str,
    url: &str,
    tenant: Option<&str>,
    headers: serde_json::Value,
) -> serde_json::Value {
    json!({"name": name, "url": url, "event_types": ["order.created"], "tenant": tenant, "headers": headers})
}

async fn add(console: &Console, body: serde_json::Value) -> i64 {
    let r = console.call("POST", "/api/webhooks", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["id"].as_i64().unwrap()
}

async fn tenant_of(console: &Console, id: i64) -> serde_json::Value {
    console
        .call("GET", &format!("/api/webhooks/{id}"), None)
        .await
        .json()["tenant"]
        .clone()
}

#[tokio::test]
async fn an_admin_adding_editing_or_moving_a_tenants_webhook_over_the_api_is_held_to_its_rules() {
    let db = TestDb::new().await;
    catalog_order_created(&db).await;
    let console = Console::start(
        &db,
        Some(TOKEN),
        &[("OUTBOXD_MAX_WEBHOOKS_PER_TENANT", "2")],
    )
    .await;

    // Adding with a tenant.
    for (body, field, says) in [
        (
            hook(
                "a",
                PUBLIC_URL,
                Some("acme"),
                json!({"x-forwarded-for": "10.0.0.1"}),
            ),
            "headers",
            "cannot be set on a tenant's webhook",
        ),
        (
            hook("a", "http://10.0.0.5/admin", Some("acme"), json!({})),
            "url",
            "public address",
        ),
    ] {
        let r = console.call("POST", "/api/webhooks", Some(body)).await;
        assert_api_error(&r, 400, Some(field), says);
    }
    let acme = add(
        &console,
        hook(
            "acme",
            PUBLIC_URL,
            Some("acme"),
            json!({"authorization": "Bearer a"}),
        ),
    )
    .await;

    // Editing it: the replace leaves out the tenant, which it keeps, and
    // is held to the tenant's rules all the same.
    let path = format!("/api/webhooks/{acme}");
    for (body, field, says) in [
        (
            hook("acme", PUBLIC_URL, None, json!({"x-real-ip": "10.0.0.1"})),
            "headers",
            "cannot be set on a tenant's webhook",
        ),
        (
            hook("acme", "http://127.0.0.1:9/", None, json!({})),
            "url",
            "public address",
        ),
    ] {
        let r = console.call("PUT", &path, Some(body)).await;
        assert_api_error(&r, 400, Some(field), says);
    }
    let r = console
        .call(
            "PATCH",
            &path,
            Some(json!({"url": "http://169.254.169.254/latest"})),
        )
        .await;
    assert_api_error(&r, 400, Some("url"), "public address");
    let r = console
        .call(
            "PATCH",
            &path,
            Some(json!({"headers": {"content-type": "text/plain"}})),
        )
        .await;
    assert_api_error(&r, 400, Some("headers"), "content-type");
    let r = console
        .call(
            "PUT",
            &path,
            Some(hook("acme 2", PUBLIC_URL, None, json!({}))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        tenant_of(&console, acme).await,
        "acme",
        "a replace keeps the tenant"
    );

    // Moving a platform webhook into the tenant.
    let forwarding = add(
        &console,
        hook(
            "fwd",
            PUBLIC_URL,
            None,
            json!({"x-forwarded-for": "10.0.0.1"}),
        ),
    )
    .await;
    let private = add(
        &console,
        hook("internal", "http://10.0.0.5/", None, json!({})),
    )
    .await;
    let clean = add(&console, hook("clean", PUBLIC_URL, None, json!({}))).await;
    for (id, field) in [(forwarding, "headers"), (private, "url")] {
        let r = console
            .call(
                "PATCH",
                &format!("/api/webhooks/{id}"),
                Some(json!({"tenant": "acme"})),
            )
            .await;
        assert_api_error(&r, 400, Some(field), "tenant");
        assert_eq!(tenant_of(&console, id).await, json!(null));
    }

    // The tenant's limit counts what an admin adds and moves in.
    add(
        &console,
        hook("acme b", PUBLIC_URL, Some("acme"), json!({})),
    )
    .await;
    let r = console
        .call(
            "POST",
            "/api/webhooks",
            Some(hook("acme c", PUBLIC_URL, Some("acme"), json!({}))),
        )
        .await;
    assert_api_error(&r, 409, None, "OUTBOXD_MAX_WEBHOOKS_PER_TENANT");
    let clean_path = format!("/api/webhooks/{clean}");
    let r = console
        .call("PATCH", &clean_path, Some(json!({"tenant": "acme"})))
        .await;
    assert_api_error(&r, 409, None, "tenant acme has 2 webhooks");
    let r = console
        .call(
            "PUT",
            &clean_path,
            Some(hook("clean", PUBLIC_URL, Some("acme"), json!({}))),
        )
        .await;
    assert_api_error(&r, 409, None, "tenant acme has 2 webhooks");
    assert_eq!(tenant_of(&console, clean).await, json!(null));

    // null makes a webhook the platform's; then there is room to move one in.
    let r = console
        .call("PATCH", &path, Some(json!({"tenant": null})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(tenant_of(&console, acme).await, json!(null));
    let r = console
        .call("PATCH", &clean_path, Some(json!({"tenant": "acme"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(tenant_of(&console, clean).await, "acme");
}

#[tokio::test]
async fn an_admin_editing_a_tenants_webhook_in_the_console_is_held_to_its_rules() {
    let db = TestDb::new().await;
    catalog_order_created(&db).await;
    let console = Console::start(&db, Some(TOKEN), &[]).await;
    let acme = add(&console, hook("acme", PUBLIC_URL, Some("acme"), json!({}))).await;
    let platform = add(
        &console,
        hook(
            "fwd",
            PUBLIC_URL,
            None,
            json!({"x-forwarded-for": "10.0.0.1"}),
        ),
    )
    .await;
    let cookie = console.admin_session().await;

    let edit_path = format!("/webhooks/{acme}/edit");
    let edit = console
        .raw("GET", &edit_path, &[("cookie", &cookie)], "")
        .await;
    assert!(
        edit.body.contains("name=\"tenant\" value=\"acme\""),
        "the form shows the tenant"
    );
    let csrf = csrf_of(&edit.body);
    let post = |url: &'static str, headers: &'static str, tenant: &'static str| {
        form(&[
            ("csrf", csrf.as_str()),
            ("name", "acme"),
            ("url", url),
            ("events", "order.created"),
            ("headers", headers),
            ("tenant", tenant),
            ("ordering_policy", "skip"),
        ])
    };
    for (body, field, says) in [
        (
            post(PUBLIC_URL, "X-Forwarded-For: 10.0.0.1", "acme"),
            "headers",
            "X-Forwarded-For cannot be set on a tenant",
        ),
        (
            post("http://10.0.0.5/", "", "acme"),
            "url",
            "public address",
        ),
    ] {
        let r = console.post_form(&cookie, &edit_path, &body).await;
        assert_eq!(r.status, 400, "{}", r.body);
        let error = form_error(&r.body, field);
        assert!(error.contains(says), "{error}");
    }
    // Adding one with the tenant set.
    let r = console
        .post_form(
            &cookie,
            "/webhooks/new",
            &post("http://127.0.0.1:9/", "", "acme"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(form_error(&r.body, "url").contains("127.0.0.1 is loopback"));
    // Moving the platform's webhook into the tenant with its forwarding header.
    let r = console
        .post_form(
            &cookie,
            &format!("/webhooks/{platform}/edit"),
            &post(PUBLIC_URL, "x-forwarded-for: (hidden)", "acme"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        form_error(&r.body, "headers").contains("x-forwarded-for"),
        "{}",
        r.body
    );
    assert_eq!(tenant_of(&console, platform).await, json!(null));
    let headers = db
        .client()
        .await
        .query_one(
            "SELECT headers::text FROM outbox.webhooks WHERE id = $1",
            &[&acme],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    assert_eq!(headers, "{}", "nothing refused was saved");

    // A form that does not post the tenant leaves it; a blank one is the platform.
    let without_tenant = form(&[
        ("csrf", csrf.as_str()),
        ("name", "acme renamed"),
        ("url", PUBLIC_URL),
        ("events", "order.created"),
    ]);
    let r = console
        .post_form(&cookie, &edit_path, &without_tenant)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(tenant_of(&console, acme).await, "acme");
    let r = console
        .post_form(&cookie, &edit_path, &post(PUBLIC_URL, "", ""))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(tenant_of(&console, acme).await, json!(null));
}

#[tokio::test]
async fn the_cli_holds_a_tenants_webhook_to_its_rules_on_add_edit_and_move() {
    let db = TestDb::new().await;
    let add = |args: &'static [&'static str]| {
        let db = &db;
        async move {
            let mut all = vec!["webhooks", "add", "--url"];
            all.extend_from_slice(args);
            cli(db, &all).await
        }
    };
    add(&[
        PUBLIC_URL,
        "--name",
        "a",
        "--tenant",
        "acme",
        "--header",
        "x-forwarded-for=1",
    ])
    .await
    .assert_one_line_error("--header: x-forwarded-for cannot be set on a tenant's webhook");
    add(&["http://10.0.0.5/", "--name", "a", "--tenant", "acme"])
        .await
        .assert_one_line_error("--url: 10.0.0.5 is");
    let ok = add(&[PUBLIC_URL, "--name", "acme", "--tenant", "acme"]).await;
    assert!(ok.ok(), "{}", ok.stderr);
    let ok = add(&[PUBLIC_URL, "--name", "fwd", "--header", "x-forwarded-for=1"]).await;
    assert!(ok.ok(), "{}", ok.stderr);
    let ok = add(&[PUBLIC_URL, "--name", "clean"]).await;
    assert!(ok.ok(), "{}", ok.stderr);

    let edit = |args: &'static [&'static str]| {
        let db = &db;
        async move {
            let mut all = vec!["webhooks", "edit"];
            all.extend_from_slice(args);
            cli_env(db, &all, &[("OUTBOXD_MAX_WEBHOOKS_PER_TENANT", "1")]).await
        }
    };
    edit(&["acme", "--header", "via=proxy"])
        .await
        .assert_one_line_error("--header: via cannot be set on a tenant's webhook");
    // The platform's loopback allowance is not the tenant's.
    edit(&["acme", "--url", "http://127.0.0.1:9/"])
        .await
        .assert_one_line_error("--url: 127.0.0.1 is loopback");
    edit(&["fwd", "--tenant", "acme"])
        .await
        .assert_one_line_error("--header: x-forwarded-for cannot be set on a tenant's webhook");
    edit(&["clean", "--tenant", "acme"])
        .await
        .assert_one_line_error("tenant acme has 1 webhooks");
    let client = db.client().await;
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.webhooks WHERE tenant = 'acme'"
        )
        .await,
        1
    );
    let moved = edit(&["acme", "--tenant", "none"]).await;
    assert!(moved.ok(), "{}", moved.stderr);
    let moved = edit(&["clean", "--tenant", "acme"]).await;
    assert!(moved.ok(), "{}", moved.stderr);
    let tenants: Vec<(String, Option<String>)> = client
        .query("SELECT name, tenant FROM outbox.webhooks ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        tenants,
        [
            ("acme".to_owned(), None),
            ("fwd".to_owned(), None),
            ("clean".to_owned(), Some("acme".to_owned()))
        ]
    );
}

#[tokio::test]
async fn a_webhook_moved_into_a_tenant_in_sql_is_held_to_the_tenants_ssrf_guard_at_once() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    let id: i64 = client
        .query_one(
            "INSERT INTO outbox.webhooks (name, url) VALUES ('moving', $1) RETURNING id",
            &[&receiver.url("/moving")],
        )
        .await
        .unwrap()
        .get(0);
    // The test daemon allows loopback for the platform's webhooks only.
    let daemon = Daemon::start(BIN, &db.url, &[]);
    client
        .batch_execute("SELECT outbox.publish('order.created', '{}')")
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || async { receiver.count() == 1 }).await,
        "the platform's webhook is delivered to\n{}",
        daemon.log()
    );

    client
        .execute(
            "UPDATE outbox.webhooks SET tenant = 'acme' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    client
        .batch_execute("SELECT outbox.publish('order.created', '{}', tenant => 'acme')")
        .await
        .unwrap();
    let blocked = format!(
        "SELECT count(*) FROM outbox.delivery_attempts WHERE webhook_id = {id} AND error LIKE 'blocked: 127.0.0.1%'"
    );
    assert!(
        wait_until(Duration::from_secs(30), || async {
            count(&client, &blocked).await >= 1
        })
        .await,
        "the tenant's delivery is refused\n{}",
        daemon.log()
    );
    assert_eq!(
        receiver.count(),
        1,
        "nothing reached the receiver as the tenant's"
    );
}
