//! Google: OpenID Connect authorization code flow with PKCE and a nonce; the id token is
//! verified against Google's JWKS (RS256), issuer, audience, expiry and nonce.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gatehouse_domain::Email;
use gatehouse_domain::ports::{AuthorizationRequest, OAuthProvider, ProviderError, ProviderIdentity};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::client::{ClientSettings, OAuthClient, unavailable};

/// How long fetched signing keys are trusted before they are fetched again (an unknown `kid`
/// refetches at once).
const JWKS_TTL: Duration = Duration::from_secs(3600);

/// Google's endpoints besides the OAuth ones; all overridable.
#[derive(Debug, Clone)]
pub struct GoogleEndpoints {
    /// The id token's expected `iss` (`https://accounts.google.com`).
    pub issuer: String,
    /// Where the signing keys are published.
    pub jwks_url: String,
}

/// Sign-in with Google.
#[derive(Clone)]
pub struct GoogleProvider {
    client: OAuthClient,
    client_id: String,
    endpoints: GoogleEndpoints,
    keys: Arc<Mutex<Option<(JwkSet, Instant)>>>,
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    email: Option<String>,
    #[serde(default, deserialize_with = "bool_or_string")]
    email_verified: bool,
    nonce: Option<String>,
    name: Option<String>,
}

/// Google has sent `email_verified` both as a boolean and as a string.
fn bool_or_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    Ok(match Flag::deserialize(deserializer)? {
        Flag::Bool(b) => b,
        Flag::Text(s) => s == "true",
    })
}

impl GoogleProvider {
    /// A provider with `settings` and `endpoints`.
    ///
    /// # Errors
    ///
    /// When a URL is invalid or the HTTP client cannot be built.
    pub fn new(settings: &ClientSettings, endpoints: GoogleEndpoints) -> anyhow::Result<Self> {
        Ok(Self {
            client: OAuthClient::new(settings, vec!["openid", "email", "profile"])?,
            client_id: settings.client_id.clone(),
            endpoints,
            keys: Arc::new(Mutex::new(None)),
        })
    }

    fn cached_keys(&self) -> Option<JwkSet> {
        let guard = self.keys.lock().ok()?;
        guard.as_ref().filter(|(_, at)| at.elapsed() < JWKS_TTL).map(|(keys, _)| keys.clone())
    }

    async fn fetch_keys(&self) -> Result<JwkSet, ProviderError> {
        let body = self
            .client
            .http
            .get(&self.endpoints.jwks_url)
            .send()
            .await
            .and_then(oauth2::reqwest::Response::error_for_status)
            .map_err(|e| unavailable("JWKS", e))?
            .bytes()
            .await
            .map_err(|e| unavailable("JWKS", e))?;
        let keys: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Unavailable(anyhow::Error::new(e).context("JWKS")))?;
        if let Ok(mut guard) = self.keys.lock() {
            *guard = Some((keys.clone(), Instant::now()));
        }
        Ok(keys)
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, ProviderError> {
        let pick = |keys: &JwkSet| match kid {
            Some(kid) => keys.find(kid).cloned(),
            None => keys.keys.first().cloned(),
        };
        let jwk = match self.cached_keys().as_ref().and_then(pick) {
            Some(jwk) => jwk,
            None => pick(&self.fetch_keys().await?)
                .ok_or_else(|| ProviderError::Rejected("the id token's key is unknown".to_owned()))?,
        };
        DecodingKey::from_jwk(&jwk).map_err(|e| ProviderError::Rejected(format!("unusable signing key: {e}")))
    }

    /// Checks the id token's signature, `iss`, `aud`, `exp` and `nonce`.
    async fn verify(&self, id_token: &str, nonce: Option<&SecretString>) -> Result<IdClaims, ProviderError> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|e| ProviderError::Rejected(format!("malformed id token: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err(ProviderError::Rejected("the id token is not signed with RS256".to_owned()));
        }
        let key = self.key_for(header.kid.as_deref()).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.client_id]);
        let issuer = self.endpoints.issuer.trim_end_matches('/');
        // Google also issues tokens with the scheme-less issuer.
        let bare = issuer.strip_prefix("https://").unwrap_or(issuer);
        validation.set_issuer(&[issuer, bare]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<IdClaims>(id_token, &key, &validation)
            .map_err(|e| ProviderError::Rejected(format!("invalid id token: {e}")))?
            .claims;
        let expected = nonce.map(ExposeSecret::expose_secret);
        if expected.is_none() || claims.nonce.as_deref() != expected {
            return Err(ProviderError::Rejected("the id token's nonce does not match".to_owned()));
        }
        Ok(claims)
    }
}

#[async_trait]
impl OAuthProvider for GoogleProvider {
    fn name(&self) -> &'static str {
        "google"
    }

    fn authorize(&self, state: &str) -> AuthorizationRequest {
        let nonce = oauth2::CsrfToken::new_random().secret().clone();
        let (url, pkce_verifier) = self.client.authorize(state, &[("nonce", &nonce)]);
        AuthorizationRequest { url, pkce_verifier, nonce: Some(SecretString::from(nonce)) }
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn identify(
        &self,
        code: SecretString,
        verifier: SecretString,
        nonce: Option<SecretString>,
    ) -> Result<ProviderIdentity, ProviderError> {
        let tokens = self.client.exchange(code, verifier).await?;
        let id_token = tokens
            .extra_fields()
            .id_token
            .as_deref()
            .ok_or_else(|| ProviderError::Rejected("the token response has no id token".to_owned()))?;
        let claims = self.verify(id_token, nonce.as_ref()).await?;
        let email = claims.email.as_deref().and_then(|e| Email::parse(e).ok());
        Ok(ProviderIdentity {
            provider: self.name().to_owned(),
            provider_user_id: claims.sub,
            email_verified: email.is_some() && claims.email_verified,
            email,
            login: claims.name,
        })
    }
}
