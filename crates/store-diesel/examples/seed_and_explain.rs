//! Seeds a database and prints the plan of each user-list query the admin API makes.
//!
//! `cargo run --release -p gatehouse-store-diesel --features bench --example seed_and_explain --
//! postgres://postgres@127.0.0.1/bench 1000000` (a count of 0 only explains).

use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use gatehouse_domain::Role;
use gatehouse_domain::UserStatus;
use gatehouse_domain::pagination::PageLimit;
use gatehouse_domain::ports::{UserQuery, UserSort};
use gatehouse_store_diesel::Database;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().context("usage: seed_and_explain <database url> <user count>")?;
    let count: u64 = args.next().unwrap_or_else(|| "0".to_owned()).parse().context("the count is a number")?;
    let db = tokio::task::spawn_blocking(move || Database::connect(&url, 4)).await??;
    db.migrate().await?;
    if count > 0 {
        let started = Instant::now();
        let inserted = db.seed_users(count, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA").await?;
        let secs = started.elapsed().as_secs_f64();
        println!("seeded {inserted} users in {secs:.1} s ({:.0} rows/s)", inserted as f64 / secs);
    }
    let base = UserQuery {
        search: None,
        role: None,
        status: None,
        include_deleted: false,
        sort: UserSort::CreatedAtDesc,
        limit: PageLimit::default(),
        after: None,
        now: Utc::now(),
    };
    let directory = db.directory();
    let first = directory.list(base.clone()).await?;
    let mut deep = base.clone();
    for _ in 0..5 {
        deep.after = directory.list(deep.clone()).await?.next;
    }
    let cases = [
        ("first page", base.clone()),
        ("deep page", deep),
        ("q common", UserQuery { search: Some("son".to_owned()), ..base.clone() }),
        ("q rare", UserQuery { search: Some("lovelace.4242".to_owned()), ..base.clone() }),
        ("q short", UserQuery { search: Some("zo".to_owned()), ..base.clone() }),
        ("role+status", UserQuery { role: Some(Role::Admin), status: Some(UserStatus::Active), ..base.clone() }),
        ("admin disabled", UserQuery { role: Some(Role::Admin), status: Some(UserStatus::Disabled), ..base.clone() }),
        ("locked", UserQuery { status: Some(UserStatus::Locked), ..base.clone() }),
        ("disabled by email", UserQuery { status: Some(UserStatus::Disabled), sort: UserSort::Email, ..base.clone() }),
        ("sort email", UserQuery { sort: UserSort::Email, ..base.clone() }),
        ("sort -email", UserQuery { sort: UserSort::EmailDesc, ..base.clone() }),
        ("sort created_at", UserQuery { sort: UserSort::CreatedAt, ..base.clone() }),
        ("include_deleted", UserQuery { include_deleted: true, ..base.clone() }),
        ("include_deleted by email", UserQuery { include_deleted: true, sort: UserSort::Email, ..base.clone() }),
    ];
    println!("first page has {} users", first.items.len());
    for (name, query) in cases {
        let started = Instant::now();
        let page = directory.list(query.clone()).await?;
        let elapsed = started.elapsed();
        let plan = db.explain_user_list(&query).await?;
        let seq = plan.contains("Seq Scan on users");
        println!(
            "== {name}: {} rows in {elapsed:?}{}\n{plan}\n",
            page.items.len(),
            if seq { "  SEQ SCAN!" } else { "" }
        );
    }
    Ok(())
}
