//! The repository contract, run against PostgreSQL and SQLite alike.
//!
//! Each case is written once as an async function taking a fresh [`TestDatabase`]; the
//! `contract!` macro at the bottom instantiates it as `postgres::<case>` and `sqlite::<case>`.
//! PostgreSQL comes from `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`);
//! when it is down these tests fail, they never skip.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use async_trait::async_trait;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use futures::future::join_all;
use gatehouse_domain::ports::{
    CreateUserError, PasswordHash, ProfileChanges, Rotation, SessionRepository, TokenHash, UpdateUserError,
    UserRepository,
};
use gatehouse_domain::{
    ActivityAction, Avatar, AvatarFormat, AvatarKey, DisplayName, Email, NewActivity, NewSession, NewUser,
    RequestContext, Role, Session, SessionId, User, UserId, UserStatus, Username,
};
use gatehouse_store_diesel::testing::{StoredActivity, TestDatabase};
use gatehouse_store_diesel::{Backend, Database};

/// Tasks racing in the concurrency cases; also the pool size, so they really run at once.
const RACERS: u32 = 8;

async fn migrated(test_db: &TestDatabase) -> Database {
    test_db.connect_and_migrate(RACERS).await.expect("the test database connects and migrates")
}

fn email(raw: &str) -> Email {
    Email::parse(raw).expect("valid email")
}

fn username(raw: &str) -> Username {
    Username::parse(raw).expect("valid username")
}

fn new_user(raw_email: &str, raw_username: &str) -> NewUser {
    NewUser {
        id: UserId::generate(),
        email: email(raw_email),
        username: username(raw_username),
        display_name: None,
        password_hash: Some(PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned())),
        roles: Vec::new(),
        email_verified_at: None,
        created_at: Utc::now(),
    }
}

/// The event a registration records.
fn registered(user: &NewUser) -> NewActivity {
    NewActivity::by_user(user.id, ActivityAction::UserRegistered, &RequestContext::default(), user.created_at)
}

/// The event a sign-in records.
fn logged_in(session: &NewSession) -> NewActivity {
    NewActivity::by_user(session.user_id, ActivityAction::LoginSucceeded, &session.context, session.created_at)
        .with_detail("session_id", session.id)
}

/// Shorthands for the cases where the event is not the point.
#[async_trait]
trait Register {
    /// `create` with the registration event.
    async fn register(&self, user: NewUser) -> Result<User, CreateUserError>;
}

#[async_trait]
impl Register for dyn UserRepository {
    async fn register(&self, user: NewUser) -> Result<User, CreateUserError> {
        let event = registered(&user);
        self.create(user, event).await
    }
}

#[async_trait]
trait SignIn {
    /// `start` with the login event.
    async fn sign_in(&self, session: NewSession) -> anyhow::Result<Session>;
}

#[async_trait]
impl SignIn for dyn SessionRepository {
    async fn sign_in(&self, session: NewSession) -> anyhow::Result<Session> {
        let event = logged_in(&session);
        self.start(session, event).await
    }
}

/// Both engines keep microseconds.
fn stored(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

async fn a_created_user_is_found_again_with_every_field(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let users = db.users();
    let verified_at = Utc::now() - Duration::minutes(5);
    let new = NewUser {
        display_name: Some(DisplayName::parse("Ada Lovelace").expect("valid display name")),
        roles: vec![Role::Admin, Role::User, Role::Admin],
        email_verified_at: Some(verified_at),
        ..new_user("  Ada@Example.com ", "Ada_L")
    };

    let created = users.register(new.clone()).await.expect("the user is created");

    assert_eq!(created.id, new.id);
    assert_eq!(created.email.as_ref(), "Ada@Example.com", "the email is kept as entered, trimmed");
    assert_eq!(created.username.as_ref(), "Ada_L", "the username keeps its case");
    assert_eq!(created.display_name.as_ref().map(AsRef::as_ref), Some("Ada Lovelace"));
    assert_eq!(created.roles, vec![Role::User, Role::Admin], "roles are sorted, without duplicates");
    assert_eq!(created.status, UserStatus::Active);
    assert_eq!(created.locked_until, None);
    assert_eq!(created.email_verified_at, Some(stored(verified_at)));
    assert_eq!(created.last_login_at, None);
    assert_eq!(created.created_at, stored(new.created_at));
    assert_eq!(created.updated_at, stored(new.created_at), "updated_at starts at created_at");
    assert_eq!(created.deleted_at, None);

    let by_id = users.find_by_id(new.id).await.expect("lookup works");
    assert_eq!(by_id.as_ref(), Some(&created), "find_by_id returns the user as created");

    let by_email = users.find_credentials_by_email(&email("ada@EXAMPLE.com")).await.expect("lookup works");
    let by_email = by_email.expect("found by email, ignoring case");
    assert_eq!(by_email.user, created);
    assert_eq!(by_email.password_hash, new.password_hash, "the credentials carry the password hash");

    let by_username = users.find_credentials_by_username(&username("ada_l")).await.expect("lookup works");
    let by_username = by_username.expect("found by username, ignoring case");
    assert_eq!(by_username.user, created);
    assert_eq!(by_username.password_hash, new.password_hash);

    let by_id = users.find_credentials_by_id(new.id).await.expect("lookup works").expect("found by id");
    assert_eq!(by_id.user, created);
    assert_eq!(by_id.password_hash, new.password_hash);
    assert!(users.find_credentials_by_id(UserId::generate()).await.expect("lookup works").is_none());
}

async fn a_user_created_without_roles_or_password_gets_the_user_role(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let new = NewUser { password_hash: None, ..new_user("oauth@example.com", "oauth-only") };

    let created = db.users().register(new).await.expect("the user is created");

    assert_eq!(created.roles, vec![Role::User]);
    let credentials = db.users().find_credentials_by_email(&created.email).await.expect("lookup works");
    assert_eq!(credentials.expect("found").password_hash, None);
}

async fn an_email_is_taken_regardless_of_case_and_surrounding_whitespace(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.users().register(new_user("Ada@Example.com", "ada")).await.expect("the first user is created");

    let second = db.users().register(new_user("  ada@example.com\t", "someone-else")).await;

    assert!(matches!(second, Err(CreateUserError::EmailTaken)), "got {second:?}");
}

async fn a_username_is_taken_regardless_of_case(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.users().register(new_user("ada@example.com", "Ada.Lovelace")).await.expect("the first user is created");

    let second = db.users().register(new_user("grace@example.com", "ada.LOVELACE")).await;

    assert!(matches!(second, Err(CreateUserError::UsernameTaken)), "got {second:?}");
}

async fn unicode_case_folds_the_same_way_on_every_engine(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.users().register(new_user("ÉLODIE@example.com", "Élodie")).await.expect("the first user is created");

    let same_email = db.users().register(new_user("élodie@example.com", "elodie2")).await;
    let same_username = db.users().register(new_user("other@example.com", "éLODIE")).await;
    let found = db.users().find_credentials_by_email(&email("Élodie@EXAMPLE.com")).await.expect("lookup works");

    assert!(matches!(same_email, Err(CreateUserError::EmailTaken)), "got {same_email:?}");
    assert!(matches!(same_username, Err(CreateUserError::UsernameTaken)), "got {same_username:?}");
    assert!(found.is_some(), "a lookup in another case finds the user");
}

async fn a_taken_email_wins_over_a_taken_username(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.users().register(new_user("ada@example.com", "ada")).await.expect("the first user is created");

    let second = db.users().register(new_user("ADA@example.com", "ADA")).await;

    assert!(matches!(second, Err(CreateUserError::EmailTaken)), "got {second:?}");
}

async fn a_refused_user_leaves_nothing_behind(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.users().register(new_user("ada@example.com", "ada")).await.expect("the first user is created");
    let refused = new_user("ada@example.com", "grace");

    let outcome = db.users().register(refused.clone()).await;

    assert!(matches!(outcome, Err(CreateUserError::EmailTaken)), "got {outcome:?}");
    assert_eq!(db.users().find_by_id(refused.id).await.expect("lookup works"), None);
    let grace = db.users().find_credentials_by_username(&username("grace")).await.expect("lookup works");
    assert!(grace.is_none(), "the refused user's username is still free");
    assert_eq!(events_of(&db, refused.id).await, vec![], "a refused registration records nothing");
}

async fn unknown_ids_emails_and_usernames_are_not_found(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.users().register(new_user("ada@example.com", "ada")).await.expect("a user exists");

    let users = db.users();
    assert_eq!(users.find_by_id(UserId::generate()).await.expect("lookup works"), None);
    assert!(users.find_credentials_by_email(&email("nobody@example.com")).await.expect("lookup works").is_none());
    assert!(users.find_credentials_by_username(&username("nobody")).await.expect("lookup works").is_none());
}

async fn a_soft_deleted_user_is_invisible_and_frees_its_email_and_username(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let deleted = db.users().register(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let updated = db
        .execute_sql("UPDATE users SET deleted_at = updated_at WHERE email_normalized = 'ada@example.com'")
        .await
        .expect("the soft delete runs");
    assert_eq!(updated, 1, "exactly one user was soft-deleted");

    let users = db.users();
    assert_eq!(users.find_by_id(deleted.id).await.expect("lookup works"), None);
    assert!(users.find_credentials_by_email(&email("ada@example.com")).await.expect("lookup works").is_none());
    assert!(users.find_credentials_by_username(&username("ada")).await.expect("lookup works").is_none());

    let successor =
        users.register(new_user("Ada@Example.com", "ADA")).await.expect("email and username are free again");
    let found = users.find_credentials_by_email(&email("ada@example.com")).await.expect("lookup works");
    assert_eq!(found.map(|c| c.user.id), Some(successor.id), "lookups find the live user, not the deleted one");
}

async fn concurrent_registrations_of_one_email_let_exactly_one_win(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let attempts = (0..RACERS).map(|i| {
        let users = db.users();
        let raw_email = if i % 2 == 0 { "race@example.com" } else { "RACE@example.com" };
        let new = new_user(raw_email, &format!("racer-{i}"));
        tokio::spawn(async move { users.register(new).await })
    });

    let outcomes: Vec<_> = join_all(attempts).await.into_iter().map(|joined| joined.expect("no task panics")).collect();

    let winners = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let taken = outcomes.iter().filter(|outcome| matches!(outcome, Err(CreateUserError::EmailTaken))).count();
    assert_eq!(winners, 1, "exactly one registration wins: {outcomes:?}");
    assert_eq!(taken, RACERS as usize - 1, "every other one gets EmailTaken: {outcomes:?}");
}

async fn concurrent_registrations_of_one_username_let_exactly_one_win(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let attempts = (0..RACERS).map(|i| {
        let users = db.users();
        let raw_username = if i % 2 == 0 { "racer" } else { "RACER" };
        let new = new_user(&format!("racer-{i}@example.com"), raw_username);
        tokio::spawn(async move { users.register(new).await })
    });

    let outcomes: Vec<_> = join_all(attempts).await.into_iter().map(|joined| joined.expect("no task panics")).collect();

    let winners = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let taken = outcomes.iter().filter(|outcome| matches!(outcome, Err(CreateUserError::UsernameTaken))).count();
    assert_eq!(winners, 1, "exactly one registration wins: {outcomes:?}");
    assert_eq!(taken, RACERS as usize - 1, "every other one gets UsernameTaken: {outcomes:?}");
}

async fn a_password_hash_can_be_replaced(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = db.users().register(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let upgraded = PasswordHash::new("$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$bmV3".to_owned());
    let at = user.created_at + Duration::minutes(1);

    db.users().update_password_hash(user.id, upgraded.clone(), at).await.expect("the update works");
    db.users().update_password_hash(UserId::generate(), upgraded.clone(), at).await.expect("an unknown id is no error");

    let credentials = db.users().find_credentials_by_email(&user.email).await.expect("lookup works").expect("found");
    assert_eq!(credentials.password_hash, Some(upgraded));
    assert_eq!(credentials.user.updated_at, stored(at), "the change touches updated_at");
    assert_eq!(credentials.user.created_at, user.created_at);
}

async fn a_started_session_is_found_and_records_the_login(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = db.users().register(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let created_at = Utc::now() + Duration::seconds(30);
    let new = NewSession {
        id: SessionId::generate(),
        user_id: user.id,
        refresh_token_hash: TokenHash::new("first-refresh-token-hash".to_owned()),
        context: RequestContext {
            ip: Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".to_owned()),
        },
        created_at,
        expires_at: created_at + Duration::days(30),
    };

    let started = db.sessions().sign_in(new.clone()).await.expect("the session starts");

    assert_eq!(started.id, new.id);
    assert_eq!(started.user_id, user.id);
    assert_eq!(started.context, new.context);
    assert_eq!(started.created_at, stored(created_at));
    assert_eq!(started.last_used_at, stored(created_at), "last_used_at starts at created_at");
    assert_eq!(started.expires_at, stored(new.expires_at));
    assert_eq!(started.revoked_at, None);
    assert!(started.is_live_at(created_at));
    assert_eq!(db.sessions().find(new.id).await.expect("lookup works"), Some(started));

    let after = db.users().find_by_id(user.id).await.expect("lookup works").expect("found");
    assert_eq!(after.last_login_at, Some(stored(created_at)), "the login is recorded");
    assert_eq!(after.updated_at, user.updated_at, "recording a login changes nothing else");
    assert_eq!(after, with_last_login(user, Some(stored(created_at))));

    let refresh_rows = db
        .execute_sql("UPDATE refresh_tokens SET spent_at = NULL WHERE token_hash = 'first-refresh-token-hash'")
        .await
        .expect("the refresh_tokens table is there");
    assert_eq!(refresh_rows, 1, "the first refresh token is stored");
}

fn with_last_login(mut user: gatehouse_domain::User, at: Option<DateTime<Utc>>) -> gatehouse_domain::User {
    user.last_login_at = at;
    user
}

async fn a_session_without_request_context_round_trips(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = db.users().register(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let now = Utc::now();
    let new = NewSession {
        id: SessionId::generate(),
        user_id: user.id,
        refresh_token_hash: TokenHash::new("hash".to_owned()),
        context: RequestContext::default(),
        created_at: now,
        expires_at: now + Duration::days(1),
    };

    let started = db.sessions().sign_in(new).await.expect("the session starts");

    assert_eq!(started.context, RequestContext::default());
    let ipv4 = RequestContext { ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), user_agent: None };
    let second = NewSession {
        id: SessionId::generate(),
        user_id: user.id,
        refresh_token_hash: TokenHash::new("hash-2".to_owned()),
        context: ipv4.clone(),
        created_at: now,
        expires_at: now + Duration::days(1),
    };
    assert_eq!(db.sessions().sign_in(second).await.expect("the second session starts").context, ipv4);
}

async fn a_session_for_an_unknown_user_is_refused(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let now = Utc::now();
    let new = NewSession {
        id: SessionId::generate(),
        user_id: UserId::generate(),
        refresh_token_hash: TokenHash::new("orphan".to_owned()),
        context: RequestContext::default(),
        created_at: now,
        expires_at: now + Duration::days(1),
    };

    let outcome = db.sessions().sign_in(new.clone()).await;

    assert!(outcome.is_err(), "the foreign key refuses it: {outcome:?}");
    assert_eq!(db.sessions().find(new.id).await.expect("lookup works"), None, "nothing was stored");
}

async fn an_unknown_session_is_not_found(test_db: TestDatabase) {
    let db = migrated(&test_db).await;

    assert_eq!(db.sessions().find(SessionId::generate()).await.expect("lookup works"), None);
}

async fn migrations_can_run_again_and_the_database_answers_pings(test_db: TestDatabase) {
    let db = migrated(&test_db).await;

    db.migrate().await.expect("a second run applies nothing and succeeds");
    db.ping().await.expect("the database answers");

    let expected = if test_db.url().starts_with("sqlite") { Backend::Sqlite } else { Backend::Postgres };
    assert_eq!(db.backend(), expected);
    assert_eq!(test_db.backend(), expected);
    db.users().register(new_user("ada@example.com", "ada")).await.expect("the schema works after a second run");
}

// ---- Activity events, sessions and refresh-token rotation ----

/// The actions recorded about `user_id`, oldest first.
async fn events_of(db: &Database, user_id: UserId) -> Vec<ActivityAction> {
    db.activity_for_user(user_id).await.expect("the activity events load").iter().map(|event| event.action).collect()
}

fn token(raw: &str) -> TokenHash {
    TokenHash::new(raw.to_owned())
}

/// A session of `user_id` created at `created_at`, expiring 30 days later, whose first refresh
/// token hashes to `first_token`.
fn new_session(user_id: UserId, first_token: &str, created_at: DateTime<Utc>) -> NewSession {
    NewSession {
        id: SessionId::generate(),
        user_id,
        refresh_token_hash: token(first_token),
        context: RequestContext {
            ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
            user_agent: Some("curl/8".to_owned()),
        },
        created_at,
        expires_at: created_at + Duration::days(30),
    }
}

/// A registered user and one started session (first token `"first"`, created at `at`).
async fn user_with_session(db: &Database, at: DateTime<Utc>) -> (User, Session) {
    let new = NewUser { created_at: at - Duration::days(1), ..new_user("ada@example.com", "ada") };
    let user = db.users().register(new).await.expect("the user is created");
    let session = db.sessions().sign_in(new_session(user.id, "first", at)).await.expect("the session starts");
    (user, session)
}

fn logout(user_id: UserId, session: SessionId, at: DateTime<Utc>) -> NewActivity {
    NewActivity::by_user(user_id, ActivityAction::Logout, &RequestContext::default(), at)
        .with_detail("session_id", session)
}

fn ids(sessions: &[SessionId]) -> BTreeSet<SessionId> {
    sessions.iter().copied().collect()
}

async fn starting_a_session_records_the_login_event(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = db.users().register(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let new = new_session(user.id, "first", Utc::now());
    let event = logged_in(&new);

    db.sessions().start(new.clone(), event.clone()).await.expect("the session starts");

    let events = db.activity_for_user(user.id).await.expect("the activity events load");
    let expected = StoredActivity {
        id: event.id,
        user_id: user.id,
        actor_id: Some(user.id),
        action: ActivityAction::LoginSucceeded,
        context: new.context.clone(),
        created_at: stored(new.created_at),
        details: [("session_id".to_owned(), new.id.to_string())].into(),
    };
    assert_eq!(events.len(), 2, "registration and login are recorded: {events:?}");
    assert_eq!(events[0].action, ActivityAction::UserRegistered);
    assert_eq!(events[1], expected, "the login event is stored with every field");
}

async fn rotating_a_live_token_spends_it_and_stores_its_successor(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (_, session) = user_with_session(&db, t0).await;
    let t1 = t0 + Duration::minutes(20);

    let rotated = db.sessions().rotate(token("first"), token("second"), t1, Duration::zero()).await;

    let Ok(Rotation::Rotated(after)) = rotated else { panic!("a live token rotates, got {rotated:?}") };
    assert_eq!(after.id, session.id);
    assert_eq!(after.last_used_at, stored(t1), "the rotation touches last_used_at");
    assert_eq!(after.created_at, session.created_at);
    assert_eq!(db.sessions().find(session.id).await.expect("lookup works"), Some(after.clone()), "as stored");
    let by_successor = db.sessions().find_by_refresh_token(&token("second")).await.expect("lookup works");
    assert_eq!(by_successor, Some(after.clone()), "the successor belongs to the session");
    let by_spent = db.sessions().find_by_refresh_token(&token("first")).await.expect("lookup works");
    assert_eq!(by_spent.map(|s| s.id), Some(session.id), "a spent token still names its session");

    let t2 = t1 + Duration::minutes(20);
    let next = db.sessions().rotate(token("second"), token("third"), t2, Duration::zero()).await;
    assert!(matches!(&next, Ok(Rotation::Rotated(s)) if s.last_used_at == stored(t2)), "the successor works: {next:?}");
    let replay = db.sessions().rotate(token("first"), token("replay"), t2, Duration::zero()).await;
    assert!(matches!(replay, Ok(Rotation::Reused(_))), "the first token is spent: {replay:?}");
}

async fn a_token_spent_outside_the_grace_window_is_reused_and_nothing_is_written(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (_, session) = user_with_session(&db, t0).await;
    let t1 = t0 + Duration::minutes(1);
    db.sessions().rotate(token("first"), token("second"), t1, Duration::seconds(5)).await.expect("the first rotation");
    let before = db.sessions().find(session.id).await.expect("lookup works").expect("found");

    let replay =
        db.sessions().rotate(token("first"), token("late"), t1 + Duration::seconds(6), Duration::seconds(5)).await;

    assert_eq!(
        replay.ok(),
        Some(Rotation::Reused(before.clone())),
        "a late replay is a reuse, with the session as stored"
    );
    assert_eq!(db.sessions().find(session.id).await.expect("lookup works"), Some(before), "the session is unchanged");
    let late = db.sessions().find_by_refresh_token(&token("late")).await.expect("lookup works");
    assert_eq!(late, None, "no successor was stored");
}

async fn a_token_spent_within_the_grace_window_rotates_again(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (_, session) = user_with_session(&db, t0).await;
    let t1 = t0 + Duration::minutes(1);
    let grace = Duration::seconds(5);
    db.sessions().rotate(token("first"), token("second"), t1, grace).await.expect("the first rotation");

    let retry = db.sessions().rotate(token("first"), token("second-retry"), t1 + grace, grace).await;

    assert!(
        matches!(&retry, Ok(Rotation::Rotated(s)) if s.id == session.id && s.last_used_at == stored(t1 + grace)),
        "a retry within the grace window rotates: {retry:?}"
    );
    for successor in ["second", "second-retry"] {
        let found = db.sessions().find_by_refresh_token(&token(successor)).await.expect("lookup works");
        assert_eq!(found.map(|s| s.id), Some(session.id), "both successors are stored ({successor})");
    }
    let later = db.sessions().rotate(token("first"), token("third"), t1 + Duration::seconds(6), grace).await;
    assert!(matches!(later, Ok(Rotation::Reused(_))), "the grace window runs from the first spend: {later:?}");
}

async fn rotating_a_token_of_a_revoked_session_ends_it(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (user, session) = user_with_session(&db, t0).await;
    let t1 = t0 + Duration::minutes(1);
    db.sessions().revoke(user.id, session.id, t1, logout(user.id, session.id, t1)).await.expect("the revocation");

    let outcome = db.sessions().rotate(token("first"), token("second"), t1, Duration::seconds(5)).await;

    assert_eq!(outcome.ok(), Some(Rotation::SessionEnded));
    assert_eq!(db.sessions().find_by_refresh_token(&token("second")).await.expect("lookup works"), None);
    let stored_session = db.sessions().find(session.id).await.expect("lookup works").expect("found");
    assert_eq!(stored_session.last_used_at, session.last_used_at, "nothing was written");
}

async fn rotating_a_token_of_an_expired_session_ends_it(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (_, session) = user_with_session(&db, t0).await;

    let outcome = db.sessions().rotate(token("first"), token("second"), session.expires_at, Duration::seconds(5)).await;

    assert_eq!(outcome.ok(), Some(Rotation::SessionEnded), "a session is over at its expires_at");
    assert_eq!(db.sessions().find_by_refresh_token(&token("second")).await.expect("lookup works"), None);
    assert_eq!(db.sessions().find(session.id).await.expect("lookup works"), Some(session), "nothing was written");
}

async fn rotating_an_unknown_token_finds_nothing(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    user_with_session(&db, t0).await;

    let outcome = db.sessions().rotate(token("never-issued"), token("second"), t0, Duration::seconds(5)).await;

    assert_eq!(outcome.ok(), Some(Rotation::Unknown));
    assert_eq!(db.sessions().find_by_refresh_token(&token("never-issued")).await.expect("lookup works"), None);
    assert_eq!(db.sessions().find_by_refresh_token(&token("second")).await.expect("lookup works"), None);
}

async fn concurrent_rotations_of_one_token_let_exactly_one_win(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (_, session) = user_with_session(&db, t0).await;
    let now = t0 + Duration::minutes(1);
    let attempts = (0..RACERS).map(|i| {
        let sessions = db.sessions();
        tokio::spawn(async move {
            sessions.rotate(token("first"), token(&format!("successor-{i}")), now, Duration::zero()).await
        })
    });

    let outcomes: Vec<_> = join_all(attempts).await.into_iter().map(|joined| joined.expect("no task panics")).collect();

    let rotated = outcomes.iter().filter(|outcome| matches!(outcome, Ok(Rotation::Rotated(_)))).count();
    let reused = outcomes.iter().filter(|outcome| matches!(outcome, Ok(Rotation::Reused(_)))).count();
    assert_eq!(rotated, 1, "exactly one presentation rotates: {outcomes:?}");
    assert_eq!(reused, RACERS as usize - 1, "every other one is a reuse, never an error: {outcomes:?}");
    let mut successors = 0;
    for i in 0..RACERS {
        let found = db.sessions().find_by_refresh_token(&token(&format!("successor-{i}"))).await.expect("lookup works");
        successors += usize::from(found.is_some_and(|s| s.id == session.id));
    }
    assert_eq!(successors, 1, "exactly one successor is stored");
}

async fn the_owner_revokes_a_session_and_the_logout_is_recorded(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (user, session) = user_with_session(&db, t0).await;
    let t1 = t0 + Duration::minutes(1);

    let revoked = db.sessions().revoke(user.id, session.id, t1, logout(user.id, session.id, t1)).await;

    assert_eq!(revoked.ok(), Some(true));
    let after = db.sessions().find(session.id).await.expect("lookup works").expect("found");
    assert_eq!(after.revoked_at, Some(stored(t1)));
    assert_eq!(
        events_of(&db, user.id).await,
        vec![ActivityAction::UserRegistered, ActivityAction::LoginSucceeded, ActivityAction::Logout]
    );
}

async fn revoking_someone_elses_session_changes_nothing(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (owner, session) = user_with_session(&db, t0).await;
    let other = db.users().register(new_user("mallory@example.com", "mallory")).await.expect("the user is created");
    let t1 = t0 + Duration::minutes(1);

    let revoked = db.sessions().revoke(other.id, session.id, t1, logout(other.id, session.id, t1)).await;

    assert_eq!(revoked.ok(), Some(false));
    let after = db.sessions().find(session.id).await.expect("lookup works");
    assert_eq!(after, Some(session.clone()), "the session is untouched");
    assert_eq!(events_of(&db, other.id).await, vec![ActivityAction::UserRegistered], "no event for the caller");
    assert_eq!(events_of(&db, owner.id).await, vec![ActivityAction::UserRegistered, ActivityAction::LoginSucceeded]);
    let unknown = db.sessions().revoke(owner.id, SessionId::generate(), t1, logout(owner.id, session.id, t1)).await;
    assert_eq!(unknown.ok(), Some(false), "an unknown session is not revoked");
}

async fn revoking_a_session_twice_reports_false_the_second_time(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (user, session) = user_with_session(&db, t0).await;
    let (t1, t2) = (t0 + Duration::minutes(1), t0 + Duration::minutes(2));

    let first = db.sessions().revoke(user.id, session.id, t1, logout(user.id, session.id, t1)).await;
    let second = db.sessions().revoke(user.id, session.id, t2, logout(user.id, session.id, t2)).await;

    assert_eq!((first.ok(), second.ok()), (Some(true), Some(false)));
    let after = db.sessions().find(session.id).await.expect("lookup works").expect("found");
    assert_eq!(after.revoked_at, Some(stored(t1)), "the first revocation time stays");
    let logouts = events_of(&db, user.id).await.into_iter().filter(|a| *a == ActivityAction::Logout).count();
    assert_eq!(logouts, 1, "one logout is recorded");
}

async fn revoke_all_revokes_every_other_session_of_the_user(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (user, keep) = user_with_session(&db, t0).await;
    let second = db.sessions().sign_in(new_session(user.id, "second", t0)).await.expect("the session starts");
    let third = db.sessions().sign_in(new_session(user.id, "third", t0)).await.expect("the session starts");
    let t1 = t0 + Duration::minutes(1);
    db.sessions().revoke(user.id, third.id, t1, logout(user.id, third.id, t1)).await.expect("the revocation");
    let other = db.users().register(new_user("grace@example.com", "grace")).await.expect("the user is created");
    let others = db.sessions().sign_in(new_session(other.id, "others", t0)).await.expect("the session starts");
    let t2 = t0 + Duration::minutes(2);

    let revoked = db.sessions().revoke_all(user.id, Some(keep.id), t2).await.expect("revoke_all works");

    assert_eq!(ids(&revoked), ids(&[second.id]), "only the other live session is revoked");
    let live = db.sessions().list_live(user.id, t2).await.expect("listing works");
    assert_eq!(live.iter().map(|s| s.id).collect::<Vec<_>>(), vec![keep.id], "the kept session lives on");
    let third_after = db.sessions().find(third.id).await.expect("lookup works").expect("found");
    assert_eq!(third_after.revoked_at, Some(stored(t1)), "an earlier revocation keeps its time");
    let others_after = db.sessions().find(others.id).await.expect("lookup works").expect("found");
    assert_eq!(others_after.revoked_at, None, "other users' sessions are untouched");

    let rest = db.sessions().revoke_all(user.id, None, t2).await.expect("revoke_all works");
    assert_eq!(rest, vec![keep.id], "without keep, the last one goes too");
    assert!(db.sessions().list_live(user.id, t2).await.expect("listing works").is_empty());
}

async fn list_live_shows_unrevoked_unexpired_sessions_newest_first(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (user, oldest) = user_with_session(&db, t0).await;
    let newest = db.sessions().sign_in(new_session(user.id, "newest", t0 + Duration::hours(2))).await.expect("starts");
    let revoked =
        db.sessions().sign_in(new_session(user.id, "revoked", t0 + Duration::hours(1))).await.expect("starts");
    let short = NewSession { expires_at: t0 + Duration::hours(1), ..new_session(user.id, "expired", t0) };
    db.sessions().sign_in(short).await.expect("the short session starts");
    let now = t0 + Duration::hours(3);
    db.sessions().revoke(user.id, revoked.id, now, logout(user.id, revoked.id, now)).await.expect("the revocation");
    let other = db.users().register(new_user("grace@example.com", "grace")).await.expect("the user is created");
    db.sessions().sign_in(new_session(other.id, "others", t0)).await.expect("the session starts");

    let live = db.sessions().list_live(user.id, now).await.expect("listing works");

    assert_eq!(live, vec![newest, oldest], "revoked, expired and other users' sessions are left out");
}

fn profile_event(user_id: UserId, at: DateTime<Utc>) -> NewActivity {
    NewActivity::by_user(user_id, ActivityAction::UserUpdated, &RequestContext::default(), at)
}

async fn update_profile_changes_only_the_given_fields(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let new = NewUser {
        display_name: Some(DisplayName::parse("Ada").expect("valid display name")),
        roles: vec![Role::Admin],
        ..new_user("ada@example.com", "ada")
    };
    let user = db.users().register(new).await.expect("the user is created");
    let at = user.created_at + Duration::minutes(1);
    let changes = ProfileChanges {
        display_name: Some(Some(DisplayName::parse("Ada Lovelace").expect("valid display name"))),
        username: Some(username("Countess")),
    };

    let updated = db.users().update_profile(user.id, changes, at, profile_event(user.id, at)).await;

    let updated = updated.expect("the profile is updated");
    let expected = User {
        display_name: Some(DisplayName::parse("Ada Lovelace").expect("valid display name")),
        username: username("Countess"),
        updated_at: stored(at),
        ..user.clone()
    };
    assert_eq!(updated, expected, "the given fields change, roles and the rest stay");
    assert_eq!(db.users().find_by_id(user.id).await.expect("lookup works"), Some(expected));
    let by_new = db.users().find_credentials_by_username(&username("countess")).await.expect("lookup works");
    assert_eq!(by_new.map(|c| c.user.id), Some(user.id), "the new username is found ignoring case");
    let by_old = db.users().find_credentials_by_username(&username("ada")).await.expect("lookup works");
    assert!(by_old.is_none(), "the old username is free");
    assert_eq!(events_of(&db, user.id).await, vec![ActivityAction::UserRegistered, ActivityAction::UserUpdated]);

    let only_name = ProfileChanges { display_name: Some(None), username: None };
    let cleared = db.users().update_profile(user.id, only_name, at, profile_event(user.id, at)).await;
    let cleared = cleared.expect("the display name is cleared");
    assert_eq!(cleared.display_name, None);
    assert_eq!(cleared.username, username("Countess"), "an absent field is left alone");
}

async fn a_user_may_change_the_case_of_their_own_username(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = db.users().register(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let changes = ProfileChanges { username: Some(username("ADA")), ..ProfileChanges::default() };

    let updated = db.users().update_profile(user.id, changes, Utc::now(), profile_event(user.id, Utc::now())).await;

    assert_eq!(updated.ok().map(|u| u.username), Some(username("ADA")));
}

async fn a_username_taken_by_someone_else_is_refused_and_nothing_is_recorded(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.users().register(new_user("grace@example.com", "Grace")).await.expect("the first user is created");
    let user = db.users().register(new_user("ada@example.com", "ada")).await.expect("the second user is created");
    let changes = ProfileChanges {
        display_name: Some(Some(DisplayName::parse("Ada").expect("valid display name"))),
        username: Some(username("gRACE")),
    };
    let at = user.created_at + Duration::minutes(1);

    let outcome = db.users().update_profile(user.id, changes, at, profile_event(user.id, at)).await;

    assert!(matches!(outcome, Err(UpdateUserError::UsernameTaken)), "got {outcome:?}");
    assert_eq!(db.users().find_by_id(user.id).await.expect("lookup works"), Some(user.clone()), "nothing changed");
    assert_eq!(events_of(&db, user.id).await, vec![ActivityAction::UserRegistered], "a failed change records nothing");
}

async fn updating_an_unknown_or_deleted_user_is_not_found(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = db.users().register(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let at = user.created_at + Duration::minutes(1);
    let changes = ProfileChanges { username: Some(username("someone")), ..ProfileChanges::default() };
    let nobody = UserId::generate();

    let unknown = db.users().update_profile(nobody, changes.clone(), at, profile_event(user.id, at)).await;
    db.users()
        .soft_delete(
            user.id,
            at,
            NewActivity::by_user(user.id, ActivityAction::UserDeleted, &RequestContext::default(), at),
        )
        .await
        .expect("the user is deleted");
    let deleted = db.users().update_profile(user.id, changes, at, profile_event(user.id, at)).await;

    assert!(matches!(unknown, Err(UpdateUserError::NotFound)), "got {unknown:?}");
    assert!(matches!(deleted, Err(UpdateUserError::NotFound)), "got {deleted:?}");
    assert_eq!(events_of(&db, user.id).await, vec![ActivityAction::UserRegistered, ActivityAction::UserDeleted]);
    let hash = PasswordHash::new("$argon2id$new".to_owned());
    let password = db.users().change_password(user.id, hash, None, at, profile_event(user.id, at)).await;
    assert!(matches!(password, Err(UpdateUserError::NotFound)), "a deleted user's password stays: {password:?}");
}

async fn changing_the_password_revokes_every_other_session_and_is_recorded(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (user, current) = user_with_session(&db, t0).await;
    let other = db.sessions().sign_in(new_session(user.id, "other", t0)).await.expect("the session starts");
    let at = t0 + Duration::minutes(1);
    let hash = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$bmV3".to_owned());
    let event = NewActivity::by_user(user.id, ActivityAction::PasswordChanged, &RequestContext::default(), at);

    let revoked = db.users().change_password(user.id, hash.clone(), Some(current.id), at, event).await;

    assert_eq!(revoked.ok(), Some(vec![other.id]), "the other session is revoked");
    let live = db.sessions().list_live(user.id, at).await.expect("listing works");
    assert_eq!(live.iter().map(|s| s.id).collect::<Vec<_>>(), vec![current.id], "the current session is kept");
    let credentials = db.users().find_credentials_by_id(user.id).await.expect("lookup works").expect("found");
    assert_eq!(credentials.password_hash, Some(hash), "the new hash is stored");
    assert_eq!(credentials.user.updated_at, stored(at));
    assert_eq!(events_of(&db, user.id).await.last(), Some(&ActivityAction::PasswordChanged));
    let unknown = db
        .users()
        .change_password(UserId::generate(), PasswordHash::new("x".to_owned()), None, at, profile_event(user.id, at))
        .await;
    assert!(matches!(unknown, Err(UpdateUserError::NotFound)), "got {unknown:?}");
}

async fn soft_delete_hides_the_user_frees_the_email_and_ends_every_session(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (user, first) = user_with_session(&db, t0).await;
    let second = db.sessions().sign_in(new_session(user.id, "second", t0)).await.expect("the session starts");
    let at = t0 + Duration::minutes(1);
    let deleted_event = |at| NewActivity::by_user(user.id, ActivityAction::UserDeleted, &RequestContext::default(), at);

    let deleted = db.users().soft_delete(user.id, at, deleted_event(at)).await.expect("the user is deleted");

    assert_eq!(ids(&deleted.revoked_sessions), ids(&[first.id, second.id]), "every session is revoked");
    assert_eq!(deleted.avatar, None, "the user had no avatar");
    assert!(db.sessions().list_live(user.id, at).await.expect("listing works").is_empty());
    assert_eq!(db.users().find_by_id(user.id).await.expect("lookup works"), None, "the user is hidden");
    assert!(db.users().find_credentials_by_id(user.id).await.expect("lookup works").is_none());
    assert!(db.users().find_credentials_by_email(&user.email).await.expect("lookup works").is_none());
    assert_eq!(events_of(&db, user.id).await.last(), Some(&ActivityAction::UserDeleted), "the history stays");
    let successor = db.users().register(new_user("ADA@example.com", "Ada")).await;
    assert!(successor.is_ok(), "the email and username are free again: {successor:?}");

    let again = db.users().soft_delete(user.id, at, deleted_event(at)).await;
    assert!(matches!(again, Err(UpdateUserError::NotFound)), "got {again:?}");
    let deletions = events_of(&db, user.id).await.into_iter().filter(|a| *a == ActivityAction::UserDeleted).count();
    assert_eq!(deletions, 1, "the refused second delete records nothing");
}

async fn the_session_table_revocation_list_answers_from_the_sessions(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let now = Utc::now();
    let (user, live) = user_with_session(&db, now - Duration::minutes(1)).await;
    let revoked = db.sessions().sign_in(new_session(user.id, "revoked", now)).await.expect("the session starts");
    db.sessions().revoke(user.id, revoked.id, now, logout(user.id, revoked.id, now)).await.expect("the revocation");
    let old = NewSession {
        expires_at: now - Duration::seconds(1),
        ..new_session(user.id, "expired", now - Duration::hours(1))
    };
    let expired = db.sessions().sign_in(old).await.expect("the session starts");
    let list = db.session_revocations();

    list.revoke(vec![live.id], now + Duration::minutes(15)).await.expect("revoke is a no-op that succeeds");

    assert_eq!(list.is_revoked(live.id).await.ok(), Some(false), "the session table says it is live");
    assert_eq!(list.is_revoked(revoked.id).await.ok(), Some(true), "a revoked session");
    assert_eq!(list.is_revoked(expired.id).await.ok(), Some(true), "an expired session");
    assert_eq!(list.is_revoked(SessionId::generate()).await.ok(), Some(true), "an unknown session");
}

fn avatar(user: UserId, fill: &str, format: AvatarFormat) -> Avatar {
    Avatar { key: AvatarKey::new(user, &fill.repeat(32)).expect("a valid key"), format }
}

fn avatar_event(user: UserId, at: DateTime<Utc>) -> NewActivity {
    NewActivity::by_user(user, ActivityAction::AvatarChanged, &RequestContext::default(), at)
}

async fn an_avatar_is_set_replaced_and_cleared_and_each_change_reports_the_previous_one(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = db.users().register(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let first = avatar(user.id, "ab", AvatarFormat::Png);
    let second = avatar(user.id, "cd", AvatarFormat::Jpeg);
    let at = user.created_at + Duration::minutes(1);

    let set = db.users().set_avatar(user.id, Some(first.clone()), at, avatar_event(user.id, at)).await;
    let set = set.expect("the avatar is set");
    assert_eq!(set.previous, None);
    assert_eq!(set.user.avatar.as_ref(), Some(&first));
    assert_eq!(set.user.updated_at, stored(at));
    let found = db.users().find_by_id(user.id).await.expect("lookup works").expect("found");
    assert_eq!(found.avatar.as_ref(), Some(&first), "the reference is stored");

    let replaced = db.users().set_avatar(user.id, Some(second.clone()), at, avatar_event(user.id, at)).await;
    let replaced = replaced.expect("the avatar is replaced");
    assert_eq!(replaced.previous, Some(first));
    assert_eq!(replaced.user.avatar.as_ref(), Some(&second));

    let cleared = db.users().set_avatar(user.id, None, at, avatar_event(user.id, at)).await.expect("cleared");
    assert_eq!(cleared.previous, Some(second));
    assert_eq!(cleared.user.avatar, None);
    let changes = events_of(&db, user.id).await.into_iter().filter(|a| *a == ActivityAction::AvatarChanged).count();
    assert_eq!(changes, 3, "each change is recorded with it");
}

async fn an_avatar_cannot_be_set_on_an_unknown_or_deleted_user_and_records_nothing(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = db.users().register(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let at = user.created_at + Duration::minutes(1);
    let nobody = UserId::generate();
    let unknown = db
        .users()
        .set_avatar(nobody, Some(avatar(nobody, "ab", AvatarFormat::Png)), at, avatar_event(nobody, at))
        .await;
    assert!(matches!(unknown, Err(UpdateUserError::NotFound)), "got {unknown:?}");
    let event = NewActivity::by_user(user.id, ActivityAction::UserDeleted, &RequestContext::default(), at);
    db.users().soft_delete(user.id, at, event).await.expect("the user is deleted");

    let deleted = db
        .users()
        .set_avatar(user.id, Some(avatar(user.id, "ab", AvatarFormat::Png)), at, avatar_event(user.id, at))
        .await;

    assert!(matches!(deleted, Err(UpdateUserError::NotFound)), "got {deleted:?}");
    assert_eq!(events_of(&db, user.id).await, vec![ActivityAction::UserRegistered, ActivityAction::UserDeleted]);
}

async fn soft_delete_clears_the_avatar_and_hands_it_back(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = db.users().register(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let image = avatar(user.id, "ef", AvatarFormat::WebP);
    let at = user.created_at + Duration::minutes(1);
    db.users().set_avatar(user.id, Some(image.clone()), at, avatar_event(user.id, at)).await.expect("set");
    let event = NewActivity::by_user(user.id, ActivityAction::UserDeleted, &RequestContext::default(), at);

    let deleted = db.users().soft_delete(user.id, at, event).await.expect("the user is deleted");

    assert_eq!(deleted.avatar, Some(image), "the cleared avatar, for its file to be removed");
    let columns = db.avatar_columns(user.id).await.expect("the row is readable");
    assert_eq!(columns, (None, None), "the deleted row points at no file");
}

async fn concurrent_avatar_changes_each_see_the_one_they_replaced(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = db.users().register(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let at = user.created_at + Duration::minutes(1);
    let fills = ["01", "02", "03", "04", "05", "06", "07", "08"];
    let avatars: Vec<Avatar> = fills.iter().map(|fill| avatar(user.id, fill, AvatarFormat::Png)).collect();

    let changes = join_all(avatars.iter().map(|image| {
        let users = db.users();
        let image = image.clone();
        async move { users.set_avatar(user.id, Some(image), at, avatar_event(user.id, at)).await }
    }))
    .await;

    let mut previous: Vec<Option<Avatar>> =
        changes.into_iter().map(|change| change.expect("every change succeeds").previous).collect();
    let last = db.users().find_by_id(user.id).await.expect("lookup works").expect("found").avatar;
    previous.push(last);
    let mut seen: Vec<Avatar> = previous.iter().flatten().cloned().collect();
    seen.sort_by(|a, b| a.key.as_ref().cmp(b.key.as_ref()));
    assert_eq!(previous.iter().filter(|p| p.is_none()).count(), 1, "exactly one change replaced nothing");
    assert_eq!(seen, avatars, "every avatar is either replaced by exactly one change or the current one");
}

macro_rules! contract {
    ($($case:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(gatehouse_store_diesel::testing::TestDatabase::postgres()).await;
                }
            )+
        }

        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(gatehouse_store_diesel::testing::TestDatabase::sqlite()).await;
                }
            )+
        }
    };
}

contract!(
    a_created_user_is_found_again_with_every_field,
    a_user_created_without_roles_or_password_gets_the_user_role,
    an_email_is_taken_regardless_of_case_and_surrounding_whitespace,
    a_username_is_taken_regardless_of_case,
    unicode_case_folds_the_same_way_on_every_engine,
    a_taken_email_wins_over_a_taken_username,
    a_refused_user_leaves_nothing_behind,
    unknown_ids_emails_and_usernames_are_not_found,
    a_soft_deleted_user_is_invisible_and_frees_its_email_and_username,
    concurrent_registrations_of_one_email_let_exactly_one_win,
    concurrent_registrations_of_one_username_let_exactly_one_win,
    a_password_hash_can_be_replaced,
    a_started_session_is_found_and_records_the_login,
    a_session_without_request_context_round_trips,
    a_session_for_an_unknown_user_is_refused,
    an_unknown_session_is_not_found,
    migrations_can_run_again_and_the_database_answers_pings,
    starting_a_session_records_the_login_event,
    rotating_a_live_token_spends_it_and_stores_its_successor,
    a_token_spent_outside_the_grace_window_is_reused_and_nothing_is_written,
    a_token_spent_within_the_grace_window_rotates_again,
    rotating_a_token_of_a_revoked_session_ends_it,
    rotating_a_token_of_an_expired_session_ends_it,
    rotating_an_unknown_token_finds_nothing,
    concurrent_rotations_of_one_token_let_exactly_one_win,
    the_owner_revokes_a_session_and_the_logout_is_recorded,
    revoking_someone_elses_session_changes_nothing,
    revoking_a_session_twice_reports_false_the_second_time,
    revoke_all_revokes_every_other_session_of_the_user,
    list_live_shows_unrevoked_unexpired_sessions_newest_first,
    update_profile_changes_only_the_given_fields,
    a_user_may_change_the_case_of_their_own_username,
    a_username_taken_by_someone_else_is_refused_and_nothing_is_recorded,
    updating_an_unknown_or_deleted_user_is_not_found,
    changing_the_password_revokes_every_other_session_and_is_recorded,
    soft_delete_hides_the_user_frees_the_email_and_ends_every_session,
    the_session_table_revocation_list_answers_from_the_sessions,
    an_avatar_is_set_replaced_and_cleared_and_each_change_reports_the_previous_one,
    an_avatar_cannot_be_set_on_an_unknown_or_deleted_user_and_records_nothing,
    soft_delete_clears_the_avatar_and_hands_it_back,
    concurrent_avatar_changes_each_see_the_one_they_replaced,
);
