//! Avatars: `PUT`/`DELETE /api/v1/users/me/avatar` and `GET /api/v1/users/{id}/avatar`.
//!
//! The upload is read here, as a stream, with its own limits: at most [`MAX_UPLOAD_BYTES`]
//! of file (413 as soon as a byte more arrives, before the rest is read), exactly one part,
//! named `file`. What the bytes are is not decided here: neither the part's `Content-Type`
//! nor its file name is looked at; the domain's image processor judges the content.
//!
//! Serving: the stored (re-encoded) image with its format's `Content-Type`, a strong `ETag`
//! (the SHA-256 of the bytes), `304` for a matching `If-None-Match`, `nosniff`, and a
//! `Cache-Control` that lets a client keep a versioned URL (`?v=`, as in `avatar_url`) for a
//! year and makes it revalidate the bare one.

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, delete, get, mime, put, web};
use futures::{StreamExt, TryStreamExt};
use gatehouse_domain::services::avatars::GetAvatarError;
use gatehouse_domain::{ImageRejected, UserId};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::dto::UserBody;
use crate::http::error::{ApiError, Problem, problem_example};
use crate::http::extract::{Authenticated, Client};
use crate::http::problems::{Internal, InvalidFields, MalformedQuery, RateLimited, Unauthorized};
use crate::state::AppState;

/// The largest file accepted, in bytes (5 MiB).
pub const MAX_UPLOAD_BYTES: usize = 5 * 1024 * 1024;
/// What the multipart framing around the file may add (boundaries and part headers).
const FRAMING_ALLOWANCE_BYTES: usize = 16 * 1024;
/// The multipart part that carries the image.
const FILE_FIELD: &str = "file";
/// For URLs that carry the image's version: they never change meaning.
const CACHE_VERSIONED: &str = "private, max-age=31536000, immutable";
/// For the bare URL: keep it, but ask whether it changed (a cheap 304) before using it.
const CACHE_REVALIDATE: &str = "private, no-cache";

/// Why an upload request could not be read. Mapped to responses in [`crate::http::error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// The request is not `multipart/form-data` (415).
    #[error("the request is not multipart/form-data")]
    NotMultipart,
    /// The file, or the whole body, is larger than allowed (413).
    #[error("the upload is larger than {MAX_UPLOAD_BYTES} bytes")]
    TooLarge,
    /// No part named `file` (422 on `file`).
    #[error("no part named file")]
    MissingFile,
    /// More than one part (422 on `file`).
    #[error("more than one part")]
    MultipleParts,
    /// The multipart framing is broken (400).
    #[error("the multipart body is malformed: {0}")]
    Malformed(String),
}

/// The body of `PUT /users/me/avatar`, as OpenAPI describes it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AvatarUpload {
    /// A PNG, JPEG or WebP image of at most 5 MiB and 40 megapixels. The content decides the
    /// format; the part's `Content-Type` and file name are ignored.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// The bytes of an image, as OpenAPI describes them.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct ImageBytes(Vec<u8>);

/// Replaces the caller's avatar. The image is decoded, oriented, stripped of all metadata,
/// fitted within 512×512 and re-encoded (PNG when it has transparency, JPEG otherwise).
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("password" = [])),
    request_body(content = AvatarUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The account, with its new `avatar_url`.", body = UserBody),
        (status = 400, description = "Broken multipart framing (`malformed_request`).", body = Problem, content_type = "application/problem+json", examples(("malformed_request" = (value = json!(problem_example(UploadError::Malformed("incomplete multipart stream".to_owned()))))))),
        (status = 401, response = Unauthorized),
        (status = 413, description = "More than 5 MiB (`payload_too_large`).", body = Problem, content_type = "application/problem+json", examples(("payload_too_large" = (value = json!(problem_example(UploadError::TooLarge)))))),
        (status = 415, description = "Not `multipart/form-data` (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json", examples(("unsupported_media_type" = (value = json!(problem_example(UploadError::NotMultipart)))))),
        (status = 422, description = "No `file` part, more than one part, not a PNG/JPEG/WebP image, truncated or corrupt, or more than 40 megapixels (`validation_failed`, on `file`).", body = Problem, content_type = "application/problem+json", examples(("missing_file" = (value = json!(problem_example(UploadError::MissingFile)))), ("unsupported_format" = (value = json!(problem_example(ImageRejected::UnsupportedFormat)))), ("too_many_pixels" = (value = json!(problem_example(ImageRejected::TooManyPixels { width: 10000, height: 8000, max_pixels: 40_000_000 })))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[put("/me/avatar")]
pub async fn put_avatar(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    Client(context): Client,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let upload = read_upload(&req, payload).await?;
    let user = state.avatars.set_avatar(&principal, upload, context).await?;
    Ok(HttpResponse::Ok().json(UserBody::new(&user, state.now())))
}

/// Removes the caller's avatar (and its image). Succeeds when there is none.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("password" = [])),
    responses(
        (status = 204, description = "Removed, or there was none."),
        (status = 401, response = Unauthorized),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[delete("/me/avatar")]
pub async fn delete_avatar(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    Client(context): Client,
) -> Result<HttpResponse, ApiError> {
    state.avatars.remove_avatar(&principal, context).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /users/{id}/avatar` query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AvatarQuery {
    /// The version from `avatar_url`; when it is the current one, the response may be cached
    /// for a year.
    #[param(example = "9f86d081884c7d65")]
    v: Option<String>,
}

/// A user's avatar image.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("password" = [])),
    params(("id" = Uuid, Path, description = "The user's id.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e"), AvatarQuery),
    responses(
        (status = 200, description = "The stored image.",
            content((ImageBytes = "image/jpeg"), (ImageBytes = "image/png"), (ImageBytes = "image/webp")),
            headers(
                ("ETag" = String, description = "Strong validator: the SHA-256 of the image."),
                ("Cache-Control" = String, description = "A year (`immutable`) with the current `v`, revalidate otherwise."),
                ("X-Content-Type-Options" = String, description = "`nosniff`."),
            )),
        (status = 304, description = "The `If-None-Match` validator is current."),
        (status = 400, response = MalformedQuery),
        (status = 401, response = Unauthorized),
        (status = 422, response = InvalidFields),
        (status = 404, description = "No such user, or no avatar (`not_found`).", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(GetAvatarError::NotFound)))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[get("/{id}/avatar")]
pub async fn get_avatar(
    state: web::Data<AppState>,
    _caller: Authenticated,
    id: web::Path<Uuid>,
    query: web::Query<AvatarQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = UserId::from_uuid(id.into_inner());
    let current = state.avatars.current_avatar(id).await?;
    let etag = format!("\"{}\"", current.key.digest());
    if if_none_match(req.headers(), &etag) {
        let cache_control = cache_control(query.v.as_deref(), current.key.version());
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, cache_control))
            .finish());
    }
    let image = state.avatars.get_avatar(id).await?;
    Ok(HttpResponse::Ok()
        .content_type(image.avatar.format.content_type())
        .insert_header((header::ETAG, format!("\"{}\"", image.avatar.key.digest())))
        .insert_header((header::CACHE_CONTROL, cache_control(query.v.as_deref(), image.avatar.key.version())))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .insert_header((header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox")))
        .body(image.bytes))
}

fn cache_control(requested: Option<&str>, current: &str) -> &'static str {
    if requested == Some(current) { CACHE_VERSIONED } else { CACHE_REVALIDATE }
}

/// Whether `If-None-Match` lists `etag` (weak comparison, as RFC 9110 §13.1.2 asks) or is `*`.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).filter_map(|value| value.to_str().ok()).flat_map(|v| v.split(',')).any(
        |candidate| {
            let candidate = candidate.trim();
            candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
        },
    )
}

/// Reads the one `file` part of a `multipart/form-data` body into memory, refusing anything
/// larger than [`MAX_UPLOAD_BYTES`] as soon as it is seen to be.
async fn read_upload(req: &HttpRequest, payload: web::Payload) -> Result<Vec<u8>, UploadError> {
    let is_form_data =
        req.mime_type().ok().flatten().is_some_and(|m| m.type_() == mime::MULTIPART && m.subtype() == mime::FORM_DATA);
    if !is_form_data {
        return Err(UploadError::NotMultipart);
    }
    let body_limit = MAX_UPLOAD_BYTES + FRAMING_ALLOWANCE_BYTES;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > body_limit as u64) {
        return Err(UploadError::TooLarge);
    }
    let mut received = 0usize;
    let limited = payload.map(move |chunk: Result<Bytes, PayloadError>| {
        let chunk = chunk?;
        received += chunk.len();
        if received > body_limit { Err(PayloadError::Overflow) } else { Ok(chunk) }
    });
    let mut multipart = Multipart::new(req.headers(), limited);
    let mut parts = 0usize;
    let mut file = None;
    while let Some(field) = multipart.try_next().await.map_err(multipart_error)? {
        parts += 1;
        if parts > 1 {
            return Err(UploadError::MultipleParts);
        }
        let is_file = field.name() == Some(FILE_FIELD);
        let bytes = read_part(field).await?;
        if is_file {
            file = Some(bytes);
        }
    }
    file.ok_or(UploadError::MissingFile)
}

async fn read_part(mut field: Field) -> Result<Vec<u8>, UploadError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.try_next().await.map_err(multipart_error)? {
        if bytes.len() + chunk.len() > MAX_UPLOAD_BYTES {
            return Err(UploadError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn multipart_error(error: MultipartError) -> UploadError {
    match error {
        MultipartError::Payload(PayloadError::Overflow) => UploadError::TooLarge,
        MultipartError::ContentTypeMissing
        | MultipartError::ContentTypeParse
        | MultipartError::ContentTypeIncompatible => UploadError::NotMultipart,
        other => UploadError::Malformed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let etag = "\"abc\"";
        let matches = |value: &str| {
            let req = TestRequest::default().insert_header((header::IF_NONE_MATCH, value)).to_http_request();
            if_none_match(req.headers(), etag)
        };
        assert!(matches("\"abc\""));
        assert!(matches("W/\"abc\""));
        assert!(matches("\"x\", \"abc\""));
        assert!(matches("*"));
        assert!(!matches("\"abd\""));
        assert!(!matches("abc"));
        assert!(!if_none_match(TestRequest::default().to_http_request().headers(), etag));
    }

    #[test]
    fn only_the_current_version_is_cached_for_long() {
        assert_eq!(cache_control(Some("v1"), "v1"), CACHE_VERSIONED);
        assert_eq!(cache_control(Some("v0"), "v1"), CACHE_REVALIDATE);
        assert_eq!(cache_control(None, "v1"), CACHE_REVALIDATE);
    }
}
