//! Column types that both engines can store, so one set of typed queries serves both.
//!
//! PostgreSQL has native `uuid` and `timestamptz`; SQLite has neither. The SQL types here are
//! declared for each engine: [`sql::PortableUuid`] is `uuid` on PostgreSQL and `TEXT` (the
//! hyphenated lower-case form) on SQLite; [`sql::PortableTimestamp`] is `timestamptz` on
//! PostgreSQL and `TEXT` on SQLite, written as fixed-width RFC 3339 in UTC with microseconds
//! (`2026-11-26T09:30:00.123456Z`) so that text order is time order. Both engines keep
//! microseconds, so a time read back equals the written one truncated to the microsecond.
//! [`sql::PortableJson`] is `jsonb` on PostgreSQL (queryable with `->>`) and JSON `TEXT` on
//! SQLite; both carry the same JSON text.
//!
//! [`DbUuid`], [`DbTime`] and [`DbJson`] are the Rust side of those columns; rows convert them into
//! domain types. Nothing outside this crate sees them.

use std::io::Write;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{self as diesel_types, HasSqlType};
use diesel::sqlite::{Sqlite, SqliteValue};
use uuid::Uuid;

use crate::connection::MultiBackend;

/// The SQL types of the portable columns, for `table!`.
pub(crate) mod sql {
    /// A UUID: `uuid` on PostgreSQL, `TEXT` on SQLite.
    #[derive(Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
    #[diesel(postgres_type(oid = 2950, array_oid = 2951))]
    #[diesel(sqlite_type(name = "Text"))]
    pub struct PortableUuid;

    /// An instant in UTC: `timestamptz` on PostgreSQL, RFC 3339 `TEXT` on SQLite.
    #[derive(Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
    #[diesel(postgres_type(oid = 1184, array_oid = 1185))]
    #[diesel(sqlite_type(name = "Text"))]
    pub struct PortableTimestamp;

    /// A JSON document: `jsonb` on PostgreSQL, `TEXT` on SQLite.
    #[derive(Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
    #[diesel(postgres_type(oid = 3802, array_oid = 3807))]
    #[diesel(sqlite_type(name = "Text"))]
    pub struct PortableJson;
}

use sql::{PortableJson, PortableTimestamp, PortableUuid};

/// A UUID column value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = PortableUuid)]
pub(crate) struct DbUuid(pub Uuid);

/// A timestamp column value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = PortableTimestamp)]
pub(crate) struct DbTime(pub DateTime<Utc>);

/// A JSON column value, as JSON text. Whether it is valid JSON is the writer's concern (and
/// the column's `CHECK` constraint's); it is not parsed on the way through.
#[derive(Debug, Clone, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = PortableJson)]
pub(crate) struct DbJson(pub String);

/// The first byte of PostgreSQL's binary `jsonb` format: its version. The rest is JSON text.
const JSONB_VERSION: u8 = 1;

/// The SQLite text form of a time: fixed width, so that comparing text compares instants.
const SQLITE_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

impl ToSql<PortableUuid, Pg> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <Uuid as ToSql<diesel_types::Uuid, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<PortableUuid, Pg> for DbUuid {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <Uuid as FromSql<diesel_types::Uuid, Pg>>::from_sql(value).map(Self)
    }
}

impl ToSql<PortableUuid, Sqlite> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.hyphenated().to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<PortableUuid, Sqlite> for DbUuid {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = value.read_text();
        Uuid::parse_str(text).map(Self).map_err(|e| format!("stored UUID {text:?} is invalid: {e}").into())
    }
}

impl ToSql<PortableTimestamp, Pg> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <DateTime<Utc> as ToSql<diesel_types::Timestamptz, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<PortableTimestamp, Pg> for DbTime {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<diesel_types::Timestamptz, Pg>>::from_sql(value).map(Self)
    }
}

impl ToSql<PortableTimestamp, Sqlite> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.format(SQLITE_TIME_FORMAT).to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<PortableTimestamp, Sqlite> for DbTime {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = value.read_text();
        parse_sqlite_time(text).map(Self).ok_or_else(|| format!("stored time {text:?} is not RFC 3339").into())
    }
}

impl ToSql<PortableJson, Pg> for DbJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(&[JSONB_VERSION])?;
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<PortableJson, Pg> for DbJson {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        match value.as_bytes().split_first() {
            Some((&JSONB_VERSION, json)) => Ok(Self(String::from_utf8(json.to_vec())?)),
            Some((version, _)) => Err(format!("unsupported jsonb format version {version}").into()),
            None => Err("empty jsonb value".into()),
        }
    }
}

impl ToSql<PortableJson, Sqlite> for DbJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.as_str());
        Ok(IsNull::No)
    }
}

impl FromSql<PortableJson, Sqlite> for DbJson {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        Ok(Self(value.read_text().to_owned()))
    }
}

/// Parses what [`SQLITE_TIME_FORMAT`] writes, any other RFC 3339 time, or SQLite's own
/// `CURRENT_TIMESTAMP` form (`2026-11-26 09:30:00`, UTC) should a hand-written statement use it.
fn parse_sqlite_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok().map(|naive| naive.and_utc()))
}

// The backend of `AnyConnection` dispatches to the per-engine impls above.

impl HasSqlType<PortableUuid> for MultiBackend {
    fn metadata(lookup: &mut Self::MetadataLookup) -> Self::TypeMetadata {
        MultiBackend::lookup_sql_type::<PortableUuid>(lookup)
    }
}

impl HasSqlType<PortableTimestamp> for MultiBackend {
    fn metadata(lookup: &mut Self::MetadataLookup) -> Self::TypeMetadata {
        MultiBackend::lookup_sql_type::<PortableTimestamp>(lookup)
    }
}

impl HasSqlType<PortableJson> for MultiBackend {
    fn metadata(lookup: &mut Self::MetadataLookup) -> Self::TypeMetadata {
        MultiBackend::lookup_sql_type::<PortableJson>(lookup)
    }
}

impl ToSql<PortableUuid, MultiBackend> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((PortableUuid, self));
        Ok(IsNull::No)
    }
}

impl FromSql<PortableUuid, MultiBackend> for DbUuid {
    fn from_sql(value: <MultiBackend as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        value.from_sql::<Self, PortableUuid>()
    }
}

impl ToSql<PortableTimestamp, MultiBackend> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((PortableTimestamp, self));
        Ok(IsNull::No)
    }
}

impl FromSql<PortableTimestamp, MultiBackend> for DbTime {
    fn from_sql(value: <MultiBackend as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        value.from_sql::<Self, PortableTimestamp>()
    }
}

impl ToSql<PortableJson, MultiBackend> for DbJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((PortableJson, self));
        Ok(IsNull::No)
    }
}

impl FromSql<PortableJson, MultiBackend> for DbJson {
    fn from_sql(value: <MultiBackend as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        value.from_sql::<Self, PortableJson>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sqlite_times_are_fixed_width_so_text_order_is_time_order() {
        let early = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("valid date");
        let late = early + chrono::Duration::microseconds(1);
        let (early_text, late_text) =
            (early.format(SQLITE_TIME_FORMAT).to_string(), late.format(SQLITE_TIME_FORMAT).to_string());
        assert_eq!(early_text, "2026-01-02T03:04:05.000000Z");
        assert_eq!(early_text.len(), late_text.len());
        assert!(early_text < late_text);
    }

    #[test]
    fn sqlite_times_parse_back_including_sqlites_own_format() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 9, 30, 0).single().expect("valid date");
        assert_eq!(parse_sqlite_time(&t.format(SQLITE_TIME_FORMAT).to_string()), Some(t));
        assert_eq!(parse_sqlite_time("2026-11-26 09:30:00"), Some(t));
        assert_eq!(parse_sqlite_time("2026-11-26T10:30:00+01:00"), Some(t));
        assert_eq!(parse_sqlite_time("yesterday"), None);
    }
}
