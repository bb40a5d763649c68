//! GitHub and GitHub Enterprise (`kind = "github"`; not OpenID Connect): OAuth 2.0 with PKCE,
//! then `/user` and `/user/emails`.

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_domain::Email;
use gatehouse_domain::ports::{
    AuthorizationRequest, OAuthProvider, ProviderDescription, ProviderError, ProviderIdentity,
};
use oauth2::{AuthType, TokenResponse as _};
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::admission::check_email_domain;
use crate::client::{OAuthClient, garbage, unavailable};
use crate::registry::Resolved;
use crate::settings::TokenAuthMethod;

/// Sign-in with GitHub.
struct GitHubProvider {
    name: String,
    display_name: String,
    client: OAuthClient,
    auth_url: String,
    token_url: String,
    api_url: String,
    auth: TokenAuthMethod,
    allowed_domains: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct GitHubUser {
    id: u64,
    login: String,
    name: Option<String>,
    avatar_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GitHubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

/// Builds the provider of `kind = "github"`; `auth_url`, `token_url` and `api_url` come from the
/// preset or, for GitHub Enterprise, from the settings.
pub(crate) fn build(resolved: Resolved) -> anyhow::Result<Arc<dyn OAuthProvider>> {
    let settings = &resolved.settings;
    let required = |value: &Option<String>, key: &str| {
        value.clone().ok_or_else(|| anyhow::anyhow!("oauth.providers.{}: {key} is required", resolved.name))
    };
    let scopes = settings.scopes.clone().unwrap_or_else(|| vec!["read:user".to_owned(), "user:email".to_owned()]);
    Ok(Arc::new(GitHubProvider {
        name: resolved.name.clone(),
        display_name: resolved.display_name.clone(),
        client: OAuthClient::new(
            &settings.client_id,
            &settings.client_secret,
            &resolved.redirect_url,
            scopes,
            resolved.timeout(),
        )?,
        auth_url: required(&settings.auth_url, "auth_url")?,
        token_url: required(&settings.token_url, "token_url")?,
        api_url: required(&settings.api_url, "api_url")?.trim_end_matches('/').to_owned(),
        auth: settings.token_auth_method.unwrap_or(TokenAuthMethod::ClientSecretBasic),
        allowed_domains: settings.allowed_domains.clone(),
    }))
}

impl GitHubProvider {
    async fn get<T: DeserializeOwned>(&self, path: &str, token: &str) -> Result<T, ProviderError> {
        let response = self
            .client
            .http
            .get(format!("{}{path}", self.api_url))
            .bearer_auth(token)
            .header("Accept", "application/vnd.github+json")
            .send()
            .await
            .map_err(|e| unavailable(path, e))?;
        if response.status().is_client_error() {
            return Err(ProviderError::Rejected(format!("GitHub answered {} to {path}", response.status())));
        }
        let body = response
            .error_for_status()
            .map_err(|e| unavailable(path, e))?
            .bytes()
            .await
            .map_err(|e| unavailable(path, e))?;
        serde_json::from_slice(&body).map_err(|e| garbage(path, e))
    }
}

#[async_trait]
impl OAuthProvider for GitHubProvider {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn describe(&self) -> ProviderDescription {
        ProviderDescription {
            name: self.name.clone(),
            display_name: self.display_name.clone(),
            kind: "github".to_owned(),
        }
    }

    async fn authorize(&self, state: &str) -> Result<AuthorizationRequest, ProviderError> {
        let (url, pkce_verifier) = self.client.authorize(&self.auth_url, state, &[])?;
        Ok(AuthorizationRequest { url, pkce_verifier, nonce: None })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(provider = %self.name), err)]
    async fn identify(
        &self,
        code: SecretString,
        verifier: SecretString,
        _nonce: Option<SecretString>,
    ) -> Result<ProviderIdentity, ProviderError> {
        let auth = match self.auth {
            TokenAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
            TokenAuthMethod::ClientSecretPost => AuthType::RequestBody,
        };
        let tokens = self.client.exchange(&self.token_url, auth, code, verifier).await?;
        let token = tokens.access_token().secret();
        let user: GitHubUser = self.get("/user", token).await?;
        let emails: Vec<GitHubEmail> = self.get("/user/emails", token).await?;
        let primary = emails.iter().find(|e| e.primary && e.verified).or_else(|| emails.iter().find(|e| e.primary));
        let email = primary.and_then(|e| Email::parse(&e.email).ok());
        let email_verified = email.is_some() && primary.is_some_and(|e| e.verified);
        check_email_domain(&self.allowed_domains, email.as_ref(), email_verified)?;
        Ok(ProviderIdentity {
            provider: self.name.clone(),
            provider_user_id: user.id.to_string(),
            email_verified,
            email,
            login: Some(user.login),
            name: user.name,
            picture: user.avatar_url,
        })
    }
}
