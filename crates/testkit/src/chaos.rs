//! The chaos soak: replicas of the daemon under steady load while a driver
//! kills them (SIGKILL) and restarts them, restarts PostgreSQL, and stalls
//! and cuts the network between one replica and the database (a `Proxy`);
//! then a checker says what was lost (must be nothing), what was sent twice
//! (bounded by what was in flight at each fault), whether every attempt was
//! logged once, whether a replica was left stuck, and how far memory and
//! descriptors went. `outboxd-bench --chaos 10m` and `tests/e2e/chaos.rs`
//! run it; the cluster is the soak's own (`outboxd_chaos`, port 5434).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;

use crate::cluster::{ClusterGuard, Unavailable};
use crate::proxy::Proxy;
use crate::{db, process, Daemon, TestDb};

/// The soak's cluster, apart from the fault tests' (5433).
pub const CLUSTER: &str = "outboxd_chaos";
pub const CLUSTER_PORT: u16 = 5434;

/// A peak RSS above this fails the soak: the shipped Kubernetes limit.
const RSS_BOUND: u64 = 256 << 20;
/// Descriptors above this fail the soak: the usual soft limit.
const FDS_BOUND: usize = 1024;

/// How the soak runs.
pub struct Soak {
    /// The `outboxd` binary.
    pub bin: String,
    /// How long load and faults go on (the drain comes after).
    pub duration: Duration,
    /// Events published per second.
    pub rate: u64,
    /// Replicas; the last one reaches the database through the proxy.
    pub replicas: usize,
    /// Seed of the fault schedule, printed so a run can be repeated.
    pub seed: u64,
}

/// The receivers' behaviours. The first four accept every event in the end
/// (healthy); the last two never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Ok,
    /// 200 with a gzip-encoded body holding NUL bytes.
    NulGzip,
    /// 429 with `Retry-After: 1` to the first attempt of every tenth event.
    TooMany,
    /// 200 after 100 ms.
    Slow,
    /// Never answers.
    Hang,
    /// Closes the connection without answering.
    Reset,
}

/// The webhooks: name, behaviour, subscription.
const WEBHOOKS: &[(&str, Behaviour, &str)] = &[
    ("all", Behaviour::Ok, "*"),
    ("nul-gzip", Behaviour::NulGzip, "a.*"),
    ("too-many", Behaviour::TooMany, "b.*"),
    ("slow", Behaviour::Slow, "c.*"),
    ("hangs", Behaviour::Hang, "x.hang"),
    ("resets", Behaviour::Reset, "x.reset"),
];

/// Event `n`'s type: most go to two healthy webhooks; one in a hundred to
/// the resetting one, one in five hundred to the hanging one.
const PUBLISH: &str = "
INSERT INTO outbox.events (event_type, payload)
SELECT CASE WHEN i % 500 = 0 THEN 'x.hang'
            WHEN i % 100 = 0 THEN 'x.reset'
            ELSE (ARRAY['a.x', 'b.x', 'c.x', 'd.x'])[1 + i % 4] END,
       jsonb_build_object('n', i)
  FROM generate_series($1::int8, $2::int8) AS i";

const OPEN: &str =
    "SELECT count(*) FROM outbox.deliveries WHERE state IN ('pending', 'held', 'in_flight')";

const FANNED_OUT: &str = "SELECT count(*) FROM outbox.deliveries WHERE webhook_id = $1";

const IN_FLIGHT: &str = "SELECT count(*) FROM outbox.deliveries WHERE state = 'in_flight'";

/// What the soak saw; `failures` says what breaks a guarantee.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub replicas: usize,
    pub load_seconds: f64,
    pub events: i64,
    pub deliveries_expected: u64,
    pub kills: u32,
    pub postgres_restarts: u32,
    pub stalls: u32,
    pub cuts: u32,
    /// Deliveries in flight at the faults: what may be sent twice.
    pub duplicate_bound: i64,
    pub lost: u64,
    pub duplicated: u64,
    pub attempts_logged_twice: i64,
    pub unfinished: i64,
    pub stuck_replicas: Vec<String>,
    pub peak_rss: u64,
    pub peak_fds: usize,
    pub drain_seconds: f64,
}

impl Report {
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.lost > 0 {
            f.push(format!("{} deliveries to healthy webhooks lost", self.lost));
        }
        if self.duplicated as i64 > self.duplicate_bound {
            f.push(format!(
                "{} duplicates, more than the {} in flight at the faults",
                self.duplicated, self.duplicate_bound
            ));
        }
        if self.attempts_logged_twice > 0 {
            f.push(format!(
                "{} attempts logged more than once",
                self.attempts_logged_twice
            ));
        }
        if self.unfinished > 0 {
            f.push(format!(
                "{} deliveries still open after the drain",
                self.unfinished
            ));
        }
        for s in &self.stuck_replicas {
            f.push(format!("replica stuck: {s}"));
        }
        if self.peak_rss > RSS_BOUND {
            f.push(format!("peak RSS {} MiB", self.peak_rss >> 20));
        }
        if self.peak_fds > FDS_BOUND {
            f.push(format!("peak descriptors {}", self.peak_fds));
        }
        f
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "chaos soak (seed {}, {} replicas)",
            self.seed, self.replicas
        )?;
        writeln!(
            f,
            "  load held:       {} events in {:.0} s ({:.0} events/s), {} deliveries to healthy webhooks",
            self.events,
            self.load_seconds,
            self.events as f64 / self.load_seconds.max(1.0),
            self.deliveries_expected
        )?;
        writeln!(
            f,
            "  faults injected: {} kill -9, {} PostgreSQL restarts, {} network stalls, {} cuts",
            self.kills, self.postgres_restarts, self.stalls, self.cuts
        )?;
        writeln!(f, "  lost:            {}", self.lost)?;
        writeln!(
            f,
            "  duplicated:      {} (bound: {} in flight at the faults)",
            self.duplicated, self.duplicate_bound
        )?;
        writeln!(
            f,
            "  attempts logged twice: {}; open after the drain: {}; stuck replicas: {}",
            self.attempts_logged_twice,
            self.unfinished,
            self.stuck_replicas.len()
        )?;
        write!(
            f,
            "  peak RSS {} MiB, peak descriptors {} (per replica); drain {:.0} s",
            self.peak_rss >> 20,
            self.peak_fds,
            self.drain_seconds
        )
    }
}

/// One replica and how to start it again.
struct Replica {
    name: String,
    url: String,
    daemon: Daemon,
}

impl Soak {
    pub async fn run(self) -> Result<Report, Unavailable> {
        let cluster = ClusterGuard::acquire(CLUSTER, CLUSTER_PORT).await?;
        let db = TestDb::on(&cluster.url()).await;
        let client = db.client().await;
        let mut receivers = Vec::new();
        let mut ids = HashMap::new();
        for (name, behaviour, pattern) in WEBHOOKS {
            let rx = ChaosReceiver::start(*behaviour).await;
            let (id, _) =
                db::add_webhook(&client, name, &format!("http://{}/", rx.addr), &[pattern]).await;
            ids.insert(*name, id);
            receivers.push((*name, *behaviour, rx));
        }
        let target: SocketAddr = ([127, 0, 0, 1], cluster.port).into();
        let proxy = Proxy::start(target).await;
        let env: &[(&str, &str)] = &[
            ("OUTBOXD_MAX_ATTEMPTS", "4"),
            ("OUTBOXD_LEASE", "5s"),
            ("OUTBOXD_REQUEST_TIMEOUT", "2s"),
            ("OUTBOXD_DB_POOL_SIZE", "6"),
            ("RUST_LOG", "warn"),
        ];
        let mut replicas: Vec<Replica> = (0..self.replicas)
            .map(|i| {
                let url = if i + 1 == self.replicas {
                    proxy.postgres_url(&db.name)
                } else {
                    db.url.clone()
                };
                Replica {
                    name: format!("replica {i}"),
                    daemon: Daemon::start(&self.bin, &url, env),
                    url,
                }
            })
            .collect();

        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(0));
        let publisher = tokio::spawn(publish(
            db.url.clone(),
            self.rate,
            stop.clone(),
            published.clone(),
        ));
        let pids = Arc::new(Mutex::new(
            replicas.iter().map(|r| r.daemon.pid()).collect::<Vec<_>>(),
        ));
        let peaks = Arc::new(Mutex::new((0u64, 0usize)));
        let monitor = tokio::spawn(watch(pids.clone(), peaks.clone(), stop.clone()));

        let mut report = Report {
            seed: self.seed,
            replicas: self.replicas,
            ..Report::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let started = Instant::now();
        let mut sampler = InFlight::new(db.url.clone());
        while started.elapsed() < self.duration {
            tokio::time::sleep(Duration::from_millis(rng.random_range(3000..8000))).await;
            if started.elapsed() >= self.duration {
                break;
            }
            let before = sampler.sample().await;
            let pause = Duration::from_millis(rng.random_range(1000..4000));
            match rng.random_range(0..4) {
                0 => {
                    let i = rng.random_range(0..replicas.len());
                    replicas[i].daemon.kill9().await;
                    tokio::time::sleep(pause).await;
                    replicas[i].daemon = Daemon::start(&self.bin, &replicas[i].url, env);
                    pids.lock().expect("pids")[i] = replicas[i].daemon.pid();
                    report.kills += 1;
                }
                1 => {
                    cluster.stop().await;
                    tokio::time::sleep(pause).await;
                    cluster.start().await;
                    report.postgres_restarts += 1;
                }
                2 => {
                    proxy.stall(true);
                    tokio::time::sleep(pause * 2).await;
                    proxy.stall(false);
                    report.stalls += 1;
                }
                _ => {
                    proxy.cut();
                    report.cuts += 1;
                }
            }
            // What a fault can make a replica send twice is what was leased
            // around it: the larger of the counts just before and just after.
            report.duplicate_bound += before.max(sampler.sample().await);
        }
        stop.store(true, Ordering::SeqCst);
        let _ = publisher.await;
        report.load_seconds = started.elapsed().as_secs_f64();

        // Drain: every event fanned out, every delivery finished.
        let client = db.client().await;
        let drain = Instant::now();
        let all = ids["all"];
        let drained = crate::wait_until(Duration::from_secs(300), || async {
            let events = try_count(&client, "SELECT count(*) FROM outbox.events", &[]).await;
            let fanned = try_count(&client, FANNED_OUT, &[&all]).await;
            let open = try_count(&client, OPEN, &[]).await;
            events.is_some() && fanned == events && open == Some(0)
        })
        .await;
        report.drain_seconds = drain.elapsed().as_secs_f64();
        let _ = drained;
        let client = db.client().await;
        report.unfinished = db::count(&client, OPEN).await;
        report.events = db::count(&client, "SELECT count(*) FROM outbox.events").await;
        report.attempts_logged_twice = db::count(
            &client,
            "SELECT count(*) FROM (SELECT 1 FROM outbox.delivery_attempts
                GROUP BY delivery_id, attempt HAVING count(*) > 1) twice",
        )
        .await;

        for (name, behaviour, rx) in &receivers {
            if matches!(behaviour, Behaviour::Hang | Behaviour::Reset) {
                continue;
            }
            let pattern = WEBHOOKS
                .iter()
                .find(|(n, ..)| n == name)
                .map(|w| w.2)
                .unwrap_or("*");
            let like = pattern.replace('*', "%");
            let expected: Vec<i64> = client
                .query(
                    "SELECT id FROM outbox.events WHERE event_type LIKE $1",
                    &[&like],
                )
                .await
                .expect("reading the events")
                .iter()
                .map(|r| r.get(0))
                .collect();
            let acked = rx.acked.lock().expect("acked");
            report.deliveries_expected += expected.len() as u64;
            report.lost += expected.iter().filter(|id| !acked.contains_key(id)).count() as u64;
            report.duplicated += acked.values().map(|n| u64::from(*n - 1)).sum::<u64>();
        }

        stop.store(true, Ordering::SeqCst);
        let _ = monitor.await;
        let (rss, fds) = *peaks.lock().expect("peaks");
        report.peak_rss = rss;
        report.peak_fds = fds;
        for r in &mut replicas {
            let ready = r.daemon.get("/readyz").await.map(|a| a.0) == Some(200);
            if !r.daemon.is_running() || !ready {
                r.daemon.kill9().await;
                report
                    .stuck_replicas
                    .push(format!("{}: running and ready: false", r.name));
            }
        }
        Ok(report)
    }
}

/// Counts the deliveries leased (`in_flight`) on a connection of its own,
/// made again after the database restarts; while it is away, the last count.
struct InFlight {
    url: String,
    client: Option<tokio_postgres::Client>,
    last: i64,
}

impl InFlight {
    fn new(url: String) -> Self {
        Self {
            url,
            client: None,
            last: 0,
        }
    }

    async fn sample(&mut self) -> i64 {
        let wait = Duration::from_secs(2);
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = match tokio::time::timeout(
                wait,
                tokio_postgres::connect(&self.url, tokio_postgres::NoTls),
            )
            .await
            {
                Ok(Ok((c, conn))) => {
                    tokio::spawn(conn);
                    Some(c)
                }
                _ => None,
            };
        }
        if let Some(c) = &self.client {
            if let Ok(Ok(row)) = tokio::time::timeout(wait, c.query_one(IN_FLIGHT, &[])).await {
                self.last = row.get(0);
            }
        }
        self.last
    }
}

/// A count, or None while the database is away.
async fn try_count(
    client: &tokio_postgres::Client,
    query: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Option<i64> {
    client.query_one(query, params).await.ok().map(|r| r.get(0))
}

/// Publishes `rate` events a second in ten batches, reconnecting whenever
/// the database goes away, until `stop`.
async fn publish(url: String, rate: u64, stop: Arc<AtomicBool>, published: Arc<AtomicU64>) {
    let per_batch = (rate / 10).max(1) as i64;
    let mut next = 1i64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut client: Option<tokio_postgres::Client> = None;
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                Ok((c, conn)) => {
                    tokio::spawn(conn);
                    Some(c)
                }
                Err(_) => None,
            };
        }
        let Some(c) = &client else { continue };
        let last = next + per_batch - 1;
        if c.execute(PUBLISH, &[&next, &last]).await.is_ok() {
            published.fetch_add(per_batch as u64, Ordering::Relaxed);
        }
        next = last + 1;
    }
}

/// Samples every replica's RSS and descriptors each second; keeps the peaks.
async fn watch(pids: Arc<Mutex<Vec<u32>>>, peaks: Arc<Mutex<(u64, usize)>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let now = pids.lock().expect("pids").clone();
        for pid in now {
            let mut p = peaks.lock().expect("peaks");
            p.0 = p.0.max(process::rss_bytes(pid).unwrap_or(0));
            p.1 = p.1.max(process::open_descriptors(pid).unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A receiver that keeps only what the checker needs: per event id, how
/// many times it was accepted (2xx), so a long soak stays small.
struct ChaosReceiver {
    addr: SocketAddr,
    acked: Arc<Mutex<HashMap<i64, u32>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ChaosReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ChaosReceiver {
    async fn start(behaviour: Behaviour) -> ChaosReceiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a receiver");
        let addr = listener.local_addr().expect("a bound receiver");
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let refused = Arc::new(Mutex::new(HashSet::new()));
        let task = {
            let acked = acked.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acked, refused) = (acked.clone(), refused.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            answer(behaviour, req, acked.clone(), refused.clone())
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        ChaosReceiver { addr, acked, task }
    }
}

async fn answer(
    behaviour: Behaviour,
    req: Request<Incoming>,
    acked: Arc<Mutex<HashMap<i64, u32>>>,
    refused: Arc<Mutex<HashSet<i64>>>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let id = req
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("evt_"))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let _ = req.into_body().collect().await;
    let reply = |status: u16, body: &'static [u8]| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(body)))
            .expect("static response parts")
    };
    let accept = |response: Response<Full<Bytes>>| {
        *acked.lock().expect("acked").entry(id).or_insert(0) += 1;
        Ok::<_, std::io::Error>(response)
    };
    match behaviour {
        Behaviour::Ok => accept(reply(204, b"")),
        Behaviour::NulGzip => {
            let mut r = reply(
                200,
                b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03ok\x00\x00\x00",
            );
            r.headers_mut().insert(
                "content-encoding",
                hyper::header::HeaderValue::from_static("gzip"),
            );
            accept(r)
        }
        Behaviour::TooMany => {
            if id % 10 == 0 && refused.lock().expect("refused").insert(id) {
                let mut r = reply(429, b"slow down");
                r.headers_mut()
                    .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
                Ok(r)
            } else {
                accept(reply(200, b"ok"))
            }
        }
        Behaviour::Slow => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            accept(reply(200, b"ok"))
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(reply(200, b""))
        }
        Behaviour::Reset => Err(std::io::Error::other("reset")),
    }
}
