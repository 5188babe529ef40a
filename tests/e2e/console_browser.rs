//! The admin console in a real browser: Debian's chromium, headless, driven
//! through chromedriver with fantoccini. An admin logs in with the token,
//! catalogues an event type, adds a webhook pointing at a receiver this
//! test runs, sends a test event and sees success, breaks the receiver and
//! sees the failure, then replays it from the delivery page and watches it
//! delivered. Screenshots of the main screens land in target/screenshots/.
//!
//! chromium and chromium-driver are installed by `scripts/test.sh`; without them
//! this test fails (it does not skip), so a missing browser is noticed.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use outboxd_testkit::{free_port, wait_until, Daemon, Receiver, Reply, TestDb};

use crate::support::BIN;
const TOKEN: &str = "browser-token-0123456789abcdef";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver as a child process, killed with the test.
struct Driver {
    _child: tokio::process::Child,
    url: String,
}

async fn start_driver() -> Driver {
    for (path, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
        assert!(
            std::path::Path::new(path).exists(),
            "{path} is missing: the browser test needs Debian's chromium and chromium-driver \
             (`apt-get install -y chromium chromium-driver`; scripts/test.sh installs them); install {package}"
        );
    }
    let port = free_port();
    let child = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting chromedriver");
    // chromedriver keeps connections open, so a connect is the probe.
    let up = wait_until(Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(up, "chromedriver did not come up on port {port}");
    Driver {
        _child: child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn browser(driver: &Driver) -> Client {
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"],
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session through chromedriver")
}

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).expect("creating target/screenshots");
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("taking a screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png)
        .expect("writing a screenshot");
}

/// The text of `css` once it satisfies `want`. Read again until then: a
/// click that submits a form returns before the next page replaces the old
/// one, so the first element found may be the old page's (with the wrong
/// text, or stale by the time its text is read).
async fn text_when(c: &Client, css: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut last = None;
    loop {
        if let Ok(element) = c.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if want(&text) {
                    return text;
                }
                last = Some(text);
            }
        }
        if std::time::Instant::now() > deadline {
            let url = c.current_url().await.ok();
            let page = c.source().await.unwrap_or_default();
            panic!("{css} on {url:?} never showed what was expected; last text {last:?}\n{page}")
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fill(c: &Client, css: &str, value: &str) {
    let field = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no field {css}: {e}"));
    field.clear().await.expect("clearing a field");
    field.send_keys(value).await.expect("typing into a field");
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("nothing to click at {css}: {e}"))
        .click()
        .await
        .expect("clicking");
}

#[tokio::test]
async fn an_admin_adds_a_webhook_tests_it_and_replays_a_failure_in_the_browser() {
    let db = TestDb::new().await;
    let broken = Arc::new(AtomicBool::new(false));
    let flag = broken.clone();
    let receiver = Receiver::start(move |_| {
        if flag.load(Ordering::SeqCst) {
            Reply::status(500).body("receiver is down for maintenance")
        } else {
            Reply::ok().body("{\"received\": true}")
        }
    })
    .await;
    let (daemon, port) = Daemon::start_with_console(BIN, &db.url, Some(TOKEN), &[]).await;
    let driver = start_driver().await;
    let c = browser(&driver).await;
    let base = format!("http://127.0.0.1:{port}");

    // Log in with the token.
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/login"));
    shot(&c, "01-login").await;
    fill(&c, "#token", "not-the-token").await;
    click(&c, "#login").await;
    text_when(&c, "#error", |t| t.contains("wrong token")).await;
    fill(&c, "#token", TOKEN).await;
    click(&c, "#login").await;
    text_when(&c, "h1", |t| t == "Overview").await;

    // Catalogue an event type; malformed JSON is refused next to the field.
    c.goto(&format!("{base}/event-types/new")).await.unwrap();
    fill(&c, "#name", "payment.received").await;
    fill(&c, "#description", "A payment was captured.").await;
    fill(&c, "#example", "{\"amount\": 4200,").await;
    click(&c, "#save").await;
    text_when(&c, "#error-example", |t| t.contains("not valid JSON")).await;
    fill(&c, "#example", "{\"amount\": 4200, \"currency\": \"EUR\"}").await;
    click(&c, "#save").await;
    text_when(&c, "#notice", |t| t.contains("payment.received saved")).await;
    shot(&c, "02-event-catalog").await;

    // Add New Webhook; a bad URL is refused next to the field first.
    c.goto(&format!("{base}/webhooks")).await.unwrap();
    click(&c, "#add-webhook").await;
    fill(&c, "#name", "Billing service").await;
    fill(&c, "#url", "billing.example/hooks").await;
    click(&c, "#events option[value='payment.received']").await;
    fill(&c, "#rate_limit", "12").await;
    c.find(Locator::Css("#ordering_policy"))
        .await
        .unwrap()
        .select_by_value("halt")
        .await
        .unwrap();
    click(&c, "#save").await;
    text_when(&c, "#error-url", |t| t.contains("must start with http")).await;
    let rate = c.find(Locator::Css("#rate_limit")).await.unwrap();
    assert_eq!(rate.prop("value").await.unwrap().as_deref(), Some("12"));
    fill(&c, "#url", &receiver.url("/hooks")).await;
    let kept = c
        .find(Locator::Css("#events option[value='payment.received']"))
        .await
        .unwrap()
        .is_selected()
        .await
        .unwrap();
    assert!(kept, "the form keeps the chosen events after an error");
    shot(&c, "03-webhook-form").await;
    click(&c, "#save").await;
    let secret = text_when(&c, "#secret", |t| t.starts_with("whsec_")).await;
    let settings = db
        .client()
        .await
        .query_one(
            "SELECT rate_limit, ordering_policy FROM outbox.webhooks",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            settings.get::<_, Option<i32>>(0),
            settings.get::<_, String>(1)
        ),
        (Some(12), "halt".to_owned()),
        "the rate limit and policy typed in the form"
    );

    // Send Test Event: success on the page.
    c.goto(&format!("{base}/webhooks")).await.unwrap();
    text_when(&c, ".rate-limit", |t| t == "12 requests/s").await;
    c.find(Locator::Css("select[name='event_type']"))
        .await
        .unwrap()
        .select_by_value("payment.received")
        .await
        .unwrap();
    shot(&c, "04-webhooks").await;
    click(&c, ".send-test").await;
    text_when(&c, "#test-result", |t| t.starts_with("Success")).await;
    text_when(&c, "#test-status", |t| t.contains("200")).await;
    shot(&c, "05-test-success").await;
    assert_eq!(receiver.requests()[0].json()["data"]["amount"], 4200);

    // Break the receiver: the failure and its reason on the page.
    broken.store(true, Ordering::SeqCst);
    c.goto(&format!("{base}/webhooks")).await.unwrap();
    click(&c, ".send-test").await;
    text_when(&c, "#test-result", |t| {
        t.starts_with("Failed") && t.contains("HTTP 500")
    })
    .await;
    shot(&c, "06-test-failure").await;

    // The delivery, its attempt and stored response; replay it once the
    // receiver works again, and watch the daemon deliver it.
    click(&c, "#delivery-link").await;
    text_when(&c, "#delivery-state", |t| t == "failed").await;
    let page = c.source().await.unwrap();
    assert!(
        page.contains("receiver is down for maintenance"),
        "the stored response is shown"
    );
    assert!(
        page.contains("webhook-signature") && !page.contains(&secret),
        "headers, without secrets"
    );
    shot(&c, "07-delivery").await;
    broken.store(false, Ordering::SeqCst);
    let delivery_url = c.current_url().await.unwrap().to_string();
    click(&c, "#replay").await;
    text_when(&c, "#notice", |t| t.contains("replayed")).await;
    let mut state = String::new();
    for _ in 0..100 {
        c.goto(&delivery_url).await.unwrap();
        state = text_when(&c, "#delivery-state", |_| true).await;
        if state == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        state,
        "delivered",
        "the replayed delivery was not delivered:\n{}",
        daemon.plain_log()
    );
    shot(&c, "08-delivery-replayed").await;

    c.goto(&format!("{base}/deliveries")).await.unwrap();
    assert!(c
        .source()
        .await
        .unwrap()
        .contains("payment.received (test)"));
    shot(&c, "09-delivery-log").await;
    c.goto(&format!("{base}/")).await.unwrap();
    shot(&c, "10-overview").await;
    c.goto(&format!("{base}/webhooks")).await.unwrap();
    text_when(&c, "#webhook-1", |t| t.contains("ago, delivered")).await;
    shot(&c, "11-webhooks-with-health").await;
    c.close().await.unwrap();
}

/// A customer of the platform, in a real browser: opens the portal link
/// the platform made, sees its own webhooks only, adds one with an event
/// picked from the catalog, sends a test event and sees the verdict, then
/// replays a failure from the delivery page.
#[tokio::test]
async fn a_customer_opens_a_portal_link_adds_a_webhook_and_replays_a_failure() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO outbox.event_types (name, description, example_payload) VALUES
               ('order.created', 'An order was placed.', '{\"order\": 7}');
             INSERT INTO outbox.webhooks (name, url, event_types, tenant)
               VALUES ('Globex private hook', 'https://globex.example/', '{*}', 'globex');",
        )
        .await
        .unwrap();
    let broken = Arc::new(AtomicBool::new(false));
    let flag = broken.clone();
    let receiver = Receiver::start(move |_| {
        if flag.load(Ordering::SeqCst) {
            Reply::status(503).body("try again later")
        } else {
            Reply::ok()
        }
    })
    .await;
    let (daemon, port) = Daemon::start_with_console(
        BIN,
        &db.url,
        Some(TOKEN),
        &[
            crate::tenants::TENANT_LOOPBACK,
            ("OUTBOXD_PORTAL_NAME", "Shopfront Webhooks"),
        ],
    )
    .await;
    let auth = format!("Bearer {TOKEN}");
    let link = outboxd_testkit::http_request(
        port,
        "POST",
        "/api/tenants/acme/portal-link",
        &[("authorization", &auth)],
        "",
    )
    .await
    .unwrap()
    .json()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let driver = start_driver().await;
    let c = browser(&driver).await;

    c.goto(&link).await.unwrap();
    text_when(&c, "h1", |t| t == "Webhooks").await;
    text_when(&c, "#tenant", |t| t == "acme").await;
    assert!(!c.source().await.unwrap().contains("Globex"));
    shot(&c, "portal-01-webhooks").await;

    click(&c, "#add-webhook").await;
    fill(&c, "#name", "Order sync").await;
    fill(&c, "#url", &receiver.url("/orders")).await;
    click(&c, "#events option[value='order.created']").await;
    assert!(
        c.source().await.unwrap().contains("\"order\": 7"),
        "the example payload is shown"
    );
    shot(&c, "portal-02-add").await;
    click(&c, "#save").await;
    text_when(&c, "#secret", |t| t.starts_with("whsec_")).await;

    c.goto(&format!("http://127.0.0.1:{port}/webhooks"))
        .await
        .unwrap();
    c.find(Locator::Css("select[name='event_type']"))
        .await
        .unwrap()
        .select_by_value("order.created")
        .await
        .unwrap();
    click(&c, ".send-test").await;
    text_when(&c, "#test-result", |t| t.starts_with("Success")).await;
    shot(&c, "portal-03-test").await;
    assert_eq!(receiver.requests()[0].json()["data"]["order"], 7);

    broken.store(true, Ordering::SeqCst);
    c.goto(&format!("http://127.0.0.1:{port}/webhooks"))
        .await
        .unwrap();
    click(&c, ".send-test").await;
    text_when(&c, "#test-result", |t| t.starts_with("Failed")).await;
    click(&c, "#delivery-link").await;
    text_when(&c, "#delivery-state", |t| t == "failed").await;
    assert!(c.source().await.unwrap().contains("try again later"));
    broken.store(false, Ordering::SeqCst);
    let delivery_url = c.current_url().await.unwrap().to_string();
    click(&c, "#replay").await;
    text_when(&c, "#notice", |t| t.contains("replayed")).await;
    let mut state = String::new();
    for _ in 0..100 {
        c.goto(&delivery_url).await.unwrap();
        state = text_when(&c, "#delivery-state", |_| true).await;
        if state == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "delivered", "{}", daemon.plain_log());
    shot(&c, "portal-04-replayed").await;

    c.goto(&format!("http://127.0.0.1:{port}/deliveries"))
        .await
        .unwrap();
    assert!(!c.source().await.unwrap().contains("Globex"));
    c.goto(&format!("http://127.0.0.1:{port}/event-types"))
        .await
        .unwrap();
    text_when(&c, "h1", |t| t == "Event catalog").await;
    assert!(
        c.find(Locator::Css("#add-event-type")).await.is_err(),
        "the catalog is read-only"
    );
    c.close().await.unwrap();
}

/// The platform shows the portal inside its own page, on another origin:
/// the portal loads in the iframe, signed in, and a page of an origin the
/// platform did not list cannot frame it.
#[tokio::test]
async fn the_portal_works_inside_an_iframe_of_the_platforms_site() {
    let db = TestDb::new().await;
    let page = Arc::new(std::sync::Mutex::new(String::new()));
    let served = page.clone();
    let platform = Receiver::start(move |_| {
        Reply::ok()
            .header("content-type", "text/html")
            .body(&served.lock().unwrap().clone())
    })
    .await;
    let origin = platform.url("").trim_end_matches('/').to_owned();
    let (_daemon, port) = Daemon::start_with_console(
        BIN,
        &db.url,
        Some(TOKEN),
        &[("OUTBOXD_PORTAL_FRAME_ANCESTORS", &origin)],
    )
    .await;
    let auth = format!("Bearer {TOKEN}");
    let link = |tenant: &'static str| {
        let auth = auth.clone();
        async move {
            outboxd_testkit::http_request(
                port,
                "POST",
                &format!("/api/tenants/{tenant}/portal-link"),
                &[("authorization", &auth)],
                "",
            )
            .await
            .unwrap()
            .json()["url"]
                .as_str()
                .unwrap()
                // Another site than the platform's page (127.0.0.1).
                .replace("127.0.0.1", "localhost")
        }
    };
    let driver = start_driver().await;
    let c = browser(&driver).await;
    *page.lock().unwrap() = format!(
        "<!doctype html><h1>Platform settings</h1><iframe id=\"portal\" src=\"{}\" width=\"1000\" height=\"700\"></iframe>",
        link("acme").await
    );
    c.goto(&platform.url("/settings")).await.unwrap();
    c.enter_frame(0).await.unwrap();
    text_when(&c, "#tenant", |t| t == "acme").await;
    text_when(&c, "h1", |t| t == "Webhooks").await;
    c.enter_parent_frame().await.unwrap();
    shot(&c, "portal-05-iframe").await;
    c.close().await.unwrap();
}
