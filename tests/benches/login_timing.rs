//! Login timing (`make bench`): does the time to answer a failed sign-in tell whether the
//! account exists? Sends n interleaved (shuffled) `POST /auth/login` requests of two kinds —
//! a wrong password for an existing account, and any password for addresses nobody
//! registered — one at a time over one connection, and compares the two latency
//! distributions side by side with a Mann–Whitney U test and a two-sample
//! Kolmogorov–Smirnov test. Both answer 401 `invalid_credentials`; the bookkeeping a failure
//! of an existing account owes (audit event, failure count, maybe a lockout) runs after the
//! answer.
//!
//! Argon2id runs with the test suite's cheap parameters (m=1024 KiB, t=1), so the work around
//! the hash, where a difference would hide, is a large share of each request; with production
//! parameters the hash would only add equal time and noise to both. The lockout threshold is
//! raised so the account stays unlocked (a locked account says so, by design). Runs on
//! PostgreSQL (where a write costs an fsync) and on SQLite. Results go to
//! `bench-results/login-timing.md` and standard output.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use gatehouse_server::Application;
use gatehouse_server::settings::{AppEnv, Settings};
use gatehouse_store_diesel::testing::TestDatabase;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{RngExt as _, SeedableRng as _};
use serde_json::json;

/// Samples of each kind.
const SAMPLES: usize = 2_500;
/// Requests sent first and not measured.
const WARM_UP: usize = 300;
const EMAIL: &str = "existing@example.com";
const PASSWORD: &str = "the account's real passphrase";

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let seed: u64 = rand::rng().random();
    let mut report = String::from("# Login timing: existing account with a wrong password vs unknown account\n\n");
    let _ = writeln!(
        report,
        "{SAMPLES} samples of each kind per engine, shuffled together (seed {seed}), sent one at a time over \
         one keep-alive connection after {WARM_UP} unmeasured requests; client-side latency of the whole \
         request; argon2id m=1024 t=1 p=1; release build; {} cores.\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    for (name, db) in [("PostgreSQL", TestDatabase::postgres()), ("SQLite", TestDatabase::sqlite())] {
        let (existing, unknown) = scenario(&db, seed).await?;
        let _ = writeln!(report, "## {name}\n\n{}", compare(&existing, &unknown));
    }
    print!("{report}");
    let results = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../bench-results"));
    std::fs::create_dir_all(results).context("bench-results/")?;
    std::fs::write(results.join("login-timing.md"), &report).context("bench-results/login-timing.md")?;
    Ok(())
}

/// The latencies, in milliseconds, of failed sign-ins to an existing and to unknown accounts.
async fn scenario(db: &TestDatabase, seed: u64) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let dir = std::env::temp_dir().join(format!("gatehouse-timing-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let config_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"));
    let mut settings = Settings::load_from(AppEnv::Test, config_dir, &HashMap::new())?;
    settings.database.url = db.url().to_owned().into();
    settings.server.port = 0;
    settings.rate_limit.enabled = false;
    settings.auth.lockout_threshold = 1_000_000;
    settings.auth.jwt_secret = Some("bench-secret-that-is-at-least-32-bytes-long".to_owned().into());
    settings.mail.relay_enabled = false;
    settings.storage.avatar_dir = dir.join("avatars");
    let application = Application::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", application.port());
    let server = tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
    let registered = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await?;
    anyhow::ensure!(registered.status().is_success(), "registering: {}", registered.status());

    let mut kinds: Vec<bool> = (0..SAMPLES).flat_map(|_| [true, false]).collect();
    kinds.shuffle(&mut StdRng::seed_from_u64(seed));
    let (mut existing, mut unknown) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    for (i, exists) in (0..WARM_UP).map(|i| i % 2 == 0).chain(kinds).enumerate() {
        let email = if exists { EMAIL.to_owned() } else { format!("nobody-{i}@example.com") };
        let started = Instant::now();
        let response = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": email, "password": "a wrong guess"}))
            .send()
            .await?;
        let status = response.status();
        let _ = response.bytes().await?;
        let millis = started.elapsed().as_secs_f64() * 1_000.0;
        anyhow::ensure!(status == 401, "a failed sign-in answered {status}");
        if i >= WARM_UP {
            if exists { existing.push(millis) } else { unknown.push(millis) }
        }
    }
    // Let the last bookkeeping finish before the server goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.abort();
    let _ = std::fs::remove_dir_all(dir);
    Ok((existing, unknown))
}

/// The two distributions side by side, and the two tests.
fn compare(existing: &[f64], unknown: &[f64]) -> String {
    let (mut a, mut b) = (existing.to_vec(), unknown.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let mut out = String::from("| ms | existing, wrong password | unknown account |\n|---|---|---|\n");
    for (label, q) in
        [("p1", 0.01), ("p10", 0.10), ("p25", 0.25), ("p50", 0.50), ("p75", 0.75), ("p90", 0.90), ("p99", 0.99)]
    {
        let _ = writeln!(out, "| {label} | {:.3} | {:.3} |", quantile(&a, q), quantile(&b, q));
    }
    let _ = writeln!(out, "| mean | {:.3} | {:.3} |", mean(&a), mean(&b));
    let _ = writeln!(out, "| std dev | {:.3} | {:.3} |\n", std_dev(&a), std_dev(&b));
    out.push_str(&histogram(&a, &b));
    let (z, p_mw) = mann_whitney(&a, &b);
    let (d, p_ks) = kolmogorov_smirnov(&a, &b);
    let _ = writeln!(
        out,
        "\nMedian difference (existing − unknown): {:+.3} ms. Mann–Whitney U: z = {z:.2}, two-sided p = {p_mw:.3}. \
         Kolmogorov–Smirnov: D = {d:.3}, p = {p_ks:.3}.",
        quantile(&a, 0.5) - quantile(&b, 0.5)
    );
    let verdict = if p_mw >= 0.01 && p_ks >= 0.01 {
        "Neither test tells the two kinds apart at the 1 % level."
    } else {
        "A test tells the two kinds apart at the 1 % level: the timing leaks."
    };
    let _ = writeln!(out, "{verdict}\n");
    out
}

/// Counts per latency bucket (between the pooled 1st and 99th percentiles), side by side.
fn histogram(a: &[f64], b: &[f64]) -> String {
    let mut pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    pooled.sort_by(f64::total_cmp);
    let (low, high) = (quantile(&pooled, 0.01), quantile(&pooled, 0.99));
    let buckets = 12;
    let width = (high - low) / f64::from(buckets);
    let count = |xs: &[f64], i: u32| {
        let (from, to) = (low + width * f64::from(i), low + width * f64::from(i + 1));
        xs.iter().filter(|x| **x >= from && (**x < to || (i == buckets - 1 && **x <= to))).count()
    };
    let mut out = String::from("| bucket (ms) | existing | unknown |\n|---|---|---|\n");
    for i in 0..buckets {
        let from = low + width * f64::from(i);
        let _ = writeln!(out, "| {from:.3}–{:.3} | {} | {} |", from + width, count(a, i), count(b, i));
    }
    let outside = |xs: &[f64]| xs.iter().filter(|x| **x < low || **x > high).count();
    let _ = writeln!(out, "| outside | {} | {} |", outside(a), outside(b));
    out
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn std_dev(xs: &[f64]) -> f64 {
    let m = mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// Mann–Whitney U with midranks for ties and the normal approximation: (z, two-sided p).
fn mann_whitney(a: &[f64], b: &[f64]) -> (f64, f64) {
    let mut all: Vec<(f64, bool)> = a.iter().map(|x| (*x, true)).chain(b.iter().map(|x| (*x, false))).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let midrank = (i + j) as f64 / 2.0 + 1.0;
        let tied = (j - i + 1) as f64;
        tie_term += tied.powi(3) - tied;
        rank_sum_a += all[i..=j].iter().filter(|(_, from_a)| *from_a).count() as f64 * midrank;
        i = j + 1;
    }
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let sigma = (n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
    let z = (u - n1 * n2 / 2.0) / sigma;
    (z, erfc(z.abs() / std::f64::consts::SQRT_2))
}

/// Two-sample Kolmogorov–Smirnov: (D, asymptotic p).
fn kolmogorov_smirnov(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0_f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n1 - j as f64 / n2).abs());
    }
    let en = (n1 * n2 / (n1 + n2)).sqrt();
    let lambda = (en + 0.12 + 0.11 / en) * d;
    let p: f64 = (1..=100)
        .map(|k| {
            let k = f64::from(k);
            2.0 * (-1.0_f64).powf(k - 1.0) * (-2.0 * k * k * lambda * lambda).exp()
        })
        .sum();
    (d, p.clamp(0.0, 1.0))
}

/// The complementary error function (Numerical Recipes' erfcc, fractional error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let value = t * poly.exp();
    if x >= 0.0 { value } else { 2.0 - value }
}
