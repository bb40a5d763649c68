//! `gatehouse`: the command-line entry point. Wiring only; see the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
