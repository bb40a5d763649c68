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
        (name = "webhooks", description = "Webhook endpoints, deliveries, test pings and replays; needs the admin role."),
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

    /// The methods documented for the path, `{param}` segments matching anything. Where
    /// several templates match, the most specific ones name the resource: `/users/me/avatar`
    /// is that resource, not `/users/{id}/avatar` with an id of `me`.
    #[must_use]
    pub fn allowed_methods(&self, path: &str) -> Vec<Method> {
        let segments: Vec<&str> = path.split('/').collect();
        let literals = |template: &[String]| template.iter().filter(|t| !t.starts_with('{')).count();
        let matching: Vec<_> = self
            .0
            .iter()
            .filter(|(template, _)| {
                template.len() == segments.len()
                    && template.iter().zip(&segments).all(|(t, s)| t.starts_with('{') || t == s)
            })
            .collect();
        let most_specific = matching.iter().map(|(template, _)| literals(template)).max();
        matching
            .into_iter()
            .filter(|(template, _)| Some(literals(template)) == most_specific)
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
    use crate::http::error::{ErrorKind, PROBLEM_JSON};

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
        ("get", "/api/v1/auth/providers"),
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

    /// The vendored schemas (see `schemas/README.md`), by the URI they are referenced as.
    const OAS_SCHEMAS: [(&str, &str); 4] = [
        ("https://spec.openapis.org/oas/3.1/schema/2022-10-07", include_str!("../../schemas/openapi-3.1.schema.json")),
        (
            "https://spec.openapis.org/oas/3.1/schema-base/2022-10-07",
            include_str!("../../schemas/openapi-3.1-schema-base.schema.json"),
        ),
        (
            "https://spec.openapis.org/oas/3.1/dialect/base",
            include_str!("../../schemas/oas-3.1-dialect-base.schema.json"),
        ),
        ("https://spec.openapis.org/oas/3.1/meta/base", include_str!("../../schemas/oas-3.1-meta-base.schema.json")),
    ];

    /// The errors of `doc` against the OpenAPI 3.1 schema named by `uri`, resolved offline
    /// from the vendored copies: `schema/…` alone checks the document's structure but accepts
    /// any object as a Schema Object; `schema-base/…` also checks every Schema Object against
    /// the OAS dialect (JSON Schema 2020-12 plus the OAS vocabulary), through `$dynamicRef`.
    fn oas_errors(uri: &str, doc: &serde_json::Value) -> Vec<String> {
        let resources: Vec<(&str, jsonschema::Resource)> = OAS_SCHEMAS
            .iter()
            .map(|(uri, text)| {
                let contents: serde_json::Value = serde_json::from_str(text).expect("a vendored schema is JSON");
                assert_eq!(contents["$id"], *uri, "the vendored schema's $id");
                (*uri, jsonschema::Resource::from_contents(contents))
            })
            .collect();
        let registry = jsonschema::Registry::new()
            .extend(resources)
            .expect("the schema URIs parse")
            .prepare()
            .expect("the vendored schemas resolve offline");
        let validator = jsonschema::options()
            .offline()
            .with_registry(&registry)
            .build(&serde_json::json!({"$ref": uri}))
            .expect("the schema compiles offline");
        validator.iter_errors(doc).map(|e| format!("{e} at {}", e.instance_path())).collect()
    }

    const SCHEMA_BASE: &str = "https://spec.openapis.org/oas/3.1/schema-base/2022-10-07";

    #[test]
    fn the_document_validates_against_the_openapi_3_1_schema() {
        let doc = serde_json::to_value(document()).expect("the document serialises");
        let errors = oas_errors(SCHEMA_BASE, &doc);
        assert!(errors.is_empty(), "the OpenAPI document is invalid:\n{}", errors.join("\n"));
    }

    #[test]
    fn a_broken_schema_object_inside_the_document_fails_validation() {
        let doc = serde_json::to_value(document()).expect("the document serialises");
        let mut wrong_type = doc.clone();
        wrong_type["components"]["schemas"]["User"]["type"] = serde_json::json!(42);
        let mut wrong_required = doc.clone();
        wrong_required["components"]["schemas"]["Session"]["required"] = serde_json::json!("x");
        let mut wrong_nested = doc;
        wrong_nested["components"]["schemas"]["Problem"]["properties"]["status"]["minimum"] = serde_json::json!("0");

        for (what, broken) in
            [("type: 42", wrong_type), ("required: \"x\"", wrong_required), ("minimum: \"0\"", wrong_nested)]
        {
            assert!(
                oas_errors("https://spec.openapis.org/oas/3.1/schema/2022-10-07", &broken).is_empty(),
                "the plain OAS schema leaves Schema Objects unchecked, which is why the test uses schema-base"
            );
            assert!(!oas_errors(SCHEMA_BASE, &broken).is_empty(), "a Schema Object with {what} must fail validation");
        }
    }

    /// Where the document lacks an example, one line per gap naming the operation and the
    /// parameter, request body or response. What counts as an example:
    ///
    /// - on a parameter: its own `example`/`examples`, or one its schema has (below);
    /// - on a request or response media type: its `example`/`examples`, or its schema's;
    /// - on a schema: `example`/`examples` on it (also beside a `$ref`), else on the schema a
    ///   `$ref` names; for `oneOf`/`anyOf`/`allOf` on every member but `null`; for an object
    ///   on every property; for an array on its items. A free-form object has none.
    ///
    /// Stricter for errors: a `application/problem+json` response needs examples of its own
    /// (the `Problem` schema's single example would describe another error), each a complete
    /// problem whose `status` is the response's and whose `code`/`title` match that status as
    /// the error mapping has them, covering every code the description names.
    ///
    /// Exempt: responses without content (204, 302, 304); image and octet-stream bodies, whose
    /// bytes a JSON example cannot carry; and in a `multipart/form-data` body, a binary part
    /// (`format: binary`), which must instead describe what it accepts.
    fn example_gaps(doc: &serde_json::Value) -> Vec<String> {
        let mut gaps = Vec::new();
        let Some(paths) = doc["paths"].as_object() else {
            return vec!["the document has no paths".to_owned()];
        };
        for (path, item) in paths {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let op = format!("{} {path}", method.to_uppercase());
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let parameter = resolve(doc, parameter);
                    let name = parameter["name"].as_str().unwrap_or("?");
                    if !has_example(parameter)
                        && let Some(gap) = schema_gap(doc, &parameter["schema"], "", false)
                    {
                        gaps.push(format!("{op}: parameter `{name}` has no example{gap}"));
                    }
                }
                if let Some(body) = operation.get("requestBody") {
                    let body = resolve(doc, body);
                    for (media, content) in body["content"].as_object().into_iter().flatten() {
                        if let Some(gap) = content_gap(doc, media, content) {
                            gaps.push(format!("{op}: request body {media} has no example{gap}"));
                        }
                    }
                }
                for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                    let response = resolve(doc, response);
                    if response.is_null() {
                        gaps.push(format!("{op}: response {status} refers to nothing"));
                    }
                    for (media, content) in response["content"].as_object().into_iter().flatten() {
                        if media == PROBLEM_JSON {
                            let description = response["description"].as_str().unwrap_or_default();
                            gaps.extend(
                                problem_gaps(status, description, content)
                                    .into_iter()
                                    .map(|gap| format!("{op}: response {status} {media}: {gap}")),
                            );
                        } else if let Some(gap) = content_gap(doc, media, content) {
                            gaps.push(format!("{op}: response {status} {media} has no example{gap}"));
                        }
                    }
                }
            }
        }
        gaps
    }

    fn has_example(value: &serde_json::Value) -> bool {
        value.get("example").is_some() || value.get("examples").is_some()
    }

    /// A local `$ref` (`#/components/...`) followed to what it names, repeatedly.
    fn resolve<'a>(doc: &'a serde_json::Value, mut value: &'a serde_json::Value) -> &'a serde_json::Value {
        while let Some(reference) = value.get("$ref").and_then(serde_json::Value::as_str) {
            match reference.strip_prefix('#').map(|pointer| doc.pointer(pointer)) {
                Some(Some(target)) => value = target,
                _ => return &serde_json::Value::Null,
            }
        }
        value
    }

    fn content_gap(doc: &serde_json::Value, media: &str, content: &serde_json::Value) -> Option<String> {
        if media.starts_with("image/") || media == "application/octet-stream" || has_example(content) {
            return None;
        }
        schema_gap(doc, &content["schema"], "", media == "multipart/form-data")
    }

    /// `None` when the schema has an example by the rules of [`example_gaps`], otherwise
    /// `Some(" at <where>")`.
    fn schema_gap(doc: &serde_json::Value, schema: &serde_json::Value, at: &str, multipart: bool) -> Option<String> {
        let gap = || Some(if at.is_empty() { String::new() } else { format!(" at `{at}`") });
        if has_example(schema) {
            return None;
        }
        if schema.get("$ref").is_some() {
            let target = resolve(doc, schema);
            return if target.is_null() { gap() } else { schema_gap(doc, target, at, multipart) };
        }
        for combinator in ["oneOf", "anyOf", "allOf"] {
            if let Some(members) = schema[combinator].as_array() {
                return members
                    .iter()
                    .filter(|member| member["type"] != "null")
                    .find_map(|member| schema_gap(doc, member, at, multipart));
            }
        }
        let kind = match &schema["type"] {
            serde_json::Value::Array(kinds) => {
                let kinds: Vec<_> = kinds.iter().filter(|k| *k != "null").collect();
                if kinds.is_empty() {
                    return None;
                }
                kinds[0].as_str().unwrap_or_default().to_owned()
            }
            kind => kind.as_str().unwrap_or_default().to_owned(),
        };
        match kind.as_str() {
            "null" => None,
            "object" => match schema["properties"].as_object() {
                Some(properties) if !properties.is_empty() => properties.iter().find_map(|(name, property)| {
                    let at = if at.is_empty() { name.clone() } else { format!("{at}.{name}") };
                    schema_gap(doc, property, &at, multipart)
                }),
                _ => gap(),
            },
            "array" => schema_gap(doc, &schema["items"], &format!("{at}[]"), multipart),
            "string" if multipart && schema["format"] == "binary" => {
                let described = schema["description"].as_str().is_some_and(|d| !d.trim().is_empty());
                if described { None } else { gap().map(|at| format!("{at} (a binary part needs a description)")) }
            }
            _ => gap(),
        }
    }

    /// What is wrong with the examples of a problem response with `status`.
    fn problem_gaps(status: &str, description: &str, content: &serde_json::Value) -> Vec<String> {
        let examples: Vec<&serde_json::Value> = match (content.get("example"), content["examples"].as_object()) {
            (Some(example), _) => vec![example],
            (None, Some(examples)) => examples.values().map(|example| &example["value"]).collect(),
            (None, None) => return vec!["no example of its own".to_owned()],
        };
        let mut gaps = Vec::new();
        let mut codes = Vec::new();
        for example in examples {
            let code = example["code"].as_str().unwrap_or_default();
            let known = ErrorKind::ALL.iter().map(|kind| kind.parts()).find(|(_, known, _)| *known == code);
            match known {
                Some((expected, _, title))
                    if expected.as_str() == status
                        && example["status"].as_u64() == status.parse().ok()
                        && example["title"] == title
                        && example["type"].is_string()
                        && example["detail"].as_str().is_some_and(|d| !d.is_empty()) =>
                {
                    codes.push(code);
                }
                _ => gaps.push(format!("the example {example} is not a complete `{status}` problem")),
            }
        }
        for named in description.split('`').skip(1).step_by(2) {
            let is_code = ErrorKind::ALL.iter().any(|kind| kind.parts().1 == named);
            if is_code && !codes.contains(&named) {
                gaps.push(format!("the description names `{named}` but no example shows it"));
            }
        }
        gaps
    }

    #[test]
    fn every_parameter_body_and_response_of_the_document_has_an_example() {
        let doc = serde_json::to_value(document()).expect("the document serialises");
        let gaps = example_gaps(&doc);
        assert!(gaps.is_empty(), "the OpenAPI document lacks examples:\n{}", gaps.join("\n"));
    }

    #[test]
    fn the_example_check_names_what_lacks_an_example() {
        let mut doc = serde_json::to_value(document()).expect("the document serialises");
        let login = doc.pointer_mut("/paths/~1api~1v1~1auth~1login/post").expect("POST /login is documented");
        login["parameters"][0].as_object_mut().expect("the cookie parameter").remove("example");
        login["parameters"][0]["schema"].as_object_mut().expect("its schema").remove("example");
        let conflict = doc
            .pointer_mut("/paths/~1api~1v1~1auth~1register/post/responses/409/content/application~1problem+json")
            .expect("register documents its 409");
        conflict["examples"].as_object_mut().expect("409 examples").remove("username_taken");
        doc.pointer_mut("/components/schemas/Session")
            .expect("Session")
            .as_object_mut()
            .expect("object")
            .remove("example");

        let gaps = example_gaps(&doc);

        let expected = [
            "POST /api/v1/auth/login: parameter `cookie` has no example",
            "POST /api/v1/auth/register: response 409 application/problem+json: the description names `username_taken` but no example shows it",
            "GET /api/v1/auth/sessions: response 200 application/json has no example at `[].created_at`",
        ];
        for gap in expected {
            assert!(gaps.iter().any(|g| g == gap), "expected the gap {gap:?}, got:\n{}", gaps.join("\n"));
        }
        assert_eq!(gaps.len(), expected.len(), "only the removed examples are missing:\n{}", gaps.join("\n"));
    }

    /// Every example in the document (on a media type, a parameter or a schema) paired with
    /// the JSON pointer of the schema it must satisfy.
    fn examples_with_schemas(doc: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
        fn escape(segment: &str) -> String {
            // A JSON pointer segment, percent-encoded where a URI fragment needs it.
            segment.replace('%', "%25").replace('~', "~0").replace('/', "~1").replace('{', "%7B").replace('}', "%7D")
        }
        fn walk(
            value: &serde_json::Value,
            pointer: &str,
            in_schema: bool,
            found: &mut Vec<(String, serde_json::Value)>,
        ) {
            let Some(object) = value.as_object() else {
                if let Some(items) = value.as_array() {
                    for (i, item) in items.iter().enumerate() {
                        walk(item, &format!("{pointer}/{i}"), in_schema, found);
                    }
                }
                return;
            };
            let schema_pointer = if in_schema {
                Some(pointer.to_owned())
            } else {
                object.get("schema").map(|_| format!("{pointer}/schema"))
            };
            if let Some(schema) = schema_pointer {
                if let Some(example) = object.get("example") {
                    found.push((schema.clone(), example.clone()));
                }
                match object.get("examples") {
                    Some(serde_json::Value::Object(named)) if !in_schema => {
                        found.extend(named.values().map(|example| (schema.clone(), example["value"].clone())));
                    }
                    Some(serde_json::Value::Array(listed)) if in_schema => {
                        found.extend(listed.iter().map(|example| (schema.clone(), example.clone())));
                    }
                    _ => {}
                }
            }
            for (key, child) in object {
                if matches!(key.as_str(), "example" | "examples") {
                    continue;
                }
                let child_in_schema = in_schema || key == "schema" || pointer == "/components/schemas";
                walk(child, &format!("{pointer}/{}", escape(key)), child_in_schema, found);
            }
        }
        let mut found = Vec::new();
        walk(doc, "", false, &mut found);
        found
    }

    /// The examples of `doc` that contradict their schemas, one line each.
    fn example_contradictions(doc: &serde_json::Value) -> Vec<String> {
        const DOC: &str = "https://gatehouse.invalid/openapi.json";
        let registry = jsonschema::Registry::new()
            .add(DOC, jsonschema::Resource::from_contents(doc.clone()))
            .expect("the URI parses")
            .prepare()
            .expect("the document indexes");
        let examples = examples_with_schemas(doc);
        assert!(examples.len() > 100, "the walk finds the examples ({} found)", examples.len());
        let mut failures = Vec::new();
        for (pointer, example) in examples {
            let validator = jsonschema::options()
                .offline()
                .with_draft(jsonschema::Draft::Draft202012)
                .with_registry(&registry)
                .build(&serde_json::json!({"$ref": format!("{DOC}#{pointer}")}))
                .expect("the schema compiles");
            failures
                .extend(validator.iter_errors(&example).map(|e| format!("{pointer}: {e} at {}", e.instance_path())));
        }
        failures
    }

    #[test]
    fn every_example_in_the_document_satisfies_its_schema() {
        let doc = serde_json::to_value(document()).expect("the document serialises");
        let failures = example_contradictions(&doc);
        assert!(failures.is_empty(), "examples that contradict their schemas:\n{}", failures.join("\n"));
    }

    #[test]
    fn an_example_that_contradicts_its_schema_is_reported() {
        let mut doc = serde_json::to_value(document()).expect("the document serialises");
        doc["components"]["schemas"]["User"]["example"]["email_verified"] = serde_json::json!("yes");
        let login = doc.pointer_mut("/paths/~1api~1v1~1auth~1login/post").expect("POST /login is documented");
        login["parameters"][0]["example"] = serde_json::json!("sometimes");

        let failures = example_contradictions(&doc);

        assert!(
            failures.iter().any(|f| f.starts_with("/components/schemas/User: ") && f.contains("email_verified")),
            "the User example: {failures:?}"
        );
        assert!(
            failures.iter().any(|f| f.starts_with("/paths/~1api~1v1~1auth~1login/post/parameters/0/schema: ")),
            "the cookie parameter's example: {failures:?}"
        );
    }

    /// The codes a response's problem examples carry.
    fn example_codes(doc: &serde_json::Value, response: &serde_json::Value) -> Vec<String> {
        let response = resolve(doc, response);
        response["content"][PROBLEM_JSON]["examples"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, example)| resolve(doc, example)["value"]["code"].as_str().map(str::to_owned))
            .collect()
    }

    /// Failures the framework answers before a handler runs that an operation does not
    /// document: for a JSON body, 400 `malformed_request` (unparsable body); for a JSON or form
    /// body, 413 and 415; for a query parameter that can fail to parse, 400 `malformed_request`.
    fn undocumented_framework_failures(doc: &serde_json::Value) -> Vec<String> {
        let mut gaps = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let op = format!("{} {path}", method.to_uppercase());
                let responses = &operation["responses"];
                let malformed_documented =
                    example_codes(doc, &responses["400"]).iter().any(|code| code == "malformed_request");
                let body = resolve(doc, &operation["requestBody"]);
                let media = |name: &str| body["content"].as_object().is_some_and(|c| c.contains_key(name));
                let (json, form) = (media("application/json"), media("application/x-www-form-urlencoded"));
                if json && !malformed_documented {
                    gaps.push(format!("{op}: an unparsable body answers 400 `malformed_request`"));
                }
                // A form body that does not parse is a 422 on its fields, which the handler documents.
                if json || form {
                    for status in ["413", "415"] {
                        if responses.get(status).is_none() {
                            gaps.push(format!("{op}: a body can be answered {status}"));
                        }
                    }
                }
                // Any query can fail: a value of the wrong type, or a parameter given twice.
                let has_query = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|parameter| resolve(doc, parameter)["in"] == "query");
                if has_query && !malformed_documented {
                    gaps.push(format!("{op}: a query that does not parse answers 400 `malformed_request`"));
                }
            }
        }
        gaps
    }

    #[test]
    fn every_operation_documents_the_failures_the_framework_answers_for_it() {
        let doc = serde_json::to_value(document()).expect("the document serialises");
        let gaps = undocumented_framework_failures(&doc);
        assert!(gaps.is_empty(), "undocumented answers:\n{}", gaps.join("\n"));
    }

    #[test]
    fn an_operation_missing_a_framework_failure_is_named() {
        let mut doc = serde_json::to_value(document()).expect("the document serialises");
        let login = doc.pointer_mut("/paths/~1api~1v1~1auth~1login/post/responses").expect("POST /login is documented");
        login.as_object_mut().expect("responses").retain(|status, _| status != "400" && status != "415");

        let gaps = undocumented_framework_failures(&doc);

        assert_eq!(
            gaps,
            [
                "POST /api/v1/auth/login: an unparsable body answers 400 `malformed_request`",
                "POST /api/v1/auth/login: a body can be answered 415",
                "POST /api/v1/auth/login: a query that does not parse answers 400 `malformed_request`",
            ]
        );
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

    #[test]
    fn a_literal_path_allows_only_its_own_methods() {
        let table = RouteTable::from_document(&document());
        assert_eq!(table.allowed_methods("/api/v1/users/me/avatar"), vec![Method::PUT, Method::DELETE]);
        assert_eq!(table.allowed_methods("/api/v1/users/42/avatar"), vec![Method::GET]);
    }
}
