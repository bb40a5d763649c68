//! Provider kinds and presets: turns `[oauth.providers.<name>]` into a provider. A new kind is
//! one module implementing the port plus one line in [`KINDS`]; a new OpenID Connect provider
//! is configuration only.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_domain::ports::OAuthProvider;

use crate::settings::ProviderSettings;
use crate::{github, oidc};

/// Builds a provider of one kind from resolved settings.
type Builder = fn(Resolved) -> anyhow::Result<Arc<dyn OAuthProvider>>;

/// Every provider kind, by the name `kind = "…"` uses.
const KINDS: &[(&str, Builder)] = &[("oidc", oidc::build), ("github", github::build)];

/// Defaults for a well-known provider, applied when it is configured under its own name.
struct Preset {
    name: &'static str,
    kind: &'static str,
    display_name: &'static str,
    issuer: Option<&'static str>,
    auth_url: Option<&'static str>,
    token_url: Option<&'static str>,
    api_url: Option<&'static str>,
    /// Other spellings of the issuer its id tokens carry.
    issuer_aliases: &'static [&'static str],
    /// Whether `allowed_domains` also applies to the `hd` (hosted domain) claim and parameter.
    hosted_domain: bool,
}

const PRESETS: &[Preset] = &[
    Preset {
        name: "google",
        kind: "oidc",
        display_name: "Google",
        issuer: Some("https://accounts.google.com"),
        auth_url: None,
        token_url: None,
        api_url: None,
        issuer_aliases: &["accounts.google.com"],
        hosted_domain: true,
    },
    Preset {
        name: "github",
        kind: "github",
        display_name: "GitHub",
        issuer: None,
        auth_url: Some("https://github.com/login/oauth/authorize"),
        token_url: Some("https://github.com/login/oauth/access_token"),
        api_url: Some("https://api.github.com"),
        issuer_aliases: &[],
        hosted_domain: false,
    },
];

/// A provider's settings with its preset applied, as the kinds' builders take them.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The configured name.
    pub name: String,
    /// The label for sign-in UIs.
    pub display_name: String,
    /// The kind (`oidc`, `github`).
    pub kind: &'static str,
    /// The settings, with the preset's endpoints filled in.
    pub settings: ProviderSettings,
    /// Where the provider sends the browser back.
    pub redirect_url: String,
    /// Other accepted spellings of the issuer.
    pub issuer_aliases: Vec<String>,
    /// Whether `allowed_domains` also governs the `hd` claim.
    pub hosted_domain: bool,
}

impl Resolved {
    /// How long one call to the provider may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.settings.timeout_secs.unwrap_or(10))
    }
}

/// Whether `name` can name a provider: 1–32 of `a-z`, `0-9`, `-`, `_`, starting with a letter or
/// digit (it appears in URLs and in stored identities).
#[must_use]
pub fn is_valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn resolve(name: &str, settings: &ProviderSettings, redirect_url: String) -> Result<Resolved, String> {
    if !is_valid_name(name) {
        return Err(format!("{name:?} is not a valid provider name (a-z, 0-9, - and _, at most 32)"));
    }
    let preset =
        PRESETS.iter().find(|p| p.name == name).filter(|p| settings.kind.as_deref().is_none_or(|k| k == p.kind));
    let kind = match (settings.kind.as_deref(), preset) {
        (Some(kind), _) => kind,
        (None, Some(preset)) => preset.kind,
        (None, None) => return Err("kind is required (\"oidc\" or \"github\")".to_owned()),
    };
    let Some(&(kind, _)) = KINDS.iter().find(|(k, _)| *k == kind) else {
        let known: Vec<_> = KINDS.iter().map(|(k, _)| *k).collect();
        return Err(format!("unknown kind {kind:?} (one of {})", known.join(", ")));
    };
    let mut settings = settings.clone();
    if let Some(preset) = preset {
        let fill = |value: &mut Option<String>, default: Option<&str>| {
            if value.is_none() {
                *value = default.map(str::to_owned);
            }
        };
        fill(&mut settings.issuer, preset.issuer);
        fill(&mut settings.auth_url, preset.auth_url);
        fill(&mut settings.token_url, preset.token_url);
        fill(&mut settings.api_url, preset.api_url);
    }
    if settings.client_id.trim().is_empty() {
        return Err("client_id must not be empty".to_owned());
    }
    if kind == "oidc" && settings.issuer.is_none() {
        return Err("issuer is required with kind = \"oidc\"".to_owned());
    }
    let display_name = settings
        .display_name
        .clone()
        .or_else(|| preset.map(|p| p.display_name.to_owned()))
        .unwrap_or_else(|| name.to_owned());
    Ok(Resolved {
        name: name.to_owned(),
        display_name,
        kind,
        redirect_url,
        issuer_aliases: preset.map(|p| p.issuer_aliases.iter().map(|a| (*a).to_owned()).collect()).unwrap_or_default(),
        hosted_domain: preset.is_some_and(|p| p.hosted_domain),
        settings,
    })
}

/// Checks `[oauth.providers.<name>]` without building anything.
///
/// # Errors
///
/// What is wrong, in words (an unknown kind, a missing issuer…).
pub fn validate(name: &str, settings: &ProviderSettings) -> Result<(), String> {
    resolve(name, settings, String::new()).map(|_| ())
}

/// The provider `name` configured by `settings`, calling back at `redirect_url`.
///
/// # Errors
///
/// When the settings are invalid (see [`validate`]), a URL does not parse or the HTTP client
/// cannot be built.
pub fn build(name: &str, settings: &ProviderSettings, redirect_url: String) -> anyhow::Result<Arc<dyn OAuthProvider>> {
    let resolved =
        resolve(name, settings, redirect_url).map_err(|why| anyhow::anyhow!("oauth.providers.{name}: {why}"))?;
    let builder = KINDS.iter().find(|(kind, _)| *kind == resolved.kind).map(|(_, b)| *b);
    let builder = builder.ok_or_else(|| anyhow::anyhow!("oauth.providers.{name}: unknown kind"))?;
    builder(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_need_only_a_client_registration() {
        let google = resolve("google", &ProviderSettings::new("id", "secret"), String::new()).expect("google");
        assert_eq!((google.kind, google.display_name.as_str()), ("oidc", "Google"));
        assert_eq!(google.settings.issuer.as_deref(), Some("https://accounts.google.com"));
        let github = resolve("github", &ProviderSettings::new("id", "secret"), String::new()).expect("github");
        assert_eq!((github.kind, github.display_name.as_str()), ("github", "GitHub"));
        assert_eq!(github.settings.api_url.as_deref(), Some("https://api.github.com"));
    }

    #[test]
    fn any_other_name_needs_a_kind_and_oidc_an_issuer() {
        let bare = ProviderSettings::new("id", "secret");
        assert!(validate("keycloak", &bare).is_err_and(|e| e.contains("kind")));
        let oidc = ProviderSettings { kind: Some("oidc".to_owned()), ..bare.clone() };
        assert!(validate("keycloak", &oidc).is_err_and(|e| e.contains("issuer")));
        let ok = ProviderSettings { issuer: Some("https://sso.example.com/realms/staff".to_owned()), ..oidc };
        assert_eq!(validate("keycloak", &ok), Ok(()));
        let resolved = resolve("keycloak", &ok, String::new()).expect("resolved");
        assert_eq!(resolved.display_name, "keycloak", "the name when no display_name is set");
        let saml = ProviderSettings { kind: Some("saml".to_owned()), ..bare };
        assert!(validate("corp", &saml).is_err_and(|e| e.contains("unknown kind")));
    }

    #[test]
    fn names_are_url_and_storage_safe() {
        assert!(is_valid_name("entra-id_2"));
        for bad in ["", "Google", "a/b", "-x", "ä", &"x".repeat(33)] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }
}
