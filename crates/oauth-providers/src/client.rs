//! What both providers share: the OAuth 2.0 client (authorization URL with PKCE S256, code
//! exchange) and the HTTP client.

use std::time::Duration;

use gatehouse_domain::ports::ProviderError;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet, ExtraTokenFields,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// One provider's OAuth client registration and endpoints.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// The authorization endpoint.
    pub auth_url: String,
    /// The token endpoint.
    pub token_url: String,
    /// Where the provider sends the browser back (`…/auth/oauth/{provider}/callback`).
    pub redirect_url: String,
    /// How long any one call to the provider may take.
    pub timeout: Duration,
}

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
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The OAuth 2.0 client of one provider.
#[derive(Clone)]
pub(crate) struct OAuthClient {
    client: Client,
    pub(crate) http: oauth2::reqwest::Client,
    scopes: Vec<&'static str>,
}

impl OAuthClient {
    /// A client for `settings` asking for `scopes`.
    pub(crate) fn new(settings: &ClientSettings, scopes: Vec<&'static str>) -> anyhow::Result<Self> {
        let client = oauth2::Client::new(ClientId::new(settings.client_id.clone()))
            .set_client_secret(ClientSecret::new(settings.client_secret.expose_secret().to_owned()))
            .set_auth_uri(AuthUrl::new(settings.auth_url.clone())?)
            .set_token_uri(TokenUrl::new(settings.token_url.clone())?)
            .set_redirect_uri(RedirectUrl::new(settings.redirect_url.clone())?);
        let http = oauth2::reqwest::Client::builder()
            .redirect(oauth2::reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .user_agent("gatehouse")
            .build()?;
        Ok(Self { client, http, scopes })
    }

    /// The authorization URL with `state`, a fresh PKCE S256 challenge and the extra
    /// parameters, and the PKCE verifier.
    pub(crate) fn authorize(&self, state: &str, extra: &[(&str, &str)]) -> (String, SecretString) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let mut request = self
            .client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.scopes.iter().map(|s| Scope::new((*s).to_owned())))
            .set_pkce_challenge(challenge);
        for (name, value) in extra {
            request = request.add_extra_param(*name, *value);
        }
        let (url, _) = request.url();
        (url.to_string(), SecretString::from(verifier.secret().clone()))
    }

    /// Exchanges `code` with the PKCE `verifier` at the token endpoint.
    pub(crate) async fn exchange(
        &self,
        code: SecretString,
        verifier: SecretString,
    ) -> Result<TokenResponse, ProviderError> {
        self.client
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
