//! The use cases. Each service takes the ports it needs through [`Ports`] and returns
//! per-operation error enums that the HTTP layer maps to responses in one place.

pub mod account;
pub mod auth;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use crate::ports::{AccessTokens, Clock, OpaqueTokens, PasswordHasher, SessionRepository, UserRepository};

/// Every port the use cases use, shared by the services.
#[derive(Clone)]
pub struct Ports {
    /// User storage.
    pub users: Arc<dyn UserRepository>,
    /// Session storage.
    pub sessions: Arc<dyn SessionRepository>,
    /// Password hashing.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Access-token signing and verification.
    pub access_tokens: Arc<dyn AccessTokens>,
    /// Opaque-token generation and hashing.
    pub opaque_tokens: Arc<dyn OpaqueTokens>,
    /// The time.
    pub clock: Arc<dyn Clock>,
}
