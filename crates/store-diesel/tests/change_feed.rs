//! The PostgreSQL change feed: two listeners on one database, as two server instances would
//! run. Every assertion follows a `publish` that returned `Ok`, which means every listener
//! applied it: nothing here waits on time.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use gatehouse_domain::ports::{AccountCompanion, Change, ChangeFeed, PasswordHash, SystemClock, TokenHash};
use gatehouse_domain::read_cache::{CacheSettings, ReadCache};
use gatehouse_domain::{
    ActivityAction, Email, NewActivity, NewSession, NewUser, RequestContext, User, UserId, Username,
};
use gatehouse_store_diesel::PgChangeFeed;
use gatehouse_store_diesel::testing::TestDatabase;

struct Instance {
    cache: Arc<ReadCache>,
    feed: PgChangeFeed,
}

async fn instance(test_db: &TestDatabase) -> Instance {
    let cache =
        Arc::new(ReadCache::new(CacheSettings { capacity: 100, ttl: Duration::minutes(5) }, Arc::new(SystemClock)));
    let (url, listening) = (test_db.url().to_owned(), cache.clone());
    let feed = tokio::task::spawn_blocking(move || PgChangeFeed::start(&url, listening, StdDuration::from_secs(5)))
        .await
        .expect("the task runs")
        .expect("the listener connects");
    Instance { cache, feed }
}

async fn a_user(db: &gatehouse_store_diesel::Database) -> User {
    let id = UserId::generate();
    let user = NewUser {
        id,
        email: Email::parse(&format!("{id}@example.com")).expect("email"),
        username: Username::parse(&format!("u{}", &id.to_string()[..8])).expect("username"),
        display_name: None,
        password_hash: Some(PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned())),
        roles: Vec::new(),
        email_verified_at: None,
        created_at: Utc::now(),
    };
    let event = NewActivity::by_user(id, ActivityAction::UserRegistered, &RequestContext::default(), Utc::now());
    db.users().create(user, event, AccountCompanion::Nothing).await.expect("created")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_change_is_applied_by_every_listener_before_publish_returns() {
    let test_db = TestDatabase::postgres();
    let db = test_db.connect_and_migrate(2).await.expect("migrated");
    let (a, b) = (instance(&test_db).await, instance(&test_db).await);
    let user = a_user(&db).await;
    b.cache.fill_user(b.cache.ticket(), &user);
    assert_eq!(b.cache.user(user.id), Some(user.clone()), "cached on B");

    a.feed.publish(Change::User(user.id)).await.expect("both listeners confirmed");

    assert_eq!(b.cache.user(user.id), None, "B forgot the user before A's publish returned");
    assert!(a.cache.stats().invalidations >= 1, "A heard its own change too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_in_sql_reaches_the_listeners_through_the_triggers() {
    let test_db = TestDatabase::postgres();
    let db = test_db.connect_and_migrate(2).await.expect("migrated");
    let (a, b) = (instance(&test_db).await, instance(&test_db).await);
    let user = a_user(&db).await;
    let new = NewSession {
        id: gatehouse_domain::SessionId::generate(),
        user_id: user.id,
        refresh_token_hash: TokenHash::new(format!("hash-{}", user.id)),
        context: RequestContext::default(),
        created_at: Utc::now(),
        expires_at: Utc::now() + Duration::days(1),
    };
    let event = NewActivity::by_user(user.id, ActivityAction::LoginSucceeded, &RequestContext::default(), Utc::now());
    let session = db.sessions().start(new, event).await.expect("started");
    b.cache.fill_user(b.cache.ticket(), &user);
    b.cache.fill_session(b.cache.ticket(), &session);

    // An operator's statements, bypassing the server entirely.
    db.execute_sql(format!("UPDATE users SET display_name = 'Changed' WHERE id = '{}'", user.id))
        .await
        .expect("updated");
    db.execute_sql(format!("UPDATE sessions SET revoked_at = now() WHERE id = '{}'", session.id))
        .await
        .expect("revoked");
    // A barrier: notifications arrive in commit order, so once every listener confirmed it,
    // every listener has applied the triggers' notifications sent before.
    a.feed.publish(Change::Sessions(Vec::new())).await.expect("both listeners confirmed");

    assert_eq!(b.cache.user(user.id), None, "the trigger on users told B");
    assert_eq!(b.cache.session_owner(session.id, Utc::now()), None, "the trigger on sessions told B");
}
