//! Encryption of secrets kept at rest ([`gatehouse_domain::ports::SecretCipher`]): one-time
//! tokens waiting in the email outbox, and later TOTP secrets.
//!
//! XChaCha20-Poly1305 with a fresh random 192-bit nonce per value (random nonces of that size
//! never collide in practice, so no counter has to be kept across instances). A sealed value
//! is ASCII:
//!
//! ```text
//! sealed1.<key id: 8 hex digits>.<base64url, no padding: nonce (24 bytes) ‖ ciphertext ‖ tag (16 bytes)>
//! ```
//!
//! The key id is derived from the key (HKDF-SHA-256, its own label) and reveals nothing about
//! it; it lets [`AtRestCipher::open`] pick the current key or a retired one, which is how keys
//! rotate: seal with the new key, keep the old ones as retired until nothing sealed with them
//! remains. The additional data binds the format version, the key id and the caller's context.
//!
//! Keys are 32 random bytes, configured in base64 ([`EncryptionKey::from_base64`]), or derived
//! from other secret material with HKDF-SHA-256 ([`EncryptionKey::derive`]).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use gatehouse_domain::ports::{KeyId, OpenError, SecretCipher};
use hkdf::Hkdf;
use rand::rand_core::TryRng;
use rand::rngs::SysRng;
use secrecy::SecretSlice;
use sha2::Sha256;

/// Bytes of an encryption key.
pub const ENCRYPTION_KEY_BYTES: usize = 32;

/// What every sealed value starts with; the digit is the format version.
const PREFIX: &str = "sealed1.";

const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// Domain separation of the additional data.
const AAD_LABEL: &[u8] = b"gatehouse sealed v1\0";
/// HKDF label of key ids.
const KEY_ID_LABEL: &[u8] = b"gatehouse at-rest key id v1";

/// Why a configured key was refused. Never carries the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEncryptionKey {
    /// Not base64 (standard or URL-safe, padded or not).
    #[error("is not base64 (generate one with `openssl rand -base64 32`)")]
    NotBase64,
    /// Decodes, but not to 32 bytes.
    #[error("must decode to exactly 32 bytes, not {0} (generate one with `openssl rand -base64 32`)")]
    WrongLength(usize),
}

/// One 256-bit key and its public id.
#[derive(Clone)]
pub struct EncryptionKey {
    id: KeyId,
    aead: XChaCha20Poly1305,
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKey").field("id", &self.id.to_string()).finish_non_exhaustive()
    }
}

impl EncryptionKey {
    /// The key whose base64 encoding (standard or URL-safe alphabet, padding optional,
    /// surrounding whitespace ignored) is `encoded`.
    ///
    /// # Errors
    ///
    /// [`InvalidEncryptionKey`] when it is not base64 or not 32 bytes.
    pub fn from_base64(encoded: &str) -> Result<Self, InvalidEncryptionKey> {
        Ok(Self::from_bytes(&Self::decode_base64(encoded)?))
    }

    /// The 32 bytes that `encoded` stands for, as [`from_base64`](Self::from_base64) reads
    /// them (for checks on the key material itself, such as production's weak-key rule).
    ///
    /// # Errors
    ///
    /// [`InvalidEncryptionKey`] when it is not base64 or not 32 bytes.
    pub fn decode_base64(encoded: &str) -> Result<[u8; ENCRYPTION_KEY_BYTES], InvalidEncryptionKey> {
        let encoded = encoded.trim();
        let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(encoded).ok())
            .ok_or(InvalidEncryptionKey::NotBase64)?;
        bytes.as_slice().try_into().map_err(|_| InvalidEncryptionKey::WrongLength(bytes.len()))
    }

    /// A key derived from `secret_material` (for example the JWT secret) with HKDF-SHA-256 under
    /// `label`, so that the same material yields unrelated keys for unrelated uses.
    #[must_use]
    pub fn derive(secret_material: &[u8], label: &[u8]) -> Self {
        let mut bytes = [0_u8; ENCRYPTION_KEY_BYTES];
        Hkdf::<Sha256>::new(None, secret_material)
            .expand(label, &mut bytes)
            .unwrap_or_else(|_| unreachable!("HKDF-SHA-256 yields up to 8160 bytes"));
        Self::from_bytes(&bytes)
    }

    /// The key made of these bytes.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; ENCRYPTION_KEY_BYTES]) -> Self {
        let mut id = [0_u8; 4];
        Hkdf::<Sha256>::new(None, bytes)
            .expand(KEY_ID_LABEL, &mut id)
            .unwrap_or_else(|_| unreachable!("HKDF-SHA-256 yields up to 8160 bytes"));
        Self { id: KeyId::from_bytes(id), aead: XChaCha20Poly1305::new(bytes.into()) }
    }

    /// The key's public id, as written in front of what it seals.
    #[must_use]
    pub fn id(&self) -> KeyId {
        self.id
    }
}

/// Seals with the current key; opens with it or with any retired key.
#[derive(Debug, Clone)]
pub struct AtRestCipher {
    current: EncryptionKey,
    retired: Vec<EncryptionKey>,
}

impl AtRestCipher {
    /// A cipher sealing with `current` and still opening what `retired` keys sealed.
    #[must_use]
    pub fn new(current: EncryptionKey, retired: Vec<EncryptionKey>) -> Self {
        Self { current, retired }
    }

    /// The id of the key new values are sealed with.
    #[must_use]
    pub fn current_key_id(&self) -> KeyId {
        self.current.id
    }
}

fn additional_data(id: KeyId, context: &[u8]) -> Vec<u8> {
    [AAD_LABEL, id.as_bytes().as_slice(), context].concat()
}

fn parse_key_id(hex: &str) -> Option<KeyId> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0_u8; 4];
    for (index, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(KeyId::from_bytes(id))
}

impl SecretCipher for AtRestCipher {
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> anyhow::Result<String> {
        let mut nonce = [0_u8; NONCE_BYTES];
        SysRng
            .try_fill_bytes(&mut nonce)
            .map_err(|e| anyhow::anyhow!("the operating system's random generator failed: {e}"))?;
        let aad = additional_data(self.current.id, context);
        let ciphertext = self
            .current
            .aead
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| anyhow::anyhow!("could not encrypt a value of {} bytes", plaintext.len()))?;
        let mut sealed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}{}.{}", self.current.id, URL_SAFE_NO_PAD.encode(sealed)))
    }

    fn open(&self, sealed: &str, context: &[u8]) -> Result<SecretSlice<u8>, OpenError> {
        let rest = sealed.strip_prefix(PREFIX).ok_or(OpenError::Malformed)?;
        let (id, data) = rest.split_once('.').ok_or(OpenError::Malformed)?;
        let id = parse_key_id(id).ok_or(OpenError::Malformed)?;
        let data = URL_SAFE_NO_PAD.decode(data).map_err(|_| OpenError::Malformed)?;
        if data.len() < NONCE_BYTES + TAG_BYTES {
            return Err(OpenError::Malformed);
        }
        let (nonce, ciphertext) = data.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| OpenError::Malformed)?;
        let aad = additional_data(id, context);
        let mut candidates = std::iter::once(&self.current).chain(&self.retired).filter(|key| key.id == id).peekable();
        if candidates.peek().is_none() {
            return Err(OpenError::UnknownKey(id));
        }
        candidates
            .find_map(|key| key.aead.decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: &aad }).ok())
            .map(SecretSlice::from)
            .ok_or(OpenError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    const KEY_A: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";
    const KEY_B: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

    fn key(encoded: &str) -> EncryptionKey {
        EncryptionKey::from_base64(encoded).expect("a valid key")
    }

    #[test]
    fn a_sealed_value_opens_to_the_plaintext_and_does_not_contain_it() {
        let cipher = AtRestCipher::new(key(KEY_A), Vec::new());

        let sealed = cipher.seal(b"the-token", b"row 1").expect("sealed");

        assert!(sealed.starts_with(&format!("sealed1.{}.", cipher.current_key_id())), "{sealed}");
        assert!(!sealed.contains("the-token"), "{sealed}");
        let opened = cipher.open(&sealed, b"row 1").expect("opens");
        assert_eq!(opened.expose_secret(), b"the-token");
    }

    #[test]
    fn sealing_twice_gives_two_different_values() {
        let cipher = AtRestCipher::new(key(KEY_A), Vec::new());
        assert_ne!(cipher.seal(b"x", b"").expect("sealed"), cipher.seal(b"x", b"").expect("sealed"));
    }

    #[test]
    fn a_retired_key_still_opens_what_it_sealed() {
        let old = AtRestCipher::new(key(KEY_A), Vec::new());
        let sealed = old.seal(b"pending", b"ctx").expect("sealed");

        let rotated = AtRestCipher::new(key(KEY_B), vec![key(KEY_A)]);

        let opened = rotated.open(&sealed, b"ctx").expect("the retired key opens it");
        assert_eq!(opened.expose_secret(), b"pending");
        assert!(
            rotated.seal(b"new", b"ctx").expect("sealed").contains(&rotated.current_key_id().to_string()),
            "new values use the new key"
        );
    }

    #[test]
    fn a_value_sealed_with_a_key_no_longer_configured_is_refused_by_key_id() {
        let sealed = AtRestCipher::new(key(KEY_A), Vec::new()).seal(b"pending", b"ctx").expect("sealed");

        let error = AtRestCipher::new(key(KEY_B), Vec::new()).open(&sealed, b"ctx").expect_err("refused");

        assert_eq!(error, OpenError::UnknownKey(key(KEY_A).id()));
    }

    #[test]
    fn an_altered_value_or_another_context_does_not_open() {
        let cipher = AtRestCipher::new(key(KEY_A), Vec::new());
        let sealed = cipher.seal(b"pending", b"row 1").expect("sealed");

        assert_eq!(cipher.open(&sealed, b"row 2").expect_err("another row"), OpenError::Tampered);
        let mut altered = sealed.clone().into_bytes();
        // A character inside the base64 (the last one may carry padding bits a decoder checks).
        let inside = altered.len() - 8;
        altered[inside] = if altered[inside] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).expect("ascii");
        assert_eq!(cipher.open(&altered, b"row 1").expect_err("altered"), OpenError::Tampered);
    }

    #[test]
    fn garbage_is_malformed_and_never_panics() {
        let cipher = AtRestCipher::new(key(KEY_A), Vec::new());
        let id = cipher.current_key_id();
        for garbage in [
            String::new(),
            "plain-token".to_owned(),
            "sealed1.".to_owned(),
            "sealed1.zzzzzzzz.AAAA".to_owned(),
            format!("sealed1.{id}"),
            format!("sealed1.{id}.!!!"),
            format!("sealed1.{id}.AAAA"),
            format!("sealed1.{id}.{}", URL_SAFE_NO_PAD.encode([0_u8; NONCE_BYTES + TAG_BYTES - 1])),
            "sealed1.é€é€.AAAA".to_owned(),
        ] {
            assert_eq!(cipher.open(&garbage, b"").expect_err("refused"), OpenError::Malformed, "{garbage:?}");
        }
        let forged = format!("sealed1.{id}.{}", URL_SAFE_NO_PAD.encode([0_u8; NONCE_BYTES + TAG_BYTES]));
        assert_eq!(cipher.open(&forged, b"").expect_err("refused"), OpenError::Tampered);
    }

    #[test]
    fn keys_are_parsed_from_base64_of_32_bytes_only() {
        assert!(EncryptionKey::from_base64(KEY_A).is_ok());
        assert!(EncryptionKey::from_base64(KEY_A.trim_end_matches('=')).is_ok(), "padding is optional");
        assert!(EncryptionKey::from_base64(&KEY_A.replace('+', "-").replace('/', "_")).is_ok(), "URL-safe too");
        assert_eq!(EncryptionKey::from_base64("not base64!").expect_err("refused"), InvalidEncryptionKey::NotBase64);
        assert_eq!(EncryptionKey::from_base64("c2hvcnQ=").expect_err("refused"), InvalidEncryptionKey::WrongLength(5));
    }

    #[test]
    fn derived_keys_depend_on_material_and_label() {
        let a = EncryptionKey::derive(b"material", b"label one");
        assert_eq!(a.id(), EncryptionKey::derive(b"material", b"label one").id(), "deterministic");
        assert_ne!(a.id(), EncryptionKey::derive(b"material", b"label two").id());
        assert_ne!(a.id(), EncryptionKey::derive(b"other", b"label one").id());
    }

    #[test]
    fn debug_shows_the_key_id_only() {
        let shown = format!("{:?}", key(KEY_A));
        assert!(shown.contains(&key(KEY_A).id().to_string()) && !shown.contains("q83v"), "{shown}");
    }
}
