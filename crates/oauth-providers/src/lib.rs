//! The [`OAuthProvider`](gatehouse_domain::ports::OAuthProvider) port for Google (OpenID
//! Connect, id token verified against the provider's JWKS) and GitHub (`/user` and
//! `/user/emails`), on the `oauth2` crate. Every endpoint is configurable, for GitHub
//! Enterprise and for tests.
//!
//! HTTP goes through `oauth2::reqwest` with redirects off (no SSRF through a provider's
//! redirect) and a timeout. Secrets (client secrets, codes, tokens) are never logged.
//!
//! This crate depends on `gatehouse-domain` only; it must never depend on the server.

mod client;
mod github;
mod google;

pub use client::ClientSettings;
pub use github::GitHubProvider;
pub use google::{GoogleEndpoints, GoogleProvider};
