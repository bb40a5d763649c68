//! Access tokens as JWTs, with jsonwebtoken.
//!
//! Implements [`gatehouse_domain::ports::AccessTokens`]. Two set-ups:
//!
//! - **HS256** ([`JwtAccessTokens::hs256`], the default): one shared secret signs and verifies.
//!   Whoever verifies tokens can also mint them, so it suits a single service.
//! - **EdDSA (Ed25519) or RS256** ([`JwtAccessTokens::asymmetric`]): a private key signs, every
//!   token names its key in the header's `kid`, and [`JwtAccessTokens::jwks`] publishes the public
//!   keys (`GET /.well-known/jwks.json`) so other services verify tokens without any secret.
//!
//! Verification picks the key by the token's `kid` and accepts only that key's own algorithm: a
//! token naming another `alg` (HS256 signed with a public key as the HMAC secret, `none`, or the
//! algorithm of another configured key) or an unknown or missing `kid` is invalid.
//!
//! Tokens follow the JWT profile for access tokens (RFC 9068) as RFC 8725 advises: the header
//! says `typ: at+jwt` and the claims name an audience (`aud`, by default the issuer). Both are
//! required on verification, so no other JWT signed with the same key (an ID token, a token
//! meant for another service) passes for an access token here.
//!
//! # Keys for operators
//!
//! Keys are unencrypted PEM files; only the private signing key is secret. Ed25519 (preferred):
//!
//! ```sh
//! openssl genpkey -algorithm ed25519 -out signing.pem
//! openssl pkey -in signing.pem -pubout -out signing.pub.pem
//! ```
//!
//! RSA (at least 2048 bits; PKCS#8 or PKCS#1):
//!
//! ```sh
//! openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:3072 -out signing.pem
//! openssl pkey -in signing.pem -pubout -out signing.pub.pem
//! ```
//!
//! Gatehouse derives the public key from `signing.pem` itself; `signing.pub.pem` is what goes to
//! the verification-key list once the key is retired.
//!
//! # Rotation
//!
//! 1. Generate a new key and give it a new `kid`.
//! 2. Make the new key the signing key, and add the old key's *public* PEM with its old `kid` as
//!    a verification key. Restart every instance: new tokens carry the new `kid`, tokens already
//!    issued still verify, and the JWKS lists both keys.
//! 3. After at least the access-token lifetime (15 minutes, plus the time other services cache
//!    the JWKS), remove the old verification key. Its tokens have expired by then.
//!
//! Moving from HS256 to a key pair is a cut-over: a shared secret is never accepted next to
//! public keys, so tokens issued under the secret stop verifying and clients refresh.
//!
//! jsonwebtoken 11 picks its crypto backend from cargo features: exactly one of `rust_crypto`
//! and `aws_lc_rs` must be on, otherwise it compiles and then panics when signing. The
//! constructors therefore sign and verify a probe token, so a wrong build fails at start-up.

#[cfg(test)]
mod asymmetric_tests;
mod keys;

use std::collections::HashSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_domain::ids::{SessionId, UserId};
use gatehouse_domain::ports::{AccessClaims, AccessTokens, Clock, InvalidAccessToken, SystemClock};
use gatehouse_domain::user::Role;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use keys::{Jwk, Jwks, JwtAlgorithm, MIN_RSA_BITS, SigningKeyPem, UnknownJwtAlgorithm, VerificationKeyPem};

/// The shortest HS256 secret accepted: 256 bits, the size of the HMAC-SHA-256 output.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// The JOSE `typ` of access tokens (RFC 9068, section 2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Issues and verifies JWT access tokens. Header `typ`: [`ACCESS_TOKEN_TYP`]. Claims: `iss`,
/// `aud`, `sub` (user id), `sid` (session id), `roles`, `iat`, `exp`, `jti`.
///
/// Verification accepts only the configured algorithm(s) and key(s) (so `alg: none`, another
/// HMAC size or another key is invalid), picks an asymmetric key by `kid`, requires the `typ`
/// (`at+jwt` or `application/at+jwt`, in any case, RFC 7515 section 4.1.9) and every claim,
/// checks `iss` and `aud`, rejects unknown roles, and checks `exp` against the [`Clock`] with **no
/// leeway**: a token is invalid from the second its `exp` names (RFC 7519: the current time
/// must be *before* `exp`). Times are whole seconds, so `iat`/`exp` come back truncated.
pub struct JwtAccessTokens {
    issuer: String,
    audience: String,
    signing: SigningKey,
    verifying: Vec<VerifyingKey>,
    jwks: Jwks,
    clock: Arc<dyn Clock>,
}

/// The key new tokens are signed with.
enum SigningKey {
    Hs256(EncodingKey),
    /// EdDSA or RS256; the `kid` goes into every header.
    Asymmetric {
        algorithm: Algorithm,
        kid: String,
        key: EncodingKey,
    },
}

impl SigningKey {
    fn header(&self) -> Header {
        let mut header = match self {
            SigningKey::Hs256(_) => Header::new(Algorithm::HS256),
            SigningKey::Asymmetric { algorithm, kid, .. } => {
                let mut header = Header::new(*algorithm);
                header.kid = Some(kid.clone());
                header
            }
        };
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header
    }

    fn encoding_key(&self) -> &EncodingKey {
        match self {
            SigningKey::Hs256(key) | SigningKey::Asymmetric { key, .. } => key,
        }
    }
}

/// A key tokens may be verified with.
struct VerifyingKey {
    /// Matched against the token's `kid` when set (always, for asymmetric keys).
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

impl VerifyingKey {
    /// A key accepting tokens of `issuer` for `issuer` (the default audience).
    fn new(kid: Option<String>, algorithm: Algorithm, key: DecodingKey, issuer: &str) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // `exp` is checked against our clock in `verify`, with no leeway.
        validation.validate_exp = false;
        validation.leeway = 0;
        Self { kid, algorithm, key, validation }
    }

    fn accepts(&self, header: &Header) -> bool {
        header.alg == self.algorithm
            && (self.kid.is_none() || self.kid == header.kid)
            && header.typ.as_deref().is_some_and(is_access_token_typ)
    }
}

/// Whether a JOSE `typ` names an access token: `at+jwt`, with or without the `application/`
/// prefix, compared case-insensitively as media types are (RFC 7515, section 4.1.9).
fn is_access_token_typ(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    typ.strip_prefix("application/").unwrap_or(&typ) == ACCESS_TOKEN_TYP
}

/// The wire form of the claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    /// A single string, as issued; a token with an array `aud` is refused when read.
    aud: String,
    sub: Uuid,
    sid: Uuid,
    roles: Vec<String>,
    iat: i64,
    exp: i64,
    jti: Uuid,
}

impl JwtAccessTokens {
    /// HS256 with a shared `secret` of at least [`MIN_HS256_SECRET_BYTES`] bytes, issuing and
    /// accepting tokens from `issuer`. Uses the system clock.
    ///
    /// # Errors
    ///
    /// When the secret is too short, the issuer is empty, or signing and verifying a probe
    /// token fails (no jsonwebtoken crypto backend, or two).
    pub fn hs256(secret: &SecretString, issuer: &str) -> anyhow::Result<Self> {
        let secret = secret.expose_secret().as_bytes();
        anyhow::ensure!(
            secret.len() >= MIN_HS256_SECRET_BYTES,
            "the JWT secret must be at least {MIN_HS256_SECRET_BYTES} bytes long, not {}",
            secret.len()
        );
        anyhow::ensure!(!issuer.is_empty(), "the JWT issuer must not be empty");
        let tokens = Self {
            issuer: issuer.to_owned(),
            audience: issuer.to_owned(),
            signing: SigningKey::Hs256(EncodingKey::from_secret(secret)),
            verifying: vec![VerifyingKey::new(None, Algorithm::HS256, DecodingKey::from_secret(secret), issuer)],
            jwks: Jwks::default(),
            clock: Arc::new(SystemClock),
        };
        tokens.self_test()?;
        Ok(tokens)
    }

    /// EdDSA or RS256: signs with `signing` (its `kid` in every header) and verifies tokens of
    /// the signing key and of each `extra_verification` key (retired keys during a rotation),
    /// issuing and accepting tokens from `issuer`. The public signing key is derived from the
    /// private one. Uses the system clock.
    ///
    /// # Errors
    ///
    /// When a key is HS256, is not a PEM of its algorithm in a supported form (see
    /// [`SigningKeyPem`] and [`VerificationKeyPem`]; a private key given as a verification key
    /// is refused too), is an RSA key shorter than [`MIN_RSA_BITS`], when a `kid` is empty,
    /// has control characters or is used twice, when the issuer is empty, or when signing and
    /// verifying a probe token fails. Errors never quote the private key.
    pub fn asymmetric(
        signing: SigningKeyPem,
        extra_verification: Vec<VerificationKeyPem>,
        issuer: &str,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(!issuer.is_empty(), "the JWT issuer must not be empty");
        let mut kids = HashSet::new();
        for kid in std::iter::once(&signing.kid).chain(extra_verification.iter().map(|key| &key.kid)) {
            anyhow::ensure!(
                !kid.is_empty() && !kid.chars().any(char::is_control),
                "a JWT key id must be non-empty and printable, not {kid:?}"
            );
            anyhow::ensure!(kids.insert(kid.as_str()), "the JWT key id {kid:?} is configured twice");
        }

        // jsonwebtoken panics while deriving RSA public keys when its crypto backend is missing.
        let (signing, verifying, jwks) =
            catch_unwind(AssertUnwindSafe(|| load_key_pairs(signing, &extra_verification, issuer)))
                .map_err(|_| anyhow::anyhow!("loading the JWT keys panicked: {NO_CRYPTO_BACKEND}"))??;
        let tokens = Self {
            issuer: issuer.to_owned(),
            audience: issuer.to_owned(),
            signing,
            verifying,
            jwks,
            clock: Arc::new(SystemClock),
        };
        tokens.self_test()?;
        Ok(tokens)
    }

    /// The public keys that verify this instance's tokens, for `GET /.well-known/jwks.json`:
    /// the signing key first, then the retired ones. Empty with HS256.
    #[must_use]
    pub fn jwks(&self) -> Jwks {
        self.jwks.clone()
    }

    /// Issues tokens for `audience` and accepts only tokens naming it in `aud`, instead of the
    /// issuer (the constructors' default).
    ///
    /// # Errors
    ///
    /// When `audience` is empty.
    pub fn with_audience(mut self, audience: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(!audience.is_empty(), "the JWT audience must not be empty");
        audience.clone_into(&mut self.audience);
        for key in &mut self.verifying {
            key.validation.set_audience(&[audience]);
        }
        Ok(self)
    }

    /// Checks `exp` against `clock` instead of the system clock (tests at fixed instants).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Signs and verifies a throwaway token, catching the panic jsonwebtoken raises when its
    /// crypto backend is misconfigured.
    fn self_test(&self) -> anyhow::Result<()> {
        let now = self.clock.now();
        let probe = AccessClaims {
            user_id: UserId::generate(),
            session_id: SessionId::generate(),
            roles: vec![Role::User],
            issued_at: now,
            expires_at: now + chrono::Duration::minutes(1),
            token_id: Uuid::now_v7(),
        };
        let round_trip = catch_unwind(AssertUnwindSafe(|| -> anyhow::Result<AccessClaims> {
            let token = self.issue(&probe)?;
            Ok(self.verify(&token)?)
        }));
        match round_trip {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.context("the JWT self-test failed")),
            Err(_) => anyhow::bail!("the JWT self-test panicked: {NO_CRYPTO_BACKEND}"),
        }
    }
}

impl fmt::Debug for JwtAccessTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAccessTokens")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithm", &self.signing.header().alg)
            .field("kid", &self.signing.header().kid)
            .field("verifying_keys", &self.verifying.len())
            .finish_non_exhaustive()
    }
}

impl AccessTokens for JwtAccessTokens {
    fn issue(&self, claims: &AccessClaims) -> anyhow::Result<String> {
        let wire = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: *claims.user_id.as_uuid(),
            sid: *claims.session_id.as_uuid(),
            roles: claims.roles.iter().map(|role| role.as_str().to_owned()).collect(),
            iat: claims.issued_at.timestamp(),
            exp: claims.expires_at.timestamp(),
            jti: claims.token_id,
        };
        let token = jsonwebtoken::encode(&self.signing.header(), &wire, self.signing.encoding_key())?;
        Ok(token)
    }

    fn verify(&self, token: &str) -> Result<AccessClaims, InvalidAccessToken> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| InvalidAccessToken)?;
        let key = self.verifying.iter().find(|key| key.accepts(&header)).ok_or(InvalidAccessToken)?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation)
            .map_err(|e| {
                tracing::debug!(error = %e, "access token rejected");
                InvalidAccessToken
            })?
            .claims;
        if self.clock.now().timestamp() >= claims.exp {
            return Err(InvalidAccessToken);
        }
        let roles = claims
            .roles
            .iter()
            .map(|name| name.parse::<Role>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| InvalidAccessToken)?;
        Ok(AccessClaims {
            user_id: UserId::from_uuid(claims.sub),
            session_id: SessionId::from_uuid(claims.sid),
            roles,
            issued_at: timestamp(claims.iat)?,
            expires_at: timestamp(claims.exp)?,
            token_id: claims.jti,
        })
    }
}

const NO_CRYPTO_BACKEND: &str = "jsonwebtoken needs exactly one crypto backend feature (rust_crypto)";

/// Parses the configured keys into the signing key, the verifying keys (signing key first) and
/// the JWKS that publishes them.
fn load_key_pairs(
    signing: SigningKeyPem,
    extra_verification: &[VerificationKeyPem],
    issuer: &str,
) -> anyhow::Result<(SigningKey, Vec<VerifyingKey>, Jwks)> {
    let (encoding, public) = keys::load_signing_key(&signing)?;
    let algorithm = signing.algorithm.to_jsonwebtoken();
    let mut verifying = vec![VerifyingKey::new(Some(signing.kid.clone()), algorithm, public.decoding, issuer)];
    let mut published = vec![public.jwk];
    for key in extra_verification {
        let public = keys::load_verification_key(key)?;
        verifying.push(VerifyingKey::new(
            Some(key.kid.clone()),
            key.algorithm.to_jsonwebtoken(),
            public.decoding,
            issuer,
        ));
        published.push(public.jwk);
    }
    let signing = SigningKey::Asymmetric { algorithm, kid: signing.kid, key: encoding };
    Ok((signing, verifying, Jwks::new(published)))
}

fn timestamp(seconds: i64) -> Result<DateTime<Utc>, InvalidAccessToken> {
    DateTime::from_timestamp(seconds, 0).ok_or(InvalidAccessToken)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use chrono::{Duration, TimeZone as _};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
    const ISSUER: &str = "https://gatehouse.test";

    fn tokens() -> JwtAccessTokens {
        JwtAccessTokens::hs256(&SecretString::from(SECRET), ISSUER).expect("valid secret")
    }

    fn claims_expiring_in(lifetime: Duration) -> AccessClaims {
        let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now");
        AccessClaims {
            user_id: UserId::generate(),
            session_id: SessionId::generate(),
            roles: vec![Role::User, Role::Admin],
            issued_at: now,
            expires_at: now + lifetime,
            token_id: Uuid::now_v7(),
        }
    }

    fn wire_claims() -> serde_json::Value {
        let now = Utc::now().timestamp();
        json!({
            "iss": ISSUER, "aud": ISSUER, "sub": Uuid::now_v7(), "sid": Uuid::now_v7(), "roles": ["user"],
            "iat": now, "exp": now + 900, "jti": Uuid::now_v7(),
        })
    }

    /// The header of an HS256 access token, as this crate writes it.
    fn at_header() -> Header {
        Header { typ: Some(ACCESS_TOKEN_TYP.to_owned()), ..Header::new(Algorithm::HS256) }
    }

    struct FixedClock(DateTime<Utc>);

    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn sign(header: &Header, claims: &serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret.as_bytes())).expect("sign")
    }

    fn b64(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn an_issued_token_verifies_with_all_its_claims() {
        let tokens = tokens();
        let claims = claims_expiring_in(Duration::minutes(15));

        let token = tokens.issue(&claims).expect("issue");
        let verified = tokens.verify(&token);

        assert_eq!(verified, Ok(claims));
    }

    #[test]
    fn an_issued_token_carries_the_documented_claims_and_header() {
        let claims = claims_expiring_in(Duration::minutes(15));
        let token = tokens().issue(&claims).expect("issue");
        let mut parts = token.split('.');
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().expect("header")).expect("b64")).expect("json");
        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().expect("payload")).expect("b64"))
                .expect("json");

        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(payload["iss"], ISSUER);
        assert_eq!(payload["aud"], ISSUER, "the audience defaults to the issuer");
        assert_eq!(payload["sub"], claims.user_id.to_string());
        assert_eq!(payload["sid"], claims.session_id.to_string());
        assert_eq!(payload["roles"], json!(["user", "admin"]));
        assert_eq!(payload["iat"], claims.issued_at.timestamp());
        assert_eq!(payload["exp"], claims.expires_at.timestamp());
        assert_eq!(payload["jti"], claims.token_id.to_string());
    }

    #[test]
    fn an_expired_token_is_rejected() {
        let tokens = tokens();
        let token = tokens.issue(&claims_expiring_in(Duration::seconds(-1))).expect("issue");
        assert_eq!(tokens.verify(&token), Err(InvalidAccessToken));
    }

    #[test]
    fn a_token_is_invalid_from_the_second_of_its_exp_without_leeway() {
        let exp = Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).single().expect("date");
        let at = |instant: DateTime<Utc>| tokens().with_clock(Arc::new(FixedClock(instant)));
        let claims = AccessClaims {
            issued_at: exp - Duration::minutes(15),
            expires_at: exp,
            ..claims_expiring_in(Duration::zero())
        };
        let token = at(exp - Duration::minutes(15)).issue(&claims).expect("issue");

        assert!(at(exp - Duration::seconds(1)).verify(&token).is_ok(), "valid one second before exp");
        assert_eq!(at(exp).verify(&token), Err(InvalidAccessToken), "invalid at exp");
        assert_eq!(at(exp + Duration::seconds(1)).verify(&token), Err(InvalidAccessToken), "invalid after exp");
    }

    #[test]
    fn a_token_signed_with_another_secret_is_rejected() {
        let other = JwtAccessTokens::hs256(&SecretString::from("another-secret-of-at-least-32-bytes!"), ISSUER)
            .expect("valid secret");
        let token = other.issue(&claims_expiring_in(Duration::minutes(15))).expect("issue");
        assert_eq!(tokens().verify(&token), Err(InvalidAccessToken));
    }

    #[test]
    fn an_unsigned_alg_none_token_is_rejected() {
        let header = json!({"alg": "none", "typ": "JWT"});
        for token in
            [format!("{}.{}.", b64(&header), b64(&wire_claims())), format!("{}.{}", b64(&header), b64(&wire_claims()))]
        {
            assert_eq!(tokens().verify(&token), Err(InvalidAccessToken), "{token}");
        }
    }

    #[test]
    fn a_token_with_another_hmac_algorithm_and_the_same_secret_is_rejected() {
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = sign(&Header::new(alg), &wire_claims(), SECRET);
            assert_eq!(tokens().verify(&token), Err(InvalidAccessToken), "{alg:?}");
        }
    }

    #[test]
    fn a_hand_made_token_with_the_right_key_verifies() {
        let token = sign(&at_header(), &wire_claims(), SECRET);
        assert!(tokens().verify(&token).is_ok(), "the negative tests below differ only in what they name");
    }

    #[test]
    fn a_token_with_a_tampered_payload_is_rejected() {
        let tokens = tokens();
        let token = tokens
            .issue(&AccessClaims { roles: vec![Role::User], ..claims_expiring_in(Duration::minutes(15)) })
            .expect("issue");
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        payload["roles"] = json!(["user", "admin"]);

        let tampered = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);

        assert_eq!(tokens.verify(&tampered), Err(InvalidAccessToken));
    }

    #[test]
    fn a_token_from_another_issuer_is_rejected() {
        let mut claims = wire_claims();
        claims["iss"] = json!("https://evil.test");
        assert_eq!(tokens().verify(&sign(&at_header(), &claims, SECRET)), Err(InvalidAccessToken));
    }

    #[test]
    fn a_token_missing_a_claim_is_rejected() {
        for missing in ["iss", "aud", "sub", "sid", "roles", "iat", "exp", "jti"] {
            let mut claims = wire_claims();
            claims.as_object_mut().expect("object").remove(missing);
            let token = sign(&at_header(), &claims, SECRET);
            assert_eq!(tokens().verify(&token), Err(InvalidAccessToken), "without {missing}");
        }
    }

    #[test]
    fn a_token_with_the_same_key_but_not_typed_as_an_access_token_is_rejected() {
        for typ in [Some("JWT"), None, Some("jwt"), Some("id_token+jwt"), Some("at+jwt2"), Some("")] {
            let header = Header { typ: typ.map(str::to_owned), ..Header::new(Algorithm::HS256) };
            let token = sign(&header, &wire_claims(), SECRET);
            assert_eq!(tokens().verify(&token), Err(InvalidAccessToken), "typ {typ:?}");
        }
    }

    #[test]
    fn the_access_token_typ_is_compared_as_a_media_type() {
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"] {
            let header = Header { typ: Some(typ.to_owned()), ..Header::new(Algorithm::HS256) };
            let token = sign(&header, &wire_claims(), SECRET);
            assert!(tokens().verify(&token).is_ok(), "typ {typ:?}");
        }
    }

    #[test]
    fn a_token_with_the_same_key_for_another_audience_is_rejected() {
        for audience in [json!("https://other-service.test"), json!(""), json!(["https://other-service.test"])] {
            let mut claims = wire_claims();
            claims["aud"] = audience.clone();
            assert_eq!(
                tokens().verify(&sign(&at_header(), &claims, SECRET)),
                Err(InvalidAccessToken),
                "aud {audience}"
            );
        }
    }

    #[test]
    fn a_token_with_the_same_key_and_no_audience_is_rejected() {
        let mut claims = wire_claims();
        claims.as_object_mut().expect("object").remove("aud");
        assert_eq!(tokens().verify(&sign(&at_header(), &claims, SECRET)), Err(InvalidAccessToken));
    }

    #[test]
    fn a_configured_audience_is_issued_and_required_instead_of_the_issuer() {
        let api = tokens().with_audience("https://api.gatehouse.test").expect("an audience");
        let claims = claims_expiring_in(Duration::minutes(15));

        let token = api.issue(&claims).expect("issue");
        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).expect("payload")).expect("b64"))
                .expect("json");

        assert_eq!(payload["aud"], "https://api.gatehouse.test");
        assert_eq!(api.verify(&token), Ok(claims.clone()));
        assert_eq!(tokens().verify(&token), Err(InvalidAccessToken), "a verifier of the default audience refuses it");
        let default_audience = tokens().issue(&claims).expect("issue");
        assert_eq!(api.verify(&default_audience), Err(InvalidAccessToken), "and the other way round");
    }

    #[test]
    fn an_empty_audience_is_refused() {
        assert!(tokens().with_audience("").is_err());
    }

    #[test]
    fn a_token_with_an_unknown_role_is_rejected() {
        let mut claims = wire_claims();
        claims["roles"] = json!(["user", "superuser"]);
        assert_eq!(tokens().verify(&sign(&at_header(), &claims, SECRET)), Err(InvalidAccessToken));
    }

    #[test]
    fn garbage_is_rejected() {
        for token in ["", "a.b.c", "not-a-jwt", "..", "eyJhbGciOiJIUzI1NiJ9..."] {
            assert_eq!(tokens().verify(token), Err(InvalidAccessToken), "{token:?}");
        }
    }

    #[test]
    fn a_secret_shorter_than_32_bytes_is_refused() {
        let short = SecretString::from("x".repeat(MIN_HS256_SECRET_BYTES - 1));
        assert!(JwtAccessTokens::hs256(&short, ISSUER).is_err());
        let exact = SecretString::from("x".repeat(MIN_HS256_SECRET_BYTES));
        assert!(JwtAccessTokens::hs256(&exact, ISSUER).is_ok());
    }

    #[test]
    fn an_empty_issuer_is_refused() {
        assert!(JwtAccessTokens::hs256(&SecretString::from(SECRET), "").is_err());
    }

    #[test]
    fn debug_output_does_not_show_the_secret() {
        let shown = format!("{:?}", tokens());
        assert!(!shown.contains(SECRET), "{shown}");
    }
}
