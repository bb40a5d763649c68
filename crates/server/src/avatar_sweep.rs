//! Runs the avatar sweep: a tokio task that removes avatar files no user references and that
//! are older than the grace period (see `gatehouse_domain::services::avatars`), once at
//! start-up and then every `storage.avatar_sweep_interval_secs`. It runs in `serve` and in
//! `gatehouse worker`, beside the mail relay; several instances sweeping one directory at once
//! is harmless (a file already removed is skipped).

use std::time::Duration;

use gatehouse_domain::services::avatars::AvatarService;
use tokio::sync::watch;

use crate::background::BackgroundTask;

/// Starts sweeping on the current runtime: now, then every `interval`.
#[must_use]
pub fn spawn(avatars: AvatarService, interval: Duration) -> BackgroundTask {
    BackgroundTask::spawn("avatar sweep", move |stopped| run(avatars, interval, stopped))
}

async fn run(avatars: AvatarService, interval: Duration, mut stopped: watch::Receiver<bool>) {
    tracing::info!(interval_secs = interval.as_secs(), "avatar sweep started");
    loop {
        if *stopped.borrow() {
            break;
        }
        match avatars.sweep().await {
            Ok(report) => {
                crate::metrics::record_avatar_sweep(report.removed);
                tracing::debug!(?report, "avatar sweep done");
            }
            Err(e) => tracing::error!(error = format!("{e:#}"), "the avatar sweep failed; retrying next time"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => {}
        }
    }
    tracing::info!("avatar sweep stopped");
}
