//! A database outage under load: requests that need the database fail fast with 503 and
//! `Retry-After` while it is down, the process stays alive, and service comes back by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gatehouse_tests::private_pg::PrivatePostgres;
use gatehouse_tests::{Backend, PASSWORD, TestApp, spawn_app_with};
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Mutex;

/// The bound each refused request must meet. The target is 1 s; the bound is loose because
/// this is a correctness check (fail fast instead of hanging for the client's timeout) on a
/// shared 2-core machine, not a performance measurement.
const FAIL_FAST_BOUND: Duration = Duration::from_secs(3);

/// How soon after the database is back every request must succeed again.
const RECOVERY_BOUND: Duration = Duration::from_secs(2);

/// One request the load made.
#[derive(Debug, Clone)]
struct Sample {
    what: &'static str,
    started: Instant,
    latency: Duration,
    status: StatusCode,
    code: Option<String>,
    retry_after: Option<String>,
}

async fn sample(what: &'static str, request: reqwest::RequestBuilder) -> Sample {
    let started = Instant::now();
    let response = request.timeout(Duration::from_secs(20)).send().await.expect("the server answers");
    let status = response.status();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["code"].as_str().map(str::to_owned);
    Sample { what, started, latency: started.elapsed(), status, code, retry_after }
}

/// Runs `/users/me` readers, sign-ins and registrations until `stop`, recording every request.
fn load(
    app: &Arc<TestApp>,
    tokens: &[String],
    stop: &Arc<AtomicBool>,
    samples: &Arc<Mutex<Vec<Sample>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for token in tokens {
        let (app, stop, samples, token) = (app.clone(), stop.clone(), samples.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let request = app.client.get(app.url("/api/v1/users/me")).bearer_auth(token.as_str());
                let sample = sample("GET /users/me", request).await;
                samples.lock().await.push(sample);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    {
        let (app, stop, samples) = (app.clone(), stop.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"email": "reader0@example.com", "password": PASSWORD});
            while !stop.load(Ordering::Relaxed) {
                let sample =
                    sample("POST /auth/login", app.client.post(app.url("/api/v1/auth/login")).json(&body)).await;
                samples.lock().await.push(sample);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    let counter = Arc::new(AtomicU32::new(0));
    for _ in 0..2 {
        let (app, stop, samples, counter) = (app.clone(), stop.clone(), samples.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let body = json!({"email": format!("load{n}@example.com"), "password": PASSWORD});
                let sample =
                    sample("POST /auth/register", app.client.post(app.url("/api/v1/auth/register")).json(&body)).await;
                samples.lock().await.push(sample);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_at_once_and_service_returns_by_itself() {
    let postgres = Arc::new(PrivatePostgres::start());
    let url = postgres.url();
    let app = Arc::new(
        spawn_app_with(Backend::Sqlite, |s| {
            s.database.url = url.into();
            s.database.pool_size = 8;
        })
        .await,
    );
    let mut tokens = Vec::new();
    for i in 0..4 {
        let email = format!("reader{i}@example.com");
        app.register_user(&email).await;
        tokens.push(app.access_token(&email).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let tasks = load(&app, &tokens, &stop, &samples);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stopping = Instant::now();
    let pg = postgres.clone();
    tokio::task::spawn_blocking(move || pg.stop()).await.expect("pg_ctl stop");
    let down = Instant::now();
    // While it is down: liveness stays 200 and fast, readiness says 503.
    let mut live_latencies = Vec::new();
    while down.elapsed() < Duration::from_secs(3) {
        let live = sample("GET /health/live", app.client.get(app.url("/health/live"))).await;
        assert_eq!(live.status, StatusCode::OK, "liveness needs no database");
        live_latencies.push(live.latency);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = sample("GET /health/ready", app.client.get(app.url("/health/ready"))).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "readiness reports the outage");

    // The server accepts connections a little before `pg_ctl start` returns: the outage ends
    // when the start begins, and the database is surely back when it returns.
    let restarting = Instant::now();
    let pg = postgres.clone();
    tokio::task::spawn_blocking(move || pg.start_again()).await.expect("pg_ctl start");
    let back = Instant::now();
    tokio::time::sleep(RECOVERY_BOUND + Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load task");
    }
    let ready = sample("GET /health/ready", app.client.get(app.url("/health/ready"))).await;
    assert_eq!(ready.status, StatusCode::OK, "readiness recovers");

    let samples = samples.lock().await.clone();
    let errors: Vec<&Sample> =
        samples.iter().filter(|s| s.status.is_server_error() && s.status != StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(errors.is_empty(), "no request may fail with another 5xx than 503: {errors:?}");
    let during: Vec<&Sample> =
        samples.iter().filter(|s| s.started >= down && s.started + s.latency <= restarting).collect();
    assert!(during.len() >= 20, "the load ran during the outage ({} requests)", during.len());
    for s in &during {
        assert_eq!(
            s.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{} {:?} into the outage ({:?} long): {s:?}",
            s.what,
            s.started - down,
            restarting - down
        );
        assert_eq!(s.code.as_deref(), Some("service_unavailable"), "{s:?}");
        assert!(
            s.retry_after.as_deref().is_some_and(|v| v.parse::<u32>().is_ok_and(|secs| secs >= 1)),
            "Retry-After in {s:?}"
        );
    }
    let slowest = samples
        .iter()
        .filter(|s| s.status == StatusCode::SERVICE_UNAVAILABLE)
        .map(|s| s.latency)
        .max()
        .unwrap_or_default();
    let all_refused: Vec<&Sample> = samples.iter().filter(|s| s.status == StatusCode::SERVICE_UNAVAILABLE).collect();
    for s in &all_refused {
        assert!(s.latency < FAIL_FAST_BOUND, "{} took {:?} to be refused", s.what, s.latency);
    }
    let after: Vec<&Sample> = samples.iter().filter(|s| s.started >= back + RECOVERY_BOUND).collect();
    assert!(!after.is_empty(), "the load ran after the recovery bound");
    for s in &after {
        assert!(s.status.is_success(), "{} {RECOVERY_BOUND:?} after the database returned: {s:?}", s.what);
    }
    let first_success_after_back = samples
        .iter()
        .filter(|s| s.started >= back && s.status.is_success())
        .map(|s| s.started + s.latency - back)
        .min();
    let mut refused: Vec<Duration> = all_refused.iter().map(|s| s.latency).collect();
    refused.sort();
    let p50 = refused.get(refused.len() / 2).copied().unwrap_or_default();
    eprintln!(
        "outage: pg_ctl stop took {:?}; {} requests during the outage, {} refused with 503 in total (p50 {p50:?}, max \
         {slowest:?}); liveness max {:?}; first success {first_success_after_back:?} after the database was back",
        down - stopping,
        during.len(),
        refused.len(),
        live_latencies.iter().max().copied().unwrap_or_default(),
    );
}
