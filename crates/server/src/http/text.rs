//! Text the database cannot store never reaches it: a NUL character (PostgreSQL refuses it in
//! `text` and `jsonb`; Rust strings are always valid UTF-8, so that is the one character left)
//! in any query parameter, JSON body or form body is a 422 `validation_failed` naming the
//! field, before routing. One check in front of every route covers every field and parameter,
//! present and future, on both engines alike.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpMessage as _, ResponseError as _};
use futures::StreamExt as _;
use serde_json::Value;

use crate::http::error::{ApiError, ErrorKind};

/// The largest body this check reads, as an app-data value: the JSON and form limit, so a
/// body it refuses for size would have been refused by the extractor too.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The stable code of the field error.
const CODE: &str = "invalid_characters";

/// Refuses requests whose query string, JSON body or form body holds a NUL character, with a
/// 422 naming the first such field. Other bodies (multipart uploads) pass untouched; a body
/// that does not parse passes too, for its extractor to refuse as it always did.
///
/// # Errors
///
/// Passes through errors of the inner services and of reading the body.
pub async fn reject_unstorable_text(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    if let Some(field) = nul_in_urlencoded(req.query_string()) {
        return Ok(refuse(req, &field));
    }
    let kind = body_kind(&req);
    if kind != BodyKind::Other {
        let limit = req.app_data::<BodyLimit>().map_or(usize::MAX, |limit| limit.0);
        let mut payload = req.take_payload();
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk?;
            if body.len() + chunk.len() > limit {
                let error =
                    ApiError::new(ErrorKind::PayloadTooLarge, format!("The body must be at most {limit} bytes."));
                return Ok(req.into_response(error.error_response()).map_into_right_body());
            }
            body.extend_from_slice(&chunk);
        }
        let body = body.freeze();
        let field = match kind {
            BodyKind::Json => nul_in_json(&body),
            BodyKind::Form => std::str::from_utf8(&body).ok().and_then(nul_in_urlencoded),
            BodyKind::Other => None,
        };
        if let Some(field) = field {
            return Ok(refuse(req, &field));
        }
        req.set_payload(Payload::from(Bytes::clone(&body)));
    }
    Ok(next.call(req).await?.map_into_left_body())
}

fn refuse<B>(req: ServiceRequest, field: &str) -> ServiceResponse<EitherBody<B>> {
    let error = ApiError::validation_field(field, CODE, format!("{field} must not contain NUL characters"));
    req.into_response(error.error_response()).map_into_right_body()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
    Other,
}

fn body_kind(req: &ServiceRequest) -> BodyKind {
    let Some(content_type) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return BodyKind::Other;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        BodyKind::Json
    } else if essence == "application/x-www-form-urlencoded" {
        BodyKind::Form
    } else {
        BodyKind::Other
    }
}

/// The first parameter of `encoded` (`a=1&b=2`, as in query strings and form bodies) whose
/// name or value decodes to text with a NUL, by its decoded name.
fn nul_in_urlencoded(encoded: &str) -> Option<String> {
    if !encoded.contains("%00") {
        return None;
    }
    encoded.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name);
        (name.contains('\0') || percent_decode(value).contains('\0')).then(|| name.replace('\0', ""))
    })
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space), lossy on invalid UTF-8.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path (`email`, `items[0]`, `profile.name`) of the first key or string in the JSON
/// `body` that holds a NUL; `None` when there is none or the body is not JSON.
fn nul_in_json(body: &[u8]) -> Option<String> {
    // Only an escape can put a NUL in JSON text (a raw one is a syntax error), so most bodies
    // are cleared without parsing.
    if !body.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000")) {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    find_nul(&value, "")
}

fn find_nul(value: &Value, path: &str) -> Option<String> {
    let at = |path: &str| if path.is_empty() { "body".to_owned() } else { path.to_owned() };
    match value {
        Value::String(text) => text.contains('\0').then(|| at(path)),
        Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, item)| find_nul(item, &format!("{}[{i}]", at(path))))
        }
        Value::Object(fields) => fields.iter().find_map(|(name, item)| {
            let child =
                if path.is_empty() { name.replace('\0', "") } else { format!("{path}.{}", name.replace('\0', "")) };
            if name.contains('\0') { Some(at(&child)) } else { find_nul(item, &child) }
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_in_any_query_parameter_names_it() {
        assert_eq!(nul_in_urlencoded("q=%00").as_deref(), Some("q"));
        assert_eq!(nul_in_urlencoded("limit=10&status=act%00ive").as_deref(), Some("status"));
        assert_eq!(nul_in_urlencoded("na%00me=x").as_deref(), Some("name"));
        assert_eq!(nul_in_urlencoded("q=ada+lovelace&sort=-created_at"), None);
        assert_eq!(nul_in_urlencoded("q=%2500"), None, "an escaped percent sign is not a NUL");
        assert_eq!(nul_in_urlencoded("q=%0"), None);
    }

    #[test]
    fn a_nul_anywhere_in_json_names_its_path() {
        assert_eq!(nul_in_json(br#"{"email":"a\u0000@example.com"}"#).as_deref(), Some("email"));
        assert_eq!(nul_in_json(br#"{"a":{"b":["x","\u0000"]}}"#).as_deref(), Some("a.b[1]"));
        assert_eq!(nul_in_json(br#"{"k\u0000":1}"#).as_deref(), Some("k"));
        assert_eq!(nul_in_json(br#""\u0000""#).as_deref(), Some("body"));
        assert_eq!(nul_in_json(br#"{"email":"\\u0000"}"#), None, "an escaped backslash is no NUL");
        assert_eq!(nul_in_json(br#"{"email":"ada@example.com"}"#), None);
        assert_eq!(nul_in_json(br#"{"email":"\u0000"#), None, "a body that does not parse is left to its extractor");
    }

    #[test]
    fn percent_decoding_follows_forms() {
        assert_eq!(percent_decode("a+b%20c%zz%4"), "a b c%zz%4");
    }
}
