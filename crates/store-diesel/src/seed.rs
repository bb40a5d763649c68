//! Fills a database with realistic users for benchmarks and demos (`gatehouse seed`).
//!
//! Not a port: only the command line seeds. Users are generated in Rust (a small fast PRNG, no
//! I/O) and committed every [`ROWS_PER_TRANSACTION`] users: on PostgreSQL with binary `COPY`,
//! on SQLite with multi-row `INSERT`s of [`ROWS_PER_STATEMENT`] rows, under SQLite's limit of
//! 32,766 bound parameters per statement.

use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use diesel::prelude::*;
use gatehouse_domain::{Role, UserStatus};
use uuid::{NoContext, Timestamp, Uuid};

use crate::connection::{AnyConnection, write_transaction};
use crate::database::Database;
use crate::schema::{user_roles, users};
use crate::types::{DbTime, DbUuid};
use crate::users::{NewUserRow, normalize};

/// Users per SQLite `INSERT` statement: 17 columns each, 25,500 parameters.
const ROWS_PER_STATEMENT: usize = 1_500;
/// Users per transaction.
const ROWS_PER_TRANSACTION: usize = 10_000;
/// Role grants per SQLite `INSERT` statement: 2 columns each.
const GRANTS_PER_STATEMENT: usize = 10_000;
/// How far back accounts were created.
const HISTORY_DAYS: i64 = 3 * 365;

/// First names: (as displayed, as written in an address).
const FIRST_NAMES: &[(&str, &str)] = &[
    ("Ada", "ada"),
    ("Alan", "alan"),
    ("Grace", "grace"),
    ("Linus", "linus"),
    ("Margaret", "margaret"),
    ("Dennis", "dennis"),
    ("Barbara", "barbara"),
    ("Ken", "ken"),
    ("Frances", "frances"),
    ("John", "john"),
    ("Mary", "mary"),
    ("James", "james"),
    ("Patricia", "patricia"),
    ("Robert", "robert"),
    ("Jennifer", "jennifer"),
    ("Michael", "michael"),
    ("Linda", "linda"),
    ("William", "william"),
    ("Elizabeth", "elizabeth"),
    ("David", "david"),
    ("Susan", "susan"),
    ("Richard", "richard"),
    ("Jessica", "jessica"),
    ("Joseph", "joseph"),
    ("Sarah", "sarah"),
    ("Thomas", "thomas"),
    ("Karen", "karen"),
    ("Charles", "charles"),
    ("Nancy", "nancy"),
    ("Daniel", "daniel"),
    ("Lisa", "lisa"),
    ("Matthew", "matthew"),
    ("Sophie", "sophie"),
    ("Lukas", "lukas"),
    ("Emma", "emma"),
    ("Noah", "noah"),
    ("Mia", "mia"),
    ("Hiroshi", "hiroshi"),
    ("Yuki", "yuki"),
    ("Wei", "wei"),
    ("Mei", "mei"),
    ("Priya", "priya"),
    ("Arjun", "arjun"),
    ("Fatima", "fatima"),
    ("Omar", "omar"),
    ("José", "jose"),
    ("Zoë", "zoe"),
    ("Chloé", "chloe"),
    ("Łukasz", "lukasz"),
    ("Søren", "soren"),
    ("Björn", "bjorn"),
    ("Ngozi", "ngozi"),
    ("Kwame", "kwame"),
    ("Olga", "olga"),
    ("Ivan", "ivan"),
    ("Ana", "ana"),
    ("Mateo", "mateo"),
    ("Lucía", "lucia"),
    ("Élodie", "elodie"),
    ("Anders", "anders"),
];

/// Last names: (as displayed, as written in an address).
const LAST_NAMES: &[(&str, &str)] = &[
    ("Lovelace", "lovelace"),
    ("Turing", "turing"),
    ("Hopper", "hopper"),
    ("Torvalds", "torvalds"),
    ("Hamilton", "hamilton"),
    ("Ritchie", "ritchie"),
    ("Liskov", "liskov"),
    ("Thompson", "thompson"),
    ("Allen", "allen"),
    ("Smith", "smith"),
    ("Johnson", "johnson"),
    ("Williams", "williams"),
    ("Brown", "brown"),
    ("Jones", "jones"),
    ("Garcia", "garcia"),
    ("Miller", "miller"),
    ("Davis", "davis"),
    ("Rodriguez", "rodriguez"),
    ("Martinez", "martinez"),
    ("Hernandez", "hernandez"),
    ("Lopez", "lopez"),
    ("Gonzalez", "gonzalez"),
    ("Wilson", "wilson"),
    ("Anderson", "anderson"),
    ("Taylor", "taylor"),
    ("Moore", "moore"),
    ("Jackson", "jackson"),
    ("Martin", "martin"),
    ("Lee", "lee"),
    ("Thompson", "thompson"),
    ("White", "white"),
    ("Harris", "harris"),
    ("Clark", "clark"),
    ("Lewis", "lewis"),
    ("Walker", "walker"),
    ("Young", "young"),
    ("Müller", "mueller"),
    ("Schmidt", "schmidt"),
    ("Schneider", "schneider"),
    ("Dubois", "dubois"),
    ("Lefèvre", "lefevre"),
    ("Rossi", "rossi"),
    ("Russo", "russo"),
    ("Tanaka", "tanaka"),
    ("Suzuki", "suzuki"),
    ("Wang", "wang"),
    ("Zhang", "zhang"),
    ("Kim", "kim"),
    ("Park", "park"),
    ("Nguyen", "nguyen"),
    ("Singh", "singh"),
    ("Patel", "patel"),
    ("Kowalski", "kowalski"),
    ("Nowak", "nowak"),
    ("Jensen", "jensen"),
    ("Nielsen", "nielsen"),
    ("Ivanova", "ivanova"),
    ("Okafor", "okafor"),
    ("Mensah", "mensah"),
    ("Haddad", "haddad"),
];

const DOMAINS: &[&str] = &["example.org", "example.com", "example.net", "mail.example.org", "corp.example.com"];

/// SplitMix64: fast, and good enough for made-up people.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// One of `items` (not empty).
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let index = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        &items[index % items.len()]
    }

    /// Whether an event of `per_mille` in a thousand happens.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// A duration of up to `max`.
    fn within(&mut self, max: Duration) -> Duration {
        let micros = u64::try_from(max.num_microseconds().unwrap_or(0).max(1)).unwrap_or(1);
        Duration::microseconds(i64::try_from(self.below(micros)).unwrap_or(0))
    }
}

/// One made-up user, number `n` (which makes the email and username unique), created at
/// `created_at`, and whether they are an admin.
fn fake_user(
    rng: &mut Rng,
    n: u64,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    password_hash: &str,
) -> (NewUserRow, bool) {
    let (first, first_ascii) = *rng.pick(FIRST_NAMES);
    let (last, last_ascii) = *rng.pick(LAST_NAMES);
    let created_at = created_at.trunc_subsecs(6);
    let domain = rng.pick(DOMAINS);
    let email = match rng.below(10) {
        0 => format!("{first_ascii}{last_ascii}{n}@{domain}"),
        1 => format!("{}.{}.{n}@{domain}", capitalise(first_ascii), capitalise(last_ascii)),
        _ => format!("{first_ascii}.{last_ascii}.{n}@{domain}"),
    };
    let username = match rng.below(4) {
        0 => format!("{first_ascii}{last_ascii}{n}"),
        1 => format!("{}_{last_ascii}_{n}", &first_ascii[..1]),
        2 => format!("{}{}-{n}", capitalise(first_ascii), capitalise(last_ascii)),
        _ => format!("{first_ascii}.{last_ascii}.{n}"),
    };
    let display_name = match rng.below(10) {
        0..=5 => Some(format!("{first} {last}")),
        6 => Some(format!("{first} {}. {last}", char::from(b'A' + u8::try_from(rng.below(26)).unwrap_or(0)))),
        _ => None,
    };
    let since_creation = now - created_at;
    let (status, locked_until) = match rng.below(1000) {
        0..=19 => (UserStatus::Disabled, None),
        20..=29 => (UserStatus::Locked, Some(now + rng.within(Duration::minutes(15)))),
        30..=34 => (UserStatus::Locked, None),
        // Locks that have run out: these users are effectively active.
        35..=44 => (UserStatus::Locked, Some(now - rng.within(since_creation))),
        _ => (UserStatus::Active, None),
    };
    let deleted_at = rng.chance(30).then(|| (created_at + rng.within(since_creation)).trunc_subsecs(6));
    let email_verified_at = rng.chance(900).then(|| created_at + rng.within(Duration::hours(2)));
    let last_login_at = rng.chance(750).then(|| created_at + rng.within(since_creation));
    let updated_at = [Some(created_at), deleted_at, last_login_at].into_iter().flatten().max().unwrap_or(created_at);
    let id = uuid_at(created_at);
    let row = NewUserRow {
        id: DbUuid(id),
        email_normalized: normalize(&email),
        email,
        username_normalized: normalize(&username),
        username,
        display_name_normalized: display_name.as_deref().map(normalize),
        display_name,
        password_hash: Some(password_hash.to_owned()),
        status: status.as_str(),
        locked_until: locked_until.map(|t| DbTime(t.trunc_subsecs(6))),
        email_verified_at: email_verified_at.map(|t| DbTime(t.trunc_subsecs(6))),
        last_login_at: last_login_at.map(|t| DbTime(t.trunc_subsecs(6))),
        created_at: DbTime(created_at),
        updated_at: DbTime(updated_at.trunc_subsecs(6)),
        deleted_at: deleted_at.map(DbTime),
        avatar_key: None,
        avatar_content_type: None,
    };
    (row, rng.chance(10))
}

/// A UUIDv7 whose timestamp is `at`, so ids sort (to the millisecond) like creation times.
fn uuid_at(at: DateTime<Utc>) -> Uuid {
    let seconds = u64::try_from(at.timestamp()).unwrap_or(0);
    Uuid::new_v7(Timestamp::from_unix(NoContext, seconds, at.timestamp_subsec_nanos()))
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Inserts one transaction's worth of users and their role grants: with `COPY` on PostgreSQL
/// (binary, no statement size limit), with multi-row `INSERT`s on SQLite (run on the SQLite
/// connection itself: Diesel's `MultiConnection` does not batch SQLite inserts).
fn insert_batch(connection: &mut AnyConnection, batch: &[(NewUserRow, bool)]) -> QueryResult<()> {
    let grants: Vec<_> = batch
        .iter()
        .flat_map(|(row, admin)| {
            [Some(Role::User), admin.then_some(Role::Admin)]
                .into_iter()
                .flatten()
                .map(|role| (user_roles::user_id.eq(row.id), user_roles::role.eq(role.as_str())))
        })
        .collect();
    let rows: Vec<&NewUserRow> = batch.iter().map(|(row, _)| row).collect();
    write_transaction(connection, |connection| match connection {
        AnyConnection::Postgresql(pg) => {
            // Seed data can be regenerated: no need to wait for each batch to reach the disk.
            diesel::sql_query("SET LOCAL synchronous_commit = off").execute(pg)?;
            diesel::copy_from(users::table).from_insertable(rows).execute(pg)?;
            diesel::copy_from(user_roles::table).from_insertable(grants).execute(pg)?;
            Ok(())
        }
        AnyConnection::Sqlite(sqlite) => {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                diesel::insert_into(users::table).values(chunk.to_vec()).execute(sqlite)?;
            }
            for chunk in grants.chunks(GRANTS_PER_STATEMENT) {
                diesel::insert_into(user_roles::table).values(chunk.to_vec()).execute(sqlite)?;
            }
            Ok(())
        }
    })
}

impl Database {
    /// Inserts `count` made-up users for benchmarks and demos, all with `password_hash`, and
    /// returns how many were inserted. About 1% are admins, 2% disabled, 1.5% locked (plus 1%
    /// whose lock has run out), 3% soft-deleted; creation times spread over three years, with
    /// UUIDv7 ids of the same instant; emails like `ada.lovelace.42@example.org`, usernames and
    /// (mostly) display names, some non-ASCII. Numbers continue after the users already there,
    /// so seeding twice adds more users rather than failing on taken emails. Refreshes the
    /// planner's statistics (`ANALYZE`) at the end.
    ///
    /// # Errors
    ///
    /// When an insert fails; the batches committed before it stay.
    pub async fn seed_users(&self, count: u64, password_hash: &str) -> anyhow::Result<u64> {
        let password_hash = password_hash.to_owned();
        self.run_unbounded(move |connection| {
            let started = Instant::now();
            let existing: i64 = users::table.count().get_result(connection).context("could not count the users")?;
            let first = u64::try_from(existing).unwrap_or(0) + 1;
            let now = Utc::now();
            let seed = u64::try_from(now.timestamp_nanos_opt().unwrap_or(0)).unwrap_or(0);
            let mut rng = Rng(seed);
            // Creation times rise with the user number (with jitter), as real sign-ups do, so the
            // id and created_at indexes grow at their right edge instead of splitting pages.
            let history = Duration::days(HISTORY_DAYS);
            let step = history / i32::try_from(count.clamp(1, i32::MAX as u64)).unwrap_or(i32::MAX);
            let start = now - history;
            let mut inserted = 0_u64;
            let mut batch = Vec::with_capacity(ROWS_PER_TRANSACTION);
            while inserted < count {
                batch.clear();
                let size = (count - inserted).min(ROWS_PER_TRANSACTION as u64);
                for i in inserted..inserted + size {
                    let offset = step * i32::try_from(i).unwrap_or(i32::MAX);
                    let created_at = (start + offset + rng.within(step)).min(now);
                    batch.push(fake_user(&mut rng, first + i, created_at, now, &password_hash));
                }
                insert_batch(connection, &batch).context("could not insert a batch of seeded users")?;
                inserted += size;
                if inserted.is_multiple_of(100_000) {
                    tracing::info!(inserted, elapsed_secs = started.elapsed().as_secs_f64(), "seeding users");
                }
            }
            let statement = match connection {
                AnyConnection::Postgresql(_) => "ANALYZE users, user_roles",
                AnyConnection::Sqlite(_) => "ANALYZE",
            };
            diesel::sql_query(statement).execute(connection).context("could not refresh the statistics")?;
            tracing::info!(inserted, elapsed_secs = started.elapsed().as_secs_f64(), "seeded users");
            Ok(inserted)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_domain::{DisplayName, Email, Username};

    #[test]
    fn made_up_users_are_valid_and_unique() {
        let mut rng = Rng(7);
        let now = Utc::now();
        let mut emails = std::collections::HashSet::new();
        for n in 1..=2_000 {
            let (row, _) = fake_user(&mut rng, n, now - Duration::days(1), now, "hash");
            assert!(Email::parse(&row.email).is_ok(), "{} is an email", row.email);
            assert!(Username::parse(&row.username).is_ok(), "{} is a username", row.username);
            if let Some(name) = &row.display_name {
                assert!(DisplayName::parse(name).is_ok(), "{name} is a display name");
            }
            assert!(row.created_at.0 <= now);
            assert!(emails.insert(row.email_normalized), "emails are unique");
        }
    }
}
