//! Asymmetric JWT keys: the operator's PEM files in, jsonwebtoken keys and RFC 7517 JWKs out.
//!
//! Private keys are read from [`SecretString`]s and never appear in errors or `Debug` output.
//! Public keys are derived from the private signing key, so an operator cannot configure a
//! public half that does not match it.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk as JsonwebtokenJwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

/// The smallest RSA modulus accepted, in bits (NIST SP 800-57: 112-bit security).
pub const MIN_RSA_BITS: usize = 2048;

/// An algorithm access tokens can be signed with.
///
/// Parses from (and displays as) the JOSE names `HS256`, `EdDSA` and `RS256`, ignoring ASCII
/// case, so configuration can name it either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum JwtAlgorithm {
    /// HMAC-SHA-256 with a shared secret: the default. Every verifier needs the secret.
    Hs256,
    /// Ed25519 signatures (RFC 8037). Small keys and tokens, fast; the recommended asymmetric
    /// choice.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of at least [`MIN_RSA_BITS`] bits. For verifiers
    /// that cannot do EdDSA.
    Rs256,
}

impl JwtAlgorithm {
    /// The JOSE `alg` name: `HS256`, `EdDSA` or `RS256`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::EdDsa => "EdDSA",
            JwtAlgorithm::Rs256 => "RS256",
        }
    }

    pub(super) fn to_jsonwebtoken(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::EdDsa => Algorithm::EdDSA,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`JwtAlgorithm`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown JWT algorithm {0:?}: expected HS256, EdDSA or RS256")]
pub struct UnknownJwtAlgorithm(String);

impl FromStr for JwtAlgorithm {
    type Err = UnknownJwtAlgorithm;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [JwtAlgorithm::Hs256, JwtAlgorithm::EdDsa, JwtAlgorithm::Rs256]
            .into_iter()
            .find(|algorithm| algorithm.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownJwtAlgorithm(name.to_owned()))
    }
}

impl TryFrom<String> for JwtAlgorithm {
    type Error = UnknownJwtAlgorithm;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

/// The private key new access tokens are signed with, as configured.
///
/// The public key is derived from it (for verification and the JWKS), so there is no public
/// PEM to keep in step.
#[derive(Debug, Clone)]
pub struct SigningKeyPem {
    /// [`JwtAlgorithm::EdDsa`] or [`JwtAlgorithm::Rs256`].
    pub algorithm: JwtAlgorithm,
    /// The key id written into every token's header and published in the JWKS. Unique among
    /// the configured keys; pick a new one for every new key (a date works: `2026-11`).
    pub kid: String,
    /// The unencrypted private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`) for Ed25519; PKCS#8 or
    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`) for RSA.
    pub private_pem: SecretString,
}

/// A public key whose tokens are still accepted: the previous signing key during a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationKeyPem {
    /// [`JwtAlgorithm::EdDsa`] or [`JwtAlgorithm::Rs256`]: tokens naming any other `alg`
    /// with this `kid` are rejected.
    pub algorithm: JwtAlgorithm,
    /// The `kid` the key signed its tokens with.
    pub kid: String,
    /// The public key in PEM: SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`, what
    /// `openssl pkey -pubout` writes); for RSA also PKCS#1 (`BEGIN RSA PUBLIC KEY`).
    pub public_pem: String,
}

/// A JWK Set (RFC 7517 §5): the public keys that verify access tokens, served at
/// `GET /.well-known/jwks.json`. Empty with HS256: a shared secret is never published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

impl Jwks {
    /// The keys, the current signing key first.
    #[must_use]
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    pub(super) fn new(keys: Vec<Jwk>) -> Self {
        Self { keys }
    }
}

/// One public key of a [`Jwks`]. Serialises as
/// `{"kty":"OKP","crv":"Ed25519","x":…,"kid":…,"alg":"EdDSA","use":"sig"}` or
/// `{"kty":"RSA","n":…,"e":…,"kid":…,"alg":"RS256","use":"sig"}`, byte strings in unpadded
/// base64url (RFC 7518 §6.3, RFC 8037 §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    #[serde(flatten)]
    params: JwkParams,
    kid: String,
    alg: &'static str,
    #[serde(rename = "use")]
    key_use: &'static str,
}

impl Jwk {
    /// The key id tokens signed with this key carry.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key verifies.
    #[must_use]
    pub fn algorithm(&self) -> JwtAlgorithm {
        match self.params {
            JwkParams::Okp { .. } => JwtAlgorithm::EdDsa,
            JwkParams::Rsa { .. } => JwtAlgorithm::Rs256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kty")]
enum JwkParams {
    #[serde(rename = "OKP")]
    Okp { crv: &'static str, x: String },
    #[serde(rename = "RSA")]
    Rsa { n: String, e: String },
}

/// A parsed public key: what verifies with it and how it is published.
pub(super) struct PublicKey {
    pub(super) decoding: DecodingKey,
    pub(super) jwk: Jwk,
}

/// Loads a signing key: the jsonwebtoken key that signs, and its derived public key.
pub(super) fn load_signing_key(pem: &SigningKeyPem) -> anyhow::Result<(EncodingKey, PublicKey)> {
    let kid = &pem.kid;
    let private = pem.private_pem.expose_secret();
    match pem_label(private) {
        Some("PRIVATE KEY" | "RSA PRIVATE KEY") => {}
        Some("ENCRYPTED PRIVATE KEY") => anyhow::bail!(
            "signing key {kid:?} is encrypted; give it unencrypted (`openssl pkey -in key.pem -out plain.pem`) and protect the file instead"
        ),
        _ => anyhow::bail!("signing key {kid:?} is not a private key in PEM (`-----BEGIN PRIVATE KEY-----`)"),
    }
    // Parse errors are deliberately not chained: they describe the secret's contents.
    match pem.algorithm {
        JwtAlgorithm::Hs256 => Err(hs256_is_not_a_key_pair(kid)),
        JwtAlgorithm::EdDsa => {
            let key = ed25519_dalek::SigningKey::from_pkcs8_pem(private)
                .map_err(|_| anyhow::anyhow!("signing key {kid:?} is not an Ed25519 private key in PKCS#8 PEM"))?;
            // ed25519-dalek reads PKCS#8 v1 (openssl) and v2 (with the public key); re-encoding
            // gives jsonwebtoken one form it signs with.
            let der = key
                .to_pkcs8_der()
                .map_err(|_| anyhow::anyhow!("signing key {kid:?} could not be re-encoded as PKCS#8"))?;
            let public = ed25519_public_key(kid, &key.verifying_key());
            Ok((EncodingKey::from_ed_der(der.as_bytes()), public))
        }
        JwtAlgorithm::Rs256 => {
            let not_rsa = || anyhow::anyhow!("signing key {kid:?} is not an RSA private key in PKCS#1 or PKCS#8 PEM");
            let encoding = EncodingKey::from_rsa_pem(private.as_bytes()).map_err(|_| not_rsa())?;
            let derived = JsonwebtokenJwk::from_encoding_key(&encoding, Algorithm::RS256).map_err(|_| not_rsa())?;
            let AlgorithmParameters::RSA(rsa) = derived.algorithm else {
                return Err(not_rsa());
            };
            Ok((encoding, rsa_public_key(kid, &rsa.n, &rsa.e)?))
        }
    }
}

/// Loads a retired key's public half.
pub(super) fn load_verification_key(pem: &VerificationKeyPem) -> anyhow::Result<PublicKey> {
    let kid = &pem.kid;
    let public = pem.public_pem.as_str();
    match pem_label(public) {
        Some("PUBLIC KEY" | "RSA PUBLIC KEY") => {}
        Some(label) if label.contains("PRIVATE") => anyhow::bail!(
            "verification key {kid:?} is a private key; configure only its public half (`openssl pkey -in key.pem -pubout`)"
        ),
        _ => anyhow::bail!("verification key {kid:?} is not a public key in PEM (`-----BEGIN PUBLIC KEY-----`)"),
    }
    match pem.algorithm {
        JwtAlgorithm::Hs256 => Err(hs256_is_not_a_key_pair(kid)),
        JwtAlgorithm::EdDsa => {
            let key = ed25519_dalek::VerifyingKey::from_public_key_pem(public)
                .map_err(|e| anyhow::anyhow!("verification key {kid:?} is not an Ed25519 public key: {e}"))?;
            Ok(ed25519_public_key(kid, &key))
        }
        JwtAlgorithm::Rs256 => {
            let decoding = DecodingKey::from_rsa_pem(public.as_bytes())
                .map_err(|e| anyhow::anyhow!("verification key {kid:?} is not an RSA public key: {e}"))?;
            let parsed = JsonwebtokenJwk::from_decoding_key(&decoding, Some(Algorithm::RS256))
                .map_err(|e| anyhow::anyhow!("verification key {kid:?} is not an RSA public key: {e}"))?;
            let AlgorithmParameters::RSA(rsa) = parsed.algorithm else {
                anyhow::bail!("verification key {kid:?} is not an RSA public key");
            };
            rsa_public_key(kid, &rsa.n, &rsa.e)
        }
    }
}

fn hs256_is_not_a_key_pair(kid: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "key {kid:?}: HS256 uses a shared secret, not a key pair; configure it with `JwtAccessTokens::hs256`"
    )
}

fn ed25519_public_key(kid: &str, key: &ed25519_dalek::VerifyingKey) -> PublicKey {
    PublicKey {
        decoding: DecodingKey::from_ed_der(key.as_bytes()),
        jwk: Jwk {
            params: JwkParams::Okp { crv: "Ed25519", x: URL_SAFE_NO_PAD.encode(key.as_bytes()) },
            kid: kid.to_owned(),
            alg: JwtAlgorithm::EdDsa.as_str(),
            key_use: "sig",
        },
    }
}

/// `n` and `e` as jsonwebtoken gives them: unpadded base64url, big-endian, no leading zeros.
fn rsa_public_key(kid: &str, n: &str, e: &str) -> anyhow::Result<PublicKey> {
    let modulus = URL_SAFE_NO_PAD.decode(n).map_err(|e| anyhow::anyhow!("key {kid:?}: bad RSA modulus: {e}"))?;
    let bits = bit_length(&modulus);
    anyhow::ensure!(bits >= MIN_RSA_BITS, "key {kid:?}: RSA keys must have at least {MIN_RSA_BITS} bits, not {bits}");
    let decoding =
        DecodingKey::from_rsa_components(n, e).map_err(|e| anyhow::anyhow!("key {kid:?}: bad RSA public key: {e}"))?;
    Ok(PublicKey {
        decoding,
        jwk: Jwk {
            params: JwkParams::Rsa { n: n.to_owned(), e: e.to_owned() },
            kid: kid.to_owned(),
            alg: JwtAlgorithm::Rs256.as_str(),
            key_use: "sig",
        },
    })
}

fn bit_length(big_endian: &[u8]) -> usize {
    let significant = big_endian.iter().position(|&byte| byte != 0).map_or(&[][..], |first| &big_endian[first..]);
    match significant.first() {
        None => 0,
        Some(&top) => (significant.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

/// The label of the first PEM block (`PRIVATE KEY` in `-----BEGIN PRIVATE KEY-----`).
fn pem_label(pem: &str) -> Option<&str> {
    const BEGIN: &str = "-----BEGIN ";
    let rest = &pem[pem.find(BEGIN)? + BEGIN.len()..];
    Some(&rest[..rest.find("-----")?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_algorithm_parses_the_jose_names_in_any_case_and_nothing_else() {
        assert_eq!("HS256".parse(), Ok(JwtAlgorithm::Hs256));
        assert_eq!("EdDSA".parse(), Ok(JwtAlgorithm::EdDsa));
        assert_eq!("eddsa".parse(), Ok(JwtAlgorithm::EdDsa));
        assert_eq!("RS256".parse(), Ok(JwtAlgorithm::Rs256));
        for name in ["", "none", "ES256", "RS512", "Ed25519"] {
            assert!(name.parse::<JwtAlgorithm>().is_err(), "{name:?}");
        }
        for algorithm in [JwtAlgorithm::Hs256, JwtAlgorithm::EdDsa, JwtAlgorithm::Rs256] {
            assert_eq!(algorithm.to_string().parse(), Ok(algorithm));
        }
    }

    #[test]
    fn jwt_algorithm_deserialises_from_its_name() {
        let parsed: JwtAlgorithm = serde_json::from_str("\"EdDSA\"").expect("EdDSA");
        assert_eq!(parsed, JwtAlgorithm::EdDsa);
        assert!(serde_json::from_str::<JwtAlgorithm>("\"none\"").is_err());
    }

    #[test]
    fn bit_length_ignores_leading_zero_bytes_and_bits() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[0, 1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[0, 0x7f, 0xff]), 15);
    }

    #[test]
    fn pem_label_reads_the_first_begin_line() {
        assert_eq!(pem_label("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), Some("PRIVATE KEY"));
        assert_eq!(pem_label("junk\n-----BEGIN RSA PUBLIC KEY-----\n"), Some("RSA PUBLIC KEY"));
        assert_eq!(pem_label("no pem here"), None);
        assert_eq!(pem_label("-----BEGIN unterminated"), None);
    }
}
