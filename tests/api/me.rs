use gatehouse_tests::{Backend, assert_problem, on_both_backends, spawn_app};
use reqwest::StatusCode;
use serde_json::Value;

on_both_backends!(me_returns_the_callers_account, me_needs_a_valid_bearer_token);

async fn me_returns_the_callers_account(backend: Backend) {
    let app = spawn_app(backend).await;
    let registered = app.register_user("ada@example.com").await;
    let token = app.access_token("ada@example.com").await;

    let response = app.get("/api/v1/users/me", Some(&token)).await;

    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.expect("json");
    assert_eq!(me["id"], registered["id"]);
    assert_eq!(me["email"], "ada@example.com");
    assert!(me["last_login_at"].is_string(), "the login was recorded: {me}");
}

async fn me_needs_a_valid_bearer_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = {
        app.register_user("ada@example.com").await;
        app.access_token("ada@example.com").await
    };
    let tampered = {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        parts.join(".")
    };
    let alg_none = {
        let parts: Vec<&str> = token.split('.').collect();
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1])
    };

    for header in [None, Some("Bearer"), Some("Bearer not-a-jwt"), Some(tampered.as_str()), Some(alg_none.as_str())] {
        let mut request = app.client.get(app.url("/api/v1/users/me"));
        if let Some(value) = header {
            let value = if value.starts_with("Bearer") { value.to_owned() } else { format!("Bearer {value}") };
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("sent");
        assert_eq!(
            response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{header:?}"
        );
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let response =
        app.client.get(app.url("/api/v1/users/me")).basic_auth("ada", Some("pw")).send().await.expect("sent");
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
