//! Mail latency (`make bench`): from a registration's commit to the verification mail at the
//! SMTP server, with the relay's poll at 1 s so that only the wake-up on commit can make it
//! fast. Target (issue 22): within 100 ms in the normal case.
//!
//! The commit happens between the request being sent and its response arriving, so each
//! sample is reported both ways: response → SMTP (a lower bound of commit → SMTP) and request
//! → SMTP (an upper bound, including the password hashing). Three set-ups: SQLite on one node
//! (in-process wake-up), PostgreSQL on one node (in-process and `LISTEN/NOTIFY`), and
//! PostgreSQL with two instances where the one taking registrations runs no relay, so the mail
//! can only be woken across processes by `NOTIFY`. Results go to `bench-results/mail-latency.md`
//! and standard output.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use gatehouse_tests::{Backend, PASSWORD, TestApp, spawn_app_with};
use serde_json::json;

/// Registrations per set-up, one after the other.
const SAMPLES: usize = 60;
/// The relay's safety-net poll: long, so a fast delivery can only come from a wake-up.
const POLL_MS: u32 = 1000;

struct Outcome {
    name: &'static str,
    after_response: Vec<Duration>,
    after_request: Vec<Duration>,
}

async fn measure(name: &'static str, sender: &TestApp, sink_of: &TestApp) -> anyhow::Result<Outcome> {
    let mut after_response = Vec::with_capacity(SAMPLES);
    let mut after_request = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let body = json!({"email": format!("latency{i}@example.com"), "password": PASSWORD});
        let sent = Instant::now();
        let response = sender.register(&body).await;
        let answered = Instant::now();
        anyhow::ensure!(response.status().is_success(), "{name}: registration {i} answered {}", response.status());
        let mails = sink_of.mailbox().wait_for(i + 1, Duration::from_secs(10)).await;
        let received = mails.last().map(|mail| mail.received_at).ok_or_else(|| anyhow::anyhow!("no mail"))?;
        after_response.push(received.saturating_duration_since(answered));
        after_request.push(received.saturating_duration_since(sent));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Ok(Outcome { name, after_response, after_request })
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let slow_poll = |s: &mut gatehouse_server::settings::Settings| s.mail.relay_poll_ms = POLL_MS;
    let mut outcomes = Vec::new();

    let sqlite = spawn_app_with(Backend::Sqlite, slow_poll).await;
    outcomes.push(measure("SQLite, one node (in-process wake-up)", &sqlite, &sqlite).await?);
    drop(sqlite);

    let postgres = spawn_app_with(Backend::Postgres, slow_poll).await;
    outcomes.push(measure("PostgreSQL, one node (in-process wake-up and NOTIFY)", &postgres, &postgres).await?);
    drop(postgres);

    let no_relay = spawn_app_with(Backend::Postgres, |s| {
        slow_poll(s);
        s.mail.relay_enabled = false;
    })
    .await;
    let relay = no_relay.spawn_sibling(|s| s.mail.relay_enabled = true).await;
    // The sibling's listener connects in the background; give it a moment before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    outcomes.push(measure("PostgreSQL, two instances (LISTEN/NOTIFY only)", &no_relay, &relay).await?);
    drop(relay);
    drop(no_relay);

    let mut report = String::from("# Mail latency: commit to SMTP\n\n");
    let _ = writeln!(
        report,
        "{SAMPLES} registrations per set-up, one at a time; relay poll {POLL_MS} ms (the safety net), {} build, this \
         machine (2 cores, shared). Response → SMTP is a lower bound of commit → SMTP, request \
         → SMTP an upper bound (it includes hashing the password). Target: 100 ms.\n",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    report.push_str("| set-up | response → SMTP p50 | p95 | max | request → SMTP p50 | p95 | max |\n");
    report.push_str("|---|---|---|---|---|---|---|\n");
    for o in &outcomes {
        let _ = writeln!(
            report,
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            o.name,
            ms(percentile(&o.after_response, 0.5)),
            ms(percentile(&o.after_response, 0.95)),
            ms(percentile(&o.after_response, 1.0)),
            ms(percentile(&o.after_request, 0.5)),
            ms(percentile(&o.after_request, 0.95)),
            ms(percentile(&o.after_request, 1.0)),
        );
    }
    let within = outcomes.iter().all(|o| percentile(&o.after_request, 0.95) <= Duration::from_millis(100));
    let _ =
        writeln!(report, "\nRequest → SMTP p95 within 100 ms in every set-up: {}.", if within { "yes" } else { "no" });
    print!("{report}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("mail-latency.md"), report)?;
    Ok(())
}
