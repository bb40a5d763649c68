//! GitHub (and GitHub Enterprise): OAuth 2.0 with PKCE, then `/user` and `/user/emails`.

use async_trait::async_trait;
use gatehouse_domain::Email;
use gatehouse_domain::ports::{AuthorizationRequest, OAuthProvider, ProviderError, ProviderIdentity};
use oauth2::TokenResponse as _;
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::client::{ClientSettings, OAuthClient, unavailable};

/// Sign-in with GitHub.
#[derive(Clone)]
pub struct GitHubProvider {
    client: OAuthClient,
    api_url: String,
}

#[derive(Debug, Deserialize)]
struct GitHubUser {
    id: u64,
    login: String,
}

#[derive(Debug, Deserialize)]
struct GitHubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

impl GitHubProvider {
    /// A provider with `settings` and the REST API at `api_url` (`https://api.github.com`,
    /// or `https://host/api/v3` for GitHub Enterprise).
    ///
    /// # Errors
    ///
    /// When a URL is invalid or the HTTP client cannot be built.
    pub fn new(settings: &ClientSettings, api_url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: OAuthClient::new(settings, vec!["read:user", "user:email"])?,
            api_url: api_url.trim_end_matches('/').to_owned(),
        })
    }

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
        serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Unavailable(anyhow::Error::new(e).context(path.to_owned())))
    }
}

#[async_trait]
impl OAuthProvider for GitHubProvider {
    fn name(&self) -> &'static str {
        "github"
    }

    fn authorize(&self, state: &str) -> AuthorizationRequest {
        let (url, pkce_verifier) = self.client.authorize(state, &[]);
        AuthorizationRequest { url, pkce_verifier, nonce: None }
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn identify(
        &self,
        code: SecretString,
        verifier: SecretString,
        _nonce: Option<SecretString>,
    ) -> Result<ProviderIdentity, ProviderError> {
        let tokens = self.client.exchange(code, verifier).await?;
        let token = tokens.access_token().secret();
        let user: GitHubUser = self.get("/user", token).await?;
        let emails: Vec<GitHubEmail> = self.get("/user/emails", token).await?;
        let primary = emails.iter().find(|e| e.primary && e.verified).or_else(|| emails.iter().find(|e| e.primary));
        let email = primary.and_then(|e| Email::parse(&e.email).ok());
        Ok(ProviderIdentity {
            provider: self.name().to_owned(),
            provider_user_id: user.id.to_string(),
            email_verified: email.is_some() && primary.is_some_and(|e| e.verified),
            email,
            login: Some(user.login),
        })
    }
}
