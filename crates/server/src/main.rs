//! `gatehouse`: the command-line entry point. Wiring only; see the library.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_domain::ports::SystemClock;
use gatehouse_domain::{Email, NewPassword};
use gatehouse_server::relay::{self, mail_relay};
use gatehouse_server::settings::AppEnv;
use gatehouse_server::startup::{Application, avatar_sweep, connect_database, prepare};
use gatehouse_server::{Settings, telemetry};
use secrecy::{ExposeSecret, SecretString};

/// The password every seeded user shares, for benchmarks and demos.
const SEED_PASSWORD: &str = "seeded user password";

/// Self-hosted user management and authentication.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending migrations, then serve HTTP (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Apply pending migrations, then only relay the email outbox and sweep unreferenced
    /// avatar files (no HTTP) until stopped. Run as many as you like against one PostgreSQL
    /// database (and one shared avatar directory).
    Worker,
    /// Make an account an admin, creating it if needed. An existing account is handed over:
    /// this password replaces its password and its earlier sessions and links end. The
    /// password is read from the terminal (without echo) or from standard input, never from
    /// the command line.
    CreateAdmin {
        /// The admin's email.
        #[arg(long)]
        email: String,
    },
    /// Fill the database with realistic users for benchmarks and demos (refused in
    /// production). They all share the password "seeded user password".
    Seed {
        /// How many users to add.
        #[arg(long, default_value_t = 1000)]
        users: u64,
    },
    /// Print the OpenAPI document (what `openapi.json` at the repository root holds).
    Openapi,
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Exit 0 when `/health/live` of the server on the configured port answers 200 within
    /// two seconds, 1 otherwise (the container's HEALTHCHECK; the image has no curl).
    Healthcheck,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration, then print the effective values with secrets
    /// redacted. Exits 2 with one line naming the key when something is wrong.
    Check,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::Openapi)) {
        return print_openapi();
    }
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::Config { command: ConfigCommand::Check }) => return config_check(&settings),
        Some(Command::Healthcheck) => return healthcheck(&settings).await,
        _ => {}
    }
    telemetry::init(&settings.log, std::io::stdout);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(&settings).await,
        Command::CreateAdmin { email } => create_admin(&settings, &email).await,
        Command::Seed { users } => seed(&settings, users).await,
        Command::Worker => worker(&settings).await,
        Command::Openapi | Command::Config { .. } | Command::Healthcheck => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "gatehouse stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_openapi() -> ExitCode {
    match gatehouse_server::http::openapi::document_json() {
        Ok(json) => {
            print!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config_check(settings: &Settings) -> ExitCode {
    match settings.redacted_json() {
        Ok(text) => {
            println!("# The effective configuration (APP_ENV={}); secrets are redacted.", settings.env);
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn healthcheck(settings: &Settings) -> ExitCode {
    let host = match settings.server.host.as_str() {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" => "::1",
        host => host,
    };
    match probe_live(host, settings.server.port).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A bare HTTP/1.1 GET of `/health/live` (TLS-less listeners only), expecting 200.
async fn probe_live(host: &str, port: u16) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await.context("connecting")?;
        stream
            .write_all(format!("GET /health/live HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .context("sending the request")?;
        let mut head = [0_u8; 12];
        stream.read_exact(&mut head).await.context("reading the status line")?;
        anyhow::ensure!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(2), probe).await.context("no answer within 2 s")?
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let application = Application::build(settings).await?;
    application.run_until_stopped().await?;
    tracing::info!("gatehouse stopped gracefully");
    Ok(())
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    connect_database(settings).await?.migrate().await?;
    tracing::info!("migrations are up to date");
    Ok(())
}

async fn create_admin(settings: &Settings, email: &str) -> anyhow::Result<()> {
    let email = Email::parse(email).context("--email")?;
    let password = read_password()?;
    let password = NewPassword::parse(password, &email).context("the password")?;
    let state = prepare(settings).await?;
    let admin = state.admin.create_admin(email, password).await.map_err(|e| anyhow::anyhow!(e))?;
    println!("{} ({}) is an admin", admin.email, admin.id);
    Ok(())
}

/// A password from the terminal without echo, or the first line of standard input.
fn read_password() -> anyhow::Result<SecretString> {
    if std::io::stdin().is_terminal() {
        let password = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        anyhow::ensure!(password == again, "the passwords differ");
        return Ok(SecretString::from(password));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    Ok(SecretString::from(line.trim_end_matches(['\r', '\n']).to_owned()))
}

async fn seed(settings: &Settings, users: u64) -> anyhow::Result<()> {
    anyhow::ensure!(settings.env != AppEnv::Production, "seeding is refused with APP_ENV=production");
    let state = prepare(settings).await?;
    let hash = state.password_hash_of(&SecretString::from(SEED_PASSWORD.to_owned())).await?;
    let started = std::time::Instant::now();
    let inserted = state.database.seed_users(users, hash.expose_secret()).await?;
    let secs = started.elapsed().as_secs_f64();
    println!("seeded {inserted} users in {secs:.1} s ({:.0} users/s)", inserted as f64 / secs.max(0.001));
    Ok(())
}

/// The background work of `serve` without the HTTP server: the mail relay and the avatar
/// sweep (which needs the avatar directory, shared with the servers).
async fn worker(settings: &Settings) -> anyhow::Result<()> {
    let state = prepare(settings).await?;
    let relay = mail_relay(settings, &state.database, Arc::new(SystemClock))?;
    let poll = Duration::from_millis(u64::from(settings.mail.relay_poll_ms));
    let handle = relay::spawn(relay, &state.database, poll, settings.mail.relay_batch_size)?;
    let webhooks = gatehouse_server::webhook_relay::webhook_relay(settings, &state.database, Arc::new(SystemClock));
    let webhook_poll = Duration::from_millis(u64::from(settings.webhooks.relay_poll_ms));
    let webhooks = gatehouse_server::webhook_relay::spawn(webhooks, webhook_poll, settings.webhooks.relay_batch_size);
    let sweep = avatar_sweep(settings, &state);
    shutdown_signal().await?;
    tracing::info!("stopping the mail and webhook relays after their current batches");
    handle.stop().await;
    webhooks.stop().await;
    if let Some(sweep) = sweep {
        sweep.stop().await;
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM (what container runtimes send) on Unix.
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
