//! `[oauth.providers.<name>]`: how one provider is configured. The server deserialises these
//! from its configuration and hands them to [`crate::build`]; it never looks inside.

use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

/// One provider's configuration. Only `client_id` and `client_secret` are always required;
/// `kind = "oidc"` needs an `issuer` unless the name is a preset (`google`), and the presets
/// (`google`, `github`) fill in everything else.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// `oidc` (OpenID Connect, discovered from `issuer`) or `github`; the preset's kind when
    /// unset.
    pub kind: Option<String>,
    /// The label for sign-in UIs; `Google`, `GitHub` or the name when unset.
    pub display_name: Option<String>,
    /// The client id registered with the provider.
    pub client_id: String,
    /// The client secret registered with the provider.
    #[serde(serialize_with = "redacted")]
    pub client_secret: SecretString,
    /// OpenID Connect: the issuer; discovery is at `{issuer}/.well-known/openid-configuration`
    /// and id tokens must carry exactly this `iss`. (`issuer_url` is the old spelling.)
    #[serde(alias = "issuer_url")]
    pub issuer: Option<String>,
    /// The scopes to ask for; OpenID Connect default `["openid", "email", "profile"]`.
    pub scopes: Option<Vec<String>>,
    /// Authorization endpoint, overriding discovery or the preset.
    pub auth_url: Option<String>,
    /// Token endpoint, overriding discovery or the preset.
    pub token_url: Option<String>,
    /// OpenID Connect userinfo endpoint, overriding discovery.
    pub userinfo_url: Option<String>,
    /// OpenID Connect signing keys (JWKS), overriding discovery. With `auth_url`, `token_url`
    /// and `jwks_url` all set, nothing is discovered.
    pub jwks_url: Option<String>,
    /// GitHub: the REST API base (`https://api.github.com`; Enterprise `https://host/api/v3`).
    pub api_url: Option<String>,
    /// How the client authenticates at the token endpoint; by default the first of
    /// `client_secret_basic`, `client_secret_post` the provider announces.
    pub token_auth_method: Option<TokenAuthMethod>,
    /// Clock skew allowed on `exp`, `iat` and `nbf` of id tokens, in seconds (default 60).
    pub leeway_secs: Option<u64>,
    /// How long one call to the provider may take, in seconds (default 10).
    pub timeout_secs: Option<u64>,
    /// Only emails of these domains may sign in (`403 forbidden` otherwise); with Google the
    /// `hd` claim must be one of them too. Empty: any.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Only id tokens whose `tid` (Microsoft Entra ID tenant) is one of these may sign in.
    /// Empty: any.
    #[serde(default)]
    pub allowed_tenants: Vec<String>,
    /// Accept id tokens signed with HMAC (HS256/384/512) keyed by the client secret, when the
    /// provider announces it. Off: only asymmetric signatures.
    #[serde(default)]
    pub allow_hmac_id_tokens: bool,
    /// Which claims carry the email, its verification, the name, the picture and the login.
    #[serde(default)]
    pub claims: ClaimNames,
}

/// `[oauth.providers.<name>.claims]`: claim names, for providers that use other ones (Entra ID
/// vouches for email domains with `xms_edov`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    /// The email (default `email`).
    pub email: String,
    /// Whether the provider verified the email; only the JSON boolean `true` vouches (default
    /// `email_verified`).
    pub email_verified: String,
    /// The person's name (default `name`).
    pub name: String,
    /// The picture URL (default `picture`).
    pub picture: String,
    /// The login a username is derived from (default `preferred_username`).
    pub login: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            email: "email".to_owned(),
            email_verified: "email_verified".to_owned(),
            name: "name".to_owned(),
            picture: "picture".to_owned(),
            login: "preferred_username".to_owned(),
        }
    }
}

/// Client authentication at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    /// HTTP Basic with the client id and secret.
    ClientSecretBasic,
    /// The client id and secret in the form body.
    ClientSecretPost,
}

impl TokenAuthMethod {
    /// The name the provider's metadata uses.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }
}

fn redacted<S: Serializer>(_: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("[redacted]")
}

impl ProviderSettings {
    /// Settings with only a client registration; everything else unset.
    #[must_use]
    pub fn new(client_id: &str, client_secret: &str) -> Self {
        Self {
            kind: None,
            display_name: None,
            client_id: client_id.to_owned(),
            client_secret: SecretString::from(client_secret.to_owned()),
            issuer: None,
            scopes: None,
            auth_url: None,
            token_url: None,
            userinfo_url: None,
            jwks_url: None,
            api_url: None,
            token_auth_method: None,
            leeway_secs: None,
            timeout_secs: None,
            allowed_domains: Vec::new(),
            allowed_tenants: Vec::new(),
            allow_hmac_id_tokens: false,
            claims: ClaimNames::default(),
        }
    }
}
