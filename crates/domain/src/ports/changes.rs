//! Change notification between server instances: what each instance's read cache must
//! forget when storage changes.

use async_trait::async_trait;

use crate::ids::{SessionId, UserId};

/// Something in storage changed that cached reads may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A user's row changed (profile, status, roles, deletion, last sign-in…).
    User(UserId),
    /// These sessions were revoked.
    Sessions(Vec<SessionId>),
    /// Anything may have changed: forget everything.
    All,
}

/// The longest encoded change sent as is; bigger ones are sent as [`Change::All`] (PostgreSQL
/// refuses `NOTIFY` payloads of 8,000 bytes or more).
const MAX_ENCODED_LEN: usize = 7_000;

impl Change {
    /// The change as one line of text: `u:<uuid>`, `s:<uuid>,<uuid>…` or `*`. A change
    /// whose text would exceed a few kilobytes is encoded as `*` (forget everything).
    #[must_use]
    pub fn encode(&self) -> String {
        let text = match self {
            Change::User(id) => format!("u:{id}"),
            Change::Sessions(ids) => {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                format!("s:{}", ids.join(","))
            }
            Change::All => return "*".to_owned(),
        };
        if text.len() > MAX_ENCODED_LEN { "*".to_owned() } else { text }
    }

    /// Parses [`Change::encode`]'s text; `None` when it is not one.
    #[must_use]
    pub fn decode(text: &str) -> Option<Change> {
        if text == "*" {
            return Some(Change::All);
        }
        if let Some(id) = text.strip_prefix("u:") {
            return id.parse().ok().map(Change::User);
        }
        let ids = text.strip_prefix("s:")?;
        let ids: Option<Vec<SessionId>> = ids.split(',').map(|id| id.parse().ok()).collect();
        ids.map(Change::Sessions)
    }
}

/// Carries changes to every server instance sharing the storage, so none of them answers
/// from a cache that no longer matches it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Tells every other instance about a committed change (this one applies it itself
    /// before calling). Returns once every instance listening has applied it, or after the
    /// implementation's bound on that wait; see the implementation for its staleness bound.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures (the channel is unreachable); instances that missed the
    /// change forget everything when they reconnect.
    async fn publish(&self, change: Change) -> anyhow::Result<()>;
}

/// The feed of a single instance: nobody else to tell.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOtherInstances;

#[async_trait]
impl ChangeFeed for NoOtherInstances {
    async fn publish(&self, _change: Change) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_their_text_and_huge_ones_become_forget_everything() {
        let user = Change::User(UserId::generate());
        let sessions = Change::Sessions(vec![SessionId::generate(), SessionId::generate()]);
        for change in [user, sessions, Change::All] {
            assert_eq!(Change::decode(&change.encode()), Some(change));
        }
        let many = Change::Sessions((0..500).map(|_| SessionId::generate()).collect());
        assert_eq!(many.encode(), "*");
        assert_eq!(Change::decode("s:not-a-uuid"), None);
        assert_eq!(Change::decode("hello"), None);
    }
}
