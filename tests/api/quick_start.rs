//! The README's quick start, pasted as one block into a shell, works against a fresh server.

use std::process::Command;
use std::time::Duration;

use gatehouse_tests::{Backend, spawn_app_with};

/// The shell block between the README's quick-start markers.
fn quick_start_commands() -> String {
    let readme = include_str!("../../README.md");
    let begin = readme.find("<!-- quick-start:begin -->").expect("the README marks where the quick start begins");
    let end = readme.find("<!-- quick-start:end -->").expect("the README marks where the quick start ends");
    let block = &readme[begin..end];
    let start = block.find("```sh\n").expect("a sh code block") + "```sh\n".len();
    let stop = block[start..].find("```").expect("the end of the code block");
    block[start..start + stop].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_start_pasted_as_one_block_signs_in_and_reads_the_account() {
    let dir = std::env::temp_dir().join(format!("gatehouse-quick-start-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("a working directory");
    let mail_dir = dir.join("data/mail");
    // As `make run` serves it: verification required, no SMTP (mail goes to data/mail), the
    // development poll interval, so the mail must not wait for a poll.
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.require_verified_email = true;
        s.mail.smtp_url = None;
        s.mail.outbox_dir = mail_dir.clone();
        s.mail.relay_poll_ms = 1000;
    })
    .await;
    let port = app.address.rsplit(':').next().expect("a port").to_owned();
    // The commands as written; only the port differs, as the suite cannot own 8080.
    let commands = quick_start_commands().replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));

    let output =
        tokio::task::spawn_blocking(move || Command::new("bash").arg("-c").arg(&commands).current_dir(&dir).output())
            .await
            .expect("the shell runs")
            .expect("bash and curl are installed");

    let stdout = String::from_utf8_lossy(&output.stdout);
    // curl -s prints each body without a newline: the account is the last JSON value.
    let me = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .last()
        .unwrap_or_else(|| panic!("the shell printed no JSON:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(me["email"], "ada@example.com", "{stdout}");
    assert_eq!(me["email_verified"], true, "the quick start verified the email: {stdout}");
    let _ = std::fs::remove_dir_all(mail_dir.parent().and_then(std::path::Path::parent).unwrap_or(&mail_dir));
    drop(app);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
