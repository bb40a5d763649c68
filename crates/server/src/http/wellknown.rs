//! `/.well-known/jwks.json`: the public keys that verify access tokens.

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};

use crate::state::AppState;

/// The JSON Web Key Set of the access-token verification keys (RFC 7517). Empty with
/// HS256, whose secret is never published.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The JWK Set.", content_type = "application/json", body = Object,
        example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "2026-11", "alg": "EdDSA", "use": "sig"}]})))
)]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "public, max-age=300")).json(&*state.jwks)
}
