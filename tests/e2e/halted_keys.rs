//! Halted ordering keys through the console, end to end: a receiver that
//! fails one event of an ordered webhook under the halt policy halts its
//! key; the admin sees it in `GET /api/halted-keys` and on the Halted keys
//! page, skips it through the API (the key's next events are delivered)
//! or replays it from the page (it goes first, then the rest in order); a
//! tenant's portal session sees and skips its own keys only (another
//! tenant's or the platform's answer 404); a skip of a delivery the caller
//! sees that halts nothing is a 409, as in the CLI; a skip without CSRF is
//! refused.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outboxd_testkit::db::count;
use outboxd_testkit::{wait_until, HttpAnswer, Receiver, Reply, TestDb};
use tokio_postgres::Client;

use crate::support::{assert_api_error, csrf_of, form, Console};
use crate::tenants::TENANT_LOOPBACK;

const TOKEN: &str = "halted-token-0123456789abcdef";

/// Fast retries, two attempts, no breaker: a poison event fails for good
/// within a second.
const ENV: [(&str, &str); 6] = [
    TENANT_LOOPBACK,
    ("OUTBOXD_RETRY_BASE_DELAY", "20ms"),
    ("OUTBOXD_RETRY_MAX_DELAY", "100ms"),
    ("OUTBOXD_BREAKER_THRESHOLD", "0"),
    ("OUTBOXD_POLL_INTERVAL", "100ms"),
    ("OUTBOXD_MAX_ATTEMPTS", "2"),
];

/// Three ordered webhooks under halt (acme's, globex's, the platform's),
/// each with one key whose first event its receiver fails until cured.
struct World {
    _receiver: Receiver,
    /// (path, seq) of every request answered 200, in arrival order.
    ok: Arc<Mutex<Vec<(String, i64)>>>,
    /// Receiver paths whose poison event now succeeds.
    cured: Arc<Mutex<HashSet<String>>>,
    acme: i64,
    globex: i64,
    platform: i64,
    /// The failed delivery halting each webhook's key.
    acme_halted: i64,
    globex_halted: i64,
    platform_halted: i64,
}

impl World {
    /// The sequence numbers `path` received successfully, in arrival order.
    fn delivered(&self, path: &str) -> Vec<i64> {
        self.ok
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, seq)| *seq)
            .collect()
    }

    async fn wait_delivered(&self, path: &str, seqs: &[i64]) {
        let ok = wait_until(Duration::from_secs(30), || async {
            self.delivered(path).ends_with(seqs)
        })
        .await;
        assert!(
            ok,
            "{path} got {:?}, expected {seqs:?} at the end",
            self.delivered(path)
        );
    }
}

/// The webhooks, the console (and daemon) over them, and their keys halted.
async fn world(db: &TestDb, client: &Client) -> (Console, World) {
    let cured: Arc<Mutex<HashSet<String>>> = Arc::default();
    let ok: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let receiver = {
        let (cured, ok) = (cured.clone(), ok.clone());
        Receiver::start(move |r| {
            let seq = r.json()["data"]["seq"].as_i64().unwrap_or(-1);
            if seq == 0 && !cured.lock().unwrap().contains(&r.path) {
                return Reply::status(500);
            }
            ok.lock().unwrap().push((r.path.clone(), seq));
            Reply::ok()
        })
        .await
    };
    const HOOKS: [(&str, Option<&str>); 3] = [
        ("acme", Some("acme")),
        ("globex", Some("globex")),
        ("platform", None),
    ];
    let mut ids = Vec::new();
    for (name, tenant) in HOOKS {
        let id: i64 = client
            .query_one(
                "INSERT INTO outbox.webhooks (name, url, event_types, tenant, ordered, ordering_policy)
                 VALUES ($1, $2, ARRAY[$1 || '.*'], $3, true, 'halt') RETURNING id",
                &[&name, &receiver.url(&format!("/{name}")), &tenant],
            )
            .await
            .unwrap()
            .get(0);
        ids.push(id);
    }
    // The daemon starts after the webhooks exist, so that it fans every
    // event out to them: a webhook added while it runs reaches its cache
    // only within a second, and events before that would pass it by.
    let console = Console::start(db, Some(TOKEN), &ENV).await;
    for (name, tenant) in HOOKS {
        // Three events of one key: the first is the poison one.
        client
            .execute(
                "INSERT INTO outbox.events (event_type, payload, ordering_key, tenant)
                 SELECT $1 || '.updated', jsonb_build_object('seq', s), 'order-7', $2
                   FROM generate_series(0, 2) AS s ORDER BY s",
                &[&name, &tenant],
            )
            .await
            .unwrap();
    }
    let halted = wait_until(Duration::from_secs(30), || async {
        count(client, "SELECT count(*) FROM outbox.halted_keys").await == 3
    })
    .await;
    if !halted {
        let states = client
            .query(
                "SELECT webhook_id, id, state::text, attempts, last_error FROM outbox.deliveries ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        let states: Vec<String> = states
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {} {:?}",
                    r.get::<_, i64>(0),
                    r.get::<_, i64>(1),
                    r.get::<_, String>(2),
                    r.get::<_, i32>(3),
                    r.get::<_, Option<String>>(4)
                )
            })
            .collect();
        panic!(
            "three keys halt; the deliveries:\n{}\n{}",
            states.join("\n"),
            console.daemon.log()
        );
    }
    let halting = |webhook: i64| async move {
        client
            .query_one(
                "SELECT delivery_id FROM outbox.halted_keys WHERE webhook_id = $1",
                &[&webhook],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let w = World {
        acme_halted: halting(ids[0]).await,
        globex_halted: halting(ids[1]).await,
        platform_halted: halting(ids[2]).await,
        acme: ids[0],
        globex: ids[1],
        platform: ids[2],
        _receiver: receiver,
        ok,
        cured,
    };
    (console, w)
}

/// The delivery ids of an API list of halted keys.
fn halted_ids(r: &HttpAnswer) -> Vec<i64> {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["delivery_id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_admin_lists_skips_through_the_api_and_replays_from_the_page() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let (console, w) = world(&db, &client).await;

    // The API lists every key, or one webhook's, with what waits.
    let all = console.call("GET", "/api/halted-keys", None).await;
    let mut ids = halted_ids(&all);
    ids.sort();
    let mut expected = vec![w.acme_halted, w.globex_halted, w.platform_halted];
    expected.sort();
    assert_eq!(ids, expected);
    let acme = console
        .call(
            "GET",
            &format!("/api/halted-keys?webhook_id={}", w.acme),
            None,
        )
        .await;
    assert_eq!(halted_ids(&acme), [w.acme_halted]);
    let k = &acme.json()[0];
    assert_eq!(k["ordering_key"], "order-7");
    assert_eq!(k["webhook_name"], "acme");
    assert_eq!(k["tenant"], "acme");
    assert_eq!(k["event_type"], "acme.updated");
    assert_eq!(k["last_status"], 500);
    assert_eq!(k["waiting"], 2, "{}", acme.body);
    let bad = console
        .call("GET", "/api/halted-keys?webhook_id=x", None)
        .await;
    assert_api_error(&bad, 400, Some("webhook_id"), "not a webhook id");

    // Both operations are in the generated document (schemathesis checks them).
    let doc = console
        .raw("GET", "/api/openapi.json", &[], "")
        .await
        .json();
    assert_eq!(
        doc["paths"]["/api/halted-keys"]["get"]["operationId"],
        "listHaltedKeys"
    );
    assert_eq!(
        doc["paths"]["/api/halted-keys/{delivery_id}/skip"]["post"]["operationId"],
        "skipHaltedKey"
    );

    // The page lists them with Replay and Skip.
    let cookie = console.admin_session().await;
    let page = console
        .with_cookie(&cookie, "GET", "/halted-keys", None)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    for d in &expected {
        assert!(
            page.body.contains(&format!("id=\"halted-{d}\"")),
            "{}",
            page.body
        );
        assert!(page
            .body
            .contains(&format!("action=\"/deliveries/{d}/replay\"")));
        assert!(page
            .body
            .contains(&format!("href=\"/halted-keys/{d}/skip\"")));
    }
    assert!(page.body.contains("order-7") && page.body.contains("500"));
    assert!(
        page.body.contains("tenant globex"),
        "the admin sees whose key it is"
    );
    // The ordered webhook links to its halted keys.
    let hooks = console.with_cookie(&cookie, "GET", "/webhooks", None).await;
    assert!(hooks
        .body
        .contains(&format!("href=\"/halted-keys?webhook_id={}\"", w.acme)));

    // Skip through the API: the poison event stays failed, the rest go.
    let skipped = console
        .call(
            "POST",
            &format!("/api/halted-keys/{}/skip", w.acme_halted),
            None,
        )
        .await;
    assert_eq!(skipped.status, 200, "{}", skipped.body);
    assert_eq!(skipped.json()["delivery_id"], w.acme_halted);
    assert_eq!(skipped.json()["promoted"], 1);
    w.wait_delivered("/acme", &[1, 2]).await;
    let state: String = client
        .query_one(
            "SELECT state FROM outbox.deliveries WHERE id = $1",
            &[&w.acme_halted],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "failed", "a skipped delivery stays failed");
    // Skipped already: the delivery exists and halts nothing, a conflict
    // (as in the CLI); one that does not exist is not found.
    let again = console
        .call(
            "POST",
            &format!("/api/halted-keys/{}/skip", w.acme_halted),
            None,
        )
        .await;
    assert_api_error(&again, 409, None, "is not halting a key");
    let missing = console
        .call("POST", "/api/halted-keys/999999999/skip", None)
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    crate::support::cli(&db, &["keys", "skip", &w.acme_halted.to_string()])
        .await
        .assert_one_line_error("is not halting a key");

    // Replay from the page: the cured event goes first, then the rest.
    w.cured.lock().unwrap().insert("/globex".into());
    let csrf = csrf_of(&page.body);
    let replayed = console
        .post_form(
            &cookie,
            &format!("/deliveries/{}/replay", w.globex_halted),
            &form(&[("csrf", &csrf)]),
        )
        .await;
    assert_eq!(replayed.status, 200, "{}", replayed.body);
    assert!(replayed.body.contains("replayed"), "{}", replayed.body);
    w.wait_delivered("/globex", &[0, 1, 2]).await;

    // Skip from the page, after its confirmation.
    let confirm = console
        .with_cookie(
            &cookie,
            "GET",
            &format!("/halted-keys/{}/skip", w.platform_halted),
            None,
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(
        confirm.body.contains("id=\"confirm-skip\""),
        "{}",
        confirm.body
    );
    let done = console
        .post_form(
            &cookie,
            &format!("/halted-keys/{}/skip", w.platform_halted),
            &form(&[("csrf", &csrf_of(&confirm.body))]),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body
            .contains("the next delivery of its key is pending"),
        "{}",
        done.body
    );
    w.wait_delivered("/platform", &[1, 2]).await;

    // Nothing halted now: the page says what halted keys are.
    let empty = console
        .with_cookie(&cookie, "GET", "/halted-keys", None)
        .await;
    assert!(
        empty.body.contains("id=\"no-halted-keys\""),
        "{}",
        empty.body
    );
    assert_eq!(
        halted_ids(&console.call("GET", "/api/halted-keys", None).await),
        Vec::<i64>::new()
    );
}

#[tokio::test]
async fn a_tenant_sees_and_skips_its_own_halted_keys_only() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let (console, w) = world(&db, &client).await;
    let cookie = console
        .open_portal_link(&console.portal_link("acme").await)
        .await;

    // The API: its own key only, whatever the filter asks for.
    let own = console
        .with_cookie(&cookie, "GET", "/api/halted-keys", None)
        .await;
    assert_eq!(halted_ids(&own), [w.acme_halted]);
    for other in [w.globex, w.platform] {
        let filtered = console
            .with_cookie(
                &cookie,
                "GET",
                &format!("/api/halted-keys?webhook_id={other}"),
                None,
            )
            .await;
        assert_eq!(halted_ids(&filtered), Vec::<i64>::new());
    }

    // The page: its own key only.
    let page = console
        .with_cookie(&cookie, "GET", "/halted-keys", None)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("id=\"halted-{}\"", w.acme_halted)),
        "{}",
        page.body
    );
    for other in [w.globex_halted, w.platform_halted] {
        assert!(
            !page.body.contains(&format!("halted-{other}\"")),
            "{}",
            page.body
        );
    }
    let csrf = csrf_of(&page.body);

    // Another tenant's and the platform's keys answer 404 and stay halted.
    for other in [w.globex_halted, w.platform_halted] {
        let api = console
            .with_cookie(
                &cookie,
                "POST",
                &format!("/api/halted-keys/{other}/skip"),
                None,
            )
            .await;
        assert_eq!(api.status, 404, "{}", api.body);
        let confirm = console
            .with_cookie(&cookie, "GET", &format!("/halted-keys/{other}/skip"), None)
            .await;
        assert_eq!(confirm.status, 404, "{}", confirm.body);
        let posted = console
            .post_form(
                &cookie,
                &format!("/halted-keys/{other}/skip"),
                &form(&[("csrf", &csrf)]),
            )
            .await;
        assert_eq!(posted.status, 404, "{}", posted.body);
    }

    // A skip without the CSRF token is refused and changes nothing.
    let forged = console
        .post_form(&cookie, &format!("/halted-keys/{}/skip", w.acme_halted), "")
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.halted_keys").await,
        3
    );

    // Its own, skipped from the portal page: the key goes on.
    let done = console
        .post_form(
            &cookie,
            &format!("/halted-keys/{}/skip", w.acme_halted),
            &form(&[("csrf", &csrf)]),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("skipped"), "{}", done.body);
    w.wait_delivered("/acme", &[1, 2]).await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.halted_keys").await,
        2
    );
    // Its own delivery that halts nothing (skipped now) is a conflict, not
    // hidden: the tenant sees it in its deliveries.
    let again = console
        .with_cookie(
            &cookie,
            "POST",
            &format!("/api/halted-keys/{}/skip", w.acme_halted),
            None,
        )
        .await;
    assert_api_error(&again, 409, None, "is not halting a key");
    // The others still wait: nothing of them went.
    assert!(w.delivered("/globex").is_empty());
    assert!(w.delivered("/platform").is_empty());
}
