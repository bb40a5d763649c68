//! Gatehouse's security adapters: password hashing, access tokens and opaque tokens.
//!
//! - [`Argon2Hasher`]: argon2id on a bounded pool of worker threads
//!   ([`gatehouse_domain::ports::PasswordHasher`]).
//! - [`JwtAccessTokens`]: signed JWT access tokens, HS256 or EdDSA/RS256 with a JWKS
//!   ([`gatehouse_domain::ports::AccessTokens`]).
//! - [`AtRestCipher`]: XChaCha20-Poly1305 encryption of secrets kept at rest, with key ids so
//!   retired keys still decrypt ([`gatehouse_domain::ports::SecretCipher`]).
//! - [`RandomTokens`]: 256-bit random opaque tokens stored as SHA-256 hashes
//!   ([`gatehouse_domain::ports::OpaqueTokens`]).
//! - [`DerivedSuccessors`]: refresh-token successors keyed from the server's secret, the same
//!   for the same predecessor ([`gatehouse_domain::ports::RefreshSuccessors`]).
//!
//! Depends on the domain's ports only; never on storage, HTTP or configuration crates. Secrets
//! come in as [`secrecy::SecretString`] and are never logged.

mod at_rest;
mod cursor;
mod jwt;
mod opaque;
mod password;
mod pool;
mod successors;

pub use at_rest::{AtRestCipher, ENCRYPTION_KEY_BYTES, EncryptionKey, InvalidEncryptionKey};
pub use cursor::CursorSealer;
pub use jwt::{
    ACCESS_TOKEN_TYP, Jwk, Jwks, JwtAccessTokens, JwtAlgorithm, MIN_HS256_SECRET_BYTES, MIN_RSA_BITS, SigningKeyPem,
    UnknownJwtAlgorithm, VerificationKeyPem,
};
pub use opaque::RandomTokens;
pub use password::{Argon2Hasher, Argon2Params, HashPoolSettings};
pub use successors::DerivedSuccessors;
