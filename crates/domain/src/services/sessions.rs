//! Sessions after sign-in: refreshing, signing out, listing and revoking, and checking the
//! access tokens that carry a session id.

use secrecy::{ExposeSecret, SecretString};

use crate::activity::{ActivityAction, NewActivity};
use crate::ids::{SessionId, UserId};
use crate::ports::Rotation;
use crate::services::auth::{AuthSettings, TokenPair};
use crate::services::{Ports, issue_access_token, publish_revocations};
use crate::session::{RequestContext, Session};
use crate::user::{Role, UserStatus};

/// The verified bearer of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user_id: UserId,
    /// Their session.
    pub session_id: SessionId,
    /// Their roles when the token was issued.
    pub roles: Vec<Role>,
}

/// Why a bearer token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    /// Bad signature, expired, malformed, revoked session, or a session of someone else.
    #[error("the access token is invalid or expired")]
    InvalidToken,
    /// Storage could not be asked.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Unknown token, or its session ended (revoked, expired, account gone or disabled).
    #[error("the refresh token is invalid or expired")]
    InvalidToken,
    /// A spent token was presented again; the whole session has been revoked.
    #[error("the refresh token was already used; the session has been revoked")]
    Reused,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why a session could not be revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeSessionError {
    /// No live session with this id belongs to the caller.
    #[error("no such session")]
    NotFound,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// A session as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// The session.
    pub session: Session,
    /// Whether the caller's token belongs to it.
    pub current: bool,
}

/// Refresh, sign-out, session management and access-token checks.
#[derive(Clone)]
pub struct SessionService {
    ports: Ports,
    settings: AuthSettings,
}

impl SessionService {
    /// Builds the service.
    #[must_use]
    pub fn new(ports: Ports, settings: AuthSettings) -> Self {
        Self { ports, settings }
    }

    /// Verifies a bearer token and says who carries it.
    ///
    /// Besides the signature and expiry, the token's session must be live (neither revoked
    /// nor expired) and belong to the token's subject. A live session is answered from the
    /// read cache when it holds it (every revocation removes it there, on every instance,
    /// before the revoking request answers); otherwise storage is asked and the cache filled.
    ///
    /// # Errors
    ///
    /// [`AuthenticateError::InvalidToken`] for any token that is not currently valid.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, AuthenticateError> {
        let claims = self.ports.access_tokens.verify(bearer).map_err(|_| AuthenticateError::InvalidToken)?;
        let session_id = claims.session_id;
        let now = self.ports.clock.now();
        let owner = match self.ports.cache.session_owner(session_id, now) {
            Some(owner) => owner,
            None => self.live_owner_in_storage(session_id, now).await?.ok_or(AuthenticateError::InvalidToken)?,
        };
        if owner != claims.user_id {
            return Err(AuthenticateError::InvalidToken);
        }
        Ok(Principal { user_id: claims.user_id, session_id, roles: claims.roles })
    }

    /// The owner of the session if storage has it live, caching it.
    async fn live_owner_in_storage(
        &self,
        id: SessionId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Option<UserId>> {
        let ticket = self.ports.cache.ticket();
        let Some(session) = self.ports.sessions.find(id).await?.filter(|s| s.is_live_at(now)) else {
            return Ok(None);
        };
        self.ports.cache.fill_session(ticket, &session);
        Ok(Some(session.user_id))
    }

    /// Exchanges a refresh token for a new pair in the same session. The presented token is
    /// spent; presenting it again outside the configured grace window revokes the whole
    /// session and records `auth.refresh_reused`. Within the window it gets a fresh access
    /// token and the same successor refresh token as the first time (the successor is derived
    /// from the presented token), so the session never forks into two chains.
    ///
    /// # Errors
    ///
    /// See [`RefreshError`].
    #[tracing::instrument(skip_all, fields(session_id))]
    pub async fn refresh(&self, presented: &SecretString, context: RequestContext) -> Result<TokenPair, RefreshError> {
        let now = self.ports.clock.now();
        let successor = self.ports.refresh_successors.successor_of(presented.expose_secret());
        let presented = self.ports.opaque_tokens.hash(presented.expose_secret());
        let rotation =
            self.ports.sessions.rotate(presented, successor.hash, now, self.settings.refresh_reuse_grace).await?;
        let session = match rotation {
            Rotation::Rotated(session) => session,
            Rotation::Reused(session) => {
                tracing::warn!(session_id = %session.id, "a spent refresh token was presented again; revoking the session");
                let event = NewActivity {
                    actor_id: None,
                    ..NewActivity::by_user(session.user_id, ActivityAction::RefreshReused, &context, now)
                }
                .with_detail("session_id", session.id);
                if self.ports.sessions.revoke(session.user_id, session.id, now, event).await? {
                    publish_revocations(&self.ports, &self.settings, vec![session.id], now).await;
                }
                return Err(RefreshError::Reused);
            }
            Rotation::SessionEnded | Rotation::Unknown => return Err(RefreshError::InvalidToken),
        };
        tracing::Span::current().record("session_id", tracing::field::display(session.id));
        let user = self.ports.users.find_by_id(session.user_id).await?;
        let Some(user) = user.filter(|user| user.status_at(now) != UserStatus::Disabled) else {
            return Err(RefreshError::InvalidToken);
        };
        let access_token = issue_access_token(&self.ports, &self.settings, &user, session.id, now)?;
        Ok(TokenPair {
            access_token,
            expires_in: self.settings.access_ttl.num_seconds(),
            refresh_token: successor.secret,
            refresh_expires_in: (session.expires_at - now).num_seconds().max(0),
            session_id: session.id,
            user_id: user.id,
        })
    }

    /// The session a refresh token (spent or not) belongs to, for per-session rate limits.
    ///
    /// # Errors
    ///
    /// Only storage failures; an unknown token is `Ok(None)`.
    pub async fn session_of(&self, presented: &SecretString) -> anyhow::Result<Option<SessionId>> {
        let hash = self.ports.opaque_tokens.hash(presented.expose_secret());
        Ok(self.ports.sessions.find_by_refresh_token(&hash).await?.map(|session| session.id))
    }

    /// Ends the session a refresh token belongs to. Unknown or already ended sessions are
    /// not an error: signing out twice is harmless, and the answer reveals nothing.
    ///
    /// # Errors
    ///
    /// Only storage failures.
    pub async fn logout(&self, presented: &SecretString, context: RequestContext) -> anyhow::Result<()> {
        let hash = self.ports.opaque_tokens.hash(presented.expose_secret());
        let Some(session) = self.ports.sessions.find_by_refresh_token(&hash).await? else {
            return Ok(());
        };
        self.end(session.user_id, session.id, &context).await?;
        Ok(())
    }

    /// The caller's live sessions, newest first, marking the one their token belongs to.
    ///
    /// # Errors
    ///
    /// Only storage failures.
    pub async fn list(&self, principal: &Principal) -> anyhow::Result<Vec<SessionView>> {
        let sessions = self.ports.sessions.list_live(principal.user_id, self.ports.clock.now()).await?;
        Ok(sessions
            .into_iter()
            .map(|session| SessionView { current: session.id == principal.session_id, session })
            .collect())
    }

    /// Revokes one of the caller's sessions (possibly the current one).
    ///
    /// # Errors
    ///
    /// [`RevokeSessionError::NotFound`] when no live session with this id is the caller's.
    pub async fn revoke(
        &self,
        principal: &Principal,
        session: SessionId,
        context: RequestContext,
    ) -> Result<(), RevokeSessionError> {
        if self.end(principal.user_id, session, &context).await? { Ok(()) } else { Err(RevokeSessionError::NotFound) }
    }

    /// Revokes every session of the caller but the current one.
    ///
    /// # Errors
    ///
    /// Only storage failures.
    pub async fn revoke_others(&self, principal: &Principal) -> anyhow::Result<()> {
        let now = self.ports.clock.now();
        let revoked = self.ports.sessions.revoke_all(principal.user_id, Some(principal.session_id), now).await?;
        publish_revocations(&self.ports, &self.settings, revoked, now).await;
        Ok(())
    }

    /// Revokes a session of `user_id` with an `auth.logout` event; `false` when there was
    /// no such live session.
    async fn end(&self, user_id: UserId, session: SessionId, context: &RequestContext) -> anyhow::Result<bool> {
        let now = self.ports.clock.now();
        let event =
            NewActivity::by_user(user_id, ActivityAction::Logout, context, now).with_detail("session_id", session);
        let revoked = self.ports.sessions.revoke(user_id, session, now, event).await?;
        if revoked {
            publish_revocations(&self.ports, &self.settings, vec![session], now).await;
        }
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{
        AccessClaims, InvalidAccessToken, MockSessionRepository, MockUserRepository, OpaqueToken, TokenHash,
    };
    use crate::services::testing::{Mocks, now, ports_with_mocks, sample_user, settings};
    use chrono::Duration;
    use mockall::predicate::eq;
    use uuid::Uuid;

    fn session_of(user_id: UserId) -> Session {
        Session {
            id: SessionId::generate(),
            user_id,
            context: RequestContext::default(),
            created_at: now() - Duration::days(1),
            last_used_at: now(),
            expires_at: now() + Duration::days(29),
            revoked_at: None,
        }
    }

    fn claims(user_id: UserId, session_id: SessionId) -> AccessClaims {
        AccessClaims {
            user_id,
            session_id,
            roles: vec![Role::User],
            issued_at: now(),
            expires_at: now() + Duration::minutes(15),
            token_id: Uuid::now_v7(),
        }
    }

    fn service(users: MockUserRepository, sessions: MockSessionRepository, mocks: Mocks) -> SessionService {
        SessionService::new(ports_with_mocks(users, sessions, mocks), settings())
    }

    fn verifying_token(user_id: UserId, session_id: SessionId) -> Mocks {
        let mut mocks = Mocks::default();
        mocks.access_tokens.expect_verify().returning(move |_| Ok(claims(user_id, session_id)));
        mocks
    }

    fn finding(session: Session) -> MockSessionRepository {
        let mut sessions = MockSessionRepository::new();
        let id = session.id;
        sessions.expect_find().with(eq(id)).returning(move |_| Ok(Some(session.clone())));
        sessions
    }

    #[tokio::test]
    async fn a_valid_token_of_a_live_session_authenticates_and_storage_is_asked_once() {
        let user = sample_user();
        let session = session_of(user.id);
        let session_id = session.id;
        let mocks = verifying_token(user.id, session_id);
        let mut sessions = MockSessionRepository::new();
        sessions.expect_find().times(1).return_once(move |_| Ok(Some(session)));
        let service = service(MockUserRepository::new(), sessions, mocks);

        let first = service.authenticate("token").await.expect("valid");
        let second = service.authenticate("token").await.expect("valid");

        assert_eq!(first, Principal { user_id: user.id, session_id, roles: vec![Role::User] });
        assert_eq!(second, first, "the second check is answered by the read cache");
    }

    #[tokio::test]
    async fn a_token_that_does_not_verify_is_refused() {
        let mut mocks = Mocks::default();
        mocks.access_tokens.expect_verify().times(1).returning(|_| Err(InvalidAccessToken));

        let result =
            service(MockUserRepository::new(), MockSessionRepository::new(), mocks).authenticate("forged").await;

        assert!(matches!(result, Err(AuthenticateError::InvalidToken)), "{result:?}");
    }

    #[tokio::test]
    async fn a_token_of_an_unknown_session_is_refused() {
        let user = sample_user();
        let session_id = SessionId::generate();
        let mocks = verifying_token(user.id, session_id);
        let mut sessions = MockSessionRepository::new();
        sessions.expect_find().times(1).returning(|_| Ok(None));

        let result = service(MockUserRepository::new(), sessions, mocks).authenticate("t").await;

        assert!(matches!(result, Err(AuthenticateError::InvalidToken)), "{result:?}");
    }

    #[tokio::test]
    async fn a_token_whose_session_belongs_to_someone_else_is_refused() {
        let user = sample_user();
        let someone_else = session_of(UserId::generate());
        let mocks = verifying_token(user.id, someone_else.id);

        let result = service(MockUserRepository::new(), finding(someone_else), mocks).authenticate("t").await;

        assert!(matches!(result, Err(AuthenticateError::InvalidToken)), "{result:?}");
    }

    #[tokio::test]
    async fn a_session_revoked_in_storage_is_refused() {
        let user = sample_user();
        let mut session = session_of(user.id);
        session.revoked_at = Some(now() - Duration::minutes(1));
        let mocks = verifying_token(user.id, session.id);

        let result = service(MockUserRepository::new(), finding(session), mocks).authenticate("t").await;

        assert!(matches!(result, Err(AuthenticateError::InvalidToken)), "{result:?}");
    }

    #[tokio::test]
    async fn a_cached_session_revoked_here_is_refused_at_once() {
        let user = sample_user();
        let session = session_of(user.id);
        let session_id = session.id;
        let mut mocks = verifying_token(user.id, session_id);
        mocks.revocations.expect_revoke().times(1).returning(|_, _| Ok(()));
        let mut sessions = MockSessionRepository::new();
        let mut revoked = session.clone();
        revoked.revoked_at = Some(now());
        let mut finds = vec![revoked, session];
        sessions.expect_find().times(2).returning(move |_| Ok(finds.pop()));
        sessions.expect_revoke().times(1).returning(|_, _, _, _| Ok(true));
        let service = service(MockUserRepository::new(), sessions, mocks);
        let principal = service.authenticate("t").await.expect("live");

        service.revoke(&principal, session_id, RequestContext::default()).await.expect("revoked");
        let result = service.authenticate("t").await;

        assert!(matches!(result, Err(AuthenticateError::InvalidToken)), "{result:?}");
    }

    fn rotating(outcome: Rotation) -> (MockSessionRepository, Mocks) {
        let mut mocks = Mocks::default();
        mocks
            .opaque_tokens
            .expect_hash()
            .with(eq("presented"))
            .returning(|_| TokenHash::new("presented-hash".to_owned()));
        mocks.refresh_successors.expect_successor_of().with(eq("presented")).times(1).returning(|_| successor());
        let mut sessions = MockSessionRepository::new();
        sessions
            .expect_rotate()
            .withf(|presented, successor, at, grace| {
                presented.as_str() == "presented-hash"
                    && successor.as_str() == "successor-hash"
                    && *at == now()
                    && *grace == Duration::zero()
            })
            .times(1)
            .return_once(move |_, _, _, _| Ok(outcome));
        (sessions, mocks)
    }

    fn presented() -> SecretString {
        SecretString::from("presented".to_owned())
    }

    /// The successor derived from [`presented`].
    fn successor() -> OpaqueToken {
        OpaqueToken {
            secret: SecretString::from("successor".to_owned()),
            hash: TokenHash::new("successor-hash".to_owned()),
        }
    }

    #[tokio::test]
    async fn a_token_presented_twice_within_the_grace_window_gets_the_same_successor_and_fresh_access_tokens() {
        let user = sample_user();
        let session = session_of(user.id);
        let grace = Duration::seconds(10);
        let mut mocks = Mocks::default();
        mocks
            .opaque_tokens
            .expect_hash()
            .with(eq("presented"))
            .returning(|_| TokenHash::new("presented-hash".to_owned()));
        mocks.refresh_successors.expect_successor_of().with(eq("presented")).times(2).returning(|_| successor());
        let mut sessions = MockSessionRepository::new();
        sessions
            .expect_rotate()
            .withf(move |presented, successor, at, window| {
                presented.as_str() == "presented-hash"
                    && successor.as_str() == "successor-hash"
                    && *at == now()
                    && *window == grace
            })
            .times(2)
            .returning(move |_, _, _, _| Ok(Rotation::Rotated(session.clone())));
        let mut issued = 0;
        mocks.access_tokens.expect_issue().times(2).returning(move |_| {
            issued += 1;
            Ok(format!("access-{issued}"))
        });
        let found = user.clone();
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().with(eq(user.id)).times(2).returning(move |_| Ok(Some(found.clone())));
        let service = SessionService::new(
            ports_with_mocks(users, sessions, mocks),
            AuthSettings { refresh_reuse_grace: grace, ..settings() },
        );

        let first = service.refresh(&presented(), RequestContext::default()).await.expect("the first refresh");
        let retry = service.refresh(&presented(), RequestContext::default()).await.expect("the retry");

        assert_eq!(first.refresh_token.expose_secret(), "successor");
        assert_eq!(retry.refresh_token.expose_secret(), "successor", "the retry gets the same successor, not a fork");
        assert_eq!((first.access_token.as_str(), retry.access_token.as_str()), ("access-1", "access-2"));
        assert_eq!(first.session_id, retry.session_id);
    }

    #[tokio::test]
    async fn a_refresh_rotates_and_issues_a_new_pair_in_the_same_session() {
        let user = sample_user();
        let session = session_of(user.id);
        let session_id = session.id;
        let (sessions, mut mocks) = rotating(Rotation::Rotated(session));
        mocks
            .access_tokens
            .expect_issue()
            .withf(move |c| c.session_id == session_id && c.expires_at == now() + Duration::minutes(15))
            .times(1)
            .returning(|_| Ok("new-access".to_owned()));
        let found = user.clone();
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().with(eq(user.id)).times(1).return_once(move |_| Ok(Some(found)));

        let pair =
            service(users, sessions, mocks).refresh(&presented(), RequestContext::default()).await.expect("fresh");

        assert_eq!(pair.access_token, "new-access");
        assert_eq!(pair.session_id, session_id);
        assert_eq!(secrecy::ExposeSecret::expose_secret(&pair.refresh_token), "successor");
        assert_eq!(pair.refresh_expires_in, Duration::days(29).num_seconds(), "the session keeps its expiry");
    }

    #[tokio::test]
    async fn a_reused_refresh_token_revokes_the_session_and_records_it() {
        let user = sample_user();
        let session = session_of(user.id);
        let session_id = session.id;
        let (mut sessions, mut mocks) = rotating(Rotation::Reused(session));
        sessions
            .expect_revoke()
            .withf(move |owner, id, _, event| {
                *owner == user.id
                    && *id == session_id
                    && event.action == ActivityAction::RefreshReused
                    && event.actor_id.is_none()
            })
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        mocks
            .revocations
            .expect_revoke()
            .with(eq(vec![session_id]), eq(now() + Duration::minutes(15)))
            .times(1)
            .returning(|_, _| Ok(()));

        let result =
            service(MockUserRepository::new(), sessions, mocks).refresh(&presented(), RequestContext::default()).await;

        assert!(matches!(result, Err(RefreshError::Reused)), "{result:?}");
    }

    #[tokio::test]
    async fn an_unknown_or_ended_refresh_token_is_invalid() {
        for outcome in [Rotation::Unknown, Rotation::SessionEnded] {
            let (sessions, mocks) = rotating(outcome);

            let result = service(MockUserRepository::new(), sessions, mocks)
                .refresh(&presented(), RequestContext::default())
                .await;

            assert!(matches!(result, Err(RefreshError::InvalidToken)), "{result:?}");
        }
    }

    #[tokio::test]
    async fn a_disabled_user_cannot_refresh() {
        let mut user = sample_user();
        user.status = UserStatus::Disabled;
        let (sessions, mocks) = rotating(Rotation::Rotated(session_of(user.id)));
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().times(1).return_once(move |_| Ok(Some(user)));

        let result = service(users, sessions, mocks).refresh(&presented(), RequestContext::default()).await;

        assert!(matches!(result, Err(RefreshError::InvalidToken)), "{result:?}");
    }

    #[tokio::test]
    async fn logout_revokes_the_tokens_session_with_an_event() {
        let user = sample_user();
        let session = session_of(user.id);
        let session_id = session.id;
        let mut mocks = Mocks::default();
        mocks.opaque_tokens.expect_hash().returning(|_| TokenHash::new("h".to_owned()));
        mocks.revocations.expect_revoke().times(1).returning(|_, _| Ok(()));
        let mut sessions = MockSessionRepository::new();
        sessions.expect_find_by_refresh_token().times(1).return_once(move |_| Ok(Some(session)));
        sessions
            .expect_revoke()
            .withf(move |_, id, _, event| *id == session_id && event.action == ActivityAction::Logout)
            .times(1)
            .returning(|_, _, _, _| Ok(true));

        let result =
            service(MockUserRepository::new(), sessions, mocks).logout(&presented(), RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn logging_out_with_an_unknown_token_is_harmless() {
        let mut mocks = Mocks::default();
        mocks.opaque_tokens.expect_hash().returning(|_| TokenHash::new("h".to_owned()));
        let mut sessions = MockSessionRepository::new();
        sessions.expect_find_by_refresh_token().times(1).returning(|_| Ok(None));
        sessions.expect_revoke().never();

        let result =
            service(MockUserRepository::new(), sessions, mocks).logout(&presented(), RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn the_session_list_marks_the_current_session() {
        let user = sample_user();
        let current = session_of(user.id);
        let other = session_of(user.id);
        let caller = Principal { user_id: user.id, session_id: current.id, roles: vec![Role::User] };
        let listed = vec![other.clone(), current.clone()];
        let mut sessions = MockSessionRepository::new();
        sessions.expect_list_live().with(eq(user.id), eq(now())).times(1).return_once(move |_, _| Ok(listed));

        let views = service(MockUserRepository::new(), sessions, Mocks::default()).list(&caller).await.expect("listed");

        assert_eq!(views.iter().map(|v| v.current).collect::<Vec<_>>(), vec![false, true]);
    }

    #[tokio::test]
    async fn revoking_a_session_that_is_not_the_callers_is_not_found() {
        let user = sample_user();
        let caller = Principal { user_id: user.id, session_id: SessionId::generate(), roles: vec![Role::User] };
        let mut sessions = MockSessionRepository::new();
        sessions.expect_revoke().times(1).returning(|_, _, _, _| Ok(false));

        let result = service(MockUserRepository::new(), sessions, Mocks::default())
            .revoke(&caller, SessionId::generate(), RequestContext::default())
            .await;

        assert!(matches!(result, Err(RevokeSessionError::NotFound)), "{result:?}");
    }

    #[tokio::test]
    async fn revoking_the_other_sessions_keeps_the_current_one() {
        let user = sample_user();
        let caller = Principal { user_id: user.id, session_id: SessionId::generate(), roles: vec![Role::User] };
        let others = vec![SessionId::generate(), SessionId::generate()];
        let revoked = others.clone();
        let mut sessions = MockSessionRepository::new();
        sessions
            .expect_revoke_all()
            .with(eq(user.id), eq(Some(caller.session_id)), eq(now()))
            .times(1)
            .return_once(move |_, _, _| Ok(revoked));
        let mut mocks = Mocks::default();
        mocks
            .revocations
            .expect_revoke()
            .with(eq(others), eq(now() + Duration::minutes(15)))
            .times(1)
            .returning(|_, _| Ok(()));

        let result = service(MockUserRepository::new(), sessions, mocks).revoke_others(&caller).await;

        assert!(result.is_ok(), "{result:?}");
    }
}
