//! The tenant portal end to end: a link made by the API or the CLI signs a
//! browser in once; the session sees its own tenant's webhooks and
//! deliveries only, through every API route and page; platform-only
//! operations answer 403; tampered, expired and replayed links answer 401
//! with a page that says what to do; signing out ends a session on every
//! replica; and the portal may be framed only by the configured origins.

use std::time::Duration;

use outboxd_testkit::db::count;
use outboxd_testkit::{wait_until, Receiver, TestDb};
use serde_json::json;

use crate::support::{csrf_of, path_of, Console, BIN};
use crate::tenants::TENANT_LOOPBACK;

const TOKEN: &str = "portal-token-0123456789abcdef";

/// The console with tenants' loopback receivers allowed, and `env`.
async fn start(db: &TestDb, env: &[(&str, &str)]) -> Console {
    let mut all = vec![TENANT_LOOPBACK];
    all.extend_from_slice(env);
    Console::start(db, Some(TOKEN), &all).await
}

/// `outboxd portal-link` with only the given environment.
fn portal_link_cli(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("portal-link").args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running outboxd portal-link")
}

/// A catalog, three webhooks (acme's, globex's, the platform's) and one
/// delivered event each; their ids and delivery ids. The webhooks exist
/// before the daemon starts, so its cache has them when the events come
/// (a webhook added to a running daemon may miss an event published the
/// same moment).
struct World {
    acme: i64,
    globex: i64,
    platform: i64,
    acme_delivery: i64,
    globex_delivery: i64,
    platform_delivery: i64,
    _receiver: Receiver,
}

async fn world(db: &TestDb, env: &[(&str, &str)]) -> (Console, World) {
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    client
        .batch_execute(
            "INSERT INTO outbox.event_types (name, description, example_payload) VALUES
               ('order.created', 'An order was placed.', '{\"order\": 7}')",
        )
        .await
        .unwrap();
    let add = |name: &'static str, tenant: Option<&'static str>| {
        let url = receiver.url(&format!("/{name}"));
        let client = &client;
        async move {
            client
                .query_one(
                    "INSERT INTO outbox.webhooks (name, url, event_types, tenant) VALUES ($1, $2, '{order.*}', $3) RETURNING id",
                    &[&name, &url, &tenant],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let acme = add("acme-hook", Some("acme")).await;
    let globex = add("globex-hook", Some("globex")).await;
    let platform = add("platform-hook", None).await;
    let console = start(db, env).await;
    for tenant in ["acme", "globex"] {
        client
            .execute(
                "SELECT outbox.publish('order.created', '{}', tenant => $1)",
                &[&tenant],
            )
            .await
            .unwrap();
    }
    let delivery = |webhook: i64| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT min(id) FROM outbox.deliveries WHERE webhook_id = $1",
                    &[&webhook],
                )
                .await
                .unwrap()
                .get::<_, Option<i64>>(0)
        }
    };
    // The platform's webhook gets both events; each tenant's its own.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            count(
                &db.client().await,
                "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
            )
            .await
                >= 4
        })
        .await
    );
    let world = World {
        acme,
        globex,
        platform,
        acme_delivery: delivery(acme).await.unwrap(),
        globex_delivery: delivery(globex).await.unwrap(),
        platform_delivery: delivery(platform).await.unwrap(),
        _receiver: receiver,
    };
    (console, world)
}

#[tokio::test]
async fn a_portal_session_reaches_its_own_tenants_data_only() {
    let db = TestDb::new().await;
    let (console, w) = world(&db, &[("OUTBOXD_MAX_WEBHOOKS_PER_TENANT", "2")]).await;
    let url = console.portal_link("acme").await;
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{}/portal/open?", console.port)),
        "{url}"
    );
    assert!(!url.contains(TOKEN));
    let cookie = console.open_portal_link(&url).await;

    // Its own webhooks and deliveries.
    let list = console
        .with_cookie(&cookie, "GET", "/api/webhooks", None)
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    let ids: Vec<i64> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [w.acme]);
    let log = console
        .with_cookie(&cookie, "GET", "/api/deliveries", None)
        .await;
    assert!(
        log.json()
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["webhook_id"] == w.acme),
        "{}",
        log.body
    );
    // Asking for another webhook by filter changes nothing.
    let filtered = console
        .with_cookie(
            &cookie,
            "GET",
            &format!("/api/deliveries?webhook_id={}&tenant=globex", w.globex),
            None,
        )
        .await;
    assert_eq!(
        filtered.json().as_array().unwrap().len(),
        0,
        "{}",
        filtered.body
    );
    assert_eq!(
        console
            .with_cookie(&cookie, "GET", &format!("/api/webhooks/{}", w.acme), None)
            .await
            .status,
        200
    );
    assert_eq!(
        console
            .with_cookie(
                &cookie,
                "GET",
                &format!("/api/deliveries/{}", w.acme_delivery),
                None
            )
            .await
            .status,
        200
    );

    // Another tenant's and the platform's answer 404 on every route.
    for other in [w.globex, w.platform] {
        for (method, path, body) in [
            ("GET", format!("/api/webhooks/{other}"), None),
            (
                "PUT",
                format!("/api/webhooks/{other}"),
                Some(json!({"name": "x", "url": "https://x.example/", "event_types": ["order.*"]})),
            ),
            ("DELETE", format!("/api/webhooks/{other}"), None),
            ("POST", format!("/api/webhooks/{other}/enable"), None),
            ("POST", format!("/api/webhooks/{other}/disable"), None),
            ("POST", format!("/api/webhooks/{other}/rotate-secret"), None),
            ("POST", format!("/api/webhooks/{other}/test"), None),
            (
                "POST",
                format!("/api/webhooks/{other}/replay-failed"),
                Some(json!({"since": "1h"})),
            ),
        ] {
            let r = console.with_cookie(&cookie, method, &path, body).await;
            assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        }
    }
    for other in [w.globex_delivery, w.platform_delivery] {
        for (method, path) in [
            ("GET", format!("/api/deliveries/{other}")),
            ("POST", format!("/api/deliveries/{other}/replay")),
        ] {
            let r = console.with_cookie(&cookie, method, &path, None).await;
            assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        }
    }
    assert_eq!(
        count(
            &db.client().await,
            "SELECT count(*) FROM outbox.webhooks WHERE enabled"
        )
        .await,
        3,
        "nothing of another tenant changed"
    );

    // Platform-only operations answer 403.
    for (method, path, body) in [
        ("POST", "/api/event-types", Some(json!({"name": "x.y"}))),
        (
            "PUT",
            "/api/event-types/order.created",
            Some(json!({"description": "mine"})),
        ),
        ("DELETE", "/api/event-types/order.created", None),
        ("GET", "/api/stats", None),
        ("GET", "/api/tenants", None),
        ("POST", "/api/tenants/globex/portal-link", None),
        (
            "POST",
            "/api/hooks",
            Some(json!({"target_url": "https://x.example/", "event": "order.created"})),
        ),
        ("GET", "/api/hooks/sample?event=order.created", None),
    ] {
        let r = console.with_cookie(&cookie, method, path, body).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
    }
    assert_eq!(
        console
            .with_cookie(&cookie, "GET", "/api/event-types", None)
            .await
            .status,
        200
    );

    // A webhook it adds is its own, whatever the body says; a private
    // address and the platform's headers are refused; the limit holds.
    let add =
        |body: serde_json::Value| console.with_cookie(&cookie, "POST", "/api/webhooks", Some(body));
    let r = add(json!({"name": "Mine", "url": "https://hooks.acme.example/", "event_types": ["order.*"], "tenant": "globex"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["tenant"], "acme");
    let r =
        add(json!({"name": "Sneaky", "url": "http://10.0.0.1/", "event_types": ["order.*"]})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["field"], "url");
    assert!(r.body.contains("public address"), "{}", r.body);
    let r = add(json!({"name": "Framing", "url": "https://a.example/", "event_types": ["order.*"], "headers": {"content-encoding": "gzip"}})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["field"], "headers");
    let r = add(json!({"name": "Third", "url": "https://b.example/", "event_types": ["order.*"]}))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body.contains("OUTBOXD_MAX_WEBHOOKS_PER_TENANT"),
        "{}",
        r.body
    );

    // From another origin, even with the cookie: refused.
    let cross = console
        .raw(
            "POST",
            "/api/webhooks",
            &[("cookie", &cookie), ("origin", "http://evil.example")],
            &json!({"name": "x", "url": "https://x.example/", "event_types": ["order.*"]})
                .to_string(),
        )
        .await;
    assert_eq!(cross.status, 403, "{}", cross.body);

    // The pages: its own webhook, not the others'; admin pages refused.
    let page = console
        .raw("GET", "/webhooks", &[("cookie", &cookie)], "")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("acme-hook")
            && !page.body.contains("globex-hook")
            && !page.body.contains("platform-hook")
    );
    for path in [
        format!("/webhooks/{}/edit", w.globex),
        format!("/webhooks/{}/delete", w.platform),
        format!("/deliveries/{}", w.globex_delivery),
    ] {
        let r = console.raw("GET", &path, &[("cookie", &cookie)], "").await;
        assert_eq!(r.status, 404, "{path}");
    }
    let csrf = csrf_of(&page.body);
    let form = format!("csrf={csrf}");
    let post = console
        .post_form(&cookie, &format!("/webhooks/{}/disable", w.globex), &form)
        .await;
    assert_eq!(post.status, 404);
    for path in ["/event-types/new", "/tenants"] {
        let r = console.raw("GET", path, &[("cookie", &cookie)], "").await;
        assert_eq!(r.status, 403, "{path}");
    }
    let home = console.raw("GET", "/", &[("cookie", &cookie)], "").await;
    assert_eq!(home.header("location"), Some("/webhooks"));

    // A forged cookie is no session.
    let forged = "outboxd_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(
        console
            .with_cookie(forged, "GET", "/api/webhooks", None)
            .await
            .status,
        401
    );
    assert_eq!(
        console
            .raw("GET", "/webhooks", &[("cookie", forged)], "")
            .await
            .status,
        303
    );

    // Signing out ends the session.
    let out = console.post_form(&cookie, "/logout", &form).await;
    assert_eq!(out.status, 303);
    assert_eq!(
        console
            .with_cookie(&cookie, "GET", "/api/webhooks", None)
            .await
            .status,
        401
    );
    assert!(
        console.daemon.log().contains("portal link used"),
        "the link's use is logged"
    );
}

#[tokio::test]
async fn tampered_expired_and_replayed_links_answer_401_with_what_to_do() {
    let db = TestDb::new().await;
    let console = start(&db, &[]).await;
    let url = console.portal_link("acme").await;
    let tampered = url.replace("tenant=acme", "tenant=globex");
    for bad in [
        tampered.as_str(),
        "/portal/open?tenant=acme",
        "/portal/open",
    ] {
        let r = console.raw("GET", path_of(bad), &[], "").await;
        assert_eq!(r.status, 401, "{bad}");
        assert!(r.header("set-cookie").is_none());
        assert!(r.body.contains("Go back to the site"), "{}", r.body);
    }
    console.open_portal_link(&url).await;
    let replayed = console.raw("GET", path_of(&url), &[], "").await;
    assert_eq!(replayed.status, 401);
    assert!(replayed.body.contains("used already"), "{}", replayed.body);

    // The CLI makes links with only the token, and they expire.
    let listen = (
        "OUTBOXD_ADMIN_LISTEN",
        format!("127.0.0.1:{}", console.port),
    );
    let token = ("OUTBOXD_ADMIN_TOKEN", TOKEN.to_owned());
    let out = portal_link_cli(
        &["--tenant", "acme", "--ttl", "1s"],
        &[token.clone(), listen.clone()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.lines().count(), 1, "{printed}");
    let cli_url = printed.trim();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = console.raw("GET", path_of(cli_url), &[], "").await;
    assert_eq!(expired.status, 401);
    assert!(expired.body.contains("expired"), "{}", expired.body);
    let console_url = (
        "OUTBOXD_CONSOLE_URL",
        format!("http://127.0.0.1:{}", console.port),
    );
    let fresh = portal_link_cli(&["--tenant", "acme"], &[token.clone(), console_url]);
    console
        .open_portal_link(String::from_utf8(fresh.stdout).unwrap().trim())
        .await;
    let bad_tenant = portal_link_cli(&["--tenant", "Not Valid"], &[token, listen]);
    assert!(!bad_tenant.status.success());
    assert!(String::from_utf8_lossy(&bad_tenant.stderr).contains("--tenant"));
}

#[tokio::test]
async fn signing_out_ends_an_admin_session_on_every_replica() {
    let db = TestDb::new().await;
    let one = start(&db, &[]).await;
    let two = start(&db, &[]).await;
    let cookie = one.admin_session().await;
    let page = two
        .raw("GET", "/webhooks", &[("cookie", &cookie)], "")
        .await;
    assert_eq!(page.status, 200, "the other replica knows the session");
    let form = format!("csrf={}", csrf_of(&page.body));
    let out = two.post_form(&cookie, "/logout", &form).await;
    assert_eq!(out.status, 303);
    for replica in [&one, &two] {
        let r = replica
            .raw("GET", "/webhooks", &[("cookie", &cookie)], "")
            .await;
        assert_eq!(r.status, 303, "the old cookie no longer signs in");
        assert_eq!(r.header("location"), Some("/login"));
    }
}

#[tokio::test]
async fn the_portal_may_be_framed_by_the_configured_origins_only() {
    let db = TestDb::new().await;
    let console = start(
        &db,
        &[
            ("OUTBOXD_PORTAL_FRAME_ANCESTORS", "https://platform.example"),
            ("OUTBOXD_PORTAL_NAME", "Acme Cloud Webhooks"),
            ("OUTBOXD_PORTAL_ACCENT", "#0a7c59"),
        ],
    )
    .await;
    let cookie = console
        .open_portal_link(&console.portal_link("acme").await)
        .await;
    let page = console
        .raw("GET", "/webhooks", &[("cookie", &cookie)], "")
        .await;
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("frame-ancestors https://platform.example"),
        "{csp}"
    );
    assert!(page.header("x-frame-options").is_none());
    assert!(page.body.contains("Acme Cloud Webhooks"));
    let theme = console.raw("GET", "/static/theme.css", &[], "").await;
    assert!(theme.body.contains("#0a7c59"));
    // The admin's pages are never framed.
    let login = console.raw("GET", "/login", &[], "").await;
    assert!(login
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(login.header("x-frame-options"), Some("DENY"));
}
