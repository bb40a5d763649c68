//! Webhooks: the admin API, events written with their change, Standard Webhooks signatures
//! checked by our verifier and by the spec authors' JavaScript library, retries, a receiver
//! that is down and comes back, failing and slow receivers, a relay that crashes mid-delivery,
//! two instances, the SSRF guard, replay and secret rotation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_domain::ports::SystemClock;
use gatehouse_tests::webhooks::{Behaviour, Received, Receiver, verifies_with_ours, verify_with_reference};
use gatehouse_tests::{ADMIN_EMAIL, Backend, PASSWORD, TestApp, assert_problem, on_both_backends, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    webhook_endpoints_are_created_listed_changed_and_deleted_and_the_secret_is_shown_once,
    account_events_reach_subscribers_signed_and_verified_by_both_verifiers,
    a_failed_change_publishes_no_webhook_event,
    a_webhook_test_ping_is_delivered_listed_counted_and_replayed_with_the_same_event_id,
    after_a_webhook_secret_rotation_both_secrets_verify,
    a_webhook_receiver_that_is_down_and_comes_back_gets_everything,
    webhook_receivers_answering_500_429_slowly_or_with_a_huge_body,
    a_webhook_endpoint_that_only_fails_is_given_up_on_disabled_and_the_admins_emailed,
    a_webhook_relay_crash_between_claim_and_acknowledgement_loses_nothing,
    two_instances_deliver_every_webhook_event_once,
    every_ssrf_form_is_refused_as_a_webhook_target,
    webhook_routes_need_the_admin_role,
    webhook_deliveries_to_one_endpoint_are_bounded_and_redirects_are_not_followed,
);

const WAIT: Duration = Duration::from_secs(20);

async fn admin_app(
    backend: Backend,
    customise: impl FnOnce(&mut gatehouse_server::settings::Settings),
) -> (TestApp, String) {
    let app = spawn_app_with(backend, |s| {
        s.bootstrap.admin_email = Some(ADMIN_EMAIL.to_owned());
        s.bootstrap.admin_password = Some(PASSWORD.to_owned().into());
        customise(s);
    })
    .await;
    let token = app.access_token(ADMIN_EMAIL).await;
    (app, token)
}

/// Creates an endpoint; returns `(id, secret)`.
async fn subscribe(app: &TestApp, token: &str, url: &str, types: &[&str]) -> (String, String) {
    let response = app
        .send_authed(Method::POST, "/api/v1/webhooks", token, Some(&json!({"url": url, "event_types": types})))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("json");
    (body["id"].as_str().expect("an id").to_owned(), body["secret"].as_str().expect("a secret").to_owned())
}

async fn deliveries(app: &TestApp, token: &str, endpoint: &str) -> Vec<Value> {
    let response = app.send_authed(Method::GET, &format!("/api/v1/webhooks/{endpoint}/deliveries"), token, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.expect("json");
    page["items"].as_array().cloned().unwrap_or_default()
}

async fn wait_for_deliveries(
    app: &TestApp,
    token: &str,
    endpoint: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let items = deliveries(app, token, endpoint).await;
        if done(&items) {
            return items;
        }
        assert!(tokio::time::Instant::now() < deadline, "deliveries never reached the state: {items:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn types(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned()).collect()
}

fn has_no_secret(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().all(|(k, v)| {
            let k = k.to_lowercase();
            !(k.contains("password") || k.contains("hash") || k.contains("token") || k.contains("secret"))
                && has_no_secret(v)
        }),
        Value::Array(items) => items.iter().all(has_no_secret),
        _ => true,
    }
}

async fn webhook_endpoints_are_created_listed_changed_and_deleted_and_the_secret_is_shown_once(backend: Backend) {
    let (app, token) = admin_app(backend, |_| {}).await;
    let response = app
        .send_authed(
            Method::POST,
            "/api/v1/webhooks",
            &token,
            Some(&json!({"url": "https://crm.example.com/in", "event_types": ["user.*", "session.revoked"], "description": "CRM"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.expect("json");
    let secret = created["secret"].as_str().unwrap_or_default();
    assert!(secret.starts_with("whsec_") && secret.len() == 6 + 44, "{created}");
    assert_eq!(created["event_types"], json!(["user.*", "session.revoked"]));
    assert_eq!(created["enabled"], json!(true));
    assert_eq!(created["disabled_reason"], Value::Null);
    let id = created["id"].as_str().unwrap_or_default();

    let fetched: Value =
        app.send_authed(Method::GET, &format!("/api/v1/webhooks/{id}"), &token, None).await.json().await.expect("json");
    assert!(fetched.get("secret").is_none(), "the secret is shown only at creation: {fetched}");
    let list: Value =
        app.send_authed(Method::GET, "/api/v1/webhooks?limit=1", &token, None).await.json().await.expect("json");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert!(list["items"][0].get("secret").is_none());

    for bad in [json!(["user.nope"]), json!([]), json!(["webhook.test"]), json!(["users.*"])] {
        let response = app
            .send_authed(
                Method::POST,
                "/api/v1/webhooks",
                &token,
                Some(&json!({"url": "https://a.example.com/", "event_types": bad})),
            )
            .await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], json!("event_types"), "{bad}: {problem}");
    }

    let patched = app
        .send_authed(
            Method::PATCH,
            &format!("/api/v1/webhooks/{id}"),
            &token,
            Some(&json!({"event_types": ["*"], "enabled": false, "description": null})),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let patched: Value = patched.json().await.expect("json");
    assert_eq!(
        (patched["event_types"].clone(), patched["enabled"].clone(), patched["description"].clone()),
        (json!(["*"]), json!(false), Value::Null)
    );

    let deleted = app.send_authed(Method::DELETE, &format!("/api/v1/webhooks/{id}"), &token, None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = app.send_authed(Method::GET, &format!("/api/v1/webhooks/{id}"), &token, None).await;
    assert_problem(gone, StatusCode::NOT_FOUND, "not_found").await;
}

async fn account_events_reach_subscribers_signed_and_verified_by_both_verifiers(backend: Backend) {
    let (app, token) = admin_app(backend, |_| {}).await;
    let everything = Receiver::start().await;
    let sessions = Receiver::start().await;
    let (_, all_secret) = subscribe(&app, &token, &everything.url(), &["*"]).await;
    let (_, session_secret) = subscribe(&app, &token, &sessions.url(), &["session.*"]).await;

    let user = app.register_user("ada@example.com").await;
    let pair = app.token_pair("ada@example.com").await;
    let logout = app.post_json("/api/v1/auth/logout", &json!({"refresh_token": pair["refresh_token"]})).await;
    assert!(logout.status().is_success(), "{}", logout.status());

    let received = everything
        .wait_until(WAIT, |r| {
            let t = types(r);
            ["user.created", "session.created", "session.revoked"].iter().all(|want| t.iter().any(|t| t == want))
        })
        .await;
    let created = received.iter().find(|r| r.json()["type"] == "user.created").expect("user.created");
    let body = created.json();
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("evt_")), "{body}");
    assert_eq!(created.header("webhook-id"), body["id"].as_str().unwrap_or_default(), "webhook-id is the event id");
    assert!(body["timestamp"].as_str().is_some(), "{body}");
    assert_eq!(body["data"]["user"]["id"], user["id"], "{body}");
    assert_eq!(body["data"]["user"]["email"], json!("ada@example.com"));
    let session = received.iter().find(|r| r.json()["type"] == "session.created").expect("session.created").json();
    assert_eq!(session["data"]["user_id"], user["id"]);
    assert!(session["data"]["session_id"].is_string(), "{session}");
    for request in &received {
        assert!(has_no_secret(&request.json()), "no secret, hash or token in a payload: {}", request.body);
        assert!(verifies_with_ours(&all_secret, request), "our verifier accepts {request:?}");
        assert!(!verifies_with_ours(&session_secret, request), "another endpoint's secret does not verify");
    }
    let pairs: Vec<(&str, &Received)> = received.iter().map(|r| (all_secret.as_str(), r)).collect();
    let verdicts = verify_with_reference(&pairs).await;
    assert_eq!(verdicts, vec!["ok".to_owned(); received.len()], "the standardwebhooks library accepts every delivery");
    let mut tampered = received[0].clone();
    tampered.body.push(' ');
    assert_ne!(verify_with_reference(&[(all_secret.as_str(), &tampered)]).await, vec!["ok".to_owned()]);

    let only_sessions = sessions.wait_for(2, WAIT).await;
    assert!(types(&only_sessions).iter().all(|t| t.starts_with("session.")), "{:?}", types(&only_sessions));
}

async fn a_failed_change_publishes_no_webhook_event(backend: Backend) {
    let (app, token) = admin_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let (id, _) = subscribe(&app, &token, &receiver.url(), &["user.created"]).await;
    app.register_user("ada@example.com").await;
    let again = app.register(&json!({"email": "ada@example.com", "password": PASSWORD})).await;
    assert_eq!(again.status(), StatusCode::CONFLICT, "the second registration is rolled back");
    receiver.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1, "only the committed registration published an event");
    assert_eq!(deliveries(&app, &token, &id).await.len(), 1);
}

async fn a_webhook_test_ping_is_delivered_listed_counted_and_replayed_with_the_same_event_id(backend: Backend) {
    let (app, token) = admin_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let (id, secret) = subscribe(&app, &token, &receiver.url(), &["user.created"]).await;
    let ping = app.send_authed(Method::POST, &format!("/api/v1/webhooks/{id}/test"), &token, None).await;
    assert_eq!(ping.status(), StatusCode::ACCEPTED);
    let first = receiver.wait_for(1, WAIT).await;
    assert_eq!(first[0].json()["type"], json!("webhook.test"));
    assert_eq!(first[0].json()["data"], json!({}));
    assert!(verifies_with_ours(&secret, &first[0]));
    let items = wait_for_deliveries(&app, &token, &id, |d| d.first().is_some_and(|d| d["status"] == "succeeded")).await;
    let delivery = &items[0];
    assert_eq!(delivery["attempts"], json!(1));
    assert_eq!(delivery["last_status_code"], json!(200));
    assert_eq!(delivery["next_attempt_at"], Value::Null);
    assert_eq!(delivery["event_id"].as_str(), Some(first[0].header("webhook-id")));

    let replay = app
        .send_authed(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/deliveries/{}/replay", delivery["id"].as_str().unwrap_or_default()),
            &token,
            None,
        )
        .await;
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    let replayed: Value = replay.json().await.expect("json");
    assert_ne!(replayed["id"], delivery["id"], "a new delivery");
    assert_eq!(replayed["event_id"], delivery["event_id"], "of the same event");
    let both = receiver.wait_for(2, WAIT).await;
    assert_eq!(both[1].header("webhook-id"), both[0].header("webhook-id"), "the idempotency key stays");
    assert_eq!(both[1].body, both[0].body, "the same body");
    let missing = app
        .send_authed(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/deliveries/{}/replay", uuid::Uuid::now_v7()),
            &token,
            None,
        )
        .await;
    assert_problem(missing, StatusCode::NOT_FOUND, "not_found").await;

    let metrics = app.get("/metrics", None).await.text().await.expect("text");
    for name in [
        "gatehouse_webhook_deliveries_total{outcome=\"succeeded\"}",
        "gatehouse_webhook_delivery_duration_seconds_bucket",
        "gatehouse_webhook_queue_depth",
        "gatehouse_webhook_oldest_pending_seconds",
    ] {
        assert!(metrics.contains(name), "/metrics has {name}");
    }
}

async fn after_a_webhook_secret_rotation_both_secrets_verify(backend: Backend) {
    let (app, token) = admin_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let (id, old) = subscribe(&app, &token, &receiver.url(), &["*"]).await;
    let rotated = app.send_authed(Method::POST, &format!("/api/v1/webhooks/{id}/rotate-secret"), &token, None).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let new = rotated.json::<Value>().await.expect("json")["secret"].as_str().unwrap_or_default().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    app.send_authed(Method::POST, &format!("/api/v1/webhooks/{id}/test"), &token, None).await;
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(request.header("webhook-signature").split(' ').count(), 2, "two signatures: {request:?}");
    assert!(verifies_with_ours(&old, &request) && verifies_with_ours(&new, &request));
    let verdicts = verify_with_reference(&[(old.as_str(), &request), (new.as_str(), &request)]).await;
    assert_eq!(verdicts, vec!["ok", "ok"], "the library accepts the delivery with either secret");
    let unknown = app
        .send_authed(Method::POST, &format!("/api/v1/webhooks/{}/rotate-secret", uuid::Uuid::now_v7()), &token, None)
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "not_found").await;
}

async fn a_webhook_receiver_that_is_down_and_comes_back_gets_everything(backend: Backend) {
    let (app, token) = admin_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let (id, secret) = subscribe(&app, &token, &receiver.url(), &["user.created"]).await;
    receiver.down();
    for n in 0..3 {
        app.register_user(&format!("user{n}@example.com")).await;
    }
    wait_for_deliveries(&app, &token, &id, |d| d.len() == 3 && d.iter().all(|d| d["status"] == "retrying")).await;
    let items = deliveries(&app, &token, &id).await;
    assert!(items.iter().all(|d| d["last_error"].is_string() && d["next_attempt_at"].is_string()), "{items:#?}");
    receiver.up().await;
    let received = receiver
        .wait_until(WAIT, |r| {
            let mut ids: Vec<&str> = r.iter().map(|r| r.header("webhook-id")).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.len() == 3
        })
        .await;
    assert!(received.iter().all(|r| verifies_with_ours(&secret, r)));
    wait_for_deliveries(&app, &token, &id, |d| d.iter().all(|d| d["status"] == "succeeded")).await;
}

async fn webhook_receivers_answering_500_429_slowly_or_with_a_huge_body(backend: Backend) {
    let (app, token) = admin_app(backend, |_| {}).await;
    let receiver = Receiver::start().await;
    let (id, _) = subscribe(&app, &token, &receiver.url(), &["user.created"]).await;
    receiver.answer(Behaviour::Status(500));
    app.send_authed(Method::POST, &format!("/api/v1/webhooks/{id}/test"), &token, None).await;
    let items = wait_for_deliveries(&app, &token, &id, |d| d.first().is_some_and(|d| d["status"] == "retrying")).await;
    assert_eq!(items[0]["last_status_code"], json!(500));

    receiver.answer(Behaviour::TooManyRequests);
    let items =
        wait_for_deliveries(&app, &token, &id, |d| d.first().is_some_and(|d| d["last_status_code"] == 429)).await;
    assert_eq!(items[0]["status"], json!("retrying"));

    // Slower than webhooks.request_timeout_secs (3 s in the test configuration): a timeout.
    receiver.answer(Behaviour::Slow(Duration::from_secs(6)));
    let items = wait_for_deliveries(&app, &token, &id, |d| {
        d.first().is_some_and(|d| d["last_error"].as_str().is_some_and(|e| e.contains("timed out")))
    })
    .await;
    assert_eq!(items[0]["status"], json!("retrying"));

    // An endless 200 body: delivered, and the relay stops reading at the cap instead of
    // downloading a gigabyte.
    receiver.answer(Behaviour::HugeBody);
    let started = std::time::Instant::now();
    wait_for_deliveries(&app, &token, &id, |d| d.first().is_some_and(|d| d["status"] == "succeeded")).await;
    assert!(started.elapsed() < Duration::from_secs(15), "the huge body was not read to its end");
}

async fn a_webhook_endpoint_that_only_fails_is_given_up_on_disabled_and_the_admins_emailed(backend: Backend) {
    let (app, token) = admin_app(backend, |s| {
        s.webhooks.disable_after_hours = 1.0 / 3600.0;
        s.webhooks.max_retry_hours = 2.0 / 3600.0;
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.answer(Behaviour::Status(503));
    let (id, _) = subscribe(&app, &token, &receiver.url(), &["user.*"]).await;
    let ping = format!("/api/v1/webhooks/{id}/test");
    app.send_authed(Method::POST, &ping, &token, None).await;

    // Only failures for disable_after_hours: disabled, with the reason, and the admins emailed.
    let deadline = tokio::time::Instant::now() + WAIT;
    let endpoint = loop {
        let endpoint: Value = app
            .send_authed(Method::GET, &format!("/api/v1/webhooks/{id}"), &token, None)
            .await
            .json()
            .await
            .expect("json");
        if endpoint["enabled"] == json!(false) || tokio::time::Instant::now() > deadline {
            break endpoint;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (endpoint["enabled"].clone(), endpoint["disabled_reason"].clone()),
        (json!(false), json!("failing")),
        "{endpoint}"
    );
    let mail = app.wait_for_mail(1).await;
    let notice = mail.iter().find(|m| m.envelope_to.iter().any(|to| to == ADMIN_EMAIL)).expect("the admin is emailed");
    assert!(notice.data.contains(&receiver.address.to_string()), "the mail names the endpoint: {}", notice.data);
    let attempts = receiver.received().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), attempts, "a disabled endpoint gets no attempts");

    // Enabling clears the reason; the open delivery resumes and, past max_retry_hours, fails.
    let enabled = app
        .send_authed(Method::PATCH, &format!("/api/v1/webhooks/{id}"), &token, Some(&json!({"enabled": true})))
        .await;
    let enabled: Value = enabled.json().await.expect("json");
    assert_eq!((enabled["enabled"].clone(), enabled["disabled_reason"].clone()), (json!(true), Value::Null));
    let items = wait_for_deliveries(&app, &token, &id, |d| d.first().is_some_and(|d| d["status"] == "failed")).await;
    assert!(items[0]["attempts"].as_u64().is_some_and(|n| n >= 2), "retried before giving up: {items:#?}");
    assert_eq!(items[0]["last_status_code"], json!(503));
    assert_eq!(items[0]["next_attempt_at"], Value::Null);

    receiver.answer(Behaviour::Status(200));
    app.send_authed(Method::POST, &ping, &token, None).await;
    wait_for_deliveries(&app, &token, &id, |d| d.first().is_some_and(|d| d["status"] == "succeeded")).await;
}

async fn a_webhook_relay_crash_between_claim_and_acknowledgement_loses_nothing(backend: Backend) {
    let (app, token) = admin_app(backend, |s| s.webhooks.relay_enabled = false).await;
    let receiver = Receiver::start().await;
    receiver.answer(Behaviour::Hang);
    let (id, secret) = subscribe(&app, &token, &receiver.url(), &["user.created"]).await;
    app.register_user("ada@example.com").await;

    // A relay claims the delivery, sends it, and dies before recording anything.
    let database = app.database().await;
    let relay = gatehouse_server::webhook_relay::webhook_relay(&app.settings, &database, Arc::new(SystemClock));
    let crashed = tokio::spawn(async move { relay.relay_batch().await });
    let first = receiver.wait_for(1, WAIT).await;
    crashed.abort();
    let items = deliveries(&app, &token, &id).await;
    assert_eq!((items[0]["status"].clone(), items[0]["attempts"].clone()), (json!("pending"), json!(1)), "{items:#?}");

    // Another instance picks it up once the lease (5 s in the test configuration) runs out.
    receiver.answer(Behaviour::Status(200));
    let sibling = app.spawn_sibling(|s| s.webhooks.relay_enabled = true).await;
    let both = receiver.wait_for(2, WAIT).await;
    assert_eq!(
        both[1].header("webhook-id"),
        first[0].header("webhook-id"),
        "redelivered with the same idempotency key"
    );
    assert!(verifies_with_ours(&secret, &both[1]));
    wait_for_deliveries(&app, &token, &id, |d| {
        d.first().is_some_and(|d| d["status"] == "succeeded" && d["attempts"] == 2)
    })
    .await;
    drop(sibling);
}

async fn two_instances_deliver_every_webhook_event_once(backend: Backend) {
    let (app, token) = admin_app(backend, |_| {}).await;
    let sibling = app.spawn_sibling(|_| {}).await;
    let receiver = Receiver::start().await;
    let (id, _) = subscribe(&app, &token, &receiver.url(), &["user.created"]).await;
    for n in 0..12 {
        let target = if n % 2 == 0 { &app } else { &sibling };
        target.register_user(&format!("user{n}@example.com")).await;
    }
    wait_for_deliveries(&app, &token, &id, |d| d.len() == 12 && d.iter().all(|d| d["status"] == "succeeded")).await;
    let received = receiver.received();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for request in &received {
        *counts.entry(request.header("webhook-id").to_owned()).or_default() += 1;
    }
    assert_eq!(counts.len(), 12, "every event arrived");
    assert!(counts.values().all(|&n| n == 1), "no event was delivered twice: {counts:?}");
}

async fn every_ssrf_form_is_refused_as_a_webhook_target(backend: Backend) {
    let (app, token) = admin_app(backend, |s| s.webhooks.allow_private_targets = false).await;
    for url in [
        "http://127.0.0.1/hook",
        "http://[::1]/hook",
        "http://0x7f.1/hook",
        "http://2130706433/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[fd00:ec2::254]/",
        "http://10.0.0.1/",
        "http://localhost:8080/hook",
        "ftp://example.com/",
    ] {
        let response = app
            .send_authed(Method::POST, "/api/v1/webhooks", &token, Some(&json!({"url": url, "event_types": ["*"]})))
            .await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], json!("url"), "{url}: {problem}");
    }
    // A change of target is checked too.
    let (id, _) = subscribe(&app, &token, "https://93.184.216.34/hook", &["*"]).await;
    let response = app
        .send_authed(Method::PATCH, &format!("/api/v1/webhooks/{id}"), &token, Some(&json!({"url": "http://127.1/"})))
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

async fn webhook_routes_need_the_admin_role(backend: Backend) {
    let (app, _) = admin_app(backend, |_| {}).await;
    app.register_user("ada@example.com").await;
    let user = app.access_token("ada@example.com").await;
    let response = app.send_authed(Method::GET, "/api/v1/webhooks", &user, None).await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let anonymous = app.get("/api/v1/webhooks", None).await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn webhook_deliveries_to_one_endpoint_are_bounded_and_redirects_are_not_followed(backend: Backend) {
    let (app, token) = admin_app(backend, |s| s.webhooks.per_endpoint_concurrency = 2).await;
    let receiver = Receiver::start().await;
    receiver.answer(Behaviour::Slow(Duration::from_millis(400)));
    let (id, _) = subscribe(&app, &token, &receiver.url(), &["user.created"]).await;
    for n in 0..6 {
        app.register_user(&format!("user{n}@example.com")).await;
    }
    wait_for_deliveries(&app, &token, &id, |d| d.len() == 6 && d.iter().all(|d| d["status"] == "succeeded")).await;
    assert!(receiver.most_in_flight() <= 2, "at most 2 in flight, saw {}", receiver.most_in_flight());

    receiver.answer(Behaviour::Redirect("/elsewhere"));
    app.send_authed(Method::POST, &format!("/api/v1/webhooks/{id}/test"), &token, None).await;
    let items =
        wait_for_deliveries(&app, &token, &id, |d| d.first().is_some_and(|d| d["last_status_code"] == 307)).await;
    assert_eq!(items[0]["status"], json!("retrying"), "a redirect is a failure");
    assert!(receiver.received().iter().all(|r| r.path == "/hook"), "the redirect was not followed");
}
