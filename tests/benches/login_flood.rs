//! Backpressure (`make bench`): `GET /users/me` latency (p50/p99) and requests per second,
//! alone and during a concurrent flood of password sign-ins with the production argon2id
//! parameters. Password hashing runs on a bounded pool with a bounded queue, so the flood gets
//! 503s instead of starving cheap requests. Targets (issue 7): p99 under flood at most 2× the
//! p99 without, and at least half the requests per second kept.
//!
//! Runs twice, with the hashing threads in the background (the default: below request threads)
//! and at normal priority, each on a fresh SQLite file with rate limits off. Results go to
//! `bench-results/login-flood.md` and standard output.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use gatehouse_server::Application;
use gatehouse_server::settings::{AppEnv, Settings};
use serde_json::{Value, json};

const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "bench passphrase for the flood";
/// How long each measurement runs.
const MEASURE: Duration = Duration::from_secs(10);
/// Concurrent `GET /users/me` clients.
const READERS: usize = 8;
/// Concurrent sign-in clients in the flood.
const FLOODERS: usize = 64;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let background = scenario(true).await?;
    let normal = scenario(false).await?;

    let mut report = String::from("# GET /users/me with and without a login flood\n\n");
    let _ = writeln!(
        report,
        "{READERS} readers, {FLOODERS} sign-in clients, {} s per run, SQLite, argon2id m=19456 t=2 p=1, \
         hashing pool at its default size; load generator in the same process.\n",
        MEASURE.as_secs()
    );
    let _ = writeln!(
        report,
        "| hashing threads | run | requests/s | p50 ms | p99 ms | sign-ins/s (200) | refused/s (503) |\n|---|---|---|---|---|---|---|"
    );
    for (name, outcome) in [("background (default)", &background), ("normal priority", &normal)] {
        let (calm, stormy) = (&outcome.calm, &outcome.stormy);
        let _ = writeln!(report, "| {name} | alone | {:.0} | {:.2} | {:.2} | | |", calm.rps, calm.p50, calm.p99);
        let _ = writeln!(
            report,
            "| {name} | during the flood | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} |",
            stormy.rps, stormy.p50, stormy.p99, outcome.sign_ins, outcome.refused
        );
    }
    for (name, outcome) in [("Background hashing (default)", &background), ("Normal-priority hashing", &normal)] {
        let _ = writeln!(
            report,
            "\n{name}: p99 ratio {:.2} (target ≤ 2), throughput kept {:.0} % (target ≥ 50 %).",
            outcome.stormy.p99 / outcome.calm.p99,
            100.0 * outcome.stormy.rps / outcome.calm.rps
        );
    }
    print!("{report}");
    let results = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../bench-results"));
    std::fs::create_dir_all(results).context("bench-results/")?;
    std::fs::write(results.join("login-flood.md"), &report).context("bench-results/login-flood.md")?;
    Ok(())
}

/// One server's numbers: reads alone, reads during the flood, and what the flood got.
struct Outcome {
    calm: Run,
    stormy: Run,
    sign_ins: f64,
    refused: f64,
}

/// Starts a server on a fresh SQLite file with hashing in the background or not, and measures
/// `GET /users/me` alone and during a sign-in flood.
async fn scenario(hash_background: bool) -> anyhow::Result<Outcome> {
    let dir = std::env::temp_dir().join(format!("gatehouse-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let config_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"));
    let mut settings = Settings::load_from(AppEnv::Test, config_dir, &HashMap::new())?;
    settings.database.url = format!("sqlite://{}", dir.join("bench.db").display()).into();
    settings.server.port = 0;
    settings.server.workers = 0;
    settings.rate_limit.enabled = false;
    settings.auth.argon2_memory_kib = 19_456;
    settings.auth.argon2_iterations = 2;
    settings.auth.argon2_parallelism = 1;
    settings.auth.hash_workers = 0;
    settings.auth.hash_background = hash_background;
    settings.auth.lockout_threshold = 1_000_000;
    settings.auth.jwt_secret = Some("bench-secret-that-is-at-least-32-bytes-long".to_owned().into());
    settings.bootstrap.admin_email = Some(EMAIL.to_owned());
    settings.bootstrap.admin_password = Some(PASSWORD.to_owned().into());
    settings.mail.relay_enabled = false;
    settings.storage.avatar_dir = dir.join("avatars");
    let application = Application::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", application.port());
    let server = tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"].as_str().context("an access token")?.to_owned();

    let _ = measure(&client, &base, &token, Duration::from_secs(2)).await;
    let calm = measure(&client, &base, &token, MEASURE).await;
    let flooding = Arc::new(AtomicBool::new(true));
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flood: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let (client, base, flooding) = (client.clone(), base.clone(), flooding.clone());
            let (ok, refused) = (ok.clone(), refused.clone());
            tokio::spawn(async move {
                while flooding.load(Ordering::Relaxed) {
                    let response = client
                        .post(format!("{base}/api/v1/auth/login"))
                        .json(&json!({"email": EMAIL, "password": PASSWORD}))
                        .send()
                        .await;
                    match response.map(|r| r.status().as_u16()) {
                        Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => refused.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stormy = measure(&client, &base, &token, MEASURE).await;
    flooding.store(false, Ordering::Relaxed);
    for task in flood {
        let _ = task.await;
    }
    server.abort();
    let _ = std::fs::remove_dir_all(dir);

    let secs = MEASURE.as_secs_f64() + 1.0;
    Ok(Outcome {
        calm,
        stormy,
        sign_ins: ok.load(Ordering::Relaxed) as f64 / secs,
        refused: refused.load(Ordering::Relaxed) as f64 / secs,
    })
}

struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
}

async fn measure(client: &reqwest::Client, base: &str, token: &str, duration: Duration) -> Run {
    let started = Instant::now();
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (client, url, token) = (client.clone(), format!("{base}/api/v1/users/me"), token.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while started.elapsed() < duration {
                    let sent = Instant::now();
                    if client.get(&url).bearer_auth(&token).send().await.is_ok_and(|r| r.status().is_success()) {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for reader in readers {
        all.extend(reader.await.unwrap_or_default());
    }
    all.sort_by(f64::total_cmp);
    let at = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(f64::NAN)
    };
    Run { rps: all.len() as f64 / started.elapsed().as_secs_f64(), p50: at(0.50), p99: at(0.99) }
}
