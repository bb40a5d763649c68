//! Lockout: five consecutive failures lock the account, the owner gets an unlock link, a
//! browser that signed in before keeps working, a success resets the count.

use gatehouse_tests::{Backend, PASSWORD, TestApp, assert_problem, on_both_backends, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    five_failures_lock_the_account_and_the_unlock_link_ends_the_lock,
    a_known_device_signs_in_during_a_lockout_with_its_own_count,
    a_successful_sign_in_resets_the_count,
    concurrent_failures_are_each_counted_and_lock_the_account_once,
);

const EMAIL: &str = "owner@example.com";

async fn login(app: &TestApp, password: &str, device: Option<&str>) -> reqwest::Response {
    let mut request =
        app.client.post(app.url("/api/v1/auth/login")).json(&json!({"email": EMAIL, "password": password}));
    if let Some(cookie) = device {
        request = request.header("Cookie", cookie);
    }
    request.send().await.expect("request sent")
}

/// The `name=value` of the device cookie a sign-in set.
fn device_cookie(response: &reqwest::Response) -> String {
    let header = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("gatehouse_device="))
        .expect("a device cookie is set on sign-in")
        .to_owned();
    assert!(header.contains("HttpOnly"), "{header}");
    header.split(';').next().expect("name=value").to_owned()
}

async fn fail(app: &TestApp, times: usize, device: Option<&str>) {
    for i in 0..times {
        let response = login(app, "wrong password", device).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "failure {i} answers invalid_credentials");
    }
}

/// Waits until the audit trail of the holder of `access` shows `count` failed sign-ins from
/// a known device (the bookkeeping of a refused sign-in runs after its answer).
async fn wait_for_device_failures(app: &TestApp, access: &str, count: usize) {
    app.get_until("/api/v1/users/me/activity?limit=100", Some(access), |activity| {
        let items = activity["items"].as_array().map_or(&[][..], Vec::as_slice);
        items.iter().filter(|e| e["action"] == "auth.login_failed" && e["details"]["device"].is_string()).count()
            >= count
    })
    .await;
}

async fn five_failures_lock_the_account_and_the_unlock_link_ends_the_lock(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user(EMAIL).await;
    app.wait_for_mail(1).await;

    fail(&app, 5, None).await;
    // The lock and its email are one transaction: once the email is out, the lock holds.
    let mails = app.wait_for_mail(2).await;

    assert_problem(login(&app, PASSWORD, None).await, StatusCode::FORBIDDEN, "account_locked").await;
    let token = TestApp::token_from(&mails[1], "unlock");
    let bad = app.post_json("/api/v1/auth/unlock", &json!({"token": "not-a-token"})).await;
    assert_problem(bad, StatusCode::BAD_REQUEST, "invalid_token").await;
    let unlocked = app.post_json("/api/v1/auth/unlock", &json!({"token": token})).await;
    assert_eq!(unlocked.status(), StatusCode::NO_CONTENT);
    let response = login(&app, PASSWORD, None).await;
    assert_eq!(response.status(), StatusCode::OK, "the unlock link ends the lock at once");
    let access = response.json::<Value>().await.expect("json")["access_token"].as_str().expect("token").to_owned();
    let activity: Value =
        app.get("/api/v1/users/me/activity?limit=100", Some(&access)).await.json().await.expect("json");
    let actions: Vec<&str> =
        activity["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"auth.account_locked"), "{actions:?}");
    assert!(actions.contains(&"auth.account_unlocked"), "{actions:?}");
    let replay = app.post_json("/api/v1/auth/unlock", &json!({"token": token})).await;
    assert_problem(replay, StatusCode::BAD_REQUEST, "invalid_token").await;
}

async fn a_known_device_signs_in_during_a_lockout_with_its_own_count(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user(EMAIL).await;
    let signed_in = login(&app, PASSWORD, None).await;
    assert_eq!(signed_in.status(), StatusCode::OK);
    let device = device_cookie(&signed_in);

    fail(&app, 5, None).await;
    app.wait_for_mail(2).await;
    assert_problem(login(&app, PASSWORD, None).await, StatusCode::FORBIDDEN, "account_locked").await;

    let from_device = login(&app, PASSWORD, Some(&device)).await;
    assert_eq!(from_device.status(), StatusCode::OK, "the owner's browser still signs in");
    let device = device_cookie(&from_device);
    let access = from_device.json::<Value>().await.expect("json")["access_token"].as_str().expect("token").to_owned();
    let forged = format!("{device}x");
    assert_problem(login(&app, PASSWORD, Some(&forged)).await, StatusCode::FORBIDDEN, "account_locked").await;
    fail(&app, 5, Some(&device)).await;
    wait_for_device_failures(&app, &access, 5).await;
    assert_problem(login(&app, PASSWORD, Some(&device)).await, StatusCode::FORBIDDEN, "account_locked").await;
}

async fn a_successful_sign_in_resets_the_count(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user(EMAIL).await;

    fail(&app, 4, None).await;
    assert_eq!(login(&app, PASSWORD, None).await.status(), StatusCode::OK);
    fail(&app, 4, None).await;

    assert_eq!(login(&app, PASSWORD, None).await.status(), StatusCode::OK, "eight failures, never five in a row");
}

/// Guesses sent at once, to two instances on one database, must not slip past the threshold
/// by all reading the same count.
async fn concurrent_failures_are_each_counted_and_lock_the_account_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let sibling = app.spawn_sibling(|_| {}).await;
    app.register_user(EMAIL).await;
    let access = app.access_token(EMAIL).await;

    let guesses = futures::future::join_all(
        (0..12).map(|i| login(if i % 2 == 0 { &app } else { &sibling }, "wrong password", None)),
    )
    .await;

    let refused = [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN];
    assert!(guesses.iter().all(|r| refused.contains(&r.status())), "401, or 403 once the lock holds");
    let mails = app.wait_for_mail(2).await;
    assert!(mails[1].data.contains("unlock"), "the lock email is sent");
    let activity = app
        .get_until("/api/v1/users/me/activity?limit=100", Some(&access), |activity| {
            let items = activity["items"].as_array().map_or(&[][..], Vec::as_slice);
            items.iter().filter(|e| e["action"] == "auth.login_failed").count() == 12
        })
        .await;
    let actions: Vec<&str> =
        activity["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "auth.account_locked").count(), 1, "{actions:?}");
    assert_problem(login(&app, PASSWORD, None).await, StatusCode::FORBIDDEN, "account_locked").await;
}
