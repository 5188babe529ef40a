//! What the end-to-end tests share: the binary under test, waiting for a
//! daemon to be ready, the admin console as a client calls it (the admin's
//! token, a session's cookie, raw requests, CSRF tokens), the CLI run as a
//! child process, and the delivery log as the tests compare it.

use std::time::Duration;

use outboxd_testkit::{http_request, wait_until, Daemon, HttpAnswer, TestDb};
use tokio_postgres::Client;

/// The `outboxd` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_outboxd");

/// One row of the delivery log, as the tests compare it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub outcome: String,
}

async fn attempts_where(client: &Client, column: &str, id: i64, order: &str) -> Vec<Attempt> {
    let sql = format!(
        "SELECT attempt, status_code, error, outcome FROM outbox.delivery_attempts
          WHERE {column} = $1 ORDER BY {order}"
    );
    client
        .query(&sql, &[&id])
        .await
        .expect("reading attempts")
        .iter()
        .map(|r| Attempt {
            attempt: r.get(0),
            status_code: r.get(1),
            error: r.get(2),
            outcome: r.get(3),
        })
        .collect()
}

/// The attempt rows of one delivery, in attempt order.
pub async fn attempts_of_delivery(client: &Client, delivery_id: i64) -> Vec<Attempt> {
    attempts_where(client, "delivery_id", delivery_id, "attempt, id").await
}

/// The attempt rows of a webhook's deliveries, in the order written.
pub async fn attempts_of_webhook(client: &Client, webhook_id: i64) -> Vec<Attempt> {
    attempts_where(client, "webhook_id", webhook_id, "id").await
}

/// The `outboxd_deliveries_total{outcome="delivered"}` counter of one daemon.
pub async fn delivered_counter(daemon: &Daemon) -> u64 {
    let (_, body) = daemon.get("/metrics").await.unwrap_or_default();
    body.lines()
        .find(|l| l.starts_with("outboxd_deliveries_total{outcome=\"delivered\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Waits until `n` deliveries are in `state` (failing with the daemons'
/// logs after `timeout`).
pub async fn wait_for_deliveries_in(
    client: &Client,
    state: outboxd_core::DeliveryState,
    n: i64,
    daemons: &[&outboxd_testkit::Daemon],
) {
    let sql = format!("SELECT count(*) FROM outbox.deliveries WHERE state = '{state}'");
    outboxd_testkit::wait_for_count(client, &sql, n, std::time::Duration::from_secs(30), daemons)
        .await;
}

/// What a run of the CLI did.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// A failure reported the way people need it: non-zero, one line.
    pub fn assert_one_line_error(&self, contains: &str) {
        assert_ne!(
            self.code,
            Some(0),
            "expected failure; stdout: {}",
            self.stdout
        );
        let err = self.stderr.trim();
        assert_eq!(err.lines().count(), 1, "one line expected, got: {err}");
        assert!(err.starts_with("outboxd: "), "{err}");
        assert!(
            err.contains(contains),
            "{err:?} should mention {contains:?}"
        );
    }
}

/// Runs `outboxd <args>` against `db` with a clean environment (the
/// platform's loopback targets allowed).
pub async fn cli(db: &TestDb, args: &[&str]) -> Run {
    cli_env(db, args, &[]).await
}

/// `cli` with variables added or overridden.
pub async fn cli_env(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("OUTBOXD_ALLOW_PRIVATE_TARGETS", "127.0.0.0/8")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("running outboxd");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Waits until every daemon answers `/readyz` with 200 (failing with its
/// log after 30 s).
pub async fn ready(daemons: &[&Daemon]) {
    for d in daemons {
        assert!(
            wait_until(Duration::from_secs(30), || async {
                matches!(d.get("/readyz").await, Some((200, _)))
            })
            .await,
            "daemon not ready\n{}",
            d.log()
        );
    }
}

/// A daemon serving the admin console and API on a loopback port, and the
/// calls the tests make to it.
pub struct Console {
    pub port: u16,
    pub daemon: Daemon,
    /// The admin token `call` sends.
    pub token: String,
}

impl Console {
    /// The daemon with the console on a free loopback port, `token` set
    /// (None: no token, open to loopback callers), and `env`.
    pub async fn start(db: &TestDb, token: Option<&str>, env: &[(&str, &str)]) -> Console {
        let (daemon, port) = Daemon::start_with_console(BIN, &db.url, token, env).await;
        Console::at(port, daemon, token.unwrap_or_default())
    }

    /// A console started otherwise, whose admin token is `token`.
    pub fn at(port: u16, daemon: Daemon, token: &str) -> Console {
        Console {
            port,
            daemon,
            token: token.to_owned(),
        }
    }

    /// A request as given, no credentials added.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> HttpAnswer {
        http_request(self.port, method, path, headers, body)
            .await
            .expect("the console answers")
    }

    /// An API call with the admin token and a JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> HttpAnswer {
        let auth = format!("Bearer {}", self.token);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.raw(
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            &body,
        )
        .await
    }

    /// A call with a session's cookie (an admin's or a tenant's portal).
    pub async fn with_cookie(
        &self,
        cookie: &str,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> HttpAnswer {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.raw(method, path, &[("cookie", cookie)], &body).await
    }

    /// Posts the login form with `token`.
    pub async fn login(&self, token: &str) -> HttpAnswer {
        self.raw(
            "POST",
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            &format!("token={token}"),
        )
        .await
    }

    /// An admin session: the cookie the login with the admin token sets.
    pub async fn admin_session(&self) -> String {
        let r = self.login(&self.token).await;
        assert_eq!(r.status, 303, "{}", r.body);
        r.header("set-cookie")
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_owned()
    }

    /// A portal link for `tenant`, made through the API.
    pub async fn portal_link(&self, tenant: &str) -> String {
        let r = self
            .call("POST", &format!("/api/tenants/{tenant}/portal-link"), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["url"].as_str().unwrap().to_owned()
    }

    /// Opens a portal link; the session cookie it sets.
    pub async fn open_portal_link(&self, url: &str) -> String {
        let r = self.raw("GET", path_of(url), &[], "").await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(r.header("location"), Some("/webhooks"));
        let set = r.header("set-cookie").expect("a session cookie").to_owned();
        assert!(set.contains("HttpOnly"), "{set}");
        set.split(';').next().unwrap().to_owned()
    }

    /// The CSRF token of the form at `path`, for the session of `cookie`.
    pub async fn csrf(&self, cookie: &str, path: &str) -> String {
        let page = self.raw("GET", path, &[("cookie", cookie)], "").await;
        assert_eq!(page.status, 200, "{}", page.body);
        csrf_of(&page.body)
    }

    /// Posts a form body (see `form`) with the session of `cookie`.
    pub async fn post_form(&self, cookie: &str, path: &str, body: &str) -> HttpAnswer {
        self.raw(
            "POST",
            path,
            &[
                ("cookie", cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            body,
        )
        .await
    }
}

/// A form body of `fields`, URL-encoded.
pub fn form(fields: &[(&str, &str)]) -> String {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A public address for webhooks that are never sent to, so that no check
/// resolves a name.
pub const PUBLIC_URL: &str = "https://93.184.216.34/hooks";

/// Catalogues `order.created`, which the console and the API require of
/// a webhook's patterns.
pub async fn catalog_order_created(db: &TestDb) {
    db.client()
        .await
        .batch_execute(
            "INSERT INTO outbox.event_types (name, description, example_payload)
             VALUES ('order.created', 'An order was placed.', '{\"order\": 1}')",
        )
        .await
        .expect("cataloguing order.created");
}

/// An API error answer: its status, the field it names (when given) and
/// a part of its message.
pub fn assert_api_error(r: &HttpAnswer, status: u16, field: Option<&str>, contains: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let body = r.json();
    if let Some(field) = field {
        assert_eq!(body["field"], field, "{}", r.body);
    }
    let e = body["error"].as_str().unwrap_or_default();
    assert!(e.contains(contains), "{e:?} should mention {contains:?}");
}

/// The message a re-rendered form shows next to a field (`error-<field>`).
pub fn form_error<'a>(page: &'a str, field: &str) -> &'a str {
    let marker = format!("id=\"error-{field}\">");
    page.split(&marker)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_else(|| panic!("no error next to {field} on the page: {page}"))
}

/// The path (and query) of a URL.
pub fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    &rest[rest.find('/').unwrap()..]
}

/// The CSRF token a page's forms carry.
pub fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the form carries a CSRF token")
        .to_owned()
}
