//! Long-running tokio tasks (the mail relay, the avatar sweep) that stop when asked, after the
//! unit of work in progress, so a graceful shutdown never abandons one halfway.

use std::future::Future;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running background task and the switch that stops it.
#[derive(Debug)]
pub struct BackgroundTask {
    name: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl BackgroundTask {
    /// Spawns `body` on the current runtime. It gets a receiver that turns `true` when the task
    /// should stop, and must return soon after.
    #[must_use]
    pub fn spawn<F, Fut>(name: &'static str, body: F) -> Self
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        Self { name, stop, task: tokio::spawn(body(stopped)) }
    }

    /// Asks the task to stop after the work in progress and waits until it has.
    pub async fn stop(self) {
        let Self { name, stop, task } = self;
        let _ = stop.send(true);
        if let Err(e) = task.await {
            tracing::error!(error = %e, task = name, "a background task ended abnormally");
        }
    }
}
