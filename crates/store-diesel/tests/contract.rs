//! The repository contract, run against PostgreSQL and SQLite alike.
//!
//! Each case is written once as an async function taking a fresh [`TestDatabase`]; the
//! `contract!` macro at the bottom instantiates it as `postgres::<case>` and `sqlite::<case>`.
//! PostgreSQL comes from `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`);
//! when it is down these tests fail, they never skip.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use futures::future::join_all;
use gatehouse_domain::pagination::PageLimit;
use gatehouse_domain::ports::{
    AccountCompanion, ActivityQuery, AdminChangeError, AdminChanges, CreateUserError, EnsureAdmin, Identity,
    LinkIdentityError, NewOneTimeToken, PasswordHash, ProfileChanges, Rotation, SecretCipher, SessionRepository,
    TokenHash, TokenKind, TokenMail, UnlinkIdentityError, UpdateUserError, UseTokenError, UserCursor, UserQuery,
    UserRepository, UserSort,
};
use gatehouse_domain::{
    ActivityAction, Avatar, AvatarFormat, AvatarKey, DisplayName, Email, EmailContent, EmailId, NewActivity,
    NewSession, NewUser, OutgoingEmail, RequestContext, Role, Session, SessionId, User, UserId, UserStatus, Username,
};
use gatehouse_security::{AtRestCipher, EncryptionKey};
use gatehouse_store_diesel::testing::{StoredActivity, TestDatabase};
use gatehouse_store_diesel::{Backend, Database};
use secrecy::{ExposeSecret, SecretString};

/// Tasks racing in the concurrency cases; also the pool size, so they really run at once.
const RACERS: u32 = 8;

async fn migrated(test_db: &TestDatabase) -> Database {
    unsealed(test_db).await.with_secret_cipher(cipher(1, &[]))
}

/// The database with no cipher for secrets at rest.
async fn unsealed(test_db: &TestDatabase) -> Database {
    test_db.connect_and_migrate(RACERS).await.expect("the test database connects and migrates")
}

/// A cipher sealing with the key made of 32 `current` bytes, also opening with the `retired` ones.
fn cipher(current: u8, retired: &[u8]) -> Arc<dyn SecretCipher> {
    let key = |byte: u8| EncryptionKey::from_bytes(&[byte; 32]);
    Arc::new(AtRestCipher::new(key(current), retired.iter().copied().map(key).collect()))
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
        self.create(user, event, AccountCompanion::Nothing).await
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

async fn a_token_spent_within_the_grace_window_for_the_same_successor_rotates_without_storing_another(
    test_db: TestDatabase,
) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (_, session) = user_with_session(&db, t0).await;
    let t1 = t0 + Duration::minutes(1);
    let grace = Duration::seconds(5);
    db.sessions().rotate(token("first"), token("second"), t1, grace).await.expect("the first rotation");

    let retry = db.sessions().rotate(token("first"), token("second"), t1 + grace, grace).await;

    assert!(
        matches!(&retry, Ok(Rotation::Rotated(s)) if s.id == session.id && s.last_used_at == stored(t1 + grace)),
        "a retry within the grace window rotates: {retry:?}"
    );
    let next = db.sessions().rotate(token("second"), token("third"), t1 + grace, grace).await;
    assert!(matches!(next, Ok(Rotation::Rotated(_))), "the successor is still unspent, once: {next:?}");
    let again = db.sessions().rotate(token("first"), token("second"), t1 + grace, grace).await;
    assert!(matches!(again, Ok(Rotation::Rotated(_))), "spending the successor does not change the retry: {again:?}");
    let later = db.sessions().rotate(token("first"), token("second"), t1 + Duration::seconds(6), grace).await;
    assert!(matches!(later, Ok(Rotation::Reused(_))), "the grace window runs from the first spend: {later:?}");
}

async fn a_token_spent_within_the_grace_window_for_another_successor_is_reused_and_nothing_is_written(
    test_db: TestDatabase,
) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (_, session) = user_with_session(&db, t0).await;
    let t1 = t0 + Duration::minutes(1);
    let grace = Duration::seconds(5);
    db.sessions().rotate(token("first"), token("second"), t1, grace).await.expect("the first rotation");
    let before = db.sessions().find(session.id).await.expect("lookup works").expect("found");

    let fork = db.sessions().rotate(token("first"), token("fork"), t1 + Duration::seconds(1), grace).await;

    assert_eq!(fork.ok(), Some(Rotation::Reused(before.clone())), "a second chain is never started");
    assert_eq!(db.sessions().find_by_refresh_token(&token("fork")).await.expect("lookup works"), None);
    assert_eq!(db.sessions().find(session.id).await.expect("lookup works"), Some(before), "the session is unchanged");
}

async fn concurrent_retries_within_the_grace_window_all_get_the_one_successor(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let t0 = Utc::now();
    let (_, session) = user_with_session(&db, t0).await;
    let now = t0 + Duration::minutes(1);
    let attempts = (0..RACERS).map(|_| {
        let sessions = db.sessions();
        tokio::spawn(async move { sessions.rotate(token("first"), token("second"), now, Duration::seconds(5)).await })
    });

    let outcomes: Vec<_> = join_all(attempts).await.into_iter().map(|joined| joined.expect("no task panics")).collect();

    assert!(
        outcomes.iter().all(|outcome| matches!(outcome, Ok(Rotation::Rotated(s)) if s.id == session.id)),
        "every presentation within the window rotates to the same successor: {outcomes:?}"
    );
    let next = db.sessions().rotate(token("second"), token("third"), now, Duration::zero()).await;
    assert!(matches!(next, Ok(Rotation::Rotated(_))), "the one successor is stored and unspent: {next:?}");
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

// ---- The admin directory: lists, changes, the last-admin rule; the audit trail; seeding ----

/// An event an admin (`actor`) causes on `user_id`'s account.
fn by_admin(actor: UserId, user_id: UserId, action: ActivityAction, at: DateTime<Utc>) -> NewActivity {
    NewActivity { actor_id: Some(actor), ..NewActivity::by_user(user_id, action, &RequestContext::default(), at) }
}

fn limit(n: i64) -> PageLimit {
    PageLimit::new(n).expect("a valid page size")
}

/// A query for every live user, newest first, `n` per page.
fn everyone(n: i64) -> UserQuery {
    UserQuery {
        search: None,
        role: None,
        status: None,
        include_deleted: false,
        sort: UserSort::CreatedAtDesc,
        limit: limit(n),
        after: None,
        now: Utc::now(),
    }
}

/// Registers a user with these fields.
async fn person(
    db: &Database,
    raw_email: &str,
    raw_username: &str,
    display_name: Option<&str>,
    roles: &[Role],
) -> User {
    let new = NewUser {
        display_name: display_name.map(|name| DisplayName::parse(name).expect("valid display name")),
        roles: roles.to_vec(),
        ..new_user(raw_email, raw_username)
    };
    db.users().register(new).await.expect("the user is created")
}

/// Every page of `query`, in order, with the number of pages.
async fn all_pages(db: &Database, mut query: UserQuery) -> (Vec<User>, usize) {
    let directory = db.directory();
    let (mut users, mut pages) = (Vec::new(), 0);
    loop {
        let page = directory.list(query.clone()).await.expect("the page loads");
        pages += 1;
        assert!(page.items.len() <= query.limit.get(), "a page holds at most `limit` users");
        users.extend(page.items);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return (users, pages),
        }
        assert!(pages < 10_000, "paging ends");
    }
}

/// The ids of `users`, in order.
fn user_ids(users: &[User]) -> Vec<UserId> {
    users.iter().map(|user| user.id).collect()
}

/// Whether `users` are in `sort` order, strictly (every position is unique).
fn in_order(users: &[User], sort: UserSort) -> bool {
    users.windows(2).all(|pair| {
        let key = |user: &User| (user.created_at, user.email.as_ref().to_lowercase(), user.id);
        let ((t0, e0, i0), (t1, e1, i1)) = (key(&pair[0]), key(&pair[1]));
        match sort {
            UserSort::CreatedAt => (t0, i0) < (t1, i1),
            UserSort::CreatedAtDesc => (t0, i0) > (t1, i1),
            UserSort::Email => (e0, i0) < (e1, i1),
            UserSort::EmailDesc => (e0, i0) > (e1, i1),
        }
    })
}

const SORTS: [UserSort; 4] = [UserSort::CreatedAt, UserSort::CreatedAtDesc, UserSort::Email, UserSort::EmailDesc];

async fn paging_visits_every_user_exactly_once_in_each_sort_order(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let seeded = db.seed_users(250, "$argon2id$seed").await.expect("the users are seeded");
    let tie = Utc::now() - Duration::days(400);
    for i in 0..10 {
        // Same creation time: only the id orders them.
        let new = NewUser { created_at: tie, ..new_user(&format!("tie{i}@example.com"), &format!("tie{i}")) };
        db.users().register(new).await.expect("the user is created");
    }

    let mut sets = Vec::new();
    for include_deleted in [true, false] {
        for sort in SORTS {
            let query = UserQuery { sort, include_deleted, ..everyone(7) };
            let (users, pages) = all_pages(&db, query).await;
            let ids: BTreeSet<UserId> = user_ids(&users).into_iter().collect();
            assert_eq!(ids.len(), users.len(), "pages are disjoint ({sort:?})");
            assert!(in_order(&users, sort), "the users come in {sort:?} order");
            assert_eq!(pages, users.len().div_ceil(7).max(1), "every page but the last is full ({sort:?})");
            if include_deleted {
                assert_eq!(users.len() as u64, seeded + 10, "every user is listed ({sort:?})");
            } else {
                assert!(users.iter().all(|user| user.deleted_at.is_none()), "only live users ({sort:?})");
            }
            sets.push((include_deleted, ids, users));
        }
    }
    let (_, everyone_ids, everyone_users) = &sets[0];
    for (include_deleted, ids, _) in &sets {
        if *include_deleted {
            assert_eq!(ids, everyone_ids, "every sort lists the same users");
        } else {
            let live: BTreeSet<UserId> =
                everyone_users.iter().filter(|user| user.deleted_at.is_none()).map(|user| user.id).collect();
            assert_eq!(ids, &live, "without deleted users, every live user is listed");
        }
    }
}

async fn paging_is_stable_while_users_are_added(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.seed_users(60, "$argon2id$seed").await.expect("the users are seeded");
    let before: BTreeSet<UserId> = user_ids(&all_pages(&db, everyone(100)).await.0).into_iter().collect();
    let mut added = 0;

    for sort in SORTS {
        let directory = db.directory();
        let mut query = UserQuery { sort, ..everyone(9) };
        let mut seen = Vec::new();
        loop {
            let page = directory.list(query.clone()).await.expect("the page loads");
            seen.extend(user_ids(&page.items));
            // New users land everywhere in the email order, and at the newest end by time.
            for prefix in ["aaa", "mmm", "zzz"] {
                added += 1;
                person(&db, &format!("{prefix}{added}@example.com"), &format!("new{added}"), None, &[]).await;
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        let unique: BTreeSet<UserId> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "no user appears twice ({sort:?})");
        assert!(before.is_subset(&unique), "no user who was there from the start is skipped ({sort:?})");
    }
}

async fn the_last_page_has_no_next_cursor(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    for i in 0..3 {
        person(&db, &format!("u{i}@example.com"), &format!("user{i}"), None, &[]).await;
    }
    let directory = db.directory();

    let exact = directory.list(everyone(3)).await.expect("the page loads");
    let first = directory.list(everyone(2)).await.expect("the page loads");
    let second = directory.list(UserQuery { after: first.next.clone(), ..everyone(2) }).await.expect("loads");
    let last = exact.items.last().expect("three users");
    let beyond = directory
        .list(UserQuery { after: Some(UserCursor::of(last, UserSort::CreatedAtDesc)), ..everyone(2) })
        .await
        .expect("the page loads");

    assert_eq!(exact.items.len(), 3);
    assert_eq!(exact.next, None, "a page that holds the rest has no next cursor");
    assert!(first.next.is_some(), "a full page with more after it has a next cursor");
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.next, None);
    assert_eq!(beyond.items, vec![], "after the last user there is nothing");
    assert_eq!(beyond.next, None);
}

/// The ids `query` lists (one page of up to 100).
async fn listed(db: &Database, query: UserQuery) -> BTreeSet<UserId> {
    let page = db.directory().list(query).await.expect("the page loads");
    page.items.iter().map(|user| user.id).collect()
}

fn set(users: &[&User]) -> BTreeSet<UserId> {
    users.iter().map(|user| user.id).collect()
}

fn searching(term: &str) -> UserQuery {
    UserQuery { search: Some(term.to_owned()), ..everyone(100) }
}

async fn search_finds_a_substring_of_the_email_username_or_display_name_in_any_case(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let grace = person(&db, "Grace.Hopper@Navy.example.com", "ghopper", Some("Rear Admiral Grace"), &[]).await;
    let alan = person(&db, "alan@example.org", "TuringA", None, &[]).await;
    let zoe = person(&db, "zoe@example.org", "zoe", Some("Zoë Ünal"), &[]).await;

    assert_eq!(listed(&db, searching("HOPPER@navy")).await, set(&[&grace]), "email, any case");
    assert_eq!(listed(&db, searching("uringa")).await, set(&[&alan]), "username, any case");
    assert_eq!(listed(&db, searching("ADMIRAL")).await, set(&[&grace]), "display name, any case");
    assert_eq!(listed(&db, searching("zoë ü")).await, set(&[&zoe]), "non-ASCII display name");
    assert_eq!(listed(&db, searching("ZOË ÜNAL")).await, set(&[&zoe]), "non-ASCII case folds on every engine");
    assert_eq!(listed(&db, searching("example")).await, set(&[&grace, &alan, &zoe]));
    assert_eq!(listed(&db, searching("nobody")).await, BTreeSet::new());
    assert_eq!(listed(&db, searching("com ghop")).await, BTreeSet::new(), "no match across two fields");
}

async fn wildcards_in_a_search_match_themselves(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let underscore = person(&db, "a_b@example.com", "under_score", None, &[]).await;
    let plain = person(&db, "axb@example.com", "plain", None, &[]).await;
    let percent = person(&db, "p@example.com", "percent", Some("100% sure"), &[]).await;
    let backslash = person(&db, "b@example.com", "backslash", Some("back\\slash"), &[]).await;

    assert_eq!(listed(&db, searching("a_b")).await, set(&[&underscore]), "_ is not a wildcard");
    assert_eq!(listed(&db, searching("a%b")).await, BTreeSet::new(), "% is not a wildcard");
    assert_eq!(listed(&db, searching("0% s")).await, set(&[&percent]));
    assert_eq!(listed(&db, searching("k\\s")).await, set(&[&backslash]), "\\ matches itself");
    assert_eq!(listed(&db, searching("axb")).await, set(&[&plain]));
}

/// Sets `user`'s stored status and lock end with SQL, as failed logins would.
async fn lock(db: &Database, user: &User, until: Option<&str>) {
    let until = until.map_or_else(|| "NULL".to_owned(), |t| format!("'{t}'"));
    let sql = format!(
        "UPDATE users SET status = 'locked', locked_until = {until} WHERE username = '{}'",
        user.username.as_ref()
    );
    assert_eq!(db.execute_sql(sql).await.expect("the lock is set"), 1);
}

async fn role_and_status_filters_judge_the_status_in_effect_now(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let admin = person(&db, "admin@example.com", "admin", None, &[Role::Admin]).await;
    let active = person(&db, "active@example.com", "active", None, &[]).await;
    let disabled = person(&db, "disabled@example.com", "disabled", None, &[]).await;
    let locked = person(&db, "locked@example.com", "locked", None, &[]).await;
    let held = person(&db, "held@example.com", "held", None, &[]).await;
    let expired = person(&db, "expired@example.com", "expired", None, &[]).await;
    let deleted = person(&db, "deleted@example.com", "deleted", None, &[]).await;
    let at = Utc::now();
    db.directory()
        .update(
            disabled.id,
            AdminChanges { status: Some(UserStatus::Disabled), ..AdminChanges::default() },
            false,
            at,
            vec![],
        )
        .await
        .expect("the user is disabled");
    lock(&db, &locked, Some("2999-01-01T00:00:00.000000Z")).await;
    lock(&db, &held, None).await;
    lock(&db, &expired, Some("2001-01-01T00:00:00.000000Z")).await;
    db.directory()
        .delete(deleted.id, at, by_admin(admin.id, deleted.id, ActivityAction::UserDeleted, at))
        .await
        .expect("deleted");
    let with = |role: Option<Role>, status: Option<UserStatus>| UserQuery { role, status, ..everyone(100) };

    let expect_active = set(&[&admin, &active, &expired]);
    assert_eq!(listed(&db, with(None, Some(UserStatus::Active))).await, expect_active, "an expired lock is active");
    assert_eq!(listed(&db, with(None, Some(UserStatus::Locked))).await, set(&[&locked, &held]));
    assert_eq!(listed(&db, with(None, Some(UserStatus::Disabled))).await, set(&[&disabled]));
    assert_eq!(listed(&db, with(Some(Role::Admin), None)).await, set(&[&admin]));
    assert_eq!(listed(&db, with(Some(Role::Admin), Some(UserStatus::Active))).await, set(&[&admin]));
    assert_eq!(listed(&db, with(Some(Role::Admin), Some(UserStatus::Disabled))).await, BTreeSet::new());
    let live = set(&[&admin, &active, &disabled, &locked, &held, &expired]);
    assert_eq!(listed(&db, with(Some(Role::User), None)).await, live, "everyone holds the user role");
    let before_expiry =
        UserQuery { now: Utc::now() - Duration::days(365 * 30), ..with(None, Some(UserStatus::Locked)) };
    assert!(listed(&db, before_expiry).await.contains(&expired.id), "the status is judged at `now`");
}

async fn deleted_users_are_listed_only_when_asked_for(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let admin = person(&db, "admin@example.com", "admin", None, &[Role::Admin]).await;
    let gone = person(&db, "gone@example.com", "gone", None, &[]).await;
    let at = Utc::now();
    db.directory()
        .delete(gone.id, at, by_admin(admin.id, gone.id, ActivityAction::UserDeleted, at))
        .await
        .expect("deleted");

    let live = db.directory().list(everyone(100)).await.expect("the page loads");
    let all = db.directory().list(UserQuery { include_deleted: true, ..everyone(100) }).await.expect("the page loads");

    assert_eq!(user_ids(&live.items), vec![admin.id]);
    assert_eq!(user_ids(&all.items), vec![gone.id, admin.id], "newest first, the deleted user too");
    assert_eq!(all.items[0].deleted_at, Some(stored(at)), "with its deletion time");
    let found = db.directory().find(gone.id).await.expect("lookup works").expect("find sees deleted users");
    assert_eq!(found.deleted_at, Some(stored(at)));
    assert_eq!(db.directory().find(UserId::generate()).await.expect("lookup works"), None);
}

async fn an_admin_update_changes_the_given_fields_revokes_sessions_and_records_its_events(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let at = Utc::now();
    let (user, session) = user_with_session(&db, at - Duration::minutes(5)).await;
    let admin = person(&db, "boss@example.com", "boss", None, &[Role::Admin]).await;
    let changes = AdminChanges {
        email: Some(email("Ada.Byron@Example.com")),
        username: Some(username("ada_byron")),
        display_name: Some(Some(DisplayName::parse("Ada Byron").expect("valid"))),
        roles: Some(vec![Role::Admin]),
        status: Some(UserStatus::Active),
    };
    let events = vec![
        by_admin(admin.id, user.id, ActivityAction::UserUpdated, at),
        by_admin(admin.id, user.id, ActivityAction::RolesChanged, at),
    ];

    let outcome = db.directory().update(user.id, changes, true, at, events).await.expect("the update succeeds");

    assert_eq!(outcome.user.email.as_ref(), "Ada.Byron@Example.com");
    assert_eq!(outcome.user.username.as_ref(), "ada_byron");
    assert_eq!(outcome.user.display_name.as_ref().map(AsRef::as_ref), Some("Ada Byron"));
    assert_eq!(outcome.user.roles, vec![Role::User, Role::Admin], "the user role is always kept");
    assert_eq!(outcome.user.updated_at, stored(at));
    assert_eq!(ids(&outcome.revoked), ids(&[session.id]), "the user's sessions are revoked");
    assert!(db.sessions().list_live(user.id, at).await.expect("listing works").is_empty());
    let by_new_email = db.users().find_credentials_by_email(&email("ada.byron@example.com")).await.expect("lookup");
    assert_eq!(by_new_email.map(|c| c.user.id), Some(user.id), "the new email is the lookup key");
    assert_eq!(listed(&db, searching("byron")).await, set(&[&outcome.user]), "search sees the new values");
    let recorded = events_of(&db, user.id).await;
    assert_eq!(&recorded[recorded.len() - 2..], &[ActivityAction::UserUpdated, ActivityAction::RolesChanged]);

    let locked = db
        .directory()
        .update(
            user.id,
            AdminChanges { status: Some(UserStatus::Locked), ..AdminChanges::default() },
            false,
            at,
            vec![],
        )
        .await
        .expect("the user is locked");
    assert_eq!((locked.user.status, locked.user.locked_until), (UserStatus::Locked, None), "locked until unlocked");
    assert_eq!(locked.revoked, vec![], "sessions are revoked only when asked");
    let cleared = db
        .directory()
        .update(user.id, AdminChanges { display_name: Some(None), ..AdminChanges::default() }, false, at, vec![])
        .await
        .expect("the display name is cleared");
    assert_eq!(cleared.user.display_name, None);
    assert_eq!(listed(&db, searching("ada byron")).await, BTreeSet::new(), "the old display name is not searched");
}

async fn an_admin_update_to_a_taken_email_or_username_is_refused_and_writes_nothing(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let ada = person(&db, "ada@example.com", "ada", None, &[]).await;
    person(&db, "grace@example.com", "grace", None, &[]).await;
    let gone = person(&db, "gone@example.com", "gone", None, &[]).await;
    let at = Utc::now();
    db.users()
        .soft_delete(
            gone.id,
            at,
            NewActivity::by_user(gone.id, ActivityAction::UserDeleted, &RequestContext::default(), at),
        )
        .await
        .expect("deleted");
    let update = |id: UserId, changes: AdminChanges| {
        let directory = db.directory();
        let event = by_admin(id, id, ActivityAction::UserUpdated, at);
        async move { directory.update(id, changes, false, at, vec![event]).await }
    };
    let to_email = |raw: &str| AdminChanges { email: Some(email(raw)), ..AdminChanges::default() };
    let to_username = |raw: &str| AdminChanges { username: Some(username(raw)), ..AdminChanges::default() };

    let email_taken = update(ada.id, to_email("GRACE@example.com")).await;
    let username_taken = update(ada.id, to_username("Grace")).await;
    let both = update(ada.id, AdminChanges { email: Some(email("grace@example.com")), ..to_username("grace") }).await;
    let unknown = update(UserId::generate(), to_username("someone")).await;
    let deleted = update(gone.id, to_username("someone")).await;
    let own_case = update(ada.id, AdminChanges { email: Some(email("ADA@example.com")), ..to_username("ADA") }).await;

    assert!(matches!(email_taken, Err(AdminChangeError::EmailTaken)), "got {email_taken:?}");
    assert!(matches!(username_taken, Err(AdminChangeError::UsernameTaken)), "got {username_taken:?}");
    assert!(matches!(both, Err(AdminChangeError::EmailTaken)), "the email wins: got {both:?}");
    assert!(matches!(unknown, Err(AdminChangeError::NotFound)), "got {unknown:?}");
    assert!(matches!(deleted, Err(AdminChangeError::NotFound)), "got {deleted:?}");
    assert!(own_case.is_ok(), "a user may keep their own email and username in another case: {own_case:?}");
    let updates = events_of(&db, ada.id).await.into_iter().filter(|a| *a == ActivityAction::UserUpdated).count();
    assert_eq!(updates, 1, "only the successful update recorded its event");
}

/// Changes that would take the admin role or an active status away from `id`.
fn demotions() -> Vec<AdminChanges> {
    vec![
        AdminChanges { roles: Some(vec![Role::User]), ..AdminChanges::default() },
        AdminChanges { roles: Some(vec![]), ..AdminChanges::default() },
        AdminChanges { status: Some(UserStatus::Disabled), ..AdminChanges::default() },
        AdminChanges { status: Some(UserStatus::Locked), ..AdminChanges::default() },
    ]
}

async fn the_last_active_admin_cannot_be_demoted_disabled_or_deleted(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let at = Utc::now();
    let admin = person(&db, "admin@example.com", "admin", None, &[Role::Admin]).await;
    let session = db.sessions().sign_in(new_session(admin.id, "admin-token", at)).await.expect("signed in");
    let other = person(&db, "locked-admin@example.com", "locked-admin", None, &[Role::Admin]).await;
    lock(&db, &other, Some("2999-01-01T00:00:00.000000Z")).await;
    let events_before = events_of(&db, admin.id).await;
    let before = db.directory().find(admin.id).await.expect("lookup works").expect("found");

    for changes in demotions() {
        let event = by_admin(admin.id, admin.id, ActivityAction::RolesChanged, at);
        let outcome = db.directory().update(admin.id, changes.clone(), true, at, vec![event]).await;
        assert!(matches!(outcome, Err(AdminChangeError::LastAdmin)), "{changes:?}: got {outcome:?}");
    }
    let deleted =
        db.directory().delete(admin.id, at, by_admin(admin.id, admin.id, ActivityAction::UserDeleted, at)).await;
    assert!(matches!(deleted, Err(AdminChangeError::LastAdmin)), "got {deleted:?}");
    let own_delete = db
        .users()
        .soft_delete(
            admin.id,
            at,
            NewActivity::by_user(admin.id, ActivityAction::UserDeleted, &RequestContext::default(), at),
        )
        .await;
    assert!(matches!(own_delete, Err(UpdateUserError::LastAdmin)), "got {own_delete:?}");

    let unchanged = db.directory().find(admin.id).await.expect("lookup works").expect("found");
    assert_eq!(unchanged, before, "nothing was written");
    assert_eq!(events_of(&db, admin.id).await, events_before, "no event was recorded");
    let live = db.sessions().list_live(admin.id, at).await.expect("listing works");
    assert_eq!(live.iter().map(|s| s.id).collect::<Vec<_>>(), vec![session.id], "no session was revoked");
    let renamed = db
        .directory()
        .update(
            admin.id,
            AdminChanges { username: Some(username("root")), ..AdminChanges::default() },
            false,
            at,
            vec![],
        )
        .await;
    assert!(renamed.is_ok(), "changes that keep the admin active are fine: {renamed:?}");
    let plain = person(&db, "plain@example.com", "plain", None, &[]).await;
    let plain_delete = db
        .users()
        .soft_delete(
            plain.id,
            at,
            NewActivity::by_user(plain.id, ActivityAction::UserDeleted, &RequestContext::default(), at),
        )
        .await;
    assert!(plain_delete.is_ok(), "other users are not held back: {plain_delete:?}");
}

async fn with_two_admins_one_may_demote_themself_but_not_the_second(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let first = person(&db, "first@example.com", "first", None, &[Role::Admin]).await;
    let second = person(&db, "second@example.com", "second", None, &[Role::Admin]).await;
    let at = Utc::now();
    let demote = AdminChanges { roles: Some(vec![Role::User]), ..AdminChanges::default() };
    let event = |id| by_admin(id, id, ActivityAction::RolesChanged, at);

    let first_demoted = db.directory().update(first.id, demote.clone(), true, at, vec![event(first.id)]).await;
    let second_demoted = db.directory().update(second.id, demote, true, at, vec![event(second.id)]).await;

    assert_eq!(first_demoted.expect("the first admin steps down").user.roles, vec![Role::User]);
    assert!(matches!(second_demoted, Err(AdminChangeError::LastAdmin)), "got {second_demoted:?}");
    assert_eq!(events_of(&db, first.id).await.last(), Some(&ActivityAction::RolesChanged));
    assert_eq!(events_of(&db, second.id).await, vec![ActivityAction::UserRegistered], "the refusal records nothing");
}

async fn two_admins_demoting_themselves_at_once_leave_exactly_one_admin(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let at = Utc::now();
    let first = person(&db, "first@example.com", "first", None, &[Role::Admin]).await;
    let second = person(&db, "second@example.com", "second", None, &[Role::Admin]).await;
    let directory = db.directory();

    for round in 0..5 {
        let steps = [first.id, second.id].map(|id| {
            let directory = directory.clone();
            let changes = if round % 2 == 0 {
                AdminChanges { roles: Some(vec![Role::User]), ..AdminChanges::default() }
            } else {
                AdminChanges { status: Some(UserStatus::Disabled), ..AdminChanges::default() }
            };
            tokio::spawn(async move { directory.update(id, changes, true, at, vec![]).await })
        });
        let outcomes = join_all(steps).await.into_iter().map(|joined| joined.expect("no panic")).collect::<Vec<_>>();

        let succeeded = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        let refused = outcomes.iter().filter(|outcome| matches!(outcome, Err(AdminChangeError::LastAdmin))).count();
        assert_eq!((succeeded, refused), (1, 1), "round {round}: {outcomes:?}");
        let admins =
            listed(&db, UserQuery { role: Some(Role::Admin), status: Some(UserStatus::Active), ..everyone(10) }).await;
        assert_eq!(admins.len(), 1, "round {round}: one active admin is left");
        let restore = AdminChanges {
            roles: Some(vec![Role::Admin]),
            status: Some(UserStatus::Active),
            ..AdminChanges::default()
        };
        for id in [first.id, second.id] {
            directory.update(id, restore.clone(), false, at, vec![]).await.expect("both are admins again");
        }
    }
}

async fn a_restored_user_is_back_with_the_event_recorded(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let admin = person(&db, "admin@example.com", "admin", None, &[Role::Admin]).await;
    let user = person(&db, "ada@example.com", "ada", None, &[]).await;
    let at = Utc::now();
    db.directory()
        .delete(user.id, at, by_admin(admin.id, user.id, ActivityAction::UserDeleted, at))
        .await
        .expect("deleted");
    let later = at + Duration::minutes(1);

    let restored = db
        .directory()
        .restore(user.id, later, by_admin(admin.id, user.id, ActivityAction::UserRestored, later))
        .await
        .expect("the user is restored");

    assert_eq!(restored.deleted_at, None);
    assert_eq!(restored.updated_at, stored(later));
    assert_eq!(db.users().find_by_id(user.id).await.expect("lookup works").map(|u| u.id), Some(user.id));
    assert_eq!(&events_of(&db, user.id).await[1..], &[ActivityAction::UserDeleted, ActivityAction::UserRestored]);
    let again =
        db.directory().restore(user.id, later, by_admin(admin.id, user.id, ActivityAction::UserRestored, later)).await;
    assert!(matches!(again, Err(AdminChangeError::NotFound)), "a live user cannot be restored: {again:?}");
    let unknown = db
        .directory()
        .restore(UserId::generate(), later, by_admin(admin.id, user.id, ActivityAction::UserRestored, later))
        .await;
    assert!(matches!(unknown, Err(AdminChangeError::NotFound)), "got {unknown:?}");
}

async fn restoring_a_user_whose_email_or_username_was_taken_meanwhile_is_refused(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let admin = person(&db, "admin@example.com", "admin", None, &[Role::Admin]).await;
    let ada = person(&db, "ada@example.com", "ada", None, &[]).await;
    let grace = person(&db, "grace@example.com", "grace", None, &[]).await;
    let at = Utc::now();
    for user in [&ada, &grace] {
        db.directory()
            .delete(user.id, at, by_admin(admin.id, user.id, ActivityAction::UserDeleted, at))
            .await
            .expect("deleted");
    }
    person(&db, "ADA@example.com", "someone", None, &[]).await;
    person(&db, "other@example.com", "Grace", None, &[]).await;
    let directory = db.directory();
    let restore = |id| directory.restore(id, at, by_admin(admin.id, id, ActivityAction::UserRestored, at));

    let email_taken = restore(ada.id).await;
    let username_taken = restore(grace.id).await;

    assert!(matches!(email_taken, Err(AdminChangeError::EmailTaken)), "got {email_taken:?}");
    assert!(matches!(username_taken, Err(AdminChangeError::UsernameTaken)), "got {username_taken:?}");
    for user in [&ada, &grace] {
        let still = db.directory().find(user.id).await.expect("lookup works").expect("found");
        assert!(still.deleted_at.is_some(), "the user stays deleted");
        assert_eq!(events_of(&db, user.id).await.last(), Some(&ActivityAction::UserDeleted), "no restore recorded");
    }
}

/// The bootstrap admin and the event that records it.
fn bootstrap(raw_email: &str) -> (NewUser, NewActivity) {
    let admin = NewUser { roles: vec![Role::Admin], ..new_user(raw_email, "admin") };
    let event = NewActivity { actor_id: None, ..registered(&admin) };
    (admin, event)
}

async fn ensure_admin_creates_promotes_or_finds_one_present(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let ada = person(&db, "ada@example.com", "ada", None, &[]).await;
    let directory = db.directory();

    let (admin, event) = bootstrap("root@example.com");
    let created = directory.ensure_admin(admin.clone(), event).await.expect("ensure_admin works");
    let EnsureAdmin::Created(created) = created else { panic!("expected Created, got {created:?}") };
    assert_eq!((created.id, created.roles.clone()), (admin.id, vec![Role::User, Role::Admin]));
    assert_eq!(events_of(&db, admin.id).await, vec![ActivityAction::UserRegistered], "the creation is recorded");

    let (again, event) = bootstrap("other@example.com");
    assert_eq!(directory.ensure_admin(again, event).await.expect("works"), EnsureAdmin::AlreadyPresent);

    let demote = AdminChanges { status: Some(UserStatus::Disabled), ..AdminChanges::default() };
    let ada_admin = AdminChanges { roles: Some(vec![Role::Admin]), ..AdminChanges::default() };
    directory.update(ada.id, ada_admin, false, Utc::now(), vec![]).await.expect("ada becomes an admin");
    directory.update(created.id, demote, false, Utc::now(), vec![]).await.expect("root is disabled");
    let ada_out = AdminChanges { status: Some(UserStatus::Disabled), ..AdminChanges::default() };
    let refused = directory.update(ada.id, ada_out, false, Utc::now(), vec![]).await;
    assert!(matches!(refused, Err(AdminChangeError::LastAdmin)), "got {refused:?}");
    db.execute_sql("DELETE FROM user_roles WHERE role = 'admin'").await.expect("no admin is left");

    let (admin, event) = bootstrap("ADA@example.com");
    let promoted = directory.ensure_admin(admin.clone(), event).await.expect("ensure_admin works");
    let EnsureAdmin::Promoted { admin: promoted, .. } = promoted else { panic!("expected Promoted, got {promoted:?}") };
    assert_eq!(promoted.id, ada.id, "the existing account is promoted");
    assert_eq!(promoted.roles, vec![Role::User, Role::Admin]);
    assert_eq!(events_of(&db, ada.id).await.last(), Some(&ActivityAction::UserRegistered), "the event is about ada");
    assert_eq!(events_of(&db, admin.id).await, vec![], "nothing about an account that was not created");
    assert_eq!(directory.find(admin.id).await.expect("lookup works"), None);
}

async fn bootstrap_hands_an_existing_account_over_with_nothing_of_the_registrant_left(test_db: TestDatabase) {
    hands_an_existing_account_over(test_db, true).await;
}

async fn create_admin_hands_an_existing_account_over_with_nothing_of_the_registrant_left(test_db: TestDatabase) {
    hands_an_existing_account_over(test_db, false).await;
}

/// Someone registered the address the operator names as admin, with their own password,
/// and never verified it. Handing the account over (at bootstrap, or with `create-admin`)
/// must leave them no way in.
async fn hands_an_existing_account_over(test_db: TestDatabase, bootstrap_path: bool) {
    let db = migrated(&test_db).await;
    let at = Utc::now();
    let (stranger, session) = user_with_session(&db, at).await;
    let reset = token_mail(stranger.id, "ada@example.com", TokenKind::PasswordReset, "h-r", at, Duration::hours(1));
    db.one_time_tokens().issue(reset, None).await.expect("issued");
    db.execute_sql("DELETE FROM user_roles WHERE role = 'admin'").await.expect("no admin");
    let operator = PasswordHash::new("$argon2id$operator".to_owned());
    let (admin, event) = bootstrap("ADA@example.com");
    let admin = NewUser { password_hash: Some(operator.clone()), ..admin };

    let outcome = if bootstrap_path {
        db.directory().ensure_admin(admin, event).await
    } else {
        db.directory().make_admin(admin, event).await
    }
    .expect("works");

    let EnsureAdmin::Promoted { admin, revoked } = outcome else { panic!("expected Promoted, got {outcome:?}") };
    assert_eq!(admin.id, stranger.id);
    assert_eq!(admin.roles, vec![Role::User, Role::Admin]);
    assert!(admin.email_verified(), "the operator vouches for the address");
    assert_eq!(revoked, vec![session.id], "the registrant's session ends");
    let credentials = db.users().find_credentials_by_email(&email("ada@example.com")).await.expect("lookup");
    assert_eq!(credentials.expect("found").password_hash, Some(operator), "the operator's password");
    let live = db.one_time_tokens().find_live(TokenKind::PasswordReset, &token("h-r"), at).await.expect("lookup");
    assert!(live.is_none(), "no link mailed before survives");
}

async fn concurrent_ensure_admin_calls_create_exactly_one_admin(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let directory = db.directory();

    let calls = (0..4).map(|_| {
        let directory = directory.clone();
        let (admin, event) = bootstrap("root@example.com");
        tokio::spawn(async move { directory.ensure_admin(admin, event).await })
    });
    let outcomes =
        join_all(calls).await.into_iter().map(|joined| joined.expect("no panic").expect("works")).collect::<Vec<_>>();

    let created = outcomes.iter().filter(|outcome| matches!(outcome, EnsureAdmin::Created(_))).count();
    let present = outcomes.iter().filter(|outcome| **outcome == EnsureAdmin::AlreadyPresent).count();
    assert_eq!((created, present), (1, 3), "{outcomes:?}");
    assert_eq!(listed(&db, UserQuery { include_deleted: true, ..everyone(10) }).await.len(), 1, "one account exists");
}

/// An event about `user_id` of `action` at `at`.
fn event_at(user_id: UserId, action: ActivityAction, at: DateTime<Utc>) -> NewActivity {
    NewActivity::by_user(user_id, action, &RequestContext::default(), at)
}

async fn the_audit_trail_lists_newest_first_with_filters_and_pages(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let ada = person(&db, "ada@example.com", "ada", None, &[]).await;
    let grace = person(&db, "grace@example.com", "grace", None, &[]).await;
    let t0 = stored(Utc::now() - Duration::days(1));
    let log = db.activity();
    let mut written = Vec::new();
    for i in 0..12 {
        let (user, action) =
            if i % 3 == 0 { (&grace, ActivityAction::LoginFailed) } else { (&ada, ActivityAction::LoginSucceeded) };
        // Pairs share a time: the id breaks the tie.
        let event = event_at(user.id, action, t0 + Duration::minutes(i / 2)).with_detail("attempt", i);
        log.record(event.clone()).await.expect("the event is recorded");
        written.push(event);
    }
    let newest_first = |events: Vec<&NewActivity>| {
        let mut events: Vec<NewActivity> = events.into_iter().cloned().collect();
        events.sort_by_key(|event| std::cmp::Reverse((event.created_at, event.id)));
        events
    };
    let pages = |query: ActivityQuery| {
        let log = db.activity();
        async move {
            let mut query = query;
            let mut events = Vec::new();
            loop {
                let page = log.list(query.clone()).await.expect("the page loads");
                assert!(page.items.len() <= query.limit.get());
                events.extend(page.items);
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => return events,
                }
            }
        }
    };
    // Leaves out the two registrations.
    let recent =
        |events: Vec<NewActivity>| events.into_iter().filter(|e| e.details.contains_key("attempt")).collect::<Vec<_>>();
    let base = ActivityQuery { limit: limit(5), ..ActivityQuery::default() };

    let everything = recent(pages(base.clone()).await);
    assert_eq!(everything, newest_first(written.iter().collect()), "every event, newest first, across pages");
    let of_grace = pages(ActivityQuery { user_id: Some(grace.id), ..base.clone() }).await;
    let expected: Vec<&NewActivity> = written.iter().filter(|e| e.user_id == grace.id).collect();
    assert_eq!(recent(of_grace), newest_first(expected), "filtered by user");
    let failed = pages(ActivityQuery { action: Some(ActivityAction::LoginFailed), ..base.clone() }).await;
    assert_eq!(failed, newest_first(written.iter().filter(|e| e.action == ActivityAction::LoginFailed).collect()));
    let (since, until) = (t0 + Duration::minutes(1), t0 + Duration::minutes(4));
    let window = pages(ActivityQuery { since: Some(since), until: Some(until), ..base.clone() }).await;
    let expected = written.iter().filter(|e| e.created_at >= since && e.created_at < until).collect();
    assert_eq!(window, newest_first(expected), "since is inclusive, until exclusive");
    let combined = pages(ActivityQuery {
        user_id: Some(ada.id),
        action: Some(ActivityAction::LoginSucceeded),
        since: Some(since),
        ..base.clone()
    })
    .await;
    let expected = written.iter().filter(|e| e.user_id == ada.id && e.created_at >= since).collect();
    assert_eq!(combined, newest_first(expected), "filters combine");
    let none = log.list(ActivityQuery { action: Some(ActivityAction::AvatarChanged), ..base }).await.expect("loads");
    assert_eq!((none.items.len(), none.next), (0, None));
}

async fn seeding_inserts_the_requested_number_of_realistic_users(test_db: TestDatabase) {
    let db = migrated(&test_db).await;

    let inserted = db.seed_users(1_000, "$argon2id$v=19$seeded").await.expect("the users are seeded");
    let more = db.seed_users(10, "$argon2id$v=19$seeded").await.expect("seeding again adds more users");

    assert_eq!((inserted, more), (1_000, 10));
    let (users, _) = all_pages(&db, UserQuery { include_deleted: true, ..everyone(100) }).await;
    assert_eq!(users.len(), 1_010);
    let now = Utc::now();
    let count = |f: &dyn Fn(&User) -> bool| users.iter().filter(|user| f(user)).count();
    let admins = count(&|user| user.has_role(Role::Admin));
    let deleted = count(&|user| user.deleted_at.is_some());
    let disabled = count(&|user| user.status == UserStatus::Disabled);
    let locked = count(&|user| user.status_at(now) == UserStatus::Locked);
    let expired_locks = count(&|user| user.status == UserStatus::Locked && user.status_at(now) == UserStatus::Active);
    assert!((1..=40).contains(&admins), "about 1% admins: {admins}");
    assert!((5..=80).contains(&deleted), "about 3% deleted: {deleted}");
    assert!((3..=60).contains(&disabled), "about 2% disabled: {disabled}");
    assert!((2..=50).contains(&locked), "about 1.5% locked: {locked}");
    assert!(expired_locks >= 1, "some locks have run out: {expired_locks}");
    assert!(users.iter().all(|user| user.roles.contains(&Role::User)), "everyone holds the user role");
    assert!(count(&|user| user.display_name.is_some()) > 500, "most have a display name");
    let oldest = users.iter().map(|user| user.created_at).min().expect("users");
    assert!(oldest < now - Duration::days(365), "creation times spread over years");
    let credentials = db
        .users()
        .find_credentials_by_email(&users.iter().find(|u| u.deleted_at.is_none()).expect("a live user").email)
        .await;
    let hash = credentials.expect("lookup works").expect("found").password_hash;
    assert_eq!(hash, Some(PasswordHash::new("$argon2id$v=19$seeded".to_owned())), "everyone shares the hash");
}

fn token_mail(user_id: UserId, to: &str, kind: TokenKind, hash: &str, at: DateTime<Utc>, ttl: Duration) -> TokenMail {
    let content = match kind {
        TokenKind::PasswordReset => {
            EmailContent::PasswordReset { token: SecretString::from(format!("secret-{hash}")), expires_at: at + ttl }
        }
        _ => EmailContent::VerifyEmail { token: SecretString::from(format!("secret-{hash}")), expires_at: at + ttl },
    };
    TokenMail {
        token: NewOneTimeToken { kind, user_id, hash: token(hash), created_at: at, expires_at: at + ttl },
        email: OutgoingEmail {
            id: EmailId::generate(),
            to: email(to),
            recipient_name: "Ada".to_owned(),
            content,
            created_at: at,
        },
    }
}

async fn registered_with_verification(db: &Database, raw_email: &str, hash: &str) -> User {
    let new = new_user(raw_email, &raw_email.replace(['@', '.'], "_"));
    let event = registered(&new);
    let mail = token_mail(new.id, raw_email, TokenKind::EmailVerification, hash, Utc::now(), Duration::hours(24));
    db.users().create(new, event, AccountCompanion::Verification(mail)).await.expect("the user is created")
}

async fn a_registration_stores_its_verification_token_and_queues_its_mail_or_neither(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = registered_with_verification(&db, "ada@example.com", "h-ada").await;

    let live = db.one_time_tokens().find_live(TokenKind::EmailVerification, &token("h-ada"), Utc::now()).await;
    let refused = db
        .users()
        .create(
            new_user("ada@example.com", "other"),
            registered(&new_user("x@example.com", "xyz")),
            AccountCompanion::Verification(token_mail(
                UserId::generate(),
                "ada@example.com",
                TokenKind::EmailVerification,
                "h-refused",
                Utc::now(),
                Duration::hours(1),
            )),
        )
        .await;

    assert_eq!(live.expect("lookup").map(|t| t.user_id), Some(user.id));
    assert!(matches!(refused, Err(CreateUserError::EmailTaken)), "{refused:?}");
    let rows = db.outbox_rows().await.expect("outbox");
    assert_eq!(rows.len(), 1, "only the successful registration queued mail: {rows:?}");
    assert_eq!(
        (rows[0].recipient.as_str(), rows[0].template.as_str(), rows[0].status.as_str()),
        ("ada@example.com", "verify_email", "pending")
    );
    assert!(rows[0].has_payload);
    let refused_token =
        db.one_time_tokens().find_live(TokenKind::EmailVerification, &token("h-refused"), Utc::now()).await;
    assert!(refused_token.expect("lookup").is_none(), "the refused registration stored no token");
}

async fn a_newer_token_of_the_same_kind_invalidates_the_older_ones(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = registered_with_verification(&db, "ada@example.com", "h-first").await;
    let tokens = db.one_time_tokens();
    let now = Utc::now();
    tokens
        .issue(
            token_mail(user.id, "ada@example.com", TokenKind::PasswordReset, "h-reset", now, Duration::hours(1)),
            None,
        )
        .await
        .expect("issued");

    tokens
        .issue(
            token_mail(user.id, "ada@example.com", TokenKind::EmailVerification, "h-second", now, Duration::hours(24)),
            None,
        )
        .await
        .expect("issued");

    let find = |hash: &'static str, kind| {
        let tokens = tokens.clone();
        async move { tokens.find_live(kind, &token(hash), Utc::now()).await.expect("lookup").is_some() }
    };
    assert!(!find("h-first", TokenKind::EmailVerification).await, "the older verification token is gone");
    assert!(find("h-second", TokenKind::EmailVerification).await);
    assert!(find("h-reset", TokenKind::PasswordReset).await, "another kind is untouched");
    assert!(!find("h-reset", TokenKind::EmailVerification).await, "a token works only for its kind");
    assert_eq!(db.outbox_rows().await.expect("outbox").len(), 3, "every issue queued its mail");
}

async fn issuing_a_token_records_the_event_with_it(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = registered_with_verification(&db, "ada@example.com", "h").await;
    let event =
        NewActivity::by_user(user.id, ActivityAction::PasswordResetRequested, &RequestContext::default(), Utc::now());

    db.one_time_tokens()
        .issue(
            token_mail(user.id, "ada@example.com", TokenKind::PasswordReset, "h-r", Utc::now(), Duration::hours(1)),
            Some(event),
        )
        .await
        .expect("issued");

    assert_eq!(
        events_of(&db, user.id).await,
        vec![ActivityAction::UserRegistered, ActivityAction::PasswordResetRequested]
    );
}

async fn verifying_spends_the_token_once_and_marks_the_email_verified(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = registered_with_verification(&db, "ada@example.com", "h-v").await;
    let users = db.users();
    let at = Utc::now();
    let event = || NewActivity::by_user(user.id, ActivityAction::EmailVerified, &RequestContext::default(), at);

    let wrong_user = users.verify_email(token("h-v"), UserId::generate(), at, event()).await;
    let first = users.verify_email(token("h-v"), user.id, at, event()).await;
    let second = users.verify_email(token("h-v"), user.id, at, event()).await;

    assert!(matches!(wrong_user, Err(UseTokenError::Invalid)), "{wrong_user:?}");
    assert!(first.is_ok(), "{first:?}");
    assert!(matches!(second, Err(UseTokenError::Invalid)), "{second:?}");
    let found = users.find_by_id(user.id).await.expect("lookup").expect("found");
    assert_eq!(found.email_verified_at, Some(stored(at)));
    assert_eq!(
        events_of(&db, user.id).await,
        vec![ActivityAction::UserRegistered, ActivityAction::EmailVerified],
        "one event, for the use that worked"
    );
    assert!(
        db.one_time_tokens()
            .find_live(TokenKind::EmailVerification, &token("h-v"), at)
            .await
            .expect("lookup")
            .is_none()
    );
}

async fn a_lock_stores_its_token_mail_and_event_and_the_unlock_link_ends_it_once(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = registered_with_verification(&db, "ada@example.com", "h-v").await;
    let users = db.users();
    let at = Utc::now();
    let until = at + Duration::minutes(15);
    let locked_event = || NewActivity {
        actor_id: None,
        ..NewActivity::by_user(user.id, ActivityAction::AccountLocked, &RequestContext::default(), at)
    };
    let mail = || token_mail(user.id, "ada@example.com", TokenKind::AccountUnlock, "h-u", at, Duration::minutes(15));

    let first = users.lock(user.id, until, at, mail(), locked_event()).await.expect("locks");
    let again = users.lock(user.id, until, at, mail(), locked_event()).await.expect("answers");

    assert!(first, "an active account is locked");
    assert!(!again, "a locked account is not locked again");
    let found = users.find_by_id(user.id).await.expect("lookup").expect("found");
    assert_eq!((found.status, found.locked_until), (UserStatus::Locked, Some(stored(until))));
    assert_eq!(db.outbox_rows().await.expect("outbox").len(), 2, "the verification and the lock email");
    let unlocked_event = NewActivity::by_user(user.id, ActivityAction::AccountUnlocked, &RequestContext::default(), at);
    let wrong_kind = users.unlock(token("h-v"), user.id, at, unlocked_event.clone()).await;
    let unlocked = users.unlock(token("h-u"), user.id, at, unlocked_event.clone()).await;
    let replayed = users.unlock(token("h-u"), user.id, at, unlocked_event).await;
    assert!(matches!(wrong_kind, Err(UseTokenError::Invalid)), "{wrong_kind:?}");
    assert!(unlocked.is_ok(), "{unlocked:?}");
    assert!(matches!(replayed, Err(UseTokenError::Invalid)), "{replayed:?}");
    let found = users.find_by_id(user.id).await.expect("lookup").expect("found");
    assert_eq!((found.status, found.locked_until), (UserStatus::Active, None));
    assert_eq!(
        events_of(&db, user.id).await,
        vec![ActivityAction::UserRegistered, ActivityAction::AccountLocked, ActivityAction::AccountUnlocked]
    );
}

async fn an_unlock_link_lifts_only_the_lockout_that_sent_it(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = registered_with_verification(&db, "ada@example.com", "h-v").await;
    let users = db.users();
    let at = Utc::now();
    let locked_event = || NewActivity::by_user(user.id, ActivityAction::AccountLocked, &RequestContext::default(), at);
    let unlocked_event =
        || NewActivity::by_user(user.id, ActivityAction::AccountUnlocked, &RequestContext::default(), at);
    let mail = |hash| token_mail(user.id, "ada@example.com", TokenKind::AccountUnlock, hash, at, Duration::minutes(15));
    let until = at + Duration::minutes(15);

    assert!(users.lock(user.id, until, at, mail("h-u1"), locked_event()).await.expect("locks"));
    let admin_lock = AdminChanges { status: Some(UserStatus::Locked), ..AdminChanges::default() };
    db.directory().update(user.id, admin_lock, true, at, Vec::new()).await.expect("an admin locks");
    let after_admin = users.unlock(token("h-u1"), user.id, at, unlocked_event()).await;
    assert!(
        matches!(after_admin, Err(UseTokenError::Invalid)),
        "an admin's status change voids the link: {after_admin:?}"
    );

    let unlocked = AdminChanges { status: Some(UserStatus::Active), ..AdminChanges::default() };
    db.directory().update(user.id, unlocked, true, at, Vec::new()).await.expect("an admin unlocks");
    assert!(users.lock(user.id, until, at, mail("h-u2"), locked_event()).await.expect("locks again"));
    // An admin's lock set behind the store's back, with the lockout's link still live.
    lock(&db, &user, None).await;
    let _ = users.unlock(token("h-u2"), user.id, at, unlocked_event()).await;
    let found = users.find_by_id(user.id).await.expect("lookup").expect("found");
    assert_eq!((found.status, found.locked_until), (UserStatus::Locked, None), "a lock without an end stays");
}

async fn a_password_change_voids_the_reset_and_unlock_links_mailed_before(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = registered_with_verification(&db, "ada@example.com", "h-v").await;
    let at = Utc::now();
    let tokens = db.one_time_tokens();
    for (kind, hash) in [(TokenKind::PasswordReset, "h-r"), (TokenKind::AccountUnlock, "h-u")] {
        tokens
            .issue(token_mail(user.id, "ada@example.com", kind, hash, at, Duration::hours(1)), None)
            .await
            .expect("issued");
    }
    let live = |kind, hash: &'static str| {
        let tokens = db.one_time_tokens();
        async move { tokens.find_live(kind, &token(hash), at).await.expect("lookup").is_some() }
    };
    assert!(live(TokenKind::PasswordReset, "h-r").await && live(TokenKind::AccountUnlock, "h-u").await);

    let event = NewActivity::by_user(user.id, ActivityAction::PasswordChanged, &RequestContext::default(), at);
    db.users()
        .change_password(user.id, PasswordHash::new("$argon2id$new".to_owned()), None, at, event)
        .await
        .expect("changed");
    assert!(!live(TokenKind::PasswordReset, "h-r").await, "a reset link dies with a password change");
    assert!(!live(TokenKind::AccountUnlock, "h-u").await, "so does an unlock link");
}

async fn expired_tokens_and_tokens_of_another_kind_or_a_deleted_user_are_invalid(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = registered_with_verification(&db, "ada@example.com", "h-v").await;
    let users = db.users();
    let later = Utc::now() + Duration::hours(25);
    let event = |at| NewActivity::by_user(user.id, ActivityAction::PasswordReset, &RequestContext::default(), at);

    let expired = users.verify_email(token("h-v"), user.id, later, event(later)).await;
    let wrong_kind = users
        .reset_password(
            token("h-v"),
            user.id,
            PasswordHash::new("$x".to_owned()),
            Utc::now(),
            event(Utc::now()),
            token_mail(user.id, "ada@example.com", TokenKind::PasswordReset, "n", Utc::now(), Duration::hours(1)).email,
        )
        .await;
    assert!(
        db.one_time_tokens()
            .find_live(TokenKind::EmailVerification, &token("h-v"), later)
            .await
            .expect("lookup")
            .is_none(),
        "expired"
    );
    users.soft_delete(user.id, Utc::now(), event(Utc::now())).await.expect("deleted");
    let deleted = users.verify_email(token("h-v"), user.id, Utc::now(), event(Utc::now())).await;

    assert!(matches!(expired, Err(UseTokenError::Invalid)), "{expired:?}");
    assert!(matches!(wrong_kind, Err(UseTokenError::Invalid)), "{wrong_kind:?}");
    assert!(matches!(deleted, Err(UseTokenError::Invalid)), "{deleted:?}");
    assert_eq!(db.outbox_rows().await.expect("outbox").len(), 1, "the refused reset queued no notice");
}

async fn concurrent_uses_of_one_token_let_exactly_one_win(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = registered_with_verification(&db, "ada@example.com", "h-v").await;
    let at = Utc::now();

    let outcomes = join_all((0..RACERS).map(|_| {
        let users = db.users();
        let event = NewActivity::by_user(user.id, ActivityAction::EmailVerified, &RequestContext::default(), at);
        async move { users.verify_email(token("h-v"), user.id, at, event).await }
    }))
    .await;

    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o, Ok(()) | Err(UseTokenError::Invalid))), "{outcomes:?}");
}

async fn a_reset_sets_the_password_verifies_the_email_revokes_every_session_and_queues_the_notice(
    test_db: TestDatabase,
) {
    let db = migrated(&test_db).await;
    let user = registered_with_verification(&db, "ada@example.com", "h-v").await;
    let sessions = db.sessions();
    let first = sessions.sign_in(new_session(user.id, "rt-1", Utc::now())).await.expect("session");
    let second = sessions.sign_in(new_session(user.id, "rt-2", Utc::now())).await.expect("session");
    let now = Utc::now();
    db.one_time_tokens()
        .issue(token_mail(user.id, "ada@example.com", TokenKind::PasswordReset, "h-r", now, Duration::hours(1)), None)
        .await
        .expect("issued");
    let notice = OutgoingEmail {
        id: EmailId::generate(),
        to: email("ada@example.com"),
        recipient_name: "Ada".to_owned(),
        content: EmailContent::PasswordChanged { changed_at: now },
        created_at: now,
    };
    let event = NewActivity::by_user(user.id, ActivityAction::PasswordReset, &RequestContext::default(), now);

    let revoked = db
        .users()
        .reset_password(token("h-r"), user.id, PasswordHash::new("$argon2id$new".to_owned()), now, event, notice)
        .await
        .expect("reset");

    assert_eq!(ids(&revoked), ids(&[first.id, second.id]));
    let credentials = db.users().find_credentials_by_id(user.id).await.expect("lookup").expect("found");
    assert_eq!(credentials.password_hash.as_ref().map(PasswordHash::as_str), Some("$argon2id$new"));
    assert_eq!(credentials.user.email_verified_at, Some(stored(now)), "the reset link proved the mailbox");
    assert!(sessions.list_live(user.id, now).await.expect("list").is_empty());
    let templates: Vec<String> = db.outbox_rows().await.expect("outbox").into_iter().map(|row| row.template).collect();
    assert_eq!(templates, vec!["verify_email", "password_reset", "password_changed"]);
    assert_eq!(events_of(&db, user.id).await.last(), Some(&ActivityAction::PasswordReset));
}

/// Queues `count` messages for one user, one per issued token.
async fn queued(db: &Database, count: usize) -> Vec<EmailId> {
    let user = registered_with_verification(db, "ada@example.com", "h-0").await;
    for n in 1..count {
        let at = Utc::now() - Duration::seconds(1);
        db.one_time_tokens()
            .issue(
                token_mail(
                    user.id,
                    "ada@example.com",
                    TokenKind::EmailVerification,
                    &format!("h-{n}"),
                    at,
                    Duration::hours(1),
                ),
                None,
            )
            .await
            .expect("issued");
    }
    db.outbox_rows().await.expect("outbox").into_iter().map(|row| row.id).collect()
}

async fn claims_lease_due_messages_oldest_first_and_a_lapsed_lease_can_be_claimed_again(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let all = queued(&db, 3).await;
    let outbox = db.email_outbox();
    let now = Utc::now();
    let lease = Duration::seconds(30);

    let first = outbox.claim(now, lease, 2).await.expect("claim");
    let second = outbox.claim(now, lease, 2).await.expect("claim");
    let none = outbox.claim(now + Duration::seconds(29), lease, 10).await.expect("claim");
    let again = outbox.claim(now + Duration::seconds(31), lease, 10).await.expect("claim");

    assert_eq!(first.iter().map(|c| c.email.id).collect::<Vec<_>>(), all[..2].to_vec(), "oldest first");
    assert_eq!(second.iter().map(|c| c.email.id).collect::<Vec<_>>(), all[2..].to_vec());
    assert!(none.is_empty(), "leased messages are not claimed again within the lease");
    assert_eq!(again.len(), 3, "every lease lapsed");
    assert!(again.iter().all(|c| c.attempts == 2), "each claim counts an attempt");
    let message = &first[0];
    assert!(
        matches!(&message.email.content, EmailContent::VerifyEmail { token, .. } if token.expose_secret().starts_with("secret-h-"))
    );
    assert_eq!(message.email.to, email("ada@example.com"));
    assert!(
        !outbox.mark_sent(message.email.id, message.claim, now).await.expect("mark"),
        "the old lease was taken over"
    );
    let current = again.iter().find(|c| c.email.id == message.email.id).expect("reclaimed");
    assert!(outbox.mark_sent(current.email.id, current.claim, now).await.expect("mark"));
    let row = db.outbox_rows().await.expect("outbox").into_iter().find(|r| r.id == current.email.id).expect("row");
    assert_eq!(row.status, "sent");
    assert!(!row.has_payload, "the token is forgotten once sent");
    assert!(
        outbox
            .claim(now + Duration::hours(1), lease, 10)
            .await
            .expect("claim")
            .iter()
            .all(|c| c.email.id != current.email.id),
        "sent messages are never claimed"
    );
}

async fn a_retried_message_comes_back_when_due_and_a_failed_one_never(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    queued(&db, 2).await;
    let outbox = db.email_outbox();
    let now = Utc::now();
    let lease = Duration::seconds(30);
    let claimed = outbox.claim(now, lease, 10).await.expect("claim");
    let (retried, failed) = (&claimed[0], &claimed[1]);

    assert!(
        outbox
            .schedule_retry(retried.email.id, retried.claim, now + Duration::seconds(5), "421 try later".to_owned())
            .await
            .expect("retry")
    );
    assert!(outbox.mark_failed(failed.email.id, failed.claim, now, "550 no such user".to_owned()).await.expect("fail"));

    assert!(outbox.claim(now + Duration::seconds(4), lease, 10).await.expect("claim").is_empty(), "not due yet");
    let due = outbox.claim(now + Duration::seconds(5), lease, 10).await.expect("claim");
    assert_eq!(due.iter().map(|c| (c.email.id, c.attempts)).collect::<Vec<_>>(), vec![(retried.email.id, 2)]);
    let rows = db.outbox_rows().await.expect("outbox");
    let failed_row = rows.iter().find(|r| r.id == failed.email.id).expect("row");
    assert_eq!(
        (failed_row.status.as_str(), failed_row.last_error.as_deref(), failed_row.has_payload),
        ("failed", Some("550 no such user"), false)
    );
    let retried_row = rows.iter().find(|r| r.id == retried.email.id).expect("row");
    assert_eq!(retried_row.last_error.as_deref(), Some("421 try later"));
}

async fn concurrent_claims_never_lease_one_message_twice(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let all = queued(&db, 60).await;
    let now = Utc::now();

    let per_relay = join_all((0..RACERS).map(|_| {
        let outbox = db.email_outbox();
        async move {
            let mut mine = Vec::new();
            loop {
                let batch = outbox.claim(now, Duration::seconds(60), 3).await.expect("claim");
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|c| c.email.id));
            }
        }
    }))
    .await;

    let claimed: Vec<EmailId> = per_relay.into_iter().flatten().collect();
    let unique: BTreeSet<String> = claimed.iter().map(ToString::to_string).collect();
    assert_eq!(claimed.len(), all.len(), "every message claimed once");
    assert_eq!(unique.len(), all.len(), "no message claimed twice");
}

async fn an_outbox_row_keeps_its_token_sealed_and_the_relay_gets_it_in_the_clear(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    registered_with_verification(&db, "ada@example.com", "h-ada").await;

    let rows = db.outbox_rows().await.expect("outbox");
    let claimed = db.email_outbox().claim(Utc::now(), Duration::seconds(30), 10).await.expect("claim");

    let raw = rows[0].raw_payload.as_deref().expect("a pending row keeps its payload");
    assert!(!raw.contains("secret-h-ada"), "the stored payload shows the token: {raw}");
    let sealed: serde_json::Value = serde_json::from_str(raw).expect("the payload is JSON");
    assert!(sealed["sealed_token"].as_str().is_some_and(|t| t.starts_with("sealed1.")), "stored sealed: {raw}");
    assert!(raw.contains("expires_at"), "the rest of the payload stays readable: {raw}");
    assert!(
        matches!(&claimed[0].email.content, EmailContent::VerifyEmail { token, .. } if token.expose_secret() == "secret-h-ada"),
        "the relay gets the token back"
    );
}

async fn a_row_sealed_with_a_retired_key_still_relays(test_db: TestDatabase) {
    let before = unsealed(&test_db).await.with_secret_cipher(cipher(1, &[]));
    registered_with_verification(&before, "ada@example.com", "h-ada").await;

    let rotated = unsealed(&test_db).await.with_secret_cipher(cipher(2, &[1]));
    let claimed = rotated.email_outbox().claim(Utc::now(), Duration::seconds(30), 10).await.expect("claim");

    assert_eq!(claimed.len(), 1, "the row sealed with the retired key is claimed");
    assert!(
        matches!(&claimed[0].email.content, EmailContent::VerifyEmail { token, .. } if token.expose_secret() == "secret-h-ada")
    );
}

async fn a_row_whose_key_is_gone_fails_cleanly_and_the_others_still_relay(test_db: TestDatabase) {
    let before = unsealed(&test_db).await.with_secret_cipher(cipher(1, &[]));
    registered_with_verification(&before, "ada@example.com", "h-ada").await;
    let wrong = unsealed(&test_db).await.with_secret_cipher(cipher(3, &[]));
    registered_with_verification(&wrong, "bob@example.com", "h-bob").await;

    let claimed = wrong.email_outbox().claim(Utc::now(), Duration::seconds(30), 10).await;

    let claimed = claimed.expect("an unreadable row does not fail the claim");
    assert_eq!(claimed.iter().map(|c| c.email.to.as_ref()).collect::<Vec<_>>(), vec!["bob@example.com"]);
    let rows = wrong.outbox_rows().await.expect("outbox");
    let ada = rows.iter().find(|row| row.recipient == "ada@example.com").expect("ada's row");
    assert_eq!((ada.status.as_str(), ada.has_payload), ("failed", false), "{ada:?}");
    let error = ada.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("unknown key"), "the reason names the missing key: {error}");
}

async fn a_row_written_before_tokens_were_sealed_still_relays(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    registered_with_verification(&db, "ada@example.com", "h-ada").await;
    db.execute_sql(
        "UPDATE email_outbox SET payload = '{\"token\":\"plain-old-token\",\"expires_at\":\"2030-01-01T00:00:00Z\"}'",
    )
    .await
    .expect("the row is put back as an older release wrote it");

    let claimed = db.email_outbox().claim(Utc::now(), Duration::seconds(30), 10).await.expect("claim");

    assert!(
        matches!(&claimed[0].email.content, EmailContent::VerifyEmail { token, .. } if token.expose_secret() == "plain-old-token"),
        "{claimed:?}"
    );
}

async fn without_a_cipher_a_token_is_never_stored(test_db: TestDatabase) {
    let db = unsealed(&test_db).await;
    let new = new_user("ada@example.com", "ada");
    let mail = token_mail(new.id, "ada@example.com", TokenKind::EmailVerification, "h", Utc::now(), Duration::hours(1));

    let created = db.users().create(new.clone(), registered(&new), AccountCompanion::Verification(mail)).await;

    assert!(matches!(created, Err(CreateUserError::Unexpected(_))), "{created:?}");
    assert!(db.outbox_rows().await.expect("outbox").is_empty());
    assert!(db.users().find_by_id(new.id).await.expect("lookup").is_none(), "nothing was written");
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

async fn only_the_avatar_keys_users_point_at_are_referenced(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let ada = db.users().register(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let bob = db.users().register(new_user("bob@example.com", "bob")).await.expect("the user is created");
    let at = ada.created_at + Duration::minutes(1);
    let current = avatar(ada.id, "ab", AvatarFormat::Png);
    let replaced = avatar(ada.id, "cd", AvatarFormat::Jpeg);
    let deleted_users = avatar(bob.id, "ef", AvatarFormat::WebP);
    let same_bytes_other_user = avatar(bob.id, "ab", AvatarFormat::Png);
    let never_set = avatar(UserId::generate(), "ab", AvatarFormat::Png);
    db.users().set_avatar(ada.id, Some(replaced.clone()), at, avatar_event(ada.id, at)).await.expect("set");
    db.users().set_avatar(ada.id, Some(current.clone()), at, avatar_event(ada.id, at)).await.expect("replaced");
    db.users().set_avatar(bob.id, Some(deleted_users.clone()), at, avatar_event(bob.id, at)).await.expect("set");
    let event = NewActivity::by_user(bob.id, ActivityAction::UserDeleted, &RequestContext::default(), at);
    db.users().soft_delete(bob.id, at, event).await.expect("deleted");

    let referenced = db
        .users()
        .referenced_avatar_keys(vec![
            current.key.clone(),
            replaced.key.clone(),
            deleted_users.key.clone(),
            same_bytes_other_user.key.clone(),
            never_set.key.clone(),
        ])
        .await
        .expect("the query works");

    assert_eq!(referenced, std::collections::HashSet::from([current.key]), "only ada's current image");
    let none = db.users().referenced_avatar_keys(Vec::new()).await.expect("the query works");
    assert!(none.is_empty());
}

fn identity(provider: &str, provider_user_id: &str, user_id: UserId) -> Identity {
    Identity {
        provider: provider.to_owned(),
        provider_user_id: provider_user_id.to_owned(),
        user_id,
        email: Some(email("ada@example.com")),
        linked_at: Utc::now().trunc_subsecs(6),
    }
}

fn linked(user_id: UserId, action: ActivityAction) -> NewActivity {
    NewActivity::by_user(user_id, action, &RequestContext::default(), Utc::now())
}

async fn identities_link_once_and_unlink_only_while_another_way_to_sign_in_remains(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let mut user = new_user("ada@example.com", "ada");
    user.password_hash = None;
    let id = user.id;
    db.users().register(user).await.expect("created");
    let other = db.users().register(new_user("bob@example.com", "bob")).await.expect("created");
    let identities = db.identities();

    let github = identity("github", "42", id);
    identities.link(github.clone(), linked(id, ActivityAction::OAuthLinked)).await.expect("linked");
    let again =
        identities.link(identity("github", "42", other.id), linked(other.id, ActivityAction::OAuthLinked)).await;
    let second_of_provider =
        identities.link(identity("github", "43", id), linked(id, ActivityAction::OAuthLinked)).await;

    assert!(matches!(again, Err(LinkIdentityError::AlreadyLinked)), "a provider account links once: {again:?}");
    assert!(matches!(second_of_provider, Err(LinkIdentityError::AlreadyLinked)), "{second_of_provider:?}");
    assert_eq!(identities.find("github", "42").await.expect("found"), Some(github.clone()));
    assert_eq!(identities.list(id).await.expect("listed"), vec![github]);

    let last = identities.unlink(id, "github", linked(id, ActivityAction::OAuthUnlinked)).await;
    assert!(matches!(last, Err(UnlinkIdentityError::LastSignInMethod)), "{last:?}");
    identities.link(identity("google", "g-1", id), linked(id, ActivityAction::OAuthLinked)).await.expect("linked");
    identities.unlink(id, "github", linked(id, ActivityAction::OAuthUnlinked)).await.expect("another way remains");
    let gone = identities.unlink(id, "github", linked(id, ActivityAction::OAuthUnlinked)).await;
    assert!(matches!(gone, Err(UnlinkIdentityError::NotFound)), "{gone:?}");
    assert_eq!(identities.list(id).await.expect("listed").len(), 1);
}

async fn an_account_made_by_a_provider_sign_up_is_created_with_its_identity_or_not_at_all(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let mut ada = new_user("ada@example.com", "ada");
    ada.password_hash = None;
    let ada_id = ada.id;
    let github = identity("github", "42", ada_id);
    let companion = AccountCompanion::Identity(github.clone(), linked(ada_id, ActivityAction::OAuthLinked));
    let event = registered(&ada);
    db.users().create(ada, event, companion).await.expect("created with its identity");

    // Another sign-up with the same provider account (a race lost at the pre-check or the key).
    let mut rival = new_user("rival@example.com", "rival");
    rival.password_hash = None;
    let rival_id = rival.id;
    let stolen =
        AccountCompanion::Identity(identity("github", "42", rival_id), linked(rival_id, ActivityAction::OAuthLinked));
    let event = registered(&rival);
    let refused = db.users().create(rival, event, stolen).await;

    assert_eq!(db.identities().find("github", "42").await.expect("found"), Some(github));
    assert!(matches!(refused, Err(CreateUserError::IdentityTaken)), "{refused:?}");
    assert!(db.users().find_by_id(rival_id).await.expect("looked up").is_none(), "no account without its identity");
    let actions = |user_id| {
        let log = db.activity();
        async move {
            let query = ActivityQuery { user_id: Some(user_id), ..ActivityQuery::default() };
            let mut actions: Vec<ActivityAction> =
                log.list(query).await.expect("listed").items.into_iter().map(|event| event.action).collect();
            actions.sort_by_key(|action| action.as_str());
            actions
        }
    };
    assert_eq!(actions(ada_id).await, [ActivityAction::OAuthLinked, ActivityAction::UserRegistered]);
    assert!(actions(rival_id).await.is_empty(), "a refused sign-up records nothing");
}

async fn oauth_states_and_login_codes_are_single_use(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = db.users().register(new_user("ada@example.com", "ada")).await.expect("created");
    let identities = db.identities();
    let state = TokenHash::new("state-hash".to_owned());
    let later = Utc::now() + Duration::minutes(10);

    assert!(identities.spend_state(&state, later).await.expect("spent"), "a fresh state");
    assert!(!identities.spend_state(&state, later).await.expect("checked"), "a replayed state");

    let code = TokenHash::new("code-hash".to_owned());
    let now = Utc::now();
    identities
        .issue_login_code(NewOneTimeToken {
            kind: TokenKind::OAuthLoginCode,
            user_id: user.id,
            hash: code.clone(),
            created_at: now,
            expires_at: now + Duration::seconds(60),
        })
        .await
        .expect("issued");
    assert_eq!(identities.spend_login_code(&code, now).await.expect("spent"), user.id);
    let replay = identities.spend_login_code(&code, now).await;
    assert!(matches!(replay, Err(UseTokenError::Invalid)), "{replay:?}");
    let unknown = identities.spend_login_code(&TokenHash::new("nope".to_owned()), now).await;
    assert!(matches!(unknown, Err(UseTokenError::Invalid)), "{unknown:?}");
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
    identities_link_once_and_unlink_only_while_another_way_to_sign_in_remains,
    an_account_made_by_a_provider_sign_up_is_created_with_its_identity_or_not_at_all,
    oauth_states_and_login_codes_are_single_use,
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
    a_token_spent_within_the_grace_window_for_the_same_successor_rotates_without_storing_another,
    a_token_spent_within_the_grace_window_for_another_successor_is_reused_and_nothing_is_written,
    concurrent_retries_within_the_grace_window_all_get_the_one_successor,
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
    paging_visits_every_user_exactly_once_in_each_sort_order,
    paging_is_stable_while_users_are_added,
    the_last_page_has_no_next_cursor,
    search_finds_a_substring_of_the_email_username_or_display_name_in_any_case,
    wildcards_in_a_search_match_themselves,
    role_and_status_filters_judge_the_status_in_effect_now,
    deleted_users_are_listed_only_when_asked_for,
    an_admin_update_changes_the_given_fields_revokes_sessions_and_records_its_events,
    an_admin_update_to_a_taken_email_or_username_is_refused_and_writes_nothing,
    the_last_active_admin_cannot_be_demoted_disabled_or_deleted,
    with_two_admins_one_may_demote_themself_but_not_the_second,
    two_admins_demoting_themselves_at_once_leave_exactly_one_admin,
    a_restored_user_is_back_with_the_event_recorded,
    restoring_a_user_whose_email_or_username_was_taken_meanwhile_is_refused,
    ensure_admin_creates_promotes_or_finds_one_present,
    bootstrap_hands_an_existing_account_over_with_nothing_of_the_registrant_left,
    create_admin_hands_an_existing_account_over_with_nothing_of_the_registrant_left,
    concurrent_ensure_admin_calls_create_exactly_one_admin,
    the_audit_trail_lists_newest_first_with_filters_and_pages,
    seeding_inserts_the_requested_number_of_realistic_users,
    a_registration_stores_its_verification_token_and_queues_its_mail_or_neither,
    a_newer_token_of_the_same_kind_invalidates_the_older_ones,
    issuing_a_token_records_the_event_with_it,
    verifying_spends_the_token_once_and_marks_the_email_verified,
    expired_tokens_and_tokens_of_another_kind_or_a_deleted_user_are_invalid,
    concurrent_uses_of_one_token_let_exactly_one_win,
    a_reset_sets_the_password_verifies_the_email_revokes_every_session_and_queues_the_notice,
    claims_lease_due_messages_oldest_first_and_a_lapsed_lease_can_be_claimed_again,
    a_retried_message_comes_back_when_due_and_a_failed_one_never,
    concurrent_claims_never_lease_one_message_twice,
    an_outbox_row_keeps_its_token_sealed_and_the_relay_gets_it_in_the_clear,
    a_row_sealed_with_a_retired_key_still_relays,
    a_row_whose_key_is_gone_fails_cleanly_and_the_others_still_relay,
    a_row_written_before_tokens_were_sealed_still_relays,
    without_a_cipher_a_token_is_never_stored,
    an_avatar_is_set_replaced_and_cleared_and_each_change_reports_the_previous_one,
    an_avatar_cannot_be_set_on_an_unknown_or_deleted_user_and_records_nothing,
    soft_delete_clears_the_avatar_and_hands_it_back,
    concurrent_avatar_changes_each_see_the_one_they_replaced,
    only_the_avatar_keys_users_point_at_are_referenced,
    a_lock_stores_its_token_mail_and_event_and_the_unlock_link_ends_it_once,
    an_unlock_link_lifts_only_the_lockout_that_sent_it,
    a_password_change_voids_the_reset_and_unlock_links_mailed_before,
);

#[tokio::test]
async fn explain_user_list_shows_the_postgres_plan_and_refuses_sqlite() {
    let (pg, sqlite) = (TestDatabase::postgres(), TestDatabase::sqlite());
    let query = UserQuery { search: Some("ada".to_owned()), role: Some(Role::Admin), ..everyone(20) };

    let plan = migrated(&pg).await.explain_user_list(&query).await.expect("PostgreSQL explains");
    let refused = migrated(&sqlite).await.explain_user_list(&query).await;

    assert!(plan.contains("Limit") && plan.contains("users"), "a plan of the list query: {plan}");
    assert!(refused.is_err(), "SQLite has no PostgreSQL plan");
}
