//! Soak (`make soak`): a mixed load (profile reads, sign-ins, refreshes, registrations, admin
//! searches) against the real server on PostgreSQL and Redis for `SOAK_MINUTES` (default 30).
//! Every minute it samples the process's resident memory, open file descriptors, TCP
//! connections to PostgreSQL and Redis and the pool's connections, with the requests and
//! errors so far. The target (issue 22): growth over the last 20 minutes at most 5 %; for runs
//! shorter than 30 minutes the window is the last two thirds of the run, which the report says.
//!
//! The load generator runs in the server's process (the harness builds the server in-process),
//! so the memory figure includes its client; both must stay flat. Results go to
//! `bench-results/soak.md` and standard output.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gatehouse_tests::{ADMIN_EMAIL, Backend, PASSWORD, TestApp, spawn_app_with};
use serde_json::{Value, json};

/// One minute's reading.
#[derive(Debug, Clone, Copy)]
struct Sample {
    minute: u64,
    rss_kib: u64,
    fds: u64,
    postgres_tcp: u64,
    redis_tcp: u64,
    pool_connections: u64,
    requests: u64,
    errors: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn record(&self, ok: bool, what: &str, status: reqwest::StatusCode) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            let errors = self.errors.fetch_add(1, Ordering::Relaxed);
            if errors < 20 {
                eprintln!("soak: {what} answered {status}");
            }
        }
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Open descriptors, and the inodes of those that are sockets.
fn descriptors() -> (u64, HashSet<u64>) {
    let mut count = 0;
    let mut sockets = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").into_iter().flatten().flatten() {
        count += 1;
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|rest| rest.strip_suffix(']')) {
                sockets.extend(inode.parse::<u64>().ok());
            }
        }
    }
    (count, sockets)
}

/// This process's established TCP connections to `port` on any address.
fn tcp_connections_to(port: u16, sockets: &HashSet<u64>) -> u64 {
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) = (fields.get(2), fields.get(3), fields.get(9)) else {
                continue;
            };
            let remote_port = remote.rsplit(':').next().and_then(|hex| u16::from_str_radix(hex, 16).ok());
            let inode = inode.parse::<u64>().unwrap_or(0);
            if remote_port == Some(port) && *state == "01" && sockets.contains(&inode) {
                count += 1;
            }
        }
    }
    count
}

async fn pool_connections(app: &TestApp) -> u64 {
    let Ok(response) = app.client.get(app.url("/metrics")).send().await else { return 0 };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("gatehouse_db_pool_connections "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

async fn sample(app: &TestApp, minute: u64, counters: &Counters) -> Sample {
    let (fds, sockets) = descriptors();
    Sample {
        minute,
        rss_kib: rss_kib(),
        fds,
        postgres_tcp: tcp_connections_to(5432, &sockets),
        redis_tcp: tcp_connections_to(6379, &sockets),
        pool_connections: pool_connections(app).await,
        requests: counters.requests.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
    }
}

/// Spawns a task that runs `step` with a pause until `stop`.
fn worker<F, Fut>(stop: &Arc<AtomicBool>, pause: Duration, mut step: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let stop = stop.clone();
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            step().await;
            tokio::time::sleep(pause).await;
        }
    })
}

fn growth(from: u64, to: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    if from == 0 { 0.0 } else { (to as f64 - from as f64) / from as f64 * 100.0 }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let minutes: u64 = std::env::var("SOAK_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(30).max(3);
    let prefix = format!("gatehouse-soak-{}:", uuid::Uuid::now_v7().simple());
    let app = Arc::new(
        spawn_app_with(Backend::Postgres, |s| {
            s.redis.url =
                Some(std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()).into());
            s.redis.key_prefix = prefix;
            s.bootstrap.admin_email = Some(ADMIN_EMAIL.to_owned());
            s.bootstrap.admin_password = Some(PASSWORD.to_owned().into());
            s.database.pool_size = 8;
        })
        .await,
    );
    for i in 0..20 {
        app.register_user_quietly(&format!("reader{i}@example.com")).await;
    }
    let admin = app.access_token(ADMIN_EMAIL).await;
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let token = app.access_token(&format!("reader{i}@example.com")).await;
        let (app, counters) = (app.clone(), counters.clone());
        tasks.push(worker(&stop, Duration::from_millis(10), move || {
            let (app, counters, token) = (app.clone(), counters.clone(), token.clone());
            async move {
                let response = app.get("/api/v1/users/me", Some(&token)).await;
                counters.record(response.status().is_success(), "GET /users/me", response.status());
            }
        }));
    }
    let signed_in = Arc::new(AtomicU64::new(0));
    {
        let (app, counters, signed_in) = (app.clone(), counters.clone(), signed_in.clone());
        tasks.push(worker(&stop, Duration::from_millis(50), move || {
            let (app, counters, signed_in) = (app.clone(), counters.clone(), signed_in.clone());
            async move {
                let n = signed_in.fetch_add(1, Ordering::Relaxed) % 20;
                let body = json!({"email": format!("reader{n}@example.com"), "password": PASSWORD});
                let response = app.login(&body).await;
                let status = response.status();
                counters.record(status.is_success(), "POST /auth/login", status);
                // Sign out again, so sessions do not pile up faster than a real user base's.
                if let Ok(pair) = response.json::<Value>().await
                    && let Some(refresh) = pair["refresh_token"].as_str()
                {
                    let response = app.post_json("/api/v1/auth/logout", &json!({"refresh_token": refresh})).await;
                    counters.record(response.status().is_success(), "POST /auth/logout", response.status());
                }
            }
        }));
    }
    {
        let pair = app.token_pair("reader19@example.com").await;
        let refresh = Arc::new(tokio::sync::Mutex::new(pair["refresh_token"].as_str().unwrap_or_default().to_owned()));
        let (app, counters) = (app.clone(), counters.clone());
        tasks.push(worker(&stop, Duration::from_millis(50), move || {
            let (app, counters, refresh) = (app.clone(), counters.clone(), refresh.clone());
            async move {
                let mut current = refresh.lock().await;
                let response = app.refresh(&current).await;
                let status = response.status();
                counters.record(status.is_success(), "POST /auth/refresh", status);
                if let Ok(pair) = response.json::<Value>().await
                    && let Some(next) = pair["refresh_token"].as_str()
                {
                    next.clone_into(&mut current);
                }
            }
        }));
    }
    let registered = Arc::new(AtomicU64::new(0));
    {
        let (app, counters, registered) = (app.clone(), counters.clone(), registered.clone());
        tasks.push(worker(&stop, Duration::from_millis(200), move || {
            let (app, counters, registered) = (app.clone(), counters.clone(), registered.clone());
            async move {
                let n = registered.fetch_add(1, Ordering::Relaxed);
                let body = json!({"email": format!("soak{n}@example.com"), "password": PASSWORD});
                let response = app.register(&body).await;
                counters.record(response.status().is_success(), "POST /auth/register", response.status());
            }
        }));
    }
    {
        let (app, counters) = (app.clone(), counters.clone());
        let searches = ["reader", "soak1", "example", "zz-nobody"];
        let turn = Arc::new(AtomicU64::new(0));
        tasks.push(worker(&stop, Duration::from_millis(100), move || {
            let (app, counters, admin, turn) = (app.clone(), counters.clone(), admin.clone(), turn.clone());
            async move {
                let i = usize::try_from(turn.fetch_add(1, Ordering::Relaxed)).unwrap_or(0) % searches.len();
                let response = app.get(&format!("/api/v1/users?q={}&limit=20", searches[i]), Some(&admin)).await;
                counters.record(response.status().is_success(), "GET /users?q=", response.status());
            }
        }));
    }

    let started = Instant::now();
    let mut samples = vec![sample(&app, 0, &counters).await];
    println!("minute | RSS MiB | fds | PG tcp | Redis tcp | pool | requests | errors");
    let print = |s: &Sample| {
        #[allow(clippy::cast_precision_loss)]
        let rss = s.rss_kib as f64 / 1024.0;
        println!(
            "{:>6} | {rss:>7.1} | {:>3} | {:>6} | {:>9} | {:>4} | {:>8} | {:>6}",
            s.minute, s.fds, s.postgres_tcp, s.redis_tcp, s.pool_connections, s.requests, s.errors
        );
    };
    print(&samples[0]);
    for minute in 1..=minutes {
        let due = started + Duration::from_secs(60 * minute);
        tokio::time::sleep_until(due.into()).await;
        let s = sample(&app, minute, &counters).await;
        print(&s);
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }

    let window = if minutes >= 30 { 20 } else { (minutes * 2 / 3).max(1) };
    let last = *samples.last().ok_or_else(|| anyhow::anyhow!("no samples"))?;
    let base = samples[usize::try_from(minutes - window).unwrap_or(0)];
    let rss_growth = growth(base.rss_kib, last.rss_kib);
    let fd_growth = growth(base.fds, last.fds);
    let pg_growth = growth(base.postgres_tcp, last.postgres_tcp);
    let redis_growth = growth(base.redis_tcp, last.redis_tcp);
    let worst = [rss_growth, fd_growth, pg_growth, redis_growth].into_iter().fold(f64::MIN, f64::max);

    let mut report = String::from("# Soak: mixed load on PostgreSQL and Redis\n\n");
    let _ = writeln!(
        report,
        "{minutes} minutes (`SOAK_MINUTES={minutes} make soak`), {} build, this machine (2 cores, shared with \
         other work). Load: 4 clients reading `GET /users/me` (10 ms pause), sign-in + sign-out (50 ms), a refresh \
         chain (50 ms), registrations (200 ms), admin search (100 ms). The load generator runs in the server's \
         process.\n",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    report.push_str(
        "| minute | RSS MiB | open fds | TCP to PostgreSQL | TCP to Redis | pool connections | requests | errors |\n",
    );
    report.push_str("|---|---|---|---|---|---|---|---|\n");
    for s in &samples {
        #[allow(clippy::cast_precision_loss)]
        let rss = s.rss_kib as f64 / 1024.0;
        let _ = writeln!(
            report,
            "| {} | {rss:.1} | {} | {} | {} | {} | {} | {} |",
            s.minute, s.fds, s.postgres_tcp, s.redis_tcp, s.pool_connections, s.requests, s.errors
        );
    }
    let _ = writeln!(
        report,
        "\nGrowth over the last {window} minutes (minute {} → {minutes}): RSS {rss_growth:+.1} %, fds {fd_growth:+.1} %, \
         PostgreSQL connections {pg_growth:+.1} %, Redis connections {redis_growth:+.1} %. Errors: {}. Target ≤ 5 %: {}.",
        minutes - window,
        last.errors,
        if worst <= 5.0 { "met" } else { "NOT met" },
    );
    print!("\n{report}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("soak.md"), &report)?;
    drop(app);
    Ok(())
}
