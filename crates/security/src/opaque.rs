//! Opaque tokens (refresh, email verification, password reset…): random strings shown to
//! their owner once and stored only as a hash.
//!
//! Implements [`gatehouse_domain::ports::OpaqueTokens`]. The hash is plain SHA-256: tokens
//! carry 256 bits of entropy, so a slow hash adds nothing, and lookups are by hash, so there is
//! no comparison to make constant-time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_domain::ports::{OpaqueToken, OpaqueTokens, TokenHash};
use rand::RngExt as _;
use rand::rand_core::UnwrapErr;
use rand::rngs::SysRng;
use secrecy::SecretString;
use sha2::{Digest as _, Sha256};

/// Bytes of randomness per token.
const TOKEN_BYTES: usize = 32;

/// 256-bit tokens from the operating system's CSPRNG, base64url without padding (43
/// characters); their hash is the lowercase hex SHA-256 of the token string (64 characters).
///
/// The port's `generate` cannot fail, so a failing OS generator (which Linux's `getrandom`
/// does not do once booted) panics rather than hand out a weak token.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomTokens;

impl OpaqueTokens for RandomTokens {
    fn generate(&self) -> OpaqueToken {
        let bytes: [u8; TOKEN_BYTES] = UnwrapErr(SysRng).random();
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let hash = self.hash(&token);
        OpaqueToken { secret: SecretString::from(token), hash }
    }

    fn hash(&self, presented: &str) -> TokenHash {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(presented.as_bytes());
        let mut hex = String::with_capacity(digest.len() * 2);
        for byte in digest {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        TokenHash::new(hex)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn a_token_is_43_base64url_characters_and_comes_with_its_hash() {
        let token = RandomTokens.generate();
        let secret = token.secret.expose_secret();

        assert_eq!(secret.len(), 43);
        assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{secret}");
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).expect("base64url").len(), TOKEN_BYTES);
        assert_eq!(token.hash, RandomTokens.hash(secret));
    }

    #[test]
    fn tokens_are_distinct() {
        let tokens: HashSet<String> =
            (0..1000).map(|_| RandomTokens.generate().secret.expose_secret().to_owned()).collect();
        assert_eq!(tokens.len(), 1000);
    }

    #[test]
    fn the_hash_is_the_stable_sha256_hex_of_the_token() {
        assert_eq!(
            RandomTokens.hash("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(RandomTokens.hash("some-token"), RandomTokens.hash("some-token"));
        assert_ne!(RandomTokens.hash("some-token"), RandomTokens.hash("some-tokem"));
    }
}
