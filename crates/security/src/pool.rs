//! A small, bounded pool of OS threads for CPU-heavy work (password hashing).
//!
//! Jobs go through a bounded queue with `try_send`, so a flood is refused at once instead of
//! piling up; results come back through a `tokio::sync::oneshot`, so the async executor never
//! blocks. Knows nothing about passwords: it runs closures.
//!
//! A [`Scheduling::Background`] pool asks the OS to run its threads below every normal thread,
//! so its work only gets the CPU time that request handling leaves over: a flood of expensive
//! jobs then slows itself (and is refused once the queue is full), not cheap requests.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use anyhow::Context as _;
use tokio::sync::oneshot;

/// A unit of work; it owns its reply channel.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a job did not produce a result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// The queue is full.
    #[error("the worker queue is full")]
    Full,
    /// The job panicked, or the pool is gone.
    #[error("the worker running the job crashed")]
    Crashed,
}

/// How a pool's threads are scheduled against the rest of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheduling {
    /// Like every other thread.
    Normal,
    /// Below every normal thread: Linux `SCHED_IDLE`, the lowest priority elsewhere. If the OS
    /// refuses, the thread runs normally and a warning is logged.
    Background,
}

/// Fixed worker threads fed by a bounded queue.
#[derive(Debug)]
pub(crate) struct WorkerPool {
    sender: SyncSender<Job>,
    /// Jobs queued or running.
    depth: Arc<AtomicUsize>,
}

impl WorkerPool {
    /// Starts `workers` threads named `{name}-{n}`, scheduled as `scheduling`, behind a queue
    /// of `capacity` jobs. The threads stop when the pool is dropped and the queue has drained.
    pub(crate) fn start(name: &str, workers: usize, capacity: usize, scheduling: Scheduling) -> anyhow::Result<Self> {
        anyhow::ensure!(workers > 0, "a worker pool needs at least one worker");
        anyhow::ensure!(capacity > 0, "a worker pool needs a queue of at least one job");
        let (sender, receiver) = mpsc::sync_channel::<Job>(capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..workers {
            let receiver = Arc::clone(&receiver);
            thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    if scheduling == Scheduling::Background {
                        lower_priority();
                    }
                    work(&receiver);
                })
                .with_context(|| format!("starting worker thread {name}-{n}"))?;
        }
        Ok(Self { sender, depth: Arc::new(AtomicUsize::new(0)) })
    }

    /// Jobs queued or running right now.
    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Queues `job` and waits for its result without blocking the executor.
    ///
    /// Returns [`PoolError::Full`] at once when the queue is full. A job whose caller has gone
    /// away (its future dropped) before a worker picks it up is skipped.
    pub(crate) async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let span = tracing::Span::current();
        let depth = DepthGuard::enter(&self.depth);
        let boxed: Job = Box::new(move || {
            if reply.is_closed() {
                return;
            }
            let outcome = {
                let _span = span.enter();
                catch_unwind(AssertUnwindSafe(job))
            };
            // Uncounted before the caller hears back, so a caller never sees its own job.
            drop(depth);
            match outcome {
                // The receiver may be gone by now; nothing to do then.
                Ok(value) => {
                    let _ = reply.send(value);
                }
                // Dropping `reply` unanswered tells the caller.
                Err(_) => tracing::error!("a pool job panicked"),
            }
        });
        match self.sender.try_send(boxed) {
            Ok(()) => {}
            // Dropping the rejected job drops its depth guard.
            Err(TrySendError::Full(_)) => return Err(PoolError::Full),
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::Crashed),
        }
        result.await.map_err(|_| PoolError::Crashed)
    }
}

/// Moves the calling thread below every normal thread.
fn lower_priority() {
    use thread_priority::ThreadPriority;
    #[cfg(target_os = "linux")]
    let lowered = {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
        };
        set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        )
    };
    #[cfg(not(target_os = "linux"))]
    let lowered = thread_priority::set_current_thread_priority(ThreadPriority::Min);
    if let Err(e) = lowered {
        tracing::warn!(error = ?e, "could not lower the priority of a worker thread; it runs at normal priority");
    }
}

/// A worker's loop: take a job, run it, survive its panic.
fn work(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let receiver = receiver.lock().unwrap_or_else(PoisonError::into_inner);
            receiver.recv()
        };
        let Ok(job) = job else { return };
        // Jobs catch their own panics; this only guards the worker against a broken wrapper.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

/// Counts a job from submission until it is finished or dropped, panics included.
struct DepthGuard(Arc<AtomicUsize>);

impl DepthGuard {
    fn enter(depth: &Arc<AtomicUsize>) -> Self {
        depth.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(depth))
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_runs_and_returns_its_result() {
        let pool = WorkerPool::start("test", 1, 1, Scheduling::Normal).expect("pool");
        let answer = pool.run(|| 6 * 7).await.expect("result");
        assert_eq!(answer, 42);
        assert_eq!(pool.depth(), 0, "the finished job is no longer counted");
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_as_crashed_and_the_worker_survives() {
        let pool = WorkerPool::start("test", 1, 1, Scheduling::Normal).expect("pool");
        let crashed = pool.run(|| -> u8 { panic!("boom") }).await;
        assert!(matches!(crashed, Err(PoolError::Crashed)), "got {crashed:?}");
        let after = pool.run(|| 1).await;
        assert!(matches!(after, Ok(1)), "the single worker still runs jobs, got {after:?}");
        assert_eq!(pool.depth(), 0, "the panicked job is no longer counted");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn background_workers_run_below_normal_threads() {
        use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy};
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        let background = WorkerPool::start("test", 1, 1, Scheduling::Background).expect("pool");
        let policy = background.run(thread_schedule_policy).await.expect("result").expect("policy");
        assert_eq!(policy, idle);
        let normal = WorkerPool::start("test", 1, 1, Scheduling::Normal).expect("pool");
        let policy = normal.run(thread_schedule_policy).await.expect("result").expect("policy");
        assert_ne!(policy, idle, "a normal pool keeps the default policy");
    }

    #[test]
    fn a_pool_without_workers_or_queue_is_refused() {
        assert!(WorkerPool::start("test", 0, 1, Scheduling::Normal).is_err());
        assert!(WorkerPool::start("test", 1, 0, Scheduling::Normal).is_err());
    }
}
