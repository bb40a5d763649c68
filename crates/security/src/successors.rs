//! Refresh-token successors derived from their predecessors, so that a spent token presented
//! again within the grace window gets the same successor back with nothing recoverable stored.
//!
//! Implements [`gatehouse_domain::ports::RefreshSuccessors`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_domain::ports::{OpaqueToken, OpaqueTokens as _, RefreshSuccessors};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::SecretString;
use sha2::Sha256;

use crate::opaque::RandomTokens;

/// The HKDF `info` that keeps this key apart from every other use of the same secret.
const LABEL: &[u8] = b"refresh-grace";

/// Successor = base64url(HMAC-SHA-256(key, predecessor)): 43 characters like a
/// [`RandomTokens`] token, hashed the same way, and the same on every instance sharing the key.
///
/// The key is HKDF-SHA-256 (RFC 5869, no salt, `info` = `refresh-grace`) of the server's secret
/// material. Only token hashes are stored, so a copy of the database does not yield a single
/// successor; deriving one takes both the key and the plaintext predecessor, and whoever holds
/// the predecessor could exchange it within the grace window anyway.
#[derive(Clone)]
pub struct DerivedSuccessors {
    key: [u8; 32],
}

impl std::fmt::Debug for DerivedSuccessors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DerivedSuccessors(<key>)")
    }
}

impl DerivedSuccessors {
    /// Derives the successor key from `secret_material` (the JWT secret or signing key).
    #[must_use]
    pub fn new(secret_material: &[u8]) -> Self {
        Self { key: hkdf_sha256(secret_material, LABEL) }
    }
}

impl RefreshSuccessors for DerivedSuccessors {
    fn successor_of(&self, presented: &str) -> OpaqueToken {
        let mut mac = hmac(&self.key);
        mac.update(presented.as_bytes());
        let token = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        let hash = RandomTokens.hash(&token);
        OpaqueToken { secret: SecretString::from(token), hash }
    }
}

/// HKDF-SHA-256 with an empty salt and one 32-byte output block: extract, then expand once.
fn hkdf_sha256(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut extract = hmac(&[0; 32]);
    extract.update(ikm);
    let prk = extract.finalize().into_bytes();
    let mut expand = hmac(&prk);
    expand.update(info);
    expand.update(&[1]);
    expand.finalize().into_bytes().into()
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn hkdf_matches_the_rfc_5869_test_vector_without_salt() {
        // RFC 5869, test case 3 (empty salt and info), first 32 bytes of the OKM.
        let okm = hkdf_sha256(&[0x0b; 22], b"");
        let hex: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d");
    }

    #[test]
    fn the_successor_of_a_token_is_always_the_same_and_comes_with_its_hash() {
        let successors = DerivedSuccessors::new(b"secret material of at least 32 bytes");

        let first = successors.successor_of("presented");
        let again = DerivedSuccessors::new(b"secret material of at least 32 bytes").successor_of("presented");

        assert_eq!(first.secret.expose_secret(), again.secret.expose_secret(), "another instance derives it too");
        assert_eq!(first.hash, again.hash);
        assert_eq!(first.hash, RandomTokens.hash(first.secret.expose_secret()), "hashed like any opaque token");
        let secret = first.secret.expose_secret();
        assert_eq!(secret.len(), 43, "{secret}");
        assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{secret}");
    }

    #[test]
    fn successors_differ_by_predecessor_and_by_key() {
        let successors = DerivedSuccessors::new(b"secret material of at least 32 bytes");
        let other_key = DerivedSuccessors::new(b"other secret material of 32 bytes!!");
        let of = |s: &DerivedSuccessors, t: &str| s.successor_of(t).secret.expose_secret().to_owned();

        assert_ne!(of(&successors, "presented"), of(&successors, "presented2"));
        assert_ne!(of(&successors, "presented"), of(&other_key, "presented"));
        assert_ne!(of(&successors, "presented"), "presented");
    }

    #[test]
    fn debug_output_does_not_show_the_key() {
        let shown = format!("{:?}", DerivedSuccessors::new(b"secret material"));
        assert_eq!(shown, "DerivedSuccessors(<key>)");
    }
}
