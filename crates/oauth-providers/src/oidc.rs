//! Any OpenID Connect provider (`kind = "oidc"`): endpoints discovered from the issuer (cached,
//! refreshed after a failure and when an id token names an unknown key), the authorization code
//! flow with PKCE and a nonce, id tokens verified per OpenID Connect Core §3.1.3.7, and claims
//! merged from the id token and the userinfo endpoint (§5.4 lets a provider serve the email
//! only there).

use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_domain::Email;
use gatehouse_domain::ports::{
    AuthorizationRequest, OAuthProvider, ProviderDescription, ProviderError, ProviderIdentity,
};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oauth2::{AuthType, TokenResponse as _};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::admission::{check_email_domain, domain_allowed};
use crate::client::{OAuthClient, garbage, unavailable};
use crate::registry::Resolved;
use crate::settings::{ProviderSettings, TokenAuthMethod};

/// How long discovered metadata and signing keys are trusted before they are fetched again.
const CACHE_TTL: Duration = Duration::from_secs(3600);

/// The scopes asked for when none are configured.
const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];

/// The asymmetric signature algorithms id tokens may use (never `none`; HMAC only on request).
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What the provider's discovery document (or the explicit endpoints) says.
#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    jwks_uri: String,
    #[serde(default)]
    id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

type Cached<T> = Mutex<Option<(Arc<T>, Instant)>>;

/// Sign-in with an OpenID Connect provider.
pub(crate) struct OidcProvider {
    name: String,
    display_name: String,
    client: OAuthClient,
    settings: ProviderSettings,
    issuer: String,
    accepted_issuers: Vec<String>,
    hosted_domain: bool,
    metadata: Cached<Metadata>,
    keys: Cached<JwkSet>,
}

/// Builds the provider of `kind = "oidc"`.
pub(crate) fn build(resolved: Resolved) -> anyhow::Result<Arc<dyn OAuthProvider>> {
    let settings = &resolved.settings;
    let issuer = settings
        .issuer
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("oauth.providers.{}: issuer is required", resolved.name))?
        .trim_end_matches('/')
        .to_owned();
    let scopes = settings.scopes.clone().unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect());
    let client = OAuthClient::new(
        &settings.client_id,
        &settings.client_secret,
        &resolved.redirect_url,
        scopes,
        resolved.timeout(),
    )?;
    let mut accepted_issuers = vec![issuer.clone()];
    accepted_issuers.extend(resolved.issuer_aliases.iter().cloned());
    Ok(Arc::new(OidcProvider {
        name: resolved.name.clone(),
        display_name: resolved.display_name.clone(),
        client,
        settings: resolved.settings.clone(),
        issuer,
        accepted_issuers,
        hosted_domain: resolved.hosted_domain,
        metadata: Mutex::new(None),
        keys: Mutex::new(None),
    }))
}

fn cached<T>(cache: &Cached<T>) -> Option<Arc<T>> {
    let guard = cache.lock().ok()?;
    guard.as_ref().filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(value, _)| value.clone())
}

fn store<T>(cache: &Cached<T>, value: Option<Arc<T>>) {
    if let Ok(mut guard) = cache.lock() {
        *guard = value.map(|v| (v, Instant::now()));
    }
}

fn rejected(why: impl Into<String>) -> ProviderError {
    ProviderError::Rejected(why.into())
}

/// The `alg` of a JWT's header, read before anything else so that `none` is named as such.
fn header_alg(token: &str) -> Result<String, ProviderError> {
    let header = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| rejected("the ID token is malformed"))?;
    let header: Value = serde_json::from_slice(&bytes).map_err(|_| rejected("the ID token is malformed"))?;
    header.get("alg").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| rejected("the ID token has no alg"))
}

impl OidcProvider {
    /// The endpoints: explicit ones when `auth_url`, `token_url` and `jwks_url` are all set,
    /// else discovered (cached), with any explicit endpoint overriding its discovered one.
    async fn metadata(&self) -> Result<Arc<Metadata>, ProviderError> {
        let s = &self.settings;
        if let (Some(auth), Some(token), Some(jwks)) = (&s.auth_url, &s.token_url, &s.jwks_url) {
            return Ok(Arc::new(Metadata {
                issuer: self.issuer.clone(),
                authorization_endpoint: auth.clone(),
                token_endpoint: token.clone(),
                userinfo_endpoint: s.userinfo_url.clone(),
                jwks_uri: jwks.clone(),
                id_token_signing_alg_values_supported: Vec::new(),
                token_endpoint_auth_methods_supported: Vec::new(),
            }));
        }
        if let Some(metadata) = cached(&self.metadata) {
            return Ok(metadata);
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let body = self.get(&url, "discovery").await?;
        let mut metadata: Metadata = serde_json::from_slice(&body).map_err(|e| garbage("discovery", e))?;
        if metadata.issuer.trim_end_matches('/') != self.issuer {
            return Err(ProviderError::Unavailable(anyhow::anyhow!(
                "discovery at {url} names the issuer {:?}, not the configured one",
                metadata.issuer
            )));
        }
        let overrides = [
            (&s.auth_url, &mut metadata.authorization_endpoint),
            (&s.token_url, &mut metadata.token_endpoint),
            (&s.jwks_url, &mut metadata.jwks_uri),
        ];
        for (configured, discovered) in overrides {
            if let Some(url) = configured {
                discovered.clone_from(url);
            }
        }
        if s.userinfo_url.is_some() {
            metadata.userinfo_endpoint.clone_from(&s.userinfo_url);
        }
        let metadata = Arc::new(metadata);
        store(&self.metadata, Some(metadata.clone()));
        Ok(metadata)
    }

    /// Forgets what was discovered, so the next sign-in discovers again.
    fn forget(&self) {
        store(&self.metadata, None);
    }

    /// Forgets the endpoints when `outcome` says the provider is unavailable.
    fn forget_on_failure<T>(&self, outcome: Result<T, ProviderError>) -> Result<T, ProviderError> {
        if matches!(outcome, Err(ProviderError::Unavailable(_))) {
            self.forget();
        }
        outcome
    }

    async fn get(&self, url: &str, what: &str) -> Result<Vec<u8>, ProviderError> {
        let response = self
            .client
            .http
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .and_then(oauth2::reqwest::Response::error_for_status)
            .map_err(|e| unavailable(what, e))?;
        Ok(response.bytes().await.map_err(|e| unavailable(what, e))?.to_vec())
    }

    async fn fetch_keys(&self, metadata: &Metadata) -> Result<Arc<JwkSet>, ProviderError> {
        let body = self.get(&metadata.jwks_uri, "JWKS").await?;
        let keys: JwkSet = serde_json::from_slice(&body).map_err(|e| garbage("JWKS", e))?;
        let keys = Arc::new(keys);
        store(&self.keys, Some(keys.clone()));
        Ok(keys)
    }

    /// The key that signed a token with `kid` and `alg`. An unknown `kid` (the provider rotated
    /// its keys) refreshes the discovery and the keys once.
    async fn key_for(&self, metadata: &Metadata, kid: Option<&str>) -> Result<DecodingKey, ProviderError> {
        let pick = |keys: &JwkSet| -> Option<Jwk> {
            match kid {
                Some(kid) => keys.find(kid).cloned(),
                None => {
                    let mut usable = keys.keys.iter().filter(|k| DecodingKey::from_jwk(k).is_ok());
                    let only = usable.next().cloned();
                    if usable.next().is_some() { None } else { only }
                }
            }
        };
        let jwk = match cached(&self.keys).as_deref().and_then(pick) {
            Some(jwk) => jwk,
            None => {
                let fresh = if cached(&self.keys).is_some() {
                    self.forget();
                    self.metadata().await?
                } else {
                    Arc::new(metadata.clone())
                };
                let keys = self.forget_on_failure(self.fetch_keys(&fresh).await)?;
                pick(&keys).ok_or_else(|| {
                    rejected(format!("the ID token is signed with an unknown key ({})", kid.unwrap_or("no kid")))
                })?
            }
        };
        DecodingKey::from_jwk(&jwk).map_err(|e| rejected(format!("unusable signing key: {e}")))
    }

    /// Verifies the id token (OpenID Connect Core §3.1.3.7) and returns its claims.
    async fn verify(
        &self,
        metadata: &Metadata,
        id_token: &str,
        nonce: Option<&SecretString>,
    ) -> Result<Map<String, Value>, ProviderError> {
        let alg_name = header_alg(id_token)?;
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(rejected("the ID token is unsigned (alg none)"));
        }
        let alg = Algorithm::from_str(&alg_name)
            .map_err(|_| rejected(format!("the ID token uses the unsupported algorithm {alg_name}")))?;
        let announced = &metadata.id_token_signing_alg_values_supported;
        let announced_ok = if announced.is_empty() { alg == Algorithm::RS256 } else { announced.contains(&alg_name) };
        if !announced_ok {
            return Err(rejected(format!(
                "the ID token is signed with {alg_name}, which the provider does not announce"
            )));
        }
        let hmac = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        let key = if hmac {
            if !self.settings.allow_hmac_id_tokens {
                return Err(rejected(format!(
                    "the ID token is signed with {alg_name} and the client secret, which is not allowed"
                )));
            }
            DecodingKey::from_secret(self.client.client_secret().expose_secret().as_bytes())
        } else if ASYMMETRIC.contains(&alg) {
            let header =
                jsonwebtoken::decode_header(id_token).map_err(|e| rejected(format!("malformed ID token: {e}")))?;
            self.key_for(metadata, header.kid.as_deref()).await?
        } else {
            return Err(rejected(format!("the ID token uses the unsupported algorithm {alg_name}")));
        };
        let leeway = self.settings.leeway_secs.unwrap_or(60);
        let mut validation = Validation::new(alg);
        validation.leeway = leeway;
        validation.validate_nbf = true;
        validation.set_audience(&[self.client.client_id()]);
        validation.set_issuer(&self.accepted_issuers);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(id_token, &key, &validation)
            .map_err(|e| rejected(format!("invalid ID token: {e}")))?
            .claims;
        let audiences = match claims.get("aud") {
            Some(Value::Array(audiences)) => audiences.len(),
            _ => 1,
        };
        match claims.get("azp").and_then(Value::as_str) {
            Some(azp) if azp != self.client.client_id() => {
                return Err(rejected("the ID token was issued to another party (azp)"));
            }
            None if audiences > 1 => return Err(rejected("the ID token has several audiences and no azp")),
            _ => {}
        }
        let now = unix_now();
        let leeway = i64::try_from(leeway).unwrap_or(i64::MAX);
        if claims.get("iat").and_then(Value::as_i64).is_none_or(|iat| iat > now.saturating_add(leeway)) {
            return Err(rejected("the ID token's iat is missing or in the future"));
        }
        let expected = nonce.map(ExposeSecret::expose_secret);
        if expected.is_none() || claims.get("nonce").and_then(Value::as_str) != expected {
            return Err(rejected("the ID token's nonce does not match"));
        }
        Ok(claims)
    }

    /// The userinfo claims, which must be about `sub`.
    async fn userinfo(&self, url: &str, access_token: &str, sub: &str) -> Result<Map<String, Value>, ProviderError> {
        let response = self
            .client
            .http
            .get(url)
            .bearer_auth(access_token)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| unavailable("userinfo", e))?;
        if response.status().is_client_error() {
            return Err(rejected(format!("the userinfo endpoint answered {}", response.status())));
        }
        let response = response.error_for_status().map_err(|e| unavailable("userinfo", e))?;
        let jwt = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/jwt"));
        if jwt {
            return Err(rejected("the userinfo endpoint answered a JWT; configure the provider to answer JSON"));
        }
        let body = response.bytes().await.map_err(|e| unavailable("userinfo", e))?;
        let claims: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| garbage("userinfo", e))?;
        if claims.get("sub").and_then(Value::as_str) != Some(sub) {
            return Err(rejected("the userinfo endpoint answered for another subject than the ID token (sub)"));
        }
        Ok(claims)
    }

    fn auth_type(&self, metadata: &Metadata) -> Result<AuthType, ProviderError> {
        let supported = &metadata.token_endpoint_auth_methods_supported;
        let offers = |method: TokenAuthMethod| {
            if supported.is_empty() {
                method == TokenAuthMethod::ClientSecretBasic
            } else {
                supported.iter().any(|m| m == method.as_str())
            }
        };
        let method = match self.settings.token_auth_method {
            Some(method) => method,
            None if offers(TokenAuthMethod::ClientSecretBasic) => TokenAuthMethod::ClientSecretBasic,
            None if offers(TokenAuthMethod::ClientSecretPost) => TokenAuthMethod::ClientSecretPost,
            None => {
                return Err(rejected(
                    "the provider announces neither client_secret_basic nor client_secret_post; set token_auth_method",
                ));
            }
        };
        Ok(match method {
            TokenAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
            TokenAuthMethod::ClientSecretPost => AuthType::RequestBody,
        })
    }

    /// The identity in the merged `claims`, if the configuration admits it.
    fn identity(&self, claims: &Map<String, Value>) -> Result<ProviderIdentity, ProviderError> {
        let names = &self.settings.claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let sub = text("sub").ok_or_else(|| rejected("the ID token's sub is not a string"))?;
        let email = text(&names.email).and_then(|e| Email::parse(&e).ok());
        let email_verified = email.is_some() && claims.get(&names.email_verified) == Some(&Value::Bool(true));
        let allowed = &self.settings.allowed_domains;
        check_email_domain(allowed, email.as_ref(), email_verified)?;
        if self.hosted_domain && !allowed.is_empty() && !text("hd").is_some_and(|hd| domain_allowed(allowed, &hd)) {
            return Err(ProviderError::NotAllowed("the account is not of an allowed hosted domain (hd)".to_owned()));
        }
        let tenants = &self.settings.allowed_tenants;
        if !tenants.is_empty() && !text("tid").is_some_and(|tid| tenants.iter().any(|t| t == &tid)) {
            return Err(ProviderError::NotAllowed("the account is not of an allowed tenant (tid)".to_owned()));
        }
        Ok(ProviderIdentity {
            provider: self.name.clone(),
            provider_user_id: sub,
            email,
            email_verified,
            login: text(&names.login),
            name: text(&names.name),
            picture: text(&names.picture),
        })
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[async_trait]
impl OAuthProvider for OidcProvider {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn describe(&self) -> ProviderDescription {
        ProviderDescription {
            name: self.name.clone(),
            display_name: self.display_name.clone(),
            kind: "oidc".to_owned(),
        }
    }

    async fn authorize(&self, state: &str) -> Result<AuthorizationRequest, ProviderError> {
        let metadata = self.metadata().await?;
        let nonce = oauth2::CsrfToken::new_random().secret().clone();
        let mut extra = vec![("nonce", nonce.as_str())];
        if let [domain] = self.settings.allowed_domains.as_slice()
            && self.hosted_domain
        {
            extra.push(("hd", domain.as_str()));
        }
        let (url, pkce_verifier) = self.client.authorize(&metadata.authorization_endpoint, state, &extra)?;
        Ok(AuthorizationRequest { url, pkce_verifier, nonce: Some(SecretString::from(nonce)) })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(provider = %self.name), err)]
    async fn identify(
        &self,
        code: SecretString,
        verifier: SecretString,
        nonce: Option<SecretString>,
    ) -> Result<ProviderIdentity, ProviderError> {
        let metadata = self.metadata().await?;
        let auth = self.auth_type(&metadata)?;
        let tokens =
            self.forget_on_failure(self.client.exchange(&metadata.token_endpoint, auth, code, verifier).await)?;
        let id_token =
            tokens.extra_fields().id_token.as_deref().ok_or_else(|| rejected("the token response has no ID token"))?;
        let mut claims = self.verify(&metadata, id_token, nonce.as_ref()).await?;
        let names = &self.settings.claims;
        let lacking = !claims.contains_key(&names.email) || !claims.contains_key(&names.email_verified);
        if let (true, Some(url)) = (lacking, metadata.userinfo_endpoint.as_deref()) {
            let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned();
            let info = self.forget_on_failure(self.userinfo(url, tokens.access_token().secret(), &sub).await)?;
            for (name, value) in info {
                claims.entry(name).or_insert(value);
            }
        }
        self.identity(&claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alg_of_an_unsigned_token_is_read_before_verification() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(header_alg(&format!("{header}.e30.")).ok().as_deref(), Some("none"));
        assert!(header_alg("not a jwt").is_err());
    }
}
