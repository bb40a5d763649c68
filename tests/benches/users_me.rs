//! Authenticated reads and sign-ins (`make bench`, issue 14), measured side by side in one run:
//!
//! - `GET /api/v1/users/me` on PostgreSQL without Redis, PostgreSQL with Redis, and SQLite,
//!   against the *floor*: actix-web with the same token verification
//!   ([`gatehouse_server::startup::access_tokens`]) and the same response body
//!   ([`UserBody`]), no database. Targets: ≥ 40 % of the floor's requests/s, p99 ≤ 5 ms.
//! - `POST /auth/login` and `POST /auth/register` per second against N = cores parallel raw
//!   argon2id hashes with the same crate and parameters. Target: ≥ 95 %.
//! - Resident memory of the server: idle, and with 100,000 sessions in its read cache.
//!
//! Every server runs in a child process (this binary re-executed with `--serve <mode>`), so
//! its memory can be read from `/proc` and the load generator (plain HTTP/1.1 over keep-alive
//! TCP connections, no client library) does not share its allocator. Results go to
//! `bench-results/users-me.md` and standard output.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use gatehouse_domain::ports::{AccessClaims, AccessTokens};
use gatehouse_domain::{Role, SessionId, UserId};
use gatehouse_server::Application;
use gatehouse_server::http::dto::UserBody;
use gatehouse_server::settings::{AppEnv, Settings};
use gatehouse_store_diesel::testing::TestDatabase;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "bench passphrase for reads";
const SECRET: &str = "bench-secret-that-is-at-least-32-bytes-long";
/// Concurrent connections of every load.
const CONNECTIONS: usize = 32;
const WARM_UP: Duration = Duration::from_secs(2);
const MEASURE: Duration = Duration::from_secs(10);
/// Sessions put in the read cache for the memory measurement.
const CACHED_SESSIONS: usize = 100_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--serve") {
        let mode = args.get(at + 1).context("--serve <mode>")?;
        let url = args.get(at + 2).cloned().unwrap_or_default();
        return serve(mode, &url);
    }
    // `--load <port> <token> <seconds>`: only the load, e.g. while `perf record` watches a server.
    if let Some(at) = args.iter().position(|a| a == "--load") {
        let port: u16 = args.get(at + 1).context("--load <port> <token> <seconds>")?.parse()?;
        let token = args.get(at + 2).context("a token")?.clone();
        let seconds: u64 = args.get(at + 3).map_or(Ok(10), |s| s.parse())?;
        let run = tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(load(
            port,
            Duration::from_secs(seconds),
            get_me(&token),
        ));
        println!("{run:?}");
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(drive())
}

// ---------------------------------------------------------------------------------------------
// Servers (child processes)

fn settings(database_url: &str, redis: bool, dir: &Path) -> anyhow::Result<Settings> {
    let config_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"));
    let mut settings = Settings::load_from(AppEnv::Test, config_dir, &HashMap::new())?;
    settings.database.url = database_url.to_owned().into();
    settings.database.pool_size = 0;
    settings.server.port = 0;
    settings.server.workers = 0;
    settings.rate_limit.enabled = false;
    settings.auth.argon2_memory_kib = 19_456;
    settings.auth.argon2_iterations = 2;
    settings.auth.argon2_parallelism = 1;
    settings.auth.hash_workers = 0;
    settings.auth.hash_queue_capacity = 256;
    settings.auth.hash_background = true;
    settings.auth.lockout_threshold = 1_000_000;
    settings.auth.require_verified_email = false;
    settings.auth.jwt_secret = Some(SECRET.to_owned().into());
    settings.bootstrap.admin_email = Some(EMAIL.to_owned());
    settings.bootstrap.admin_password = Some(PASSWORD.to_owned().into());
    settings.mail.relay_enabled = false;
    settings.mail.smtp_url = None;
    settings.log.level = "warn".to_owned();
    settings.storage.avatar_dir = dir.join("avatars");
    settings.cache.capacity = CACHED_SESSIONS + 10_000;
    if redis {
        settings.redis.url = Some("redis://127.0.0.1:6379".to_owned().into());
        settings.redis.key_prefix = format!("gatehouse-bench:{}:", uuid::Uuid::now_v7());
    }
    Ok(settings)
}

/// Runs one server until stdin closes, printing `PORT <n>` once it listens.
fn serve(mode: &str, url: &str) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("gatehouse-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if mode == "floor" {
        let settings = settings("sqlite::memory:", false, &dir)?;
        return serve_floor(&settings);
    }
    let (mode, cache_off) = match mode.strip_suffix(",cache-off") {
        Some(mode) => (mode, true),
        None => (mode, false),
    };
    let url = match mode {
        "sqlite" => format!("sqlite://{}", dir.join("bench.db").display()),
        _ => url.to_owned(),
    };
    let mut settings = settings(&url, mode == "postgres+redis", &dir)?;
    if cache_off {
        settings.cache.capacity = 0;
    }
    runtime.block_on(async move {
        let application = Application::build(settings).await?;
        println!("PORT {}", application.port());
        let server = tokio::spawn(application.run_until_stopped());
        wait_for_stdin_to_close().await;
        server.abort();
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn wait_for_stdin_to_close() {
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
    })
    .await;
}

/// The floor: actix-web, the server's token verification and body, nothing else.
fn serve_floor(settings: &Settings) -> anyhow::Result<()> {
    let (tokens, _) = gatehouse_server::startup::access_tokens(settings, &gatehouse_security::RandomTokens)?;
    let tokens: Arc<dyn AccessTokens> = Arc::new(tokens);
    let body = sample_body()?;
    actix_web::rt::System::new().block_on(async move {
        let server = actix_web::HttpServer::new(move || {
            let (tokens, body) = (tokens.clone(), body.clone());
            actix_web::App::new().route(
                "/api/v1/users/me",
                actix_web::web::get().to(move |req: actix_web::HttpRequest| {
                    let (tokens, body) = (tokens.clone(), body.clone());
                    async move {
                        let bearer = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("Bearer "));
                        match bearer.map(|token| tokens.verify(token)) {
                            Some(Ok(_)) => actix_web::HttpResponse::Ok().json(&*body),
                            _ => actix_web::HttpResponse::Unauthorized().finish(),
                        }
                    }
                }),
            )
        })
        .bind(("127.0.0.1", 0))?;
        let port = server.addrs().first().map(std::net::SocketAddr::port).context("a port")?;
        println!("PORT {port}");
        let running = server.run();
        let handle = running.handle();
        actix_web::rt::spawn(async move {
            wait_for_stdin_to_close().await;
            handle.stop(false).await;
        });
        running.await?;
        anyhow::Ok(())
    })
}

/// The body `/users/me` answers for the bench user, built with the server's own type.
fn sample_body() -> anyhow::Result<Arc<UserBody>> {
    let user = gatehouse_domain::User {
        id: UserId::generate(),
        email: gatehouse_domain::Email::parse(EMAIL).map_err(|e| anyhow::anyhow!("{e:?}"))?,
        username: gatehouse_domain::Username::parse("bench").map_err(|e| anyhow::anyhow!("{e:?}"))?,
        display_name: None,
        roles: vec![Role::User, Role::Admin],
        status: gatehouse_domain::UserStatus::Active,
        email_verified_at: Some(Utc::now()),
        avatar: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        last_login_at: Some(Utc::now()),
        locked_until: None,
        deleted_at: None,
    };
    Ok(Arc::new(UserBody::new(&user, Utc::now())))
}

/// A server child process; killed (its stdin closed) when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(mode: &str, url: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["--serve", mode, url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines.next().context("the server exited before listening")??;
            if let Some(port) = line.strip_prefix("PORT ") {
                break port.trim().parse()?;
            }
        };
        Ok(Self { child, port })
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(f64::NAN);
        kib / 1024.0
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The load generator

#[derive(Debug, Clone, Copy, Default)]
struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
    failed: u64,
}

/// Sends `request(n)` over `CONNECTIONS` keep-alive connections for `duration`.
async fn load(port: u16, duration: Duration, request: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (stop, counter, request) = (stop.clone(), counter.clone(), request.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut ok, mut failed) = (0u64, 0u64);
                let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else { return (latencies, 0, 1) };
                let _ = stream.set_nodelay(true);
                let mut buffer = Vec::with_capacity(8192);
                while !stop.load(Ordering::Relaxed) {
                    let bytes = request(counter.fetch_add(1, Ordering::Relaxed));
                    let sent = Instant::now();
                    if stream.write_all(&bytes).await.is_err() {
                        failed += 1;
                        break;
                    }
                    match read_response(&mut stream, &mut buffer).await {
                        Some(status) => {
                            latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                            if status < 300 { ok += 1 } else { failed += 1 }
                        }
                        None => {
                            failed += 1;
                            break;
                        }
                    }
                }
                (latencies, ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = Vec::new();
    let (mut ok, mut failed) = (0, 0);
    for task in tasks {
        if let Ok((latencies, o, f)) = task.await {
            all.extend(latencies);
            ok += o;
            failed += f;
        }
    }
    all.sort_unstable();
    let percentile = |p: f64| {
        if all.is_empty() {
            return f64::NAN;
        }
        let at = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        f64::from(all[at]) / 1000.0
    };
    Run { rps: ok as f64 / elapsed, p50: percentile(0.50), p99: percentile(0.99), failed }
}

/// Reads one HTTP/1.1 response (Content-Length bodies only); its status, or `None` on EOF.
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<u16> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).ok()?;
            let status: u16 = head.get(9..12)?.parse().ok()?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok()).flatten()
                })
                .unwrap_or(0);
            let total = end + 4 + length;
            while buffer.len() < total {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            buffer.drain(..total);
            return Some(status);
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn get_me(token: &str) -> Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync> {
    let bytes = format!("GET /api/v1/users/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n")
        .into_bytes();
    Arc::new(move |_| bytes.clone())
}

fn post_json(
    path: &'static str,
    body: impl Fn(u64) -> String + Send + Sync + 'static,
) -> Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync> {
    Arc::new(move |n| {
        let body = body(n);
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
}

async fn measure(port: u16, request: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>) -> Run {
    let _ = load(port, WARM_UP, request.clone()).await;
    load(port, MEASURE, request).await
}

// ---------------------------------------------------------------------------------------------
// The run

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

async fn sign_in(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    Ok(login["access_token"].as_str().context("an access token")?.to_owned())
}

struct Row {
    scenario: String,
    run: Run,
    load: String,
}

/// `N` threads hashing with argon2id at the production parameters for `MEASURE`.
fn raw_hashes_per_second(threads: usize) -> anyhow::Result<f64> {
    let params = argon2::Params::new(19_456, 2, 1, Some(32)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, count, params) = (stop.clone(), count.clone(), params.clone());
            std::thread::spawn(move || {
                let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
                let mut out = [0u8; 32];
                while !stop.load(Ordering::Relaxed) {
                    if argon.hash_password_into(PASSWORD.as_bytes(), b"sixteen byte salt", &mut out).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(MEASURE);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    Ok(count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

async fn drive() -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let client = reqwest::Client::new();
    let mut reads: Vec<Row> = Vec::new();
    let mut writes: Vec<Row> = Vec::new();
    let mut memory: Vec<(String, f64, f64)> = Vec::new();

    let floor = Server::start("floor", "")?;
    let token_for_floor = {
        // The floor verifies with the same settings: any token the servers issue passes.
        let server = Server::start("sqlite", "")?;
        sign_in(&client, &server.base()).await?
    };
    let before = load_average();
    let run = measure(floor.port, get_me(&token_for_floor)).await;
    reads.push(Row { scenario: "floor (actix-web + JWT verify + body, no database)".to_owned(), run, load: before });
    drop(floor);

    let mut databases = Vec::new();
    for mode in ["postgres,cache-off", "postgres", "postgres+redis", "sqlite"] {
        let database = TestDatabase::postgres();
        let server = Server::start(mode, database.url())?;
        let token = sign_in(&client, &server.base()).await?;
        let idle = server.rss_mib();
        let before = load_average();
        let run = measure(server.port, get_me(&token)).await;
        reads.push(Row { scenario: format!("Gatehouse, {mode}"), run, load: before });
        if mode == "postgres" {
            let before = load_average();
            let login = post_json("/api/v1/auth/login", |_| json!({"email": EMAIL, "password": PASSWORD}).to_string());
            writes.push(Row {
                scenario: "POST /auth/login".to_owned(),
                run: measure(server.port, login).await,
                load: before,
            });
            let before = load_average();
            let prefix = uuid::Uuid::now_v7().simple().to_string();
            let register = post_json("/api/v1/auth/register", move |n| {
                json!({"email": format!("r{n}-{prefix}@example.com"), "password": PASSWORD}).to_string()
            });
            writes.push(Row {
                scenario: "POST /auth/register".to_owned(),
                run: measure(server.port, register).await,
                load: before,
            });
            let full = fill_cache(&server, &database).await?;
            memory.push((mode.to_owned(), idle, full));
        }
        databases.push(database);
    }
    let before = load_average();
    let raw = raw_hashes_per_second(cores)?;
    let raw_load = before;

    let floor_rps = reads[0].run.rps;
    let mut report = String::from("# Authenticated reads and sign-ins against their floors\n\n");
    let _ = writeln!(
        report,
        "Machine: {cores} cores, {}. Release build; {CONNECTIONS} keep-alive connections; {} s warm-up, {} s measured; \
         servers in child processes, the load generator (plain HTTP/1.1) in the parent on the same cores. argon2id \
         m=19456 t=2 p=1, hashing threads = cores at background priority. `load` is the 1/5/15-minute load average \
         before each run (other work on the machine).\n",
        cpu_model(),
        WARM_UP.as_secs(),
        MEASURE.as_secs()
    );
    let _ = writeln!(
        report,
        "## GET /api/v1/users/me\n\n| scenario | requests/s | of floor | p50 ms | p99 ms | non-2xx | load |\n|---|---|---|---|---|---|---|"
    );
    for row in &reads {
        let _ = writeln!(
            report,
            "| {} | {:.0} | {:.0} % | {:.2} | {:.2} | {} | {} |",
            row.scenario,
            row.run.rps,
            100.0 * row.run.rps / floor_rps,
            row.run.p50,
            row.run.p99,
            row.run.failed,
            row.load
        );
    }
    let _ = writeln!(report, "\nTargets: ≥ 40 % of the floor, p99 ≤ 5 ms.\n");
    let _ = writeln!(
        report,
        "## Password hashing (PostgreSQL, no Redis)\n\n| scenario | per second | of raw | p50 ms | p99 ms | non-2xx | load |\n|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        report,
        "| {cores} threads of raw argon2id (`argon2` crate, same parameters) | {raw:.1} | 100 % | | | | {raw_load} |"
    );
    for row in &writes {
        let _ = writeln!(
            report,
            "| {} | {:.1} | {:.0} % | {:.1} | {:.1} | {} | {} |",
            row.scenario,
            row.run.rps,
            100.0 * row.run.rps / raw,
            row.run.p50,
            row.run.p99,
            row.run.failed,
            row.load
        );
    }
    let _ = writeln!(report, "\nTargets: ≥ 95 % of raw, and ahead of better-auth's 87/s on this kind of machine.\n");
    let _ = writeln!(
        report,
        "## Resident memory of the server\n\n| database | idle MiB | with {CACHED_SESSIONS} cached sessions MiB |\n|---|---|---|"
    );
    for (mode, idle, full) in &memory {
        let _ = writeln!(report, "| {mode} | {idle:.1} | {full:.1} |");
    }
    let _ = writeln!(report, "\nBounded by `cache.capacity` (users and sessions each) and `database.pool_size`.");
    print!("{report}");
    let results = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../bench-results"));
    std::fs::create_dir_all(results).context("bench-results/")?;
    std::fs::write(results.join("users-me.md"), &report).context("bench-results/users-me.md")?;
    Ok(())
}

/// Inserts `CACHED_SESSIONS` sessions of the bench user, reads `/users/me` once with a token
/// of each (so each is cached), and returns the server's RSS then, in MiB.
async fn fill_cache(server: &Server, database: &TestDatabase) -> anyhow::Result<f64> {
    let db = database.connect_and_migrate(2).await?;
    let user_id: String = {
        let client = reqwest::Client::new();
        let token = sign_in(&client, &server.base()).await?;
        let me: Value =
            client.get(format!("{}/api/v1/users/me", server.base())).bearer_auth(token).send().await?.json().await?;
        me["id"].as_str().context("id")?.to_owned()
    };
    let ids: Vec<SessionId> = (0..CACHED_SESSIONS).map(|_| SessionId::generate()).collect();
    for chunk in ids.chunks(5_000) {
        let values: Vec<String> =
            chunk.iter().map(|id| format!("('{id}', '{user_id}', now(), now(), now() + interval '1 day')")).collect();
        db.execute_sql(format!(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at) VALUES {}",
            values.join(",")
        ))
        .await?;
    }
    let settings = settings(database.url(), false, &PathBuf::from("/tmp"))?;
    let (tokens, _) = gatehouse_server::startup::access_tokens(&settings, &gatehouse_security::RandomTokens)?;
    let user_id: UserId = user_id.parse()?;
    let tokens: Vec<String> = ids
        .iter()
        .map(|session_id| {
            tokens.issue(&AccessClaims {
                user_id,
                session_id: *session_id,
                roles: vec![Role::User, Role::Admin],
                issued_at: Utc::now(),
                expires_at: Utc::now() + chrono::Duration::minutes(15),
                token_id: uuid::Uuid::now_v7(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let tokens = Arc::new(tokens);
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (tokens, next, port) = (tokens.clone(), next.clone(), server.port);
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
                let mut buffer = Vec::new();
                loop {
                    let n = usize::try_from(next.fetch_add(1, Ordering::Relaxed))?;
                    let Some(token) = tokens.get(n) else { return anyhow::Ok(()) };
                    let request = format!(
                        "GET /api/v1/users/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
                    );
                    stream.write_all(request.as_bytes()).await?;
                    match read_response(&mut stream, &mut buffer).await {
                        Some(200) => {}
                        other => bail!("a read with a fresh session answered {other:?}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(server.rss_mib())
}
