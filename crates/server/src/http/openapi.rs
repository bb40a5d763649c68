//! The OpenAPI document: the base (info, security schemes, tags) and the route table
//! derived from it.

use actix_web::App;
use actix_web::http::Method;
use utoipa::openapi::security::{Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme};
use utoipa::openapi::{OpenApi as OpenApiDoc, PathItem};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use crate::http::{problems, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse",
        description = "Self-hosted user management and authentication. Errors are RFC 9457 problem details with a stable `code`.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&SecuritySchemes, &SharedProblems),
    tags(
        (name = "auth", description = "Registration, sign-in, sessions."),
        (name = "users", description = "The caller's own account."),
        (name = "admin", description = "User administration and the audit trail; needs the admin role."),
        (name = "operations", description = "Health, metrics, documentation."),
    )
)]
struct BaseDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "password",
            SecurityScheme::OAuth2(OAuth2::with_description(
                [Flow::Password(Password::new("/api/v1/auth/token", Scopes::new()))],
                "Sign in with a username or email and a password (what Swagger UI's Authorize button uses).",
            )),
        );
    }
}

/// Registers the problem responses operations share (see [`problems`]).
struct SharedProblems;

impl Modify for SharedProblems {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.responses.extend(problems::components());
    }
}

/// The complete document: the base plus every route registered by [`routes`].
#[must_use]
pub fn document() -> OpenApiDoc {
    let (_, doc) = App::new().into_utoipa_app().openapi(BaseDoc::openapi()).configure(routes).split_for_parts();
    doc
}

/// The document as committed in `openapi.json` at the repository root: pretty JSON with a
/// final newline. `gatehouse openapi > openapi.json` (or `make openapi`) regenerates it.
///
/// # Errors
///
/// When the document cannot be serialised (it always can; serde's error is passed on).
pub fn document_json() -> serde_json::Result<String> {
    let mut json = serde_json::to_string_pretty(&document())?;
    json.push('\n');
    Ok(json)
}

/// Which methods each documented path template accepts.
#[derive(Debug, Clone, Default)]
pub struct RouteTable(Vec<(Vec<String>, Vec<Method>)>);

impl RouteTable {
    /// Builds the table from a document.
    #[must_use]
    pub fn from_document(doc: &OpenApiDoc) -> Self {
        let entries = doc
            .paths
            .paths
            .iter()
            .map(|(template, item)| (template.split('/').map(str::to_owned).collect(), methods_of(item)))
            .collect();
        Self(entries)
    }

    /// The documented template `path` falls under for `method`, the most specific one when
    /// several match (`/users/me` before `/users/{id}`), for metrics of requests the router
    /// answered with an error before a route was recorded.
    #[must_use]
    pub fn template_of(&self, method: &Method, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .filter(|(template, methods)| {
                methods.contains(method)
                    && template.len() == segments.len()
                    && template.iter().zip(&segments).all(|(t, s)| t.starts_with('{') || t == s)
            })
            .max_by_key(|(template, _)| template.iter().filter(|t| !t.starts_with('{')).count())
            .map(|(template, _)| template.join("/"))
    }

    /// The methods documented for the path, `{param}` segments matching anything.
    #[must_use]
    pub fn allowed_methods(&self, path: &str) -> Vec<Method> {
        let segments: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .filter(|(template, _)| {
                template.len() == segments.len()
                    && template.iter().zip(&segments).all(|(t, s)| t.starts_with('{') || t == s)
            })
            .flat_map(|(_, methods)| methods.iter().cloned())
            .collect()
    }
}

fn methods_of(item: &PathItem) -> Vec<Method> {
    [
        (&item.get, Method::GET),
        (&item.post, Method::POST),
        (&item.put, Method::PUT),
        (&item.patch, Method::PATCH),
        (&item.delete, Method::DELETE),
    ]
    .into_iter()
    .filter(|(op, _)| op.is_some())
    .map(|(_, method)| method)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of API.md implemented so far. A route missing from the document fails
    /// here; the router cannot hold an undocumented one (see [`routes`]).
    const IMPLEMENTED: &[(&str, &str)] = &[
        ("post", "/api/v1/auth/register"),
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/token"),
        ("post", "/api/v1/auth/refresh"),
        ("post", "/api/v1/auth/logout"),
        ("post", "/api/v1/auth/verify-email"),
        ("post", "/api/v1/auth/verify-email/resend"),
        ("post", "/api/v1/auth/password/forgot"),
        ("post", "/api/v1/auth/password/reset"),
        ("post", "/api/v1/auth/unlock"),
        ("get", "/api/v1/auth/sessions"),
        ("delete", "/api/v1/auth/sessions/{id}"),
        ("delete", "/api/v1/auth/sessions"),
        ("get", "/api/v1/users/me"),
        ("patch", "/api/v1/users/me"),
        ("put", "/api/v1/users/me/password"),
        ("delete", "/api/v1/users/me"),
        ("put", "/api/v1/users/me/avatar"),
        ("delete", "/api/v1/users/me/avatar"),
        ("get", "/api/v1/users/{id}/avatar"),
        ("get", "/.well-known/jwks.json"),
        ("get", "/api/v1/users/me/activity"),
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("get", "/api/v1/users/{id}"),
        ("patch", "/api/v1/users/{id}"),
        ("delete", "/api/v1/users/{id}"),
        ("post", "/api/v1/users/{id}/restore"),
        ("get", "/api/v1/audit-events"),
        ("get", "/api/v1/auth/oauth/{provider}/authorize"),
        ("get", "/api/v1/auth/oauth/{provider}/callback"),
        ("post", "/api/v1/auth/oauth/exchange"),
        ("get", "/api/v1/users/me/identities"),
        ("delete", "/api/v1/users/me/identities/{provider}"),
        ("get", "/health/live"),
        ("get", "/health/ready"),
        ("get", "/metrics"),
    ];

    #[test]
    fn every_implemented_route_is_in_the_document() {
        let table = RouteTable::from_document(&document());
        for (method, path) in IMPLEMENTED {
            let method: Method = method.to_uppercase().parse().expect("method");
            assert!(
                table.allowed_methods(path).contains(&method),
                "{method} {path} is missing from the OpenAPI document"
            );
        }
    }

    #[test]
    fn the_document_declares_the_bearer_scheme() {
        let doc = document();
        let schemes = doc.components.expect("components").security_schemes;
        assert!(schemes.contains_key("bearer"));
        assert!(schemes.contains_key("password"), "the OAuth2 password flow for Swagger UI");
    }

    #[test]
    fn the_committed_openapi_json_matches_the_generated_document() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let generated = document_json().expect("the document serialises");
        assert!(
            committed == generated,
            "openapi.json is out of date with the code; regenerate it with `make openapi` \
             (cargo run -p gatehouse-server --bin gatehouse -- openapi > openapi.json) and commit it"
        );
    }

    #[test]
    fn the_document_validates_against_the_openapi_3_1_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/openapi-3.1.schema.json")).expect("the vendored schema");
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles offline");
        let doc = serde_json::to_value(document()).expect("the document serialises");
        let errors: Vec<String> =
            validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "the OpenAPI document is invalid:\n{}", errors.join("\n"));
    }

    #[test]
    fn the_most_specific_template_names_a_path() {
        let table = RouteTable::from_document(&document());
        assert_eq!(table.template_of(&Method::GET, "/api/v1/users/me").as_deref(), Some("/api/v1/users/me"));
        assert_eq!(table.template_of(&Method::GET, "/api/v1/users/42").as_deref(), Some("/api/v1/users/{id}"));
        assert_eq!(table.template_of(&Method::GET, "/nowhere"), None);
    }

    #[test]
    fn path_templates_match_any_segment_value() {
        let table = RouteTable(vec![(
            "/api/v1/users/{id}".split('/').map(str::to_owned).collect(),
            vec![Method::GET, Method::DELETE],
        )]);
        assert_eq!(table.allowed_methods("/api/v1/users/123"), vec![Method::GET, Method::DELETE]);
        assert!(table.allowed_methods("/api/v1/users/123/extra").is_empty());
    }
}
