//! The caller's own account.

use crate::ids::UserId;
use crate::services::Ports;
use crate::user::User;

/// Why the caller's account could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GetMeError {
    /// The account no longer exists (deleted since the token was issued).
    #[error("the account no longer exists")]
    NotFound,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Use cases on the caller's own account.
#[derive(Clone)]
pub struct AccountService {
    ports: Ports,
}

impl AccountService {
    /// Builds the service over the given ports.
    #[must_use]
    pub fn new(ports: Ports) -> Self {
        Self { ports }
    }

    /// The caller's account.
    ///
    /// # Errors
    ///
    /// [`GetMeError::NotFound`] when the user was deleted; `Unexpected` on storage failure.
    #[tracing::instrument(skip(self), fields(user_id = %user_id))]
    pub async fn get_me(&self, user_id: UserId) -> Result<User, GetMeError> {
        self.ports.users.find_by_id(user_id).await?.ok_or(GetMeError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MockUserRepository;
    use crate::services::testing::{ports_with, sample_user};
    use mockall::predicate::eq;

    #[tokio::test]
    async fn get_me_returns_the_callers_account() {
        let user = sample_user();
        let id = user.id;
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().with(eq(id)).times(1).return_once(move |_| Ok(Some(user)));
        let service = AccountService::new(ports_with(users, Default::default()));

        let found = service.get_me(id).await.expect("found");

        assert_eq!(found.id, id);
    }

    #[tokio::test]
    async fn get_me_of_a_deleted_account_is_not_found() {
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().times(1).return_once(|_| Ok(None));
        let service = AccountService::new(ports_with(users, Default::default()));

        let result = service.get_me(UserId::generate()).await;

        assert!(matches!(result, Err(GetMeError::NotFound)), "{result:?}");
    }

    #[tokio::test]
    async fn get_me_reports_storage_failures_as_unexpected() {
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().times(1).return_once(|_| Err(anyhow::anyhow!("connection reset")));
        let service = AccountService::new(ports_with(users, Default::default()));

        let result = service.get_me(UserId::generate()).await;

        assert!(matches!(result, Err(GetMeError::Unexpected(_))), "{result:?}");
    }
}
