//! `gatehouse`: the command-line entry point. Wiring only; see the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_domain::ports::SystemClock;
use gatehouse_server::relay::{RelayHandle, mail_relay};
use gatehouse_server::startup::{Application, connect_database};
use gatehouse_server::{Settings, telemetry};

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
    /// Apply pending migrations, then only relay the email outbox (no HTTP) until stopped.
    /// Run as many as you like against one PostgreSQL database.
    Worker,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log, std::io::stdout);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(&settings).await,
        Command::Worker => worker(&settings).await,
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

async fn worker(settings: &Settings) -> anyhow::Result<()> {
    let database = connect_database(settings).await?;
    database.migrate().await?;
    let relay = mail_relay(settings, &database, Arc::new(SystemClock))?;
    let poll = Duration::from_millis(u64::from(settings.mail.relay_poll_ms));
    let handle = RelayHandle::spawn(relay, poll, settings.mail.relay_batch_size);
    shutdown_signal().await?;
    tracing::info!("stopping the mail relay after its current batch");
    handle.stop().await;
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
