//! EdDSA and RS256 access tokens: round trips, `kid` selection, rotation, algorithm confusion,
//! the JWKS, and an independent JWT library (jwt-compact) verifying with only the JWKS.
//!
//! Keys are generated here, never committed. RSA generation is slow in debug builds, so the two
//! RSA keys are made once per test binary.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use jwt_compact::AlgorithmExt as _;
use rand::RngExt as _;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::json;

use super::*;

const ISSUER: &str = "https://gatehouse.test";

struct KeyPair {
    private_pem: String,
    public_pem: String,
}

/// Ed25519 in ed25519-dalek's PKCS#8 form (v2: with the public key).
fn ed25519() -> KeyPair {
    let seed: [u8; 32] = rand::rng().random();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    KeyPair {
        private_pem: key.to_pkcs8_pem(LineEnding::LF).expect("pkcs8").to_string(),
        public_pem: key.verifying_key().to_public_key_pem(LineEnding::LF).expect("spki"),
    }
}

/// Ed25519 in the form `openssl genpkey -algorithm ed25519` writes (PKCS#8 v1, seed only).
fn ed25519_as_openssl_writes_it() -> (KeyPair, ed25519_dalek::VerifyingKey) {
    let seed: [u8; 32] = rand::rng().random();
    let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    der.extend_from_slice(&seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let pair = KeyPair {
        private_pem: format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(&der)),
        public_pem: key.verifying_key().to_public_key_pem(LineEnding::LF).expect("spki"),
    };
    (pair, key.verifying_key())
}

static RSA_KEYS: LazyLock<[rsa::RsaPrivateKey; 2]> = LazyLock::new(|| {
    let generate = || rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("rsa keygen");
    [generate(), generate()]
});

/// One of two RSA-2048 keys shared by the tests, private half in PKCS#8.
fn rsa(index: usize) -> KeyPair {
    let key = &RSA_KEYS[index];
    KeyPair {
        private_pem: rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(key, LineEnding::LF).expect("pkcs8").to_string(),
        public_pem: rsa::pkcs8::EncodePublicKey::to_public_key_pem(&key.to_public_key(), LineEnding::LF).expect("spki"),
    }
}

fn signing(algorithm: JwtAlgorithm, kid: &str, pair: &KeyPair) -> SigningKeyPem {
    SigningKeyPem { algorithm, kid: kid.to_owned(), private_pem: SecretString::from(pair.private_pem.clone()) }
}

fn verification(algorithm: JwtAlgorithm, kid: &str, pair: &KeyPair) -> VerificationKeyPem {
    VerificationKeyPem { algorithm, kid: kid.to_owned(), public_pem: pair.public_pem.clone() }
}

fn tokens(signing: SigningKeyPem, extra: Vec<VerificationKeyPem>) -> JwtAccessTokens {
    JwtAccessTokens::asymmetric(signing, extra, ISSUER).expect("valid keys")
}

fn claims() -> AccessClaims {
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now");
    AccessClaims {
        user_id: UserId::generate(),
        session_id: SessionId::generate(),
        roles: vec![Role::User, Role::Admin],
        issued_at: now,
        expires_at: now + chrono::Duration::minutes(15),
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

fn header_of(token: &str) -> serde_json::Value {
    let encoded = token.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).expect("base64url")).expect("json")
}

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A header as this crate writes it (`typ: at+jwt`), with `algorithm` and `kid`.
fn header(algorithm: Algorithm, kid: Option<&str>) -> Header {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
    header
}

/// Signs arbitrary claims under an arbitrary header: what an attacker holding `key` can do.
fn forge(header: &Header, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, &wire_claims(), key).expect("sign")
}

fn ed_private(pair: &KeyPair) -> EncodingKey {
    EncodingKey::from_ed_pem(pair.private_pem.as_bytes()).expect("ed25519 pem")
}

fn rsa_private(pair: &KeyPair) -> EncodingKey {
    EncodingKey::from_rsa_pem(pair.private_pem.as_bytes()).expect("rsa pem")
}

#[test]
fn an_eddsa_token_verifies_with_all_its_claims() {
    let tokens = tokens(signing(JwtAlgorithm::EdDsa, "ed-1", &ed25519()), vec![]);
    let claims = claims();

    let token = tokens.issue(&claims).expect("issue");

    assert_eq!(tokens.verify(&token), Ok(claims));
}

#[test]
fn an_ed25519_key_in_the_form_openssl_writes_signs_and_verifies() {
    let (pair, public) = ed25519_as_openssl_writes_it();
    let tokens = tokens(signing(JwtAlgorithm::EdDsa, "ed-1", &pair), vec![]);
    let claims = claims();

    let token = tokens.issue(&claims).expect("issue");

    assert_eq!(tokens.verify(&token), Ok(claims));
    assert_eq!(
        serde_json::to_value(tokens.jwks()).expect("json")["keys"][0]["x"],
        URL_SAFE_NO_PAD.encode(public.as_bytes()),
        "the published key is the private key's public half"
    );
}

#[test]
fn an_rs256_token_verifies_with_all_its_claims_from_pkcs8_and_pkcs1_pem() {
    let pkcs8 = rsa(0);
    let pkcs1 = KeyPair {
        private_pem: RSA_KEYS[0].to_pkcs1_pem(LineEnding::LF).expect("pkcs1").to_string(),
        public_pem: pkcs8.public_pem.clone(),
    };
    assert!(pkcs1.private_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "really PKCS#1");

    for (form, pair) in [("PKCS#8", &pkcs8), ("PKCS#1", &pkcs1)] {
        let tokens = tokens(signing(JwtAlgorithm::Rs256, "rsa-1", pair), vec![]);
        let claims = claims();

        let token = tokens.issue(&claims).expect("issue");

        assert_eq!(tokens.verify(&token), Ok(claims), "{form}");
    }
}

#[test]
fn an_asymmetric_token_names_its_algorithm_and_kid_in_the_header() {
    for (algorithm, pair, alg) in [(JwtAlgorithm::EdDsa, ed25519(), "EdDSA"), (JwtAlgorithm::Rs256, rsa(0), "RS256")] {
        let token = tokens(signing(algorithm, "2026-11", &pair), vec![]).issue(&claims()).expect("issue");

        let header = header_of(&token);

        assert_eq!(header["alg"], alg);
        assert_eq!(header["kid"], "2026-11");
        assert_eq!(header["typ"], "at+jwt");
    }
}

#[test]
fn a_token_signed_by_a_retired_key_verifies_while_its_public_key_is_configured() {
    let (old, new) = (ed25519(), ed25519());
    let before = tokens(signing(JwtAlgorithm::EdDsa, "2026-10", &old), vec![]);
    let claims = claims();
    let old_token = before.issue(&claims).expect("issue");

    let during =
        tokens(signing(JwtAlgorithm::EdDsa, "2026-11", &new), vec![verification(JwtAlgorithm::EdDsa, "2026-10", &old)]);
    let after = tokens(signing(JwtAlgorithm::EdDsa, "2026-11", &new), vec![]);
    let new_token = during.issue(&claims).expect("issue");

    assert_eq!(during.verify(&old_token), Ok(claims.clone()), "the retired key still verifies");
    assert_eq!(header_of(&new_token)["kid"], "2026-11", "new tokens use the new key");
    assert_eq!(during.verify(&new_token), Ok(claims.clone()));
    assert_eq!(after.verify(&old_token), Err(InvalidAccessToken), "removed: the old key's tokens are invalid");
    assert_eq!(after.verify(&new_token), Ok(claims));
}

#[test]
fn a_retired_key_may_use_another_algorithm_than_the_signing_key() {
    let old = rsa(0);
    let old_token = tokens(signing(JwtAlgorithm::Rs256, "rsa-old", &old), vec![]).issue(&claims()).expect("issue");

    let tokens = tokens(
        signing(JwtAlgorithm::EdDsa, "ed-new", &ed25519()),
        vec![verification(JwtAlgorithm::Rs256, "rsa-old", &old)],
    );

    assert!(tokens.verify(&old_token).is_ok());
}

#[test]
fn a_token_with_an_unknown_or_missing_kid_is_rejected() {
    let pair = ed25519();
    let tokens = tokens(signing(JwtAlgorithm::EdDsa, "ed-1", &pair), vec![]);
    let key = ed_private(&pair);

    assert!(
        tokens.verify(&forge(&header(Algorithm::EdDSA, Some("ed-1")), &key)).is_ok(),
        "control: the same forgery with the right kid verifies"
    );
    for kid in [Some("ed-2"), Some(""), Some("ED-1"), None] {
        let token = forge(&header(Algorithm::EdDSA, kid), &key);
        assert_eq!(tokens.verify(&token), Err(InvalidAccessToken), "kid {kid:?}");
    }
}

#[test]
fn an_asymmetric_token_with_the_right_key_but_not_typed_as_an_access_token_is_rejected() {
    let (ed, old) = (ed25519(), rsa(0));
    let tokens = tokens(signing(JwtAlgorithm::EdDsa, "ed", &ed), vec![verification(JwtAlgorithm::Rs256, "old", &old)]);
    for (algorithm, kid, key) in
        [(Algorithm::EdDSA, "ed", ed_private(&ed)), (Algorithm::RS256, "old", rsa_private(&old))]
    {
        assert!(tokens.verify(&forge(&header(algorithm, Some(kid)), &key)).is_ok(), "control: {kid} with at+jwt");
        for typ in [Some("JWT"), None] {
            let header = Header { typ: typ.map(str::to_owned), ..header(algorithm, Some(kid)) };
            assert_eq!(tokens.verify(&forge(&header, &key)), Err(InvalidAccessToken), "{kid} with typ {typ:?}");
        }
    }
}

#[test]
fn an_asymmetric_token_with_the_right_key_for_another_or_no_audience_is_rejected() {
    let (ed, old) = (ed25519(), rsa(0));
    let tokens = tokens(signing(JwtAlgorithm::EdDsa, "ed", &ed), vec![verification(JwtAlgorithm::Rs256, "old", &old)]);
    for (algorithm, kid, key) in
        [(Algorithm::EdDSA, "ed", ed_private(&ed)), (Algorithm::RS256, "old", rsa_private(&old))]
    {
        let mut other = wire_claims();
        other["aud"] = json!("https://other-service.test");
        let mut none = wire_claims();
        none.as_object_mut().expect("object").remove("aud");
        for claims in [other, none] {
            let token = jsonwebtoken::encode(&header(algorithm, Some(kid)), &claims, &key).expect("sign");
            assert_eq!(tokens.verify(&token), Err(InvalidAccessToken), "{kid} with {claims}");
        }
    }
}

#[test]
fn a_configured_audience_applies_to_every_asymmetric_key() {
    let (ed, old) = (ed25519(), rsa(0));
    let old_token = tokens(signing(JwtAlgorithm::Rs256, "old", &old), vec![])
        .with_audience("https://api.test")
        .expect("an audience")
        .issue(&claims())
        .expect("issue");
    let tokens = tokens(signing(JwtAlgorithm::EdDsa, "ed", &ed), vec![verification(JwtAlgorithm::Rs256, "old", &old)])
        .with_audience("https://api.test")
        .expect("an audience");

    assert!(tokens.verify(&tokens.issue(&claims()).expect("issue")).is_ok(), "the signing key");
    assert!(tokens.verify(&old_token).is_ok(), "the retired key");
    assert_eq!(
        tokens.verify(&forge(&header(Algorithm::EdDSA, Some("ed")), &ed_private(&ed))),
        Err(InvalidAccessToken),
        "a token for the issuer as audience is not for this audience"
    );
}

#[test]
fn a_token_signed_by_another_key_of_the_same_type_is_rejected() {
    let cases = [(JwtAlgorithm::EdDsa, ed25519(), ed25519()), (JwtAlgorithm::Rs256, rsa(0), rsa(1))];
    for (algorithm, ours, theirs) in cases {
        let tokens = tokens(signing(algorithm, "k1", &ours), vec![]);
        let impostor = JwtAccessTokens::asymmetric(signing(algorithm, "k1", &theirs), vec![], ISSUER).expect("keys");

        let token = impostor.issue(&claims()).expect("issue");

        assert_eq!(tokens.verify(&token), Err(InvalidAccessToken), "{algorithm}");
    }
}

#[test]
fn an_hs256_token_forged_with_the_public_key_as_hmac_secret_is_rejected() {
    let ed = ed25519();
    let rsa = rsa(0);
    let tokens = tokens(signing(JwtAlgorithm::EdDsa, "ed", &ed), vec![verification(JwtAlgorithm::Rs256, "rsa", &rsa)]);
    let jwks = serde_json::to_value(tokens.jwks()).expect("json");
    let x = URL_SAFE_NO_PAD.decode(jwks["keys"][0]["x"].as_str().expect("x")).expect("x bytes");
    let n = URL_SAFE_NO_PAD.decode(jwks["keys"][1]["n"].as_str().expect("n")).expect("n bytes");
    let (ed_jwk, rsa_jwk) = (jwks["keys"][0].to_string(), jwks["keys"][1].to_string());

    let secrets: [(&str, &[u8]); 6] = [
        ("ed", ed.public_pem.as_bytes()),
        ("ed", &x),
        ("ed", ed_jwk.as_bytes()),
        ("rsa", rsa.public_pem.as_bytes()),
        ("rsa", &n),
        ("rsa", rsa_jwk.as_bytes()),
    ];
    for (kid, secret) in secrets {
        for algorithm in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = forge(&header(algorithm, Some(kid)), &EncodingKey::from_secret(secret));
            assert_eq!(tokens.verify(&token), Err(InvalidAccessToken), "{algorithm:?} for {kid}");
        }
    }
}

#[test]
fn an_unsigned_alg_none_token_with_a_configured_kid_is_rejected() {
    let tokens = tokens(signing(JwtAlgorithm::EdDsa, "ed-1", &ed25519()), vec![]);
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": "ed-1"});
        for token in
            [format!("{}.{}.", b64(&header), b64(&wire_claims())), format!("{}.{}", b64(&header), b64(&wire_claims()))]
        {
            assert_eq!(tokens.verify(&token), Err(InvalidAccessToken), "{token}");
        }
    }
}

#[test]
fn a_token_naming_another_configured_keys_kid_and_algorithm_is_rejected() {
    let (ed, rsa) = (ed25519(), rsa(0));
    let tokens = tokens(signing(JwtAlgorithm::EdDsa, "ed", &ed), vec![verification(JwtAlgorithm::Rs256, "rsa", &rsa)]);

    assert!(tokens.verify(&forge(&header(Algorithm::RS256, Some("rsa")), &rsa_private(&rsa))).is_ok(), "control");
    for (header, key) in [
        (header(Algorithm::EdDSA, Some("rsa")), ed_private(&ed)),
        (header(Algorithm::RS256, Some("ed")), rsa_private(&rsa)),
        (header(Algorithm::PS256, Some("rsa")), rsa_private(&rsa)),
        (header(Algorithm::RS512, Some("rsa")), rsa_private(&rsa)),
    ] {
        assert_eq!(tokens.verify(&forge(&header, &key)), Err(InvalidAccessToken), "{:?} {:?}", header.alg, header.kid);
    }
}

#[test]
fn a_tampered_eddsa_token_is_rejected() {
    let tokens = tokens(signing(JwtAlgorithm::EdDsa, "ed-1", &ed25519()), vec![]);
    let token = tokens.issue(&AccessClaims { roles: vec![Role::User], ..claims() }).expect("issue");
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    payload["roles"] = json!(["user", "admin"]);

    let tampered = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);

    assert_eq!(tokens.verify(&tampered), Err(InvalidAccessToken));
}

#[test]
fn the_jwks_publishes_ed25519_keys_with_exactly_the_rfc_8037_fields() {
    let (current, current_public) = ed25519_as_openssl_writes_it();
    let (retired, retired_public) = ed25519_as_openssl_writes_it();
    let tokens = tokens(
        signing(JwtAlgorithm::EdDsa, "2026-11", &current),
        vec![verification(JwtAlgorithm::EdDsa, "2026-10", &retired)],
    );

    let jwks = serde_json::to_value(tokens.jwks()).expect("json");

    assert_eq!(
        jwks,
        json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(current_public.as_bytes()),
             "kid": "2026-11", "alg": "EdDSA", "use": "sig"},
            {"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(retired_public.as_bytes()),
             "kid": "2026-10", "alg": "EdDSA", "use": "sig"},
        ]})
    );
    assert_eq!(tokens.jwks().keys()[0].kid(), "2026-11");
    assert_eq!(tokens.jwks().keys()[0].algorithm(), JwtAlgorithm::EdDsa);
}

#[test]
fn the_jwks_publishes_rsa_keys_with_exactly_the_rfc_7518_fields() {
    let tokens = tokens(
        signing(JwtAlgorithm::Rs256, "rsa-1", &rsa(0)),
        vec![verification(JwtAlgorithm::Rs256, "rsa-0", &rsa(1))],
    );

    let jwks = serde_json::to_value(tokens.jwks()).expect("json");

    let expected = |key: &rsa::RsaPrivateKey, kid: &str| {
        json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()), "e": "AQAB",
               "kid": kid, "alg": "RS256", "use": "sig"})
    };
    assert_eq!(jwks, json!({"keys": [expected(&RSA_KEYS[0], "rsa-1"), expected(&RSA_KEYS[1], "rsa-0")]}));
}

#[test]
fn the_jwks_is_empty_with_hs256() {
    let tokens = JwtAccessTokens::hs256(&SecretString::from("0123456789abcdef0123456789abcdef-secret"), ISSUER)
        .expect("valid secret");

    assert_eq!(serde_json::to_value(tokens.jwks()).expect("json"), json!({"keys": []}));
}

/// What another service does: fetch the JWKS as JSON, pick the key by the token's `kid`, verify
/// with its own JWT library. jwt-compact shares no JOSE code with jsonwebtoken.
mod independent_verifier {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct OurClaims {
        iss: String,
        sub: String,
        sid: String,
        roles: Vec<String>,
        jti: String,
    }

    fn jwk_for<'a>(jwks_json: &'a serde_json::Value, token: &jwt_compact::UntrustedToken<'_>) -> &'a serde_json::Value {
        let kid = token.header().key_id.as_deref().expect("the token names its key");
        let jwk =
            jwks_json["keys"].as_array().expect("keys").iter().find(|jwk| jwk["kid"] == kid).expect("kid in JWKS");
        assert_eq!(jwk["alg"], token.algorithm(), "the JWKS states the token's algorithm");
        assert_eq!(jwk["use"], "sig");
        jwk
    }

    fn verify_with<A: jwt_compact::Algorithm>(
        algorithm: &A,
        key: &A::VerifyingKey,
        token: &jwt_compact::UntrustedToken<'_>,
    ) -> Result<OurClaims, String> {
        let token = algorithm.validator::<OurClaims>(key).validate(token).map_err(|e| e.to_string())?;
        token.claims().validate_expiration(&jwt_compact::TimeOptions::default()).map_err(|e| e.to_string())?;
        Ok(token.into_parts().1.custom)
    }

    fn assert_same_claims(verified: &OurClaims, claims: &AccessClaims) {
        assert_eq!(verified.iss, ISSUER);
        assert_eq!(verified.sub, claims.user_id.to_string());
        assert_eq!(verified.sid, claims.session_id.to_string());
        assert_eq!(verified.roles, ["user", "admin"]);
        assert_eq!(verified.jti, claims.token_id.to_string());
    }

    fn tampered(token: &str) -> String {
        let (rest, signature) = token.rsplit_once('.').expect("three parts");
        let mut signature = URL_SAFE_NO_PAD.decode(signature).expect("b64");
        signature[0] ^= 1;
        format!("{rest}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    #[test]
    fn an_independent_jwt_library_verifies_an_eddsa_token_with_only_the_jwks() {
        let tokens = tokens(
            signing(JwtAlgorithm::EdDsa, "ed-2", &ed25519()),
            vec![verification(JwtAlgorithm::EdDsa, "ed-1", &ed25519())],
        );
        let claims = claims();
        let token = tokens.issue(&claims).expect("issue");
        let published = serde_json::to_string(&tokens.jwks()).expect("jwks");

        let jwks_json: serde_json::Value = serde_json::from_str(&published).expect("json");
        let untrusted = jwt_compact::UntrustedToken::new(&token).expect("parse");
        let jwk: jwt_compact::jwk::JsonWebKey<'_> =
            serde_json::from_value(jwk_for(&jwks_json, &untrusted).clone()).expect("a JWK jwt-compact reads");
        let key = ed25519_dalek::VerifyingKey::try_from(&jwk).expect("an Ed25519 key");
        let verified = verify_with(&jwt_compact::alg::Ed25519, &key, &untrusted);

        assert_same_claims(&verified.expect("verifies"), &claims);
        let forged = tampered(&token);
        let forged = jwt_compact::UntrustedToken::new(&forged).expect("parse");
        assert!(verify_with(&jwt_compact::alg::Ed25519, &key, &forged).is_err(), "control: a bad signature fails");
    }

    #[test]
    fn an_independent_jwt_library_verifies_an_rs256_token_with_only_the_jwks() {
        let tokens = tokens(signing(JwtAlgorithm::Rs256, "rsa-1", &rsa(0)), vec![]);
        let claims = claims();
        let token = tokens.issue(&claims).expect("issue");
        let published = serde_json::to_string(&tokens.jwks()).expect("jwks");

        let jwks_json: serde_json::Value = serde_json::from_str(&published).expect("json");
        let untrusted = jwt_compact::UntrustedToken::new(&token).expect("parse");
        let jwk: jwt_compact::jwk::JsonWebKey<'_> =
            serde_json::from_value(jwk_for(&jwks_json, &untrusted).clone()).expect("a JWK jwt-compact reads");
        let key = rsa::RsaPublicKey::try_from(&jwk).expect("an RSA key");
        let verified = verify_with(&jwt_compact::alg::Rsa::rs256(), &key, &untrusted);

        assert_same_claims(&verified.expect("verifies"), &claims);
        let forged = tampered(&token);
        let forged = jwt_compact::UntrustedToken::new(&forged).expect("parse");
        assert!(verify_with(&jwt_compact::alg::Rsa::rs256(), &key, &forged).is_err(), "control: a bad signature fails");
    }
}

#[test]
fn a_bad_asymmetric_configuration_is_refused_without_quoting_the_private_key() {
    let (ed, rsa) = (ed25519(), rsa(0));
    let small_rsa = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).expect("rsa keygen");
    let small = KeyPair {
        private_pem: rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&small_rsa, LineEnding::LF).expect("pem").to_string(),
        public_pem: rsa::pkcs8::EncodePublicKey::to_public_key_pem(&small_rsa.to_public_key(), LineEnding::LF)
            .expect("pem"),
    };
    let swapped = KeyPair { private_pem: ed.public_pem.clone(), public_pem: ed.private_pem.clone() };
    let encrypted = KeyPair {
        private_pem: "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n".into(),
        public_pem: String::new(),
    };
    let garbage = KeyPair { private_pem: "not a pem".into(), public_pem: "not a pem".into() };
    let ok = || signing(JwtAlgorithm::EdDsa, "ed", &ed);

    let cases: Vec<(&str, SigningKeyPem, Vec<VerificationKeyPem>, &str)> = vec![
        ("HS256 signing key", signing(JwtAlgorithm::Hs256, "k", &ed), vec![], ISSUER),
        ("HS256 verification key", ok(), vec![verification(JwtAlgorithm::Hs256, "k", &ed)], ISSUER),
        ("EdDSA with an RSA key", signing(JwtAlgorithm::EdDsa, "k", &rsa), vec![], ISSUER),
        ("RS256 with an Ed25519 key", signing(JwtAlgorithm::Rs256, "k", &ed), vec![], ISSUER),
        ("RS256 verification with an Ed25519 key", ok(), vec![verification(JwtAlgorithm::Rs256, "k", &ed)], ISSUER),
        ("a public key to sign with", signing(JwtAlgorithm::EdDsa, "k", &swapped), vec![], ISSUER),
        ("a private key to verify with", ok(), vec![verification(JwtAlgorithm::EdDsa, "k", &swapped)], ISSUER),
        ("an encrypted key", signing(JwtAlgorithm::EdDsa, "k", &encrypted), vec![], ISSUER),
        ("garbage", signing(JwtAlgorithm::EdDsa, "k", &garbage), vec![], ISSUER),
        ("garbage to verify with", ok(), vec![verification(JwtAlgorithm::EdDsa, "k", &garbage)], ISSUER),
        ("RSA-1024 signing key", signing(JwtAlgorithm::Rs256, "k", &small), vec![], ISSUER),
        ("RSA-1024 verification key", ok(), vec![verification(JwtAlgorithm::Rs256, "k", &small)], ISSUER),
        ("a kid used twice", ok(), vec![verification(JwtAlgorithm::EdDsa, "ed", &ed25519())], ISSUER),
        ("an empty kid", signing(JwtAlgorithm::EdDsa, "", &ed), vec![], ISSUER),
        ("a kid with a newline", signing(JwtAlgorithm::EdDsa, "a\nb", &ed), vec![], ISSUER),
        ("an empty issuer", ok(), vec![], ""),
    ];
    let private_lines: Vec<&str> = [&ed.private_pem, &rsa.private_pem]
        .into_iter()
        .flat_map(|pem| pem.lines())
        .filter(|line| !line.starts_with("-----"))
        .collect();

    for (case, signing, extra, issuer) in cases {
        let error = JwtAccessTokens::asymmetric(signing, extra, issuer).expect_err(case);
        let message = format!("{error:#} {error:?}");
        assert!(!private_lines.iter().any(|line| message.contains(line)), "{case} quotes the key: {message}");
    }
}

#[test]
fn debug_output_does_not_show_the_private_key() {
    let pair = ed25519();
    let key = signing(JwtAlgorithm::EdDsa, "ed-1", &pair);
    let secret_line = pair.private_pem.lines().nth(1).expect("base64 line");

    let shown = format!("{key:?} {:?}", tokens(key.clone(), vec![]));

    assert!(!shown.contains(secret_line), "{shown}");
    assert!(shown.contains("ed-1"), "the kid helps operators: {shown}");
}
