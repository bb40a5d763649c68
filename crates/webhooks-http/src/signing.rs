//! Standard Webhooks signatures: `v1,` and the base64 of HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the bytes after `whsec_`; several
//! space-separated while a rotated-out secret still signs. Also the verifier the tests use.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::rand_core::TryRng;
use rand::rngs::SysRng;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;

/// The prefix of a secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Bytes of a new secret's key.
pub const SECRET_BYTES: usize = 32;

/// A new `whsec_` secret from the operating system's generator.
///
/// # Errors
///
/// When the generator fails.
pub fn new_secret() -> anyhow::Result<SecretString> {
    let mut key = [0u8; SECRET_BYTES];
    SysRng
        .try_fill_bytes(&mut key)
        .map_err(|e| anyhow::anyhow!("the operating system's random generator failed: {e}"))?;
    Ok(SecretString::from(format!("{SECRET_PREFIX}{}", STANDARD.encode(key))))
}

/// The key of a `whsec_` secret; `None` when it is not one.
#[must_use]
pub fn key_of(secret: &str) -> Option<SecretSlice<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX)?;
    STANDARD.decode(encoded).ok().map(SecretSlice::from)
}

fn mac(key: &[u8], id: &str, timestamp: u64, body: &str) -> Option<Vec<u8>> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    Some(mac.finalize().into_bytes().to_vec())
}

/// `v1,<base64>` for one key.
#[must_use]
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &str) -> String {
    format!("v1,{}", STANDARD.encode(mac(key, id, timestamp, body).unwrap_or_default()))
}

/// The `webhook-signature` value: one signature per key, space-separated.
#[must_use]
pub fn signature_header(keys: &[SecretSlice<u8>], id: &str, timestamp: u64, body: &str) -> String {
    keys.iter().map(|key| sign(key.expose_secret(), id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// Why [`verify`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The timestamp is more than the tolerance away from now (a replay, or a wrong clock).
    Stale,
    /// No `v1` signature matches.
    NoMatch,
}

/// Checks a received webhook the way a subscriber should: the timestamp within `tolerance`
/// seconds of `now`, and some `v1` signature matching `secret` (compared in constant time).
///
/// # Errors
///
/// [`VerifyError`].
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: u64,
    signatures: &str,
    body: &str,
    now: u64,
    tolerance: u64,
) -> Result<(), VerifyError> {
    if now.abs_diff(timestamp) > tolerance {
        return Err(VerifyError::Stale);
    }
    let key = key_of(secret).ok_or(VerifyError::NoMatch)?;
    for candidate in signatures.split(' ') {
        let Some(encoded) = candidate.strip_prefix("v1,") else { continue };
        let Ok(given) = STANDARD.decode(encoded) else { continue };
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose_secret()) else { continue };
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body.as_bytes());
        if mac.verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_reference_vector() {
        // From the Standard Webhooks specification's test suite.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        let key = key_of(secret).map(|k| k.expose_secret().to_vec()).unwrap_or_default();
        assert_eq!(sign(&key, id, 1_614_265_330, body), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(
            verify(secret, id, 1_614_265_330, &sign(&key, id, 1_614_265_330, body), body, 1_614_265_330, 300),
            Ok(())
        );
    }

    #[test]
    fn a_webhook_verifies_with_either_secret_during_a_rotation_and_not_when_stale() {
        let (old, new) = (
            new_secret().unwrap_or_else(|_| SecretString::from(String::new())),
            new_secret().unwrap_or_else(|_| SecretString::from(String::new())),
        );
        let keys: Vec<SecretSlice<u8>> = [&new, &old].iter().filter_map(|s| key_of(s.expose_secret())).collect();
        let header = signature_header(&keys, "evt_1", 1000, "{}");
        assert_eq!(header.split(' ').count(), 2);
        assert_eq!(verify(old.expose_secret(), "evt_1", 1000, &header, "{}", 1000, 300), Ok(()));
        assert_eq!(verify(new.expose_secret(), "evt_1", 1000, &header, "{}", 1000, 300), Ok(()));
        assert_eq!(verify(new.expose_secret(), "evt_1", 1000, &header, "{}", 2000, 300), Err(VerifyError::Stale));
        assert_eq!(verify(new.expose_secret(), "evt_1", 1000, &header, "{ }", 1000, 300), Err(VerifyError::NoMatch));
    }

    #[test]
    fn new_secrets_are_whsec_and_32_bytes() {
        let secret = new_secret().map(|s| s.expose_secret().to_owned()).unwrap_or_default();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(key_of(&secret).map(|k| k.expose_secret().len()), Some(32));
    }
}
