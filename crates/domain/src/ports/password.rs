//! Password hashing.

use std::fmt;

use async_trait::async_trait;
use secrecy::SecretString;

/// A password hash in PHC string format (`$argon2id$v=19$m=…`). Not secret like a password,
/// but never shown: `Debug` is redacted and no API response carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string produced by a [`PasswordHasher`] or read from storage.
    #[must_use]
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string, for storage.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// The outcome of checking a password against a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The password matches. `needs_rehash` is true when the hash was made with parameters
    /// other than the configured ones.
    Valid {
        /// Whether the stored hash should be replaced by one with the current parameters.
        needs_rehash: bool,
    },
    /// The password does not match, or there was no hash to match.
    Invalid,
}

/// Why hashing could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The hashing pool's queue is full; the caller should answer "try again later".
    #[error("the password hashing queue is full")]
    Overloaded,
    /// Anything else (a malformed stored hash, a crashed worker).
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// `impl From<HashError>` for use-case errors that have an `Overloaded` and an
/// `Unexpected(anyhow::Error)` variant, the two ways hashing can fail.
macro_rules! from_hash_error {
    ($($error:ty),+ $(,)?) => {$(
        impl From<$crate::ports::HashError> for $error {
            fn from(e: $crate::ports::HashError) -> Self {
                match e {
                    $crate::ports::HashError::Overloaded => Self::Overloaded,
                    $crate::ports::HashError::Unexpected(e) => Self::Unexpected(e),
                }
            }
        }
    )+};
}
pub(crate) use from_hash_error;

/// Hashes and verifies passwords. CPU-heavy: implementations MUST NOT block the async
/// executor and MUST bound their queue.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// Hashes a password with the configured parameters and a fresh salt. Callers pass
    /// [`crate::NewPassword::secret`] for new passwords, or a just-verified password when
    /// upgrading a hash.
    ///
    /// # Errors
    ///
    /// MUST return [`HashError::Overloaded`] at once when the queue is full.
    async fn hash(&self, password: &SecretString) -> Result<PasswordHash, HashError>;

    /// Checks `password` against `hash`. With `hash == None` (unknown account, or one
    /// without a password) it MUST still do the work of one verification against a dummy
    /// hash and return [`PasswordCheck::Invalid`], so both cases take the same time.
    ///
    /// # Errors
    ///
    /// MUST return [`HashError::Overloaded`] at once when the queue is full, and
    /// [`HashError::Unexpected`] when the stored hash cannot be parsed.
    async fn verify<'a>(
        &self,
        password: &SecretString,
        hash: Option<&'a PasswordHash>,
    ) -> Result<PasswordCheck, HashError>;
}
