//! `/metrics`: scraped and parsed as Prometheus would.

use gatehouse_tests::{Backend, on_both_backends, spawn_app, spawn_app_with};
use prometheus_parse::{Sample, Scrape, Value as PromValue};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(metrics_count_requests_logins_and_refresh_reuse_and_parse_as_prometheus_text);

async fn scrape(app: &gatehouse_tests::TestApp) -> Scrape {
    Scrape::parse(scrape_text(app).await.lines().map(|line| Ok(line.to_owned()))).expect("valid Prometheus text")
}

async fn scrape_text(app: &gatehouse_tests::TestApp) -> String {
    let response = app.get("/metrics", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.expect("a body")
}

fn samples<'a>(scrape: &'a Scrape, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
    scrape.samples.iter().filter(move |s| s.metric == name)
}

fn value(sample: &Sample) -> f64 {
    match &sample.value {
        PromValue::Counter(v) | PromValue::Gauge(v) | PromValue::Untyped(v) => *v,
        other => panic!("{} is not a number: {other:?}", sample.metric),
    }
}

fn one(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<_> =
        samples(scrape, name).filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).collect();
    assert_eq!(matching.len(), 1, "one {name} with {labels:?}, found {matching:?}");
    value(matching[0])
}

async fn metrics_count_requests_logins_and_refresh_reuse_and_parse_as_prometheus_text(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let pair = app.token_pair("ada@example.com").await;
    let wrong = app.login(&json!({"email": "ada@example.com", "password": "not the password at all"})).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let refresh_token = pair["refresh_token"].as_str().expect("a refresh token");
    assert_eq!(app.refresh(refresh_token).await.status(), StatusCode::OK);
    assert_eq!(app.refresh(refresh_token).await.status(), StatusCode::UNAUTHORIZED, "the spent token is refused");
    let unknown_id = uuid::Uuid::now_v7();
    app.get(&format!("/api/v1/users/{unknown_id}"), None).await;

    let scrape = scrape(&app).await;

    let login = [("route", "/api/v1/auth/login"), ("method", "POST")];
    assert_eq!(one(&scrape, "gatehouse_http_requests_total", &[login[0], login[1], ("status", "200")]), 1.0);
    assert_eq!(one(&scrape, "gatehouse_http_requests_total", &[login[0], login[1], ("status", "401")]), 1.0);
    // prometheus-parse skips lines whose label values hold braces, which Prometheus accepts:
    // check the templated route in the text itself.
    let text = scrape_text(&app).await;
    assert!(
        text.contains(r#"gatehouse_http_requests_total{route="/api/v1/users/{id}",method="GET",status="401"} 1"#),
        "the route pattern, not the path, is the label:\n{text}"
    );
    assert!(!text.contains(&unknown_id.to_string()), "raw paths never become labels");
    let histogram = samples(&scrape, "gatehouse_http_request_duration_seconds")
        .find(|s| s.labels.get("route") == Some("/api/v1/auth/register"))
        .expect("a latency histogram for register");
    match &histogram.value {
        PromValue::Histogram(buckets) => {
            let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
            assert_eq!(total, 1.0, "one register request in the +Inf bucket: {buckets:?}");
        }
        other => panic!("a histogram, not {other:?}"),
    }
    assert_eq!(one(&scrape, "gatehouse_logins_total", &[("outcome", "success")]), 1.0);
    assert_eq!(one(&scrape, "gatehouse_logins_total", &[("outcome", "invalid_credentials")]), 1.0);
    assert_eq!(one(&scrape, "gatehouse_refresh_token_reuse_total", &[]), 1.0);
    assert!(one(&scrape, "gatehouse_db_pool_max_connections", &[]) >= 1.0);
    assert!(one(&scrape, "gatehouse_db_pool_connections", &[]) >= 1.0);
    assert!(one(&scrape, "gatehouse_db_pool_in_use", &[]) >= 0.0);
    assert!(one(&scrape, "gatehouse_db_pool_waits_total", &[]) >= 0.0);
    assert_eq!(one(&scrape, "gatehouse_password_hash_queue_depth", &[]), 0.0, "nothing is hashing now");
    assert!(
        samples(&scrape, "gatehouse_password_hash_duration_seconds").any(|s| s.labels.get("operation") == Some("hash")),
        "hash time is recorded"
    );
    assert!(one(&scrape, "gatehouse_email_outbox_depth", &[]) >= 0.0);
    assert_eq!(one(&scrape, "gatehouse_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_counts_sent_mail_and_the_outbox_drains() {
    let app = spawn_app(Backend::Sqlite).await;
    let body: Value = app.register_user("grace@example.com").await;
    assert!(body["id"].is_string());
    app.wait_for_mail(1).await;

    let mut sent = 0.0;
    for _ in 0..50 {
        let scrape = scrape(&app).await;
        sent = samples(&scrape, "gatehouse_email_outbox_sent_total").map(value).sum();
        if sent >= 1.0 && one(&scrape, "gatehouse_email_outbox_depth", &[]) == 0.0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the relay reported {sent} sent and the outbox did not drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_smtp_server_degrades_readiness_without_failing_it() {
    let closed = gatehouse_tests::free_port();
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.mail.smtp_url = Some(format!("smtp://127.0.0.1:{closed}").into());
    })
    .await;

    let response = app.get("/health/ready", None).await;

    assert_eq!(response.status(), StatusCode::OK, "degraded still serves");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["checks"]["database"]["status"], "ok", "{body}");
    assert_eq!(body["checks"]["smtp"]["status"], "degraded", "{body}");
    assert!(body["checks"]["smtp"]["latency_ms"].is_number(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_a_reachable_smtp_server() {
    let app = spawn_app(Backend::Sqlite).await;

    let body: Value = app.get("/health/ready", None).await.json().await.expect("json");

    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["checks"]["smtp"]["status"], "ok", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_checks_redis_when_configured_and_degrades_when_it_is_gone() {
    let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let with_redis = spawn_app_with(Backend::Postgres, |s| s.redis.url = Some(redis.into())).await;
    let body: Value = with_redis.get("/health/ready", None).await.json().await.expect("json");
    assert_eq!(body["checks"]["redis"]["status"], "ok", "{body}");

    let closed = gatehouse_tests::free_port();
    let without =
        spawn_app_with(Backend::Sqlite, |s| s.redis.url = Some(format!("redis://127.0.0.1:{closed}").into())).await;
    let response = without.get("/health/ready", None).await;
    assert_eq!(response.status(), StatusCode::OK, "Redis is optional");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["checks"]["redis"]["status"], "degraded", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_metrics_listen_set_metrics_are_served_only_on_their_own_listener() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.metrics.listen = Some("127.0.0.1:0".to_owned())).await;
    let metrics = app.metrics_address.clone().expect("a metrics listener");
    assert_ne!(metrics, app.address, "a listener of its own");
    assert_eq!(app.get("/health/live", None).await.status(), StatusCode::OK, "the main listener serves the API");

    let on_main = app.get("/metrics", None).await;
    gatehouse_tests::assert_problem(on_main, StatusCode::NOT_FOUND, "not_found").await;
    let posted = app.client.post(app.url("/metrics")).send().await.expect("an answer");
    gatehouse_tests::assert_problem(posted, StatusCode::NOT_FOUND, "not_found").await;

    let response = app.client.get(format!("{metrics}/metrics")).send().await.expect("the metrics listener answers");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.expect("a body");
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("valid Prometheus text");
    assert_eq!(one(&scrape, "gatehouse_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert!(
        text.contains(r#"gatehouse_http_requests_total{route="/health/live",method="GET",status="200"} 1"#),
        "the main listener's requests are counted:\n{text}"
    );

    let api_on_metrics = app.client.get(format!("{metrics}/health/live")).send().await.expect("an answer");
    gatehouse_tests::assert_problem(api_on_metrics, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_metrics_listen_metrics_stay_on_the_main_listener() {
    let app = spawn_app(Backend::Sqlite).await;

    assert!(app.metrics_address.is_none(), "no second listener");
    assert!(scrape_text(&app).await.contains("gatehouse_build_info"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_stops_with_the_main_one() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.metrics.listen = Some("127.0.0.1:0".to_owned())).await;
    let metrics = format!("{}/metrics", app.metrics_address.clone().expect("a metrics listener"));
    assert_eq!(app.client.get(&metrics).send().await.expect("an answer").status(), StatusCode::OK);

    drop(app);

    for _ in 0..100 {
        let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("a client");
        if fresh.get(&metrics).send().await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the metrics listener still answers after the application stopped");
}
