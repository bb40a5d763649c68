use futures::future::join_all;
use gatehouse_tests::{Backend, PASSWORD, assert_problem, on_both_backends, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    registering_returns_the_new_user_without_secrets,
    a_username_is_derived_from_the_email_and_made_unique,
    an_email_registered_in_another_case_or_with_spaces_is_taken,
    a_username_taken_in_another_case_is_refused,
    invalid_emails_are_refused_with_a_field_error,
    passwords_that_break_the_policy_are_refused,
    missing_and_mistyped_fields_are_validation_errors,
    unknown_fields_are_ignored,
    sql_metacharacters_are_data_not_code,
    concurrent_registrations_of_one_email_let_exactly_one_win,
);

async fn registering_returns_the_new_user_without_secrets(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app
        .register(
            &json!({"email": "  Ada@Example.com ", "password": PASSWORD, "username": "ada", "display_name": "Ada"}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let text = response.text().await.expect("body");
    assert!(!text.contains(PASSWORD) && !text.contains("argon2") && !text.contains("password"), "{text}");
    let user: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(user["email"], "Ada@Example.com", "trimmed, case kept");
    assert_eq!(user["username"], "ada");
    assert_eq!(user["display_name"], "Ada");
    assert_eq!(user["roles"], json!(["user"]));
    assert_eq!(user["status"], "active");
    assert_eq!(user["email_verified"], false);
    assert_eq!(user["avatar_url"], Value::Null);
    assert_eq!(user["last_login_at"], Value::Null);
    let id = user["id"].as_str().expect("id");
    assert_eq!(uuid::Uuid::parse_str(id).expect("uuid").get_version_num(), 7, "UUIDv7 ids");
    assert!(user["created_at"].as_str().expect("created_at").ends_with('Z'), "RFC 3339 UTC");
}

async fn a_username_is_derived_from_the_email_and_made_unique(backend: Backend) {
    let app = spawn_app(backend).await;

    let first = app.register_user("grace.hopper@example.com").await;
    let second = app.register_user("grace.hopper@example.org").await;

    assert_eq!(first["username"], "grace.hopper");
    let derived = second["username"].as_str().expect("username");
    assert!(derived.starts_with("grace.hopper-") && derived != "grace.hopper", "{derived}");
}

async fn an_email_registered_in_another_case_or_with_spaces_is_taken(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;

    for email in ["ada@example.com", "ADA@Example.COM", "  ada@example.com\t"] {
        let response = app.register(&json!({"email": email, "password": PASSWORD})).await;
        assert_problem(response, StatusCode::CONFLICT, "email_taken").await;
    }
}

async fn a_username_taken_in_another_case_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register(&json!({"email": "ada@example.com", "password": PASSWORD, "username": "Ada"})).await;

    let response = app.register(&json!({"email": "other@example.com", "password": PASSWORD, "username": "aDA"})).await;

    assert_problem(response, StatusCode::CONFLICT, "username_taken").await;
}

async fn invalid_emails_are_refused_with_a_field_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let long = format!("{}@example.com", "a".repeat(300));
    for email in [
        "",
        "plainaddress",
        "ada@",
        "@example.com",
        "ada@localhost",
        "Ada <ada@example.com>",
        "ада@\u{202e}example.com",
        "💥@💥",
        "a\u{0}b@example.com",
        long.as_str(),
    ] {
        let response = app.register(&json!({"email": email, "password": PASSWORD})).await;

        let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "email", "{email:?}: {body}");
    }
}

async fn passwords_that_break_the_policy_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let too_long = "x".repeat(129);
    for (password, code) in [
        ("short", "too_short"),
        ("ééééééé", "too_short"),
        (too_long.as_str(), "too_long"),
        ("ada@example.com", "equals_email"),
        ("password1", "too_common"),
        ("Football", "too_common"),
    ] {
        let response = app.register(&json!({"email": "ada@example.com", "password": password})).await;

        let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "password", "{body}");
        assert_eq!(body["errors"][0]["code"], code, "{password:?}: {body}");
    }
    let response = app.register(&json!({"email": "ada@example.com", "password": "é".repeat(128)})).await;
    assert_eq!(response.status(), StatusCode::CREATED, "128 characters are fine, however many bytes");
}

async fn missing_and_mistyped_fields_are_validation_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    for (body, field) in [
        (json!({"password": PASSWORD}), "email"),
        (json!({"email": "ada@example.com"}), "password"),
        (json!({"email": 42, "password": PASSWORD}), "body"),
        (json!({"email": "ada@example.com", "password": ["a"]}), "body"),
        (json!({"email": "ada@example.com", "password": PASSWORD, "username": 7}), "body"),
        (json!({"email": "ada@example.com", "password": PASSWORD, "username": "a b"}), "username"),
        (json!({"email": "ada@example.com", "password": PASSWORD, "display_name": ""}), "display_name"),
    ] {
        let response = app.register(&body).await;

        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    for body in [json!([]), json!("text"), json!(null)] {
        let response = app.register(&body).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
}

async fn unknown_fields_are_ignored(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app
        .register(&json!({"email": "ada@example.com", "password": PASSWORD, "roles": ["admin"], "is_admin": true}))
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.expect("json");
    assert_eq!(user["roles"], json!(["user"]), "a client cannot grant itself roles");
}

async fn sql_metacharacters_are_data_not_code(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app
        .register(&json!({"email": "o'brien@example.com", "password": PASSWORD, "display_name": "Robert'); DROP TABLE users;--"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.expect("json");
    assert_eq!(user["display_name"], "Robert'); DROP TABLE users;--");

    let response =
        app.register(&json!({"email": "x@example.com", "password": PASSWORD, "username": "' OR 1=1 --"})).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let response = app.login(&json!({"email": "' OR '1'='1@example.com", "password": "' OR '1'='1"})).await;
    assert!(response.status().is_client_error(), "{}", response.status());

    let token = app.access_token("o'brien@example.com").await;
    let me: Value = app.get("/api/v1/users/me", Some(&token)).await.json().await.expect("json");
    assert_eq!(me["email"], "o'brien@example.com");
}

async fn concurrent_registrations_of_one_email_let_exactly_one_win(backend: Backend) {
    let app = spawn_app(backend).await;

    let bodies: Vec<Value> = (0..8)
        .map(|i| json!({"email": "race@example.com", "password": PASSWORD, "username": format!("racer{i}")}))
        .collect();
    let attempts = bodies.iter().map(|body| app.register(body));
    let statuses: Vec<StatusCode> = join_all(attempts).await.iter().map(reqwest::Response::status).collect();

    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 7, "{statuses:?}");
}
