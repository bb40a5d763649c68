//! The repository contract, run against PostgreSQL and SQLite alike.
//!
//! Each case is written once as an async function taking a fresh [`TestDatabase`]; the
//! `contract!` macro at the bottom instantiates it as `postgres::<case>` and `sqlite::<case>`.
//! PostgreSQL comes from `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`);
//! when it is down these tests fail, they never skip.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use futures::future::join_all;
use gatehouse_domain::ports::{CreateUserError, PasswordHash, TokenHash};
use gatehouse_domain::{
    DisplayName, Email, NewSession, NewUser, RequestContext, Role, SessionId, UserId, UserStatus, Username,
};
use gatehouse_store_diesel::testing::TestDatabase;
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

    let created = users.create(new.clone()).await.expect("the user is created");

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
}

async fn a_user_created_without_roles_or_password_gets_the_user_role(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let new = NewUser { password_hash: None, ..new_user("oauth@example.com", "oauth-only") };

    let created = db.users().create(new).await.expect("the user is created");

    assert_eq!(created.roles, vec![Role::User]);
    let credentials = db.users().find_credentials_by_email(&created.email).await.expect("lookup works");
    assert_eq!(credentials.expect("found").password_hash, None);
}

async fn an_email_is_taken_regardless_of_case_and_surrounding_whitespace(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.users().create(new_user("Ada@Example.com", "ada")).await.expect("the first user is created");

    let second = db.users().create(new_user("  ada@example.com\t", "someone-else")).await;

    assert!(matches!(second, Err(CreateUserError::EmailTaken)), "got {second:?}");
}

async fn a_username_is_taken_regardless_of_case(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.users().create(new_user("ada@example.com", "Ada.Lovelace")).await.expect("the first user is created");

    let second = db.users().create(new_user("grace@example.com", "ada.LOVELACE")).await;

    assert!(matches!(second, Err(CreateUserError::UsernameTaken)), "got {second:?}");
}

async fn unicode_case_folds_the_same_way_on_every_engine(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.users().create(new_user("ÉLODIE@example.com", "Élodie")).await.expect("the first user is created");

    let same_email = db.users().create(new_user("élodie@example.com", "elodie2")).await;
    let same_username = db.users().create(new_user("other@example.com", "éLODIE")).await;
    let found = db.users().find_credentials_by_email(&email("Élodie@EXAMPLE.com")).await.expect("lookup works");

    assert!(matches!(same_email, Err(CreateUserError::EmailTaken)), "got {same_email:?}");
    assert!(matches!(same_username, Err(CreateUserError::UsernameTaken)), "got {same_username:?}");
    assert!(found.is_some(), "a lookup in another case finds the user");
}

async fn a_taken_email_wins_over_a_taken_username(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.users().create(new_user("ada@example.com", "ada")).await.expect("the first user is created");

    let second = db.users().create(new_user("ADA@example.com", "ADA")).await;

    assert!(matches!(second, Err(CreateUserError::EmailTaken)), "got {second:?}");
}

async fn a_refused_user_leaves_nothing_behind(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.users().create(new_user("ada@example.com", "ada")).await.expect("the first user is created");
    let refused = new_user("ada@example.com", "grace");

    let outcome = db.users().create(refused.clone()).await;

    assert!(matches!(outcome, Err(CreateUserError::EmailTaken)), "got {outcome:?}");
    assert_eq!(db.users().find_by_id(refused.id).await.expect("lookup works"), None);
    let grace = db.users().find_credentials_by_username(&username("grace")).await.expect("lookup works");
    assert!(grace.is_none(), "the refused user's username is still free");
}

async fn unknown_ids_emails_and_usernames_are_not_found(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    db.users().create(new_user("ada@example.com", "ada")).await.expect("a user exists");

    let users = db.users();
    assert_eq!(users.find_by_id(UserId::generate()).await.expect("lookup works"), None);
    assert!(users.find_credentials_by_email(&email("nobody@example.com")).await.expect("lookup works").is_none());
    assert!(users.find_credentials_by_username(&username("nobody")).await.expect("lookup works").is_none());
}

async fn a_soft_deleted_user_is_invisible_and_frees_its_email_and_username(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let deleted = db.users().create(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let updated = db
        .execute_sql("UPDATE users SET deleted_at = updated_at WHERE email_normalized = 'ada@example.com'")
        .await
        .expect("the soft delete runs");
    assert_eq!(updated, 1, "exactly one user was soft-deleted");

    let users = db.users();
    assert_eq!(users.find_by_id(deleted.id).await.expect("lookup works"), None);
    assert!(users.find_credentials_by_email(&email("ada@example.com")).await.expect("lookup works").is_none());
    assert!(users.find_credentials_by_username(&username("ada")).await.expect("lookup works").is_none());

    let successor = users.create(new_user("Ada@Example.com", "ADA")).await.expect("email and username are free again");
    let found = users.find_credentials_by_email(&email("ada@example.com")).await.expect("lookup works");
    assert_eq!(found.map(|c| c.user.id), Some(successor.id), "lookups find the live user, not the deleted one");
}

async fn concurrent_registrations_of_one_email_let_exactly_one_win(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let attempts = (0..RACERS).map(|i| {
        let users = db.users();
        let raw_email = if i % 2 == 0 { "race@example.com" } else { "RACE@example.com" };
        let new = new_user(raw_email, &format!("racer-{i}"));
        tokio::spawn(async move { users.create(new).await })
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
        tokio::spawn(async move { users.create(new).await })
    });

    let outcomes: Vec<_> = join_all(attempts).await.into_iter().map(|joined| joined.expect("no task panics")).collect();

    let winners = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let taken = outcomes.iter().filter(|outcome| matches!(outcome, Err(CreateUserError::UsernameTaken))).count();
    assert_eq!(winners, 1, "exactly one registration wins: {outcomes:?}");
    assert_eq!(taken, RACERS as usize - 1, "every other one gets UsernameTaken: {outcomes:?}");
}

async fn a_password_hash_can_be_replaced(test_db: TestDatabase) {
    let db = migrated(&test_db).await;
    let user = db.users().create(new_user("ada@example.com", "ada")).await.expect("the user is created");
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
    let user = db.users().create(new_user("ada@example.com", "ada")).await.expect("the user is created");
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

    let started = db.sessions().start(new.clone()).await.expect("the session starts");

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
    let user = db.users().create(new_user("ada@example.com", "ada")).await.expect("the user is created");
    let now = Utc::now();
    let new = NewSession {
        id: SessionId::generate(),
        user_id: user.id,
        refresh_token_hash: TokenHash::new("hash".to_owned()),
        context: RequestContext::default(),
        created_at: now,
        expires_at: now + Duration::days(1),
    };

    let started = db.sessions().start(new).await.expect("the session starts");

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
    assert_eq!(db.sessions().start(second).await.expect("the second session starts").context, ipv4);
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

    let outcome = db.sessions().start(new.clone()).await;

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
    db.users().create(new_user("ada@example.com", "ada")).await.expect("the schema works after a second run");
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
);
