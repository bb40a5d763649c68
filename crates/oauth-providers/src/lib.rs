//! The [`OAuthProvider`](gatehouse_domain::ports::OAuthProvider) port for any OpenID Connect
//! provider (`kind = "oidc"`: discovery, id token verified against the provider's keys, claims
//! merged with userinfo) and for GitHub (`kind = "github"`: `/user` and `/user/emails`), on the
//! `oauth2` crate. [`build`] turns `[oauth.providers.<name>]` into a provider; `google` and
//! `github` are presets that need only a client registration.
//!
//! HTTP goes through `oauth2::reqwest` with redirects off (no SSRF through a provider's
//! redirect) and a timeout. Secrets (client secrets, codes, tokens) are never logged.
//!
//! This crate depends on `gatehouse-domain` only; it must never depend on the server.

mod admission;
mod client;
mod github;
mod oidc;
mod registry;
mod settings;

pub use registry::{build, is_valid_name, validate};
pub use settings::{ClaimNames, ProviderSettings, TokenAuthMethod};
