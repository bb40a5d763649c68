use gatehouse_tests::{Backend, on_both_backends, spawn_app};
use reqwest::StatusCode;
use serde_json::Value;

on_both_backends!(liveness_answers_ok, readiness_reports_the_database);

async fn liveness_answers_ok(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app.get("/health/live", None).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.expect("json"), serde_json::json!({"status": "ok"}));
}

async fn readiness_reports_the_database(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app.get("/health/ready", None).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["checks"]["database"]["status"], "ok", "{body}");
    assert!(body["checks"]["database"]["latency_ms"].is_number(), "{body}");
}
