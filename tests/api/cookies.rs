//! Cookie mode for browser apps: the refresh token in an `HttpOnly` cookie.

use gatehouse_tests::{Backend, PASSWORD, assert_problem, on_both_backends, spawn_app};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

on_both_backends!(cookie_mode_keeps_the_refresh_token_out_of_javascripts_reach);

fn refresh_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("gatehouse_refresh="))
        .expect("a refresh cookie")
        .to_owned()
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("name=value").to_owned()
}

async fn cookie_mode_keeps_the_refresh_token_out_of_javascripts_reach(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;

    let login = app
        .client
        .post(app.url("/api/v1/auth/login?cookie=true"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect("sent");
    assert_eq!(login.status(), StatusCode::OK);
    let set_cookie = refresh_cookie(&login);
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/api/v1/auth", "Max-Age=2592000"] {
        assert!(set_cookie.contains(attribute), "{attribute} in {set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain-HTTP loopback development drops Secure: {set_cookie}");
    let body: Value = login.json().await.expect("json");
    assert!(body.get("refresh_token").is_none(), "not in the body: {body}");
    let cookie = cookie_pair(&set_cookie);

    let without_header =
        app.client.post(app.url("/api/v1/auth/refresh")).header(COOKIE, &cookie).send().await.expect("sent");
    assert_problem(without_header, StatusCode::FORBIDDEN, "forbidden").await;

    let refreshed = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .header(COOKIE, &cookie)
        .header("x-requested-with", "fetch")
        .send()
        .await
        .expect("sent");
    assert_eq!(refreshed.status(), StatusCode::OK);
    let rotated = cookie_pair(&refresh_cookie(&refreshed));
    assert_ne!(rotated, cookie, "the cookie rotates");
    let body: Value = refreshed.json().await.expect("json");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let access = body["access_token"].as_str().expect("access").to_owned();

    let replay = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .header(COOKIE, &cookie)
        .header("x-requested-with", "fetch")
        .send()
        .await
        .expect("sent");
    assert_problem(replay, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    assert_problem(app.get("/api/v1/users/me", Some(&access)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn logout_by_cookie_needs_the_header_and_clears_the_cookie() {
    let app = spawn_app(Backend::Sqlite).await;
    app.register_user("ada@example.com").await;
    let login = app
        .client
        .post(app.url("/api/v1/auth/login?cookie=true"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect("sent");
    let cookie = cookie_pair(&refresh_cookie(&login));
    let access = login.json::<Value>().await.expect("json")["access_token"].as_str().expect("access").to_owned();

    let forged = app.client.post(app.url("/api/v1/auth/logout")).header(COOKIE, &cookie).send().await.expect("sent");
    assert_problem(forged, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(
        app.get("/api/v1/users/me", Some(&access)).await.status(),
        StatusCode::OK,
        "a CSRF attempt changes nothing"
    );

    let logout = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .header(COOKIE, &cookie)
        .header("x-requested-with", "fetch")
        .send()
        .await
        .expect("sent");

    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(refresh_cookie(&logout).contains("Max-Age=0"), "the cookie is cleared");
    assert_problem(app.get("/api/v1/users/me", Some(&access)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
