//! Cursors on the wire: keyset positions serialised, sealed against tampering, and opened
//! again. A cursor the server did not issue, or one altered, is a 400 `malformed_request`.

use chrono::{DateTime, Utc};
use gatehouse_domain::pagination::PageLimit;
use gatehouse_domain::ports::{ActivityCursor, UserCursor, UserSort, UserSortKey};
use gatehouse_domain::{ActivityId, UserId};
use gatehouse_security::CursorSealer;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::http::error::{ApiError, ErrorKind};

/// A user-list position, tied to the sort it was made for.
#[derive(Debug, Serialize, Deserialize)]
struct UserPosition {
    /// The sort, by its query name.
    s: String,
    /// Creation time, for the time sorts.
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<DateTime<Utc>>,
    /// Lower-cased email, for the email sorts.
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    /// The id.
    i: Uuid,
}

/// An activity-list position.
#[derive(Debug, Serialize, Deserialize)]
struct ActivityPosition {
    t: DateTime<Utc>,
    i: Uuid,
}

fn malformed() -> ApiError {
    ApiError::new(ErrorKind::MalformedRequest, "The cursor is not one this server issued for this list.")
}

/// The `limit` query parameter: 20 when absent; outside 1–100 is a 422.
///
/// # Errors
///
/// 422 `validation_failed` on `limit`.
pub fn page_limit(limit: Option<i64>) -> Result<PageLimit, ApiError> {
    limit.map_or(Ok(PageLimit::default()), |n| {
        PageLimit::new(n).map_err(|e| ApiError::validation_field("limit", "out_of_range", e.to_string()))
    })
}

/// The query name of a sort.
#[must_use]
pub fn sort_name(sort: UserSort) -> &'static str {
    match sort {
        UserSort::CreatedAt => "created_at",
        UserSort::CreatedAtDesc => "-created_at",
        UserSort::Email => "email",
        UserSort::EmailDesc => "-email",
    }
}

/// Seals a user-list cursor.
#[must_use]
pub fn seal_user_cursor(sealer: &CursorSealer, sort: UserSort, cursor: &UserCursor) -> String {
    let (t, e) = match &cursor.key {
        UserSortKey::CreatedAt(at) => (Some(*at), None),
        UserSortKey::Email(email) => (None, Some(email.clone())),
    };
    let position = UserPosition { s: sort_name(sort).to_owned(), t, e, i: *cursor.id.as_uuid() };
    sealer.seal(&serde_json::to_vec(&position).unwrap_or_default())
}

/// Opens a user-list cursor made for `sort`.
///
/// # Errors
///
/// 400 `malformed_request` for anything else.
pub fn open_user_cursor(sealer: &CursorSealer, sort: UserSort, cursor: &str) -> Result<UserCursor, ApiError> {
    let payload = sealer.open(cursor).ok_or_else(malformed)?;
    let position: UserPosition = serde_json::from_slice(&payload).map_err(|_| malformed())?;
    if position.s != sort_name(sort) {
        return Err(ApiError::new(ErrorKind::MalformedRequest, "The cursor was issued for another sort order."));
    }
    let key = match (sort, position.t, position.e) {
        (UserSort::CreatedAt | UserSort::CreatedAtDesc, Some(at), None) => UserSortKey::CreatedAt(at),
        (UserSort::Email | UserSort::EmailDesc, None, Some(email)) => UserSortKey::Email(email),
        _ => return Err(malformed()),
    };
    Ok(UserCursor { key, id: UserId::from_uuid(position.i) })
}

/// Seals an activity-list cursor.
#[must_use]
pub fn seal_activity_cursor(sealer: &CursorSealer, cursor: &ActivityCursor) -> String {
    let position = ActivityPosition { t: cursor.created_at, i: *cursor.id.as_uuid() };
    sealer.seal(&serde_json::to_vec(&position).unwrap_or_default())
}

/// Opens an activity-list cursor.
///
/// # Errors
///
/// 400 `malformed_request` for a cursor this server did not issue.
pub fn open_activity_cursor(sealer: &CursorSealer, cursor: &str) -> Result<ActivityCursor, ApiError> {
    let payload = sealer.open(cursor).ok_or_else(malformed)?;
    let position: ActivityPosition = serde_json::from_slice(&payload).map_err(|_| malformed())?;
    Ok(ActivityCursor { created_at: position.t, id: ActivityId::from_uuid(position.i) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_cursor_round_trips_only_for_its_sort() {
        let sealer = CursorSealer::new(b"k");
        let cursor = UserCursor { key: UserSortKey::Email("ada@example.com".to_owned()), id: UserId::generate() };
        let sealed = seal_user_cursor(&sealer, UserSort::Email, &cursor);
        assert_eq!(open_user_cursor(&sealer, UserSort::Email, &sealed).ok(), Some(cursor));
        assert!(open_user_cursor(&sealer, UserSort::CreatedAt, &sealed).is_err());
        assert!(open_user_cursor(&sealer, UserSort::Email, "garbage").is_err());
    }
}
