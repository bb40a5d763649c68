//! What every provider kind shares: the OAuth 2.0 client (authorization URL with PKCE S256,
//! code exchange with the client authentication the provider takes) and the HTTP client.

use std::time::Duration;

use gatehouse_domain::ports::ProviderError;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, ExtraTokenFields, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The id token next to the access token, for OpenID Connect.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct IdTokenField {
    /// The OpenID Connect id token, if any.
    pub id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

pub(crate) type TokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

type Client = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
>;

/// The OAuth 2.0 client of one provider: its registration, and an HTTP client with redirects
/// off and a timeout. Endpoints are passed per call, since OpenID Connect discovers them.
#[derive(Clone)]
pub(crate) struct OAuthClient {
    client_id: String,
    client_secret: SecretString,
    redirect_url: RedirectUrl,
    pub(crate) http: oauth2::reqwest::Client,
    scopes: Vec<String>,
}

impl OAuthClient {
    /// A client registered as `client_id`/`client_secret`, called back at `redirect_url`, asking
    /// for `scopes`, whose calls each take at most `timeout`.
    pub(crate) fn new(
        client_id: &str,
        client_secret: &SecretString,
        redirect_url: &str,
        scopes: Vec<String>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let http = oauth2::reqwest::Client::builder()
            .redirect(oauth2::reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent("gatehouse")
            .build()?;
        Ok(Self {
            client_id: client_id.to_owned(),
            client_secret: client_secret.clone(),
            redirect_url: RedirectUrl::new(redirect_url.to_owned())?,
            http,
            scopes,
        })
    }

    /// The client id.
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The client secret (the HMAC key of HS256 id tokens, when that is allowed).
    pub(crate) fn client_secret(&self) -> &SecretString {
        &self.client_secret
    }

    fn base(&self) -> Client {
        oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.client_secret.expose_secret().to_owned()))
            .set_redirect_uri(self.redirect_url.clone())
    }

    /// The authorization URL at `auth_url` with `state`, a fresh PKCE S256 challenge and the
    /// extra parameters, and the PKCE verifier.
    pub(crate) fn authorize(
        &self,
        auth_url: &str,
        state: &str,
        extra: &[(&str, &str)],
    ) -> Result<(String, SecretString), ProviderError> {
        let auth_url = AuthUrl::new(auth_url.to_owned())
            .map_err(|e| ProviderError::Unavailable(anyhow::Error::new(e).context("authorization endpoint")))?;
        let client = self.base().set_auth_uri(auth_url);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.scopes.iter().map(|s| Scope::new(s.clone())))
            .set_pkce_challenge(challenge);
        for (name, value) in extra {
            request = request.add_extra_param(*name, *value);
        }
        let (url, _) = request.url();
        Ok((url.to_string(), SecretString::from(verifier.secret().clone())))
    }

    /// Exchanges `code` with the PKCE `verifier` at `token_url`, authenticating the client with
    /// `auth` (`client_secret_basic` or `client_secret_post`).
    pub(crate) async fn exchange(
        &self,
        token_url: &str,
        auth: AuthType,
        code: SecretString,
        verifier: SecretString,
    ) -> Result<TokenResponse, ProviderError> {
        let token_url = TokenUrl::new(token_url.to_owned())
            .map_err(|e| ProviderError::Unavailable(anyhow::Error::new(e).context("token endpoint")))?;
        self.base()
            .set_token_uri(token_url)
            .set_auth_type(auth)
            .exchange_code(AuthorizationCode::new(code.expose_secret().to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose_secret().to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(response) => {
                    ProviderError::Rejected(format!("the token endpoint refused the code: {}", response.error()))
                }
                other => ProviderError::Unavailable(anyhow::Error::new(other).context("token endpoint")),
            })
    }
}

/// A provider call that failed in transport or answered an error status.
pub(crate) fn unavailable(what: &str, error: oauth2::reqwest::Error) -> ProviderError {
    ProviderError::Unavailable(anyhow::Error::new(error).context(what.to_owned()))
}

/// A provider answer that is not what `what` must be (HTML instead of JSON…).
pub(crate) fn garbage(what: &str, error: impl Into<anyhow::Error>) -> ProviderError {
    ProviderError::Unavailable(error.into().context(format!("{what}: not the expected JSON")))
}
