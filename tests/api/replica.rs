//! `database.read_replica_url`: a second, separately filled database stands in for the
//! replica, so where each read came from is visible.

use gatehouse_store_diesel::testing::TestDatabase;
use gatehouse_tests::{ADMIN_EMAIL, Backend, PASSWORD, on_both_backends, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(lists_and_audit_reads_come_from_the_replica_while_writes_and_lookups_use_the_primary);

async fn lists_and_audit_reads_come_from_the_replica_while_writes_and_lookups_use_the_primary(backend: Backend) {
    let replica = match backend {
        Backend::Postgres => TestDatabase::postgres(),
        Backend::Sqlite => TestDatabase::sqlite(),
    };
    let replica_db = replica.connect_and_migrate(2).await.expect("the stand-in replica gets the schema");
    assert_eq!(replica_db.seed_users(3, "not a real hash").await.expect("seeded"), 3);
    let app = spawn_app_with(backend, |s| {
        s.bootstrap.admin_email = Some(ADMIN_EMAIL.to_owned());
        s.bootstrap.admin_password = Some(PASSWORD.to_owned().into());
        s.database.read_replica_url = Some(replica.url().to_owned().into());
    })
    .await;
    let token = app.access_token(ADMIN_EMAIL).await;

    let created =
        app.send_authed(Method::POST, "/api/v1/users", &token, Some(&json!({"email": "new@example.com"}))).await;
    assert_eq!(created.status(), StatusCode::CREATED, "the write goes to the primary");
    let created: Value = created.json().await.expect("json");
    // Seeded users are sometimes soft-deleted (as a few real ones are); list them all.
    let listed: Value = app
        .send_authed(Method::GET, "/api/v1/users?limit=100&include_deleted=true", &token, None)
        .await
        .json()
        .await
        .expect("json");
    let fetched = app
        .send_authed(Method::GET, &format!("/api/v1/users/{}", created["id"].as_str().expect("id")), &token, None)
        .await;
    let audit: Value =
        app.send_authed(Method::GET, "/api/v1/audit-events?limit=100", &token, None).await.json().await.expect("json");

    let emails: Vec<&str> =
        listed["items"].as_array().expect("items").iter().filter_map(|u| u["email"].as_str()).collect();
    assert_eq!(emails.len(), 3, "exactly the replica's seeded users: {emails:?}");
    assert!(!emails.contains(&ADMIN_EMAIL) && !emails.contains(&"new@example.com"), "{emails:?}");
    assert_eq!(fetched.status(), StatusCode::OK, "reading a user after a change uses the primary");
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(0), "the replica has no audit events: {audit}");
    let primary = app.database().await;
    assert_eq!(primary.count_users().await.expect("count"), 2, "the admin and the new user are in the primary");
    assert_eq!(replica_db.count_users().await.expect("count"), 3, "nothing was written to the replica");
    let ready: Value = app.get("/health/ready", None).await.json().await.expect("json");
    assert_eq!(ready["checks"]["replica"]["status"], "ok", "{ready}");
}
