//! Email: verification on sign-up, resending, forgotten passwords and resets, and the outbox
//! that delivers them (SMTP outages, several relays, crashed relays), against a real SMTP sink.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use gatehouse_domain::ActivityAction;
use gatehouse_tests::{
    Backend, MAIL_TIMEOUT, PASSWORD, SmtpSink, TestApp, assert_problem, free_port, on_both_backends, spawn_app,
    spawn_app_with,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    registering_sends_a_verification_mail_whose_link_verifies_once,
    verification_is_required_to_sign_in_when_configured,
    resend_and_forgot_answer_202_and_mail_only_known_addresses,
    a_newer_verification_link_invalidates_the_older_one,
    a_password_reset_ends_every_session_and_sends_a_notice,
    expired_links_are_refused,
    mail_queued_while_smtp_is_down_goes_out_when_it_returns,
    a_relay_that_dies_after_claiming_is_replaced_once_the_lease_ends,
    a_queued_token_is_stored_sealed_and_a_relay_with_the_key_rotated_still_delivers_it,
);

/// Lets any mail that would wrongly be sent arrive before a test counts.
const SETTLE: Duration = Duration::from_millis(500);

async fn verify(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/verify-email", &json!({"token": token})).await
}

async fn registering_sends_a_verification_mail_whose_link_verifies_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register(&json!({"email": "ada@example.com", "password": PASSWORD, "display_name": "Ada <script>"})).await;

    let mails = app.wait_for_mail(1).await;

    let mail = &mails[0];
    assert_eq!(mail.envelope_to, vec!["ada@example.com"]);
    assert_eq!(mail.header("From").as_deref(), Some("Gatehouse <no-reply@localhost>"));
    let to = mail.header("To").expect("To");
    assert!(to.contains("<ada@example.com>"), "{to}");
    assert_eq!(mail.header("Subject").as_deref(), Some("Confirm your email address for Gatehouse"));
    let message_id = mail.header("Message-ID").expect("Message-ID");
    assert!(message_id.starts_with('<') && message_id.ends_with("@localhost>"), "{message_id}");
    assert!(mail.header("Date").is_some_and(|d| d.contains("+0000")), "a Date header");
    assert!(mail.header("Content-Type").is_some_and(|t| t.starts_with("multipart/alternative")), "{}", mail.data);
    let body = mail.decoded();
    assert!(body.contains("Content-Type: text/plain") && body.contains("Content-Type: text/html"), "{body}");
    assert!(body.contains("&lt;script&gt;") && !body.contains("<p>Hello Ada <script>"), "the HTML escapes the name");
    assert!(body.contains("(in 24 hours)"), "the expiry is stated: {body}");
    let token = TestApp::token_from(mail, "verify-email");
    assert_eq!(token.len(), 43, "256 random bits, base64url");

    assert_eq!(verify(&app, &token).await.status(), StatusCode::NO_CONTENT);
    let access = app.access_token("ada@example.com").await;
    let me: Value = app.get("/api/v1/users/me", Some(&access)).await.json().await.expect("json");
    assert_eq!(me["email_verified"], true);
    assert_problem(verify(&app, &token).await, StatusCode::BAD_REQUEST, "invalid_token").await;
    assert_problem(verify(&app, "not-a-token").await, StatusCode::BAD_REQUEST, "invalid_token").await;
    let db = app.database().await;
    let rows = db.outbox_rows().await.expect("outbox");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "sent");
    assert!(!rows[0].has_payload, "the sent message's token is no longer stored");
    let user_id = me["id"].as_str().expect("id").parse().expect("uuid");
    let actions: Vec<ActivityAction> =
        db.activity_for_user(user_id).await.expect("activity").into_iter().map(|e| e.action).collect();
    assert!(actions.contains(&ActivityAction::EmailVerified), "{actions:?}");
}

async fn verification_is_required_to_sign_in_when_configured(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auth.require_verified_email = true).await;
    app.register_user("ada@example.com").await;

    let refused = app.login(&json!({"email": "ada@example.com", "password": PASSWORD})).await;
    assert_problem(refused, StatusCode::FORBIDDEN, "email_not_verified").await;
    let token = TestApp::token_from(&app.wait_for_mail(1).await[0], "verify-email");
    assert_eq!(verify(&app, &token).await.status(), StatusCode::NO_CONTENT);

    let accepted = app.login(&json!({"email": "ada@example.com", "password": PASSWORD})).await;
    assert_eq!(accepted.status(), StatusCode::OK);
}

async fn resend_and_forgot_answer_202_and_mail_only_known_addresses(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    app.wait_for_mail(1).await;

    for path in ["/api/v1/auth/verify-email/resend", "/api/v1/auth/password/forgot"] {
        let unknown = app.post_json(path, &json!({"email": "nobody@example.com"})).await;
        assert_eq!(unknown.status(), StatusCode::ACCEPTED, "{path}");
        assert!(unknown.text().await.expect("body").is_empty(), "{path}: nothing to tell");
        let invalid = app.post_json(path, &json!({"email": "not an address"})).await;
        assert_problem(invalid, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let known = app.post_json("/api/v1/auth/password/forgot", &json!({"email": "ADA@example.com"})).await;
    assert_eq!(known.status(), StatusCode::ACCEPTED);

    app.wait_for_mail(2).await;
    tokio::time::sleep(SETTLE).await;
    let mails = app.mailbox().messages();
    assert_eq!(mails.len(), 2, "the verification and one reset mail, nothing for the unknown address");
    assert!(mails.iter().all(|m| m.envelope_to == vec!["ada@example.com"]));
    assert_eq!(mails[1].header("Subject").as_deref(), Some("Reset your Gatehouse password"));
    assert_eq!(TestApp::token_from(&mails[1], "reset-password").len(), 43);
}

async fn a_newer_verification_link_invalidates_the_older_one(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let first = TestApp::token_from(&app.wait_for_mail(1).await[0], "verify-email");

    let resent = app.post_json("/api/v1/auth/verify-email/resend", &json!({"email": "ada@example.com"})).await;
    assert_eq!(resent.status(), StatusCode::ACCEPTED);
    let second = TestApp::token_from(&app.wait_for_mail(2).await[1], "verify-email");

    assert_ne!(first, second);
    assert_problem(verify(&app, &first).await, StatusCode::BAD_REQUEST, "invalid_token").await;
    assert_eq!(verify(&app, &second).await.status(), StatusCode::NO_CONTENT);
    let again = app.post_json("/api/v1/auth/verify-email/resend", &json!({"email": "ada@example.com"})).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(app.mailbox().messages().len(), 2, "a verified address gets no more verification mail");
}

async fn forgot(app: &TestApp, email: &str, expected_mails: usize) -> String {
    let response = app.post_json("/api/v1/auth/password/forgot", &json!({"email": email})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mails = app.wait_for_mail(expected_mails).await;
    TestApp::token_from(&mails[expected_mails - 1], "reset-password")
}

async fn reset(app: &TestApp, token: &str, new_password: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/password/reset", &json!({"token": token, "new_password": new_password})).await
}

async fn a_password_reset_ends_every_session_and_sends_a_notice(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user("ada@example.com").await;
    app.wait_for_mail(1).await;
    let first = app.token_pair("ada@example.com").await;
    let second = app.token_pair("ada@example.com").await;
    let token = forgot(&app, "ada@example.com", 2).await;
    let new_password = "a completely different passphrase";

    let weak = reset(&app, &token, "password").await;
    let body = assert_problem(weak, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "new_password", "{body}");
    assert_eq!(
        reset(&app, &token, new_password).await.status(),
        StatusCode::NO_CONTENT,
        "the weak try left the token usable"
    );

    for pair in [&first, &second] {
        let access = pair["access_token"].as_str().expect("access");
        assert_problem(app.get("/api/v1/users/me", Some(access)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let refresh = pair["refresh_token"].as_str().expect("refresh");
        assert_eq!(app.refresh(refresh).await.status(), StatusCode::UNAUTHORIZED, "the session is revoked");
    }
    let old = app.login(&json!({"email": "ada@example.com", "password": PASSWORD})).await;
    assert_problem(old, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let new = app.login(&json!({"email": "ada@example.com", "password": new_password})).await;
    assert_eq!(new.status(), StatusCode::OK);
    assert_problem(reset(&app, &token, "yet another fine passphrase").await, StatusCode::BAD_REQUEST, "invalid_token")
        .await;
    let notice = &app.wait_for_mail(3).await[2];
    assert_eq!(notice.header("Subject").as_deref(), Some("Your Gatehouse password was changed"));
    assert!(
        notice.token_in_link(gatehouse_tests::FRONTEND_URL, "reset-password").is_none(),
        "a notice carries no token"
    );
    let user_id = user["id"].as_str().expect("id").parse().expect("uuid");
    let actions: Vec<ActivityAction> = app
        .database()
        .await
        .activity_for_user(user_id)
        .await
        .expect("activity")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&ActivityAction::PasswordResetRequested) && actions.contains(&ActivityAction::PasswordReset),
        "{actions:?}"
    );
    let access = app.access_token_with("ada@example.com", new_password).await;
    let me: Value = app.send_authed(Method::GET, "/api/v1/users/me", &access, None).await.json().await.expect("json");
    assert_eq!(me["email_verified"], true, "the reset link proved the mailbox");
}

async fn expired_links_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let verification = TestApp::token_from(&app.wait_for_mail(1).await[0], "verify-email");
    let reset_token = forgot(&app, "ada@example.com", 2).await;

    app.database()
        .await
        .execute_sql("UPDATE one_time_tokens SET expires_at = '2000-01-01T00:00:00.000000Z'")
        .await
        .expect("the tokens expire");

    assert_problem(verify(&app, &verification).await, StatusCode::BAD_REQUEST, "invalid_token").await;
    let response = reset(&app, &reset_token, "a completely different passphrase").await;
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid_token").await;
}

async fn mail_queued_while_smtp_is_down_goes_out_when_it_returns(backend: Backend) {
    let port = free_port();
    let app = spawn_app_with(backend, |s| s.mail.smtp_url = Some(format!("smtp://127.0.0.1:{port}").into())).await;
    for n in 0..3 {
        app.register_user(&format!("user{n}@example.com")).await;
    }
    let db = app.database().await;
    let deadline = Instant::now() + MAIL_TIMEOUT;
    // A claim counts the attempt before the send fails; wait until every send has failed.
    while db.outbox_rows().await.expect("outbox").iter().any(|row| row.last_error.is_none()) {
        assert!(Instant::now() < deadline, "the relay never tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = db.outbox_rows().await.expect("outbox");
    assert!(rows.iter().all(|row| row.status == "pending" && row.last_error.is_some()), "{rows:?}");

    let sink = SmtpSink::start_on(port).await;
    let mails = sink.wait_for(3, MAIL_TIMEOUT).await;

    let recipients: BTreeSet<String> = mails.iter().flat_map(|m| m.envelope_to.clone()).collect();
    assert_eq!(recipients.len(), 3, "{recipients:?}");
    let deadline = Instant::now() + MAIL_TIMEOUT;
    while db.outbox_rows().await.expect("outbox").iter().any(|row| row.status != "sent") {
        assert!(Instant::now() < deadline, "the rows are marked sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(SETTLE).await;
    assert_eq!(sink.messages().len(), 3, "nothing is sent twice");
}

async fn a_relay_that_dies_after_claiming_is_replaced_once_the_lease_ends(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.mail.relay_enabled = false).await;
    app.register_user("ada@example.com").await;
    let db = app.database().await;
    // Long enough that starting the second relay and watching it for a second stays inside it.
    let lease = chrono::Duration::seconds(5);
    let claimed_at = Instant::now();
    let crashed = db.email_outbox().claim(chrono::Utc::now(), lease, 10).await.expect("claim");
    assert_eq!(crashed.len(), 1, "the dying relay claimed the message and never sent it");

    let _relay = app.spawn_sibling(|s| s.mail.relay_enabled = true).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(app.mailbox().messages().is_empty(), "nobody sends a leased message");
    app.wait_for_mail(1).await;

    assert!(claimed_at.elapsed() >= Duration::from_secs(5), "only after the lease ended");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(app.mailbox().messages().len(), 1);
    let rows = db.outbox_rows().await.expect("outbox");
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 2), "{rows:?}");
}

async fn a_queued_token_is_stored_sealed_and_a_relay_with_the_key_rotated_still_delivers_it(backend: Backend) {
    use base64::Engine as _;
    let key = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    let (old_key, new_key) = (key(0x11), key(0x22));
    let app = spawn_app_with(backend, |s| {
        s.mail.relay_enabled = false;
        s.secrets.encryption_key = Some(old_key.clone().into());
    })
    .await;
    app.register(&json!({"email": "ada@example.com", "password": PASSWORD})).await;
    let queued = app.database().await.outbox_rows().await.expect("outbox");

    let _relay = app
        .spawn_sibling(|s| {
            s.mail.relay_enabled = true;
            s.secrets.encryption_key = Some(new_key.clone().into());
            s.secrets.retired_keys = vec![old_key.clone().into()];
        })
        .await;
    let mails = app.wait_for_mail(1).await;

    let token = TestApp::token_from(&mails[0], "verify-email");
    let raw = queued[0].raw_payload.as_deref().expect("the queued row has its payload");
    assert!(!raw.contains(&token), "the outbox kept the token in plain text: {raw}");
    assert!(raw.contains("sealed1."), "{raw}");
    assert_eq!(verify(&app, &token).await.status(), StatusCode::NO_CONTENT, "the delivered link works");
}

/// Several relays on one PostgreSQL database (as with several instances, or `gatehouse
/// worker`s) claim with `FOR UPDATE SKIP LOCKED`: each message goes out exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_on_one_postgres_database_send_each_message_exactly_once() {
    const MESSAGES: usize = 300;
    let app = spawn_app_with(Backend::Postgres, |s| s.mail.relay_enabled = false).await;
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(25) {
        let emails: Vec<String> = chunk.iter().map(|n| format!("user{n}@example.com")).collect();
        join_all(emails.iter().map(|email| app.register_user_quietly(email))).await;
    }
    assert_eq!(app.database().await.outbox_rows().await.expect("outbox").len(), MESSAGES);

    let started = Instant::now();
    // Each relay signs with its own sender, so the sink can tell who sent what.
    let relays = join_all(["one", "two"].map(|name| {
        app.spawn_sibling(move |s| {
            s.mail.relay_enabled = true;
            s.mail.relay_batch_size = 5;
            s.mail.from = format!("Relay {name} <relay@{name}.test>");
        })
    }))
    .await;
    let mails = app.mailbox().wait_for(MESSAGES, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    drop(relays);

    let mails = if mails.len() == MESSAGES { app.mailbox().messages() } else { mails };
    let mut per_recipient: BTreeMap<String, usize> = BTreeMap::new();
    for mail in &mails {
        *per_recipient.entry(mail.envelope_to.join(",")).or_default() += 1;
    }
    let message_ids: BTreeSet<String> = mails.iter().filter_map(|m| m.header("Message-ID")).collect();
    assert_eq!(mails.len(), MESSAGES, "exactly one delivery per message");
    assert_eq!(per_recipient.len(), MESSAGES);
    assert!(per_recipient.values().all(|n| *n == 1), "{per_recipient:?}");
    assert_eq!(message_ids.len(), MESSAGES);
    let by_relay: BTreeMap<String, usize> = mails.iter().fold(BTreeMap::new(), |mut counts, mail| {
        *counts.entry(mail.header("From").unwrap_or_default()).or_default() += 1;
        counts
    });
    assert_eq!(by_relay.len(), 2, "both relays took part: {by_relay:?}");
    eprintln!("{by_relay:?}");
    eprintln!("two relays delivered {MESSAGES} messages in {elapsed:?}");
}
