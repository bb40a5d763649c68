//! The admin list on 1,000,000 users (`make bench`): p50/p99 latency of the first page, a
//! page 10,000 rows deep, `q` on a common and a rare substring, and a role+status filter,
//! through the real HTTP API; and the PostgreSQL plan of each query, which must read users
//! through an index (no sequential scan on `users`).
//!
//! The database `gatehouse_bench` on `BENCH_DATABASE_URL`'s server (default the local
//! PostgreSQL) is seeded once with `BENCH_USERS` users (default 1,000,000) and kept for later
//! runs. Results go to `bench-results/admin-list.md` and a table on standard output.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use gatehouse_domain::pagination::PageLimit;
use gatehouse_domain::ports::{UserCursor, UserQuery, UserSort, UserSortKey};
use gatehouse_domain::{Email, NewPassword, Role, UserId, UserStatus};
use gatehouse_server::Application;
use gatehouse_server::settings::{AppEnv, Settings};
use gatehouse_store_diesel::Database;
use serde_json::Value;

const WARMUP: usize = 20;
const SAMPLES: usize = 300;
const DEEP_ROWS: usize = 10_000;
const TARGET_P99_MS: f64 = 20.0;
const ADMIN_EMAIL: &str = "bench-admin@example.com";
const ADMIN_PASSWORD: &str = "bench admin passphrase";

struct Case {
    name: &'static str,
    path: String,
    query: UserQuery,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let server =
        std::env::var("BENCH_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let users: u64 = std::env::var("BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let url = format!("{}/gatehouse_bench", server.trim_end_matches('/'));
    ensure_database(&server).await?;

    let database = Database::connect(&url, 4)?;
    database.migrate().await?;
    let present = database.count_users().await?;
    if present < users {
        println!("seeding {} users into gatehouse_bench (once; kept for later runs)…", users - present);
        let started = Instant::now();
        let inserted = database.seed_users(users - present, "$argon2id$v=19$m=1024,t=1,p=1$c2VlZHNlZWQ$x").await?;
        let secs = started.elapsed().as_secs_f64();
        println!("seeded {inserted} users in {secs:.0} s ({:.0} users/s)", inserted as f64 / secs);
    }
    let total = database.count_users().await?;

    let config_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"));
    let mut settings = Settings::load_from(AppEnv::Test, config_dir, &HashMap::new())?;
    settings.database.url = url.clone().into();
    settings.server.port = 0;
    settings.auth.jwt_secret = Some("bench-secret-that-is-at-least-32-bytes-long".to_owned().into());
    let state = gatehouse_server::startup::prepare(&settings).await?;
    let email = Email::parse(ADMIN_EMAIL)?;
    let password = NewPassword::parse(ADMIN_PASSWORD.to_owned().into(), &email)?;
    state.admin.create_admin(email, password).await.map_err(|e| anyhow::anyhow!(e))?;
    let application = Application::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::new();
    let token = sign_in(&client, &base).await?;

    let now = Utc::now();
    let deep = deep_position(&client, &base, &token).await?;
    let rare = deep.1.clone();
    let rare_digits: String = rare.chars().filter(char::is_ascii_digit).collect();
    let query = |search: Option<&str>, role, status, after| UserQuery {
        search: search.map(str::to_owned),
        role,
        status,
        include_deleted: false,
        sort: UserSort::CreatedAtDesc,
        limit: PageLimit::default(),
        after,
        now,
    };
    let cases = vec![
        Case { name: "first page", path: "/api/v1/users".to_owned(), query: query(None, None, None, None) },
        Case {
            name: "10,000 rows deep",
            path: format!("/api/v1/users?cursor={}", deep.0),
            query: query(None, None, None, Some(deep.2.clone())),
        },
        Case {
            name: "q, common (\"an\")",
            path: "/api/v1/users?q=an".to_owned(),
            query: query(Some("an"), None, None, None),
        },
        Case {
            name: "q, rare (the digits of one username)",
            path: format!("/api/v1/users?q={rare_digits}"),
            query: query(Some(&rare_digits), None, None, None),
        },
        Case {
            name: "q, rare (one whole username)",
            path: format!("/api/v1/users?q={rare}"),
            query: query(Some(&rare), None, None, None),
        },
        Case {
            name: "role=admin&status=active",
            path: "/api/v1/users?role=admin&status=active".to_owned(),
            query: query(None, Some(Role::Admin), Some(UserStatus::Active), None),
        },
        Case {
            name: "status=disabled, by email",
            path: "/api/v1/users?status=disabled&sort=email".to_owned(),
            query: UserQuery { sort: UserSort::Email, ..query(None, None, Some(UserStatus::Disabled), None) },
        },
    ];

    let mut report = format!(
        "# Admin user list on {total} users (PostgreSQL)\n\nMeasured {} by `make bench` ({SAMPLES} sequential requests per query after {WARMUP} warm-up, release build, one client, through HTTP).\n\n| query | p50 ms | p99 ms | rows | index plan |\n|---|---:|---:|---:|---|\n",
        now.format("%Y-%m-%d %H:%M UTC")
    );
    let mut plans = String::new();
    let mut failures = Vec::new();
    for case in &cases {
        let (p50, p99, rows) = measure(&client, &base, &token, &case.path).await?;
        let plan = database.explain_user_list(&case.query).await?;
        let seq_scan = plan.lines().any(|line| line.contains("Seq Scan on users"));
        let top = plan.lines().find(|l| l.contains("Scan")).unwrap_or("?").trim().to_owned();
        if seq_scan {
            failures.push(format!("{}: sequential scan on users", case.name));
        }
        if p99 > TARGET_P99_MS {
            failures.push(format!("{}: p99 {p99:.2} ms over {TARGET_P99_MS} ms", case.name));
        }
        let _ = writeln!(report, "| {} | {p50:.2} | {p99:.2} | {rows} | {} |", case.name, top.replace('|', "\\|"));
        let _ = write!(plans, "\n### {}\n\n```\n{plan}\n```\n", case.name);
    }
    let verdict = if failures.is_empty() {
        format!("\nEvery query under {TARGET_P99_MS} ms p99 and served by an index.\n")
    } else {
        format!("\nMissed: {}\n", failures.join("; "))
    };
    report.push_str(&verdict);
    let _ = write!(report, "\nLoad average while measuring: {}\n", load_average());
    println!("{report}");
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../bench-results"));
    std::fs::create_dir_all(dir).context("bench-results/")?;
    std::fs::write(dir.join("admin-list.md"), format!("{report}\n## Plans\n{plans}")).context("writing the report")?;
    println!("written to bench-results/admin-list.md");
    anyhow::ensure!(failures.is_empty(), "targets missed");
    Ok(())
}

async fn ensure_database(server: &str) -> anyhow::Result<()> {
    let maintenance = Database::connect(&format!("{}/postgres", server.trim_end_matches('/')), 1)?;
    let created = maintenance.execute_sql("CREATE DATABASE gatehouse_bench").await;
    if created.is_ok() {
        println!("created the database gatehouse_bench");
    }
    Ok(())
}

async fn sign_in(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
    let pair: Value = client.post(format!("{base}/api/v1/auth/login")).json(&body).send().await?.json().await?;
    pair["access_token"].as_str().map(str::to_owned).context("signing in as the bench admin")
}

/// The cursor after `DEEP_ROWS` users (newest first), a username from that depth (for the
/// rare search), and the same position as a domain cursor (for `EXPLAIN`).
async fn deep_position(
    client: &reqwest::Client,
    base: &str,
    token: &str,
) -> anyhow::Result<(String, String, UserCursor)> {
    let mut cursor = String::new();
    let mut last = Value::Null;
    for _ in 0..DEEP_ROWS / 100 {
        let url = format!(
            "{base}/api/v1/users?limit=100{}",
            if cursor.is_empty() { String::new() } else { format!("&cursor={cursor}") }
        );
        let page: Value = client.get(url).bearer_auth(token).send().await?.json().await?;
        last = page["items"].as_array().and_then(|items| items.last()).cloned().context("a full page")?;
        cursor = page["next_cursor"].as_str().context("more pages")?.to_owned();
    }
    let created_at: DateTime<Utc> = last["created_at"].as_str().context("created_at")?.parse()?;
    let id: UserId = last["id"].as_str().context("id")?.parse()?;
    let username = last["username"].as_str().context("username")?.to_lowercase();
    Ok((cursor, username, UserCursor { key: UserSortKey::CreatedAt(created_at), id }))
}

async fn measure(client: &reqwest::Client, base: &str, token: &str, path: &str) -> anyhow::Result<(f64, f64, usize)> {
    let url = format!("{base}{path}");
    let mut rows = 0;
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..WARMUP + SAMPLES {
        let started = Instant::now();
        let response = client.get(&url).bearer_auth(token).send().await?;
        anyhow::ensure!(response.status().is_success(), "{path}: {}", response.status());
        let page: Value = response.json().await?;
        if i >= WARMUP {
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        rows = page["items"].as_array().map_or(0, Vec::len);
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Ok((at(0.50), at(0.99), rows))
}

/// The 1-minute load average, to judge how quiet the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}
