//! Encryption of secrets kept at rest: one-time tokens waiting in the email outbox today, TOTP
//! secrets later. Storage adapters seal a secret before it reaches a row and open it when they
//! read the row back, so a copy of the database (a backup, a replica, a support dump) does not
//! hand out working tokens.

use secrecy::SecretSlice;

/// Why a sealed value could not be opened. Never carries the value or the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not something [`SecretCipher::seal`] produces (wrong prefix, bad encoding, truncated).
    #[error("the sealed value is malformed")]
    Malformed,
    /// Sealed under a key that is neither the current one nor a retired one.
    #[error("the sealed value was made with an unknown key (id {0:?})")]
    UnknownKey(KeyId),
    /// A known key, but authentication failed: altered, or opened with the wrong context.
    #[error("the sealed value does not authenticate (altered, or sealed for another record)")]
    Tampered,
}

/// The short public id of an encryption key, written in front of every value it seals so that
/// the right key (current or retired) is found without trying them all. It reveals nothing
/// about the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 4]);

impl KeyId {
    /// The id with these bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 4]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// Authenticated encryption of small secrets with a current key and retired keys.
///
/// Sealed values are ASCII (they fit text and JSON columns) and name the key that sealed them.
/// `context` is authenticated but not stored: pass something that identifies the record (its
/// id and kind), so a sealed value copied into another record does not open there.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait SecretCipher: Send + Sync {
    /// Seals `plaintext` for `context` under the current key, with a fresh random nonce (two
    /// seals of the same value differ).
    ///
    /// # Errors
    ///
    /// MUST fail only when the operating system's random generator fails; MUST NOT panic.
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> anyhow::Result<String>;

    /// Opens a value sealed by [`seal`](Self::seal) under the current key or a retired one.
    ///
    /// # Errors
    ///
    /// MUST return [`OpenError::Malformed`] for anything `seal` does not produce,
    /// [`OpenError::UnknownKey`] when no configured key has the value's key id, and
    /// [`OpenError::Tampered`] when the key is known but the value (or `context`) does not
    /// authenticate. MUST NOT panic on any input.
    fn open(&self, sealed: &str, context: &[u8]) -> Result<SecretSlice<u8>, OpenError>;
}
