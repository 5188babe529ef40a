//! A webhook's rate limit, ordering flag and failure policy wherever a
//! webhook is written or shown: the API (set, read back, clear; bad values
//! refused naming the field), the console's form and detail page, the
//! tenant portal on its own webhooks, and the CLI's `webhooks add`, `edit`,
//! `show` and `list`.

use outboxd_testkit::db::count;
use outboxd_testkit::TestDb;
use serde_json::json;

use crate::support::{
    assert_api_error, catalog_order_created, cli, csrf_of, form, form_error, Console, PUBLIC_URL,
};
use crate::tenants::TENANT_LOOPBACK;

const TOKEN: &str = "settings-token-0123456789abcdef";

/// The three settings as the API shows webhook `id`.
async fn settings(console: &Console, id: i64) -> serde_json::Value {
    let r = console
        .call("GET", &format!("/api/webhooks/{id}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let w = r.json();
    json!({"rate_limit": w["rate_limit"], "ordered": w["ordered"], "ordering_policy": w["ordering_policy"]})
}

fn body(name: &str) -> serde_json::Value {
    json!({"name": name, "url": PUBLIC_URL, "event_types": ["order.created"]})
}

#[tokio::test]
async fn the_api_sets_reads_back_and_clears_the_rate_limit_and_the_policy() {
    let db = TestDb::new().await;
    catalog_order_created(&db).await;
    let console = Console::start(&db, Some(TOKEN), &[]).await;

    let mut add = body("limited");
    add["rate_limit"] = json!(50);
    add["ordering_policy"] = json!("halt");
    let created = console.call("POST", "/api/webhooks", Some(add)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["rate_limit"], 50, "{}", created.body);
    let id = created.json()["id"].as_i64().unwrap();
    assert_eq!(
        settings(&console, id).await,
        json!({"rate_limit": 50, "ordered": false, "ordering_policy": "halt"})
    );
    let listed = console.call("GET", "/api/webhooks", None).await.json();
    assert_eq!(listed[0]["rate_limit"], 50);
    assert_eq!(listed[0]["ordering_policy"], "halt");

    // A change of one field keeps the others.
    let path = format!("/api/webhooks/{id}");
    let r = console
        .call("PATCH", &path, Some(json!({"rate_limit": 20})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["rate_limit"], 20);
    assert_eq!(
        settings(&console, id).await,
        json!({"rate_limit": 20, "ordered": false, "ordering_policy": "halt"})
    );
    let r = console.call("PATCH", &path, Some(json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(settings(&console, id).await["rate_limit"], 20);
    // null removes the limit.
    let r = console
        .call("PATCH", &path, Some(json!({"rate_limit": null})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        settings(&console, id).await,
        json!({"rate_limit": null, "ordered": false, "ordering_policy": "halt"})
    );

    // A replace sets what it is given, and the defaults for what it leaves out.
    let mut put = body("limited");
    put["rate_limit"] = json!(7);
    let r = console.call("PUT", &path, Some(put)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        settings(&console, id).await,
        json!({"rate_limit": 7, "ordered": false, "ordering_policy": "skip"})
    );
    let r = console.call("PUT", &path, Some(body("limited"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(settings(&console, id).await["rate_limit"], json!(null));
    let row = db
        .client()
        .await
        .query_one(
            "SELECT rate_limit, ordering_policy FROM outbox.webhooks WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, Option<i32>>(0), row.get::<_, String>(1)),
        (None, "skip".to_owned())
    );

    let doc = console
        .raw("GET", "/api/openapi.json", &[], "")
        .await
        .json();
    let schemas = &doc["components"]["schemas"];
    for schema in ["WebhookInput", "WebhookChange", "Webhook"] {
        for field in ["rate_limit", "ordered", "ordering_policy"] {
            assert!(
                schemas[schema]["properties"][field].is_object(),
                "{schema}.{field} in the document"
            );
        }
    }
    assert!(doc["paths"]["/api/webhooks/{id}"]["patch"].is_object());
}

#[tokio::test]
async fn bad_settings_are_refused_naming_the_field_and_what_it_takes() {
    let db = TestDb::new().await;
    catalog_order_created(&db).await;
    let console = Console::start(&db, Some(TOKEN), &[]).await;
    let created = console
        .call("POST", "/api/webhooks", Some(body("plain")))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let path = format!("/api/webhooks/{}", created.json()["id"]);

    for (field, value, says) in [
        ("rate_limit", json!(0), "at least 1"),
        ("rate_limit", json!(-5), "at least 1"),
        ("rate_limit", json!(1.5), "at least 1"),
        ("rate_limit", json!("fast"), "at least 1"),
        ("rate_limit", json!(4_000_000_000i64), "at least 1"),
        ("ordering_policy", json!("sometimes"), "skip"),
        ("ordering_policy", json!(3), "halt"),
        ("ordered", json!("yes"), "true or false"),
    ] {
        let mut add = body("bad");
        add[field] = value.clone();
        let r = console
            .call("POST", "/api/webhooks", Some(add.clone()))
            .await;
        assert_api_error(&r, 400, Some(field), says);
        let r = console.call("PUT", &path, Some(add)).await;
        assert_api_error(&r, 400, Some(field), says);
        let r = console
            .call("PATCH", &path, Some(json!({ field: value })))
            .await;
        assert_api_error(&r, 400, Some(field), says);
    }
    // A body is an object, not the fields' values in a row.
    for method in ["PATCH", "PUT"] {
        let r = console
            .raw(
                method,
                &path,
                &[("authorization", &format!("Bearer {TOKEN}"))],
                "[null, null]",
            )
            .await;
        assert_eq!(r.status, 400, "{method}: {}", r.body);
        assert!(r.body.contains("must be a JSON object"), "{}", r.body);
    }
    assert_eq!(
        count(
            &db.client().await,
            "SELECT count(*) FROM outbox.webhooks WHERE name = 'bad' OR rate_limit IS NOT NULL"
        )
        .await,
        0,
        "nothing bad was saved"
    );
}

/// The form's fields as posted: the name, the settings, the CSRF token.
fn form_of(csrf: &str, name: &str, rate_limit: &str, ordered: bool, policy: &str) -> String {
    let mut fields = vec![
        ("csrf", csrf),
        ("name", name),
        ("url", PUBLIC_URL),
        ("events", "order.created"),
        ("rate_limit", rate_limit),
        ("ordering_policy", policy),
    ];
    if ordered {
        fields.push(("ordered", "on"));
    }
    form(&fields)
}

#[tokio::test]
async fn the_console_form_sets_shows_and_clears_the_settings() {
    let db = TestDb::new().await;
    catalog_order_created(&db).await;
    let client = db.client().await;
    let console = Console::start(&db, Some(TOKEN), &[]).await;
    let cookie = console.admin_session().await;

    let new = console
        .raw("GET", "/webhooks/new", &[("cookie", &cookie)], "")
        .await;
    assert_eq!(new.status, 200);
    for shown in [
        "name=\"rate_limit\"",
        "empty: no limit",
        "name=\"ordered\"",
        "Ordered per key",
        "<option value=\"halt\"",
        "the key waits until an admin replays or skips it",
    ] {
        assert!(new.body.contains(shown), "{shown} on the form");
    }
    let csrf = csrf_of(&new.body);
    let added = console
        .post_form(
            &cookie,
            "/webhooks/new",
            &form_of(&csrf, "Formed", "25", false, "halt"),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert!(added.body.contains("whsec_"), "{}", added.body);
    let id: i64 = client
        .query_one("SELECT id FROM outbox.webhooks WHERE name = 'Formed'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        settings(&console, id).await,
        json!({"rate_limit": 25, "ordered": false, "ordering_policy": "halt"})
    );

    // The edit form shows them; the detail page too.
    let edit_path = format!("/webhooks/{id}/edit");
    let edit = console
        .raw("GET", &edit_path, &[("cookie", &cookie)], "")
        .await;
    assert!(edit.body.contains("value=\"25\""), "{}", edit.body);
    assert!(
        edit.body.contains("<option value=\"halt\" selected>"),
        "{}",
        edit.body
    );
    let detail = console
        .raw(
            "GET",
            &format!("/webhooks/{id}"),
            &[("cookie", &cookie)],
            "",
        )
        .await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert!(detail.body.contains("25 requests/s"), "{}", detail.body);
    assert!(detail.body.contains("unordered"), "{}", detail.body);

    // Bad values come back on the form, next to their field, nothing saved.
    let csrf = csrf_of(&edit.body);
    for (rate, policy, field, says) in [
        ("0", "skip", "rate_limit", "at least 1"),
        ("lots", "skip", "rate_limit", "at least 1"),
        ("5", "sometimes", "ordering_policy", "halt"),
    ] {
        let r = console
            .post_form(
                &cookie,
                &edit_path,
                &form_of(&csrf, "Formed", rate, false, policy),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.body);
        let error = form_error(&r.body, field);
        assert!(error.contains(says), "{error}");
        assert!(
            r.body.contains(&format!("value=\"{rate}\"")),
            "the form keeps what was typed"
        );
    }
    assert_eq!(settings(&console, id).await["rate_limit"], 25);

    // An empty limit is no limit.
    let r = console
        .post_form(
            &cookie,
            &edit_path,
            &form_of(&csrf, "Formed", "", false, "skip"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        settings(&console, id).await,
        json!({"rate_limit": null, "ordered": false, "ordering_policy": "skip"})
    );
}

#[tokio::test]
async fn a_tenant_sets_the_settings_on_its_own_webhooks_only() {
    let db = TestDb::new().await;
    catalog_order_created(&db).await;
    let console = Console::start(&db, Some(TOKEN), &[TENANT_LOOPBACK]).await;
    let mut theirs = body("globex's");
    theirs["tenant"] = json!("globex");
    let theirs = console.call("POST", "/api/webhooks", Some(theirs)).await;
    assert_eq!(theirs.status, 201, "{}", theirs.body);
    let theirs = theirs.json()["id"].as_i64().unwrap();

    let url = console.portal_link("acme").await;
    let cookie = console.open_portal_link(&url).await;

    // The API with the portal's session.
    let mut add = body("acme's");
    add["rate_limit"] = json!(10);
    add["ordering_policy"] = json!("halt");
    let r = console
        .with_cookie(&cookie, "POST", "/api/webhooks", Some(add))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ours = r.json()["id"].as_i64().unwrap();
    assert_eq!(r.json()["tenant"], "acme");
    let r = console
        .with_cookie(
            &cookie,
            "PATCH",
            &format!("/api/webhooks/{ours}"),
            Some(json!({"rate_limit": 3, "tenant": "globex"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["rate_limit"], 3);
    assert_eq!(
        r.json()["tenant"],
        "acme",
        "a portal's webhook stays its own"
    );
    let r = console
        .with_cookie(
            &cookie,
            "PATCH",
            &format!("/api/webhooks/{theirs}"),
            Some(json!({"rate_limit": 1})),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // The portal's form.
    let edit_path = format!("/webhooks/{ours}/edit");
    let edit = console
        .raw("GET", &edit_path, &[("cookie", &cookie)], "")
        .await;
    assert_eq!(edit.status, 200, "{}", edit.body);
    assert!(edit.body.contains("value=\"3\""), "{}", edit.body);
    let csrf = csrf_of(&edit.body);
    let r = console
        .post_form(
            &cookie,
            &edit_path,
            &form_of(&csrf, "acme's", "40", false, "skip"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        settings(&console, ours).await,
        json!({"rate_limit": 40, "ordered": false, "ordering_policy": "skip"})
    );
    let r = console
        .post_form(
            &cookie,
            &format!("/webhooks/{theirs}/edit"),
            &form_of(&csrf, "mine now", "1", false, "skip"),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(settings(&console, theirs).await["rate_limit"], json!(null));
}

#[tokio::test]
async fn the_cli_adds_edits_shows_and_lists_the_settings() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let add = cli(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "Partner",
            "--url",
            PUBLIC_URL,
            "--rate-limit",
            "10",
            "--ordering-policy",
            "halt",
        ],
    )
    .await;
    assert!(add.ok(), "{}", add.stderr);
    assert!(
        add.stdout.contains("at most 10 requests/s"),
        "{}",
        add.stdout
    );
    let row = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap() }
    };
    let r = row("SELECT rate_limit, ordered, ordering_policy FROM outbox.webhooks").await;
    assert_eq!(
        (
            r.get::<_, Option<i32>>(0),
            r.get::<_, bool>(1),
            r.get::<_, String>(2)
        ),
        (Some(10), false, "halt".to_owned())
    );

    let show = cli(&db, &["webhooks", "show", "Partner"]).await;
    assert!(show.ok(), "{}", show.stderr);
    for line in [
        "rate limit:",
        "10 requests/s",
        "ordered:",
        "false",
        "ordering policy: halt",
    ] {
        assert!(show.stdout.contains(line), "{line:?} in\n{}", show.stdout);
    }

    let edit = cli(
        &db,
        &[
            "webhooks",
            "edit",
            "Partner",
            "--rate-limit",
            "none",
            "--ordering-policy",
            "skip",
        ],
    )
    .await;
    assert!(edit.ok(), "{}", edit.stderr);
    assert!(edit.stdout.contains("rate limit none"), "{}", edit.stdout);
    let r = row("SELECT rate_limit, ordering_policy, name, url FROM outbox.webhooks").await;
    assert_eq!(r.get::<_, Option<i32>>(0), None);
    assert_eq!(r.get::<_, String>(1), "skip");
    assert_eq!(r.get::<_, String>(2), "Partner", "what is not given stays");
    assert_eq!(r.get::<_, String>(3), PUBLIC_URL);
    let edit = cli(&db, &["webhooks", "edit", "Partner", "--rate-limit", "3"]).await;
    assert!(edit.ok(), "{}", edit.stderr);
    let edit = cli(
        &db,
        &[
            "webhooks",
            "edit",
            "Partner",
            "--events",
            "order.*,payment.received",
            "--header",
            "authorization=Bearer b",
        ],
    )
    .await;
    assert!(edit.ok(), "{}", edit.stderr);
    let r = row("SELECT event_types, headers::text, rate_limit FROM outbox.webhooks").await;
    assert_eq!(r.get::<_, Vec<String>>(0), ["order.*", "payment.received"]);
    assert_eq!(r.get::<_, String>(1), r#"{"authorization": "Bearer b"}"#);
    assert_eq!(r.get::<_, Option<i32>>(2), Some(3), "the limit stays");
    let edit = cli(&db, &["webhooks", "edit", "Partner", "--clear-headers"]).await;
    assert!(edit.ok(), "{}", edit.stderr);
    assert_eq!(
        row("SELECT headers::text FROM outbox.webhooks")
            .await
            .get::<_, String>(0),
        "{}"
    );

    let list = cli(&db, &["webhooks", "list"]).await;
    let header = list.stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("RATE LIMIT") && header.contains("ORDERING"),
        "{header}"
    );
    assert!(list.stdout.contains("3/s"), "{}", list.stdout);
    let json = cli(&db, &["webhooks", "show", "Partner", "--json"]).await;
    let w: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        (&w["rate_limit"], &w["ordered"], &w["ordering_policy"]),
        (&json!(3), &json!(false), &json!("skip"))
    );

    for (args, says) in [
        (
            vec!["--rate-limit", "0"],
            "--rate-limit: 0 is not a rate limit",
        ),
        (
            vec!["--rate-limit", "fast"],
            "--rate-limit: \"fast\" is not a rate limit",
        ),
        (
            vec!["--ordering-policy", "stop"],
            "--ordering-policy: \"stop\" is not an ordering policy",
        ),
    ] {
        let mut edit = vec!["webhooks", "edit", "Partner"];
        edit.extend(&args);
        cli(&db, &edit).await.assert_one_line_error(says);
        let mut add = vec!["webhooks", "add", "--name", "Bad", "--url", PUBLIC_URL];
        add.extend(&args);
        cli(&db, &add).await.assert_one_line_error(says);
    }
    let ordered = cli(&db, &["webhooks", "edit", "Partner", "--ordered", "yes"]).await;
    assert!(!ordered.ok());
    assert!(
        ordered.stderr.contains("--ordered") && ordered.stderr.contains("true"),
        "{}",
        ordered.stderr
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.webhooks").await,
        1
    );
    assert_eq!(
        row("SELECT rate_limit FROM outbox.webhooks")
            .await
            .get::<_, Option<i32>>(0),
        Some(3),
        "a refused edit changes nothing"
    );
}

#[tokio::test]
async fn an_ordered_webhook_is_accepted_by_the_api_the_form_and_the_cli() {
    let db = TestDb::new().await;
    catalog_order_created(&db).await;
    let console = Console::start(&db, Some(TOKEN), &[]).await;

    let mut add = body("ordered");
    add["ordered"] = json!(true);
    let r = console.call("POST", "/api/webhooks", Some(add)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(settings(&console, id).await["ordered"], true);
    let r = console
        .call(
            "PATCH",
            &format!("/api/webhooks/{id}"),
            Some(json!({"ordered": false})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(settings(&console, id).await["ordered"], false);

    let cookie = console.admin_session().await;
    let edit_path = format!("/webhooks/{id}/edit");
    let csrf = console.csrf(&cookie, &edit_path).await;
    let r = console
        .post_form(
            &cookie,
            &edit_path,
            &form_of(&csrf, "ordered", "", true, "halt"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        settings(&console, id).await,
        json!({"rate_limit": null, "ordered": true, "ordering_policy": "halt"})
    );
    let edit = console
        .raw("GET", &edit_path, &[("cookie", &cookie)], "")
        .await;
    assert!(
        edit.body.contains("name=\"ordered\" value=\"on\" checked"),
        "{}",
        edit.body
    );

    let run = cli(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "Ordered by CLI",
            "--url",
            PUBLIC_URL,
            "--ordered",
            "true",
        ],
    )
    .await;
    assert!(run.ok(), "{}", run.stderr);
    assert!(run.stdout.contains("ordered per key"), "{}", run.stdout);
    let run = cli(
        &db,
        &["webhooks", "edit", "Ordered by CLI", "--ordered", "false"],
    )
    .await;
    assert!(run.ok(), "{}", run.stderr);
}
