//! Tamper-evident list cursors: the server hands out its keyset position opaquely and can
//! tell a cursor it issued from one a client made up or altered.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Bytes of the HMAC-SHA-256 tag kept on each cursor: 128 bits, plenty against forgery of
/// a value whose only power is choosing where a list starts.
const TAG_BYTES: usize = 16;

/// Seals and opens cursors with an HMAC key derived from the server's secret material, so
/// every instance sharing the configuration accepts the others' cursors.
#[derive(Clone)]
pub struct CursorSealer {
    key: [u8; 32],
}

impl std::fmt::Debug for CursorSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorSealer(<key>)")
    }
}

impl CursorSealer {
    /// Derives the cursor key from `secret_material` (the JWT secret or signing key), kept
    /// separate from its other uses by a domain label.
    #[must_use]
    pub fn new(secret_material: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"gatehouse cursor key v1\0");
        hasher.update(secret_material);
        Self { key: hasher.finalize().into() }
    }

    /// `payload` and its tag, base64url-encoded.
    #[must_use]
    pub fn seal(&self, payload: &[u8]) -> String {
        let mut sealed = payload.to_vec();
        sealed.extend_from_slice(&self.tag(payload)[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The payload of a cursor this sealer made, or `None` for anything else (malformed,
    /// truncated, altered, or sealed with another key). Compares tags in constant time.
    #[must_use]
    pub fn open(&self, cursor: &str) -> Option<Vec<u8>> {
        let sealed = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let split = sealed.len().checked_sub(TAG_BYTES)?;
        let (payload, tag) = sealed.split_at(split);
        let mut mac = self.mac();
        mac.update(payload);
        mac.verify_truncated_left(tag).ok()?;
        Some(payload.to_vec())
    }

    fn tag(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; a 32-byte key cannot be refused.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_cursor_opens_to_its_payload() {
        let sealer = CursorSealer::new(b"secret");
        let cursor = sealer.seal(b"{\"k\":1}");
        assert_eq!(sealer.open(&cursor).as_deref(), Some(&b"{\"k\":1}"[..]));
    }

    #[test]
    fn altered_foreign_or_malformed_cursors_do_not_open() {
        let sealer = CursorSealer::new(b"secret");
        let cursor = sealer.seal(b"position 42");
        let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).expect("base64");
        bytes[3] ^= 1;
        let altered = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(sealer.open(&altered), None, "a flipped payload bit");
        assert_eq!(CursorSealer::new(b"other").open(&cursor), None, "another key");
        for junk in ["", "!!!", "abc", &cursor[..cursor.len() - 2]] {
            assert_eq!(sealer.open(junk), None, "{junk:?}");
        }
    }
}
