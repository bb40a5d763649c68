//! Avatars end to end: real images generated here, hostile uploads, limits, caching, cleanup
//! and a replace racing reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use gatehouse_avatar_fs::FsAvatarStore;
use gatehouse_domain::ports::AvatarStore as _;
use gatehouse_domain::services::avatars::SweepReport;
use gatehouse_domain::{ActivityAction, Avatar, AvatarFormat, AvatarKey, NewActivity, RequestContext, UserId};
use gatehouse_server::startup::prepare;

use gatehouse_avatar_image::testing::{
    EXIF_MARKER, contains, dimensions, jpeg, jpeg_with_exif, png, png_bomb, png_header_then_html, png_then_html,
    png_with_alpha, webp,
};
use gatehouse_avatar_image::{MAX_SIDE, sniff};
use gatehouse_tests::{Backend, PASSWORD, Part, TestApp, assert_problem, on_both_backends, spawn_app, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_backends!(
    each_format_is_re_encoded_served_and_versioned,
    a_jpeg_is_turned_upright_and_loses_its_exif_and_gps,
    a_6000_by_4000_photo_is_fitted_within_512,
    hostile_and_malformed_uploads_are_refused_on_the_file_field,
    an_upload_that_is_not_multipart_is_unsupported,
    an_upload_over_5_mib_is_refused_while_streaming,
    etags_answer_304_and_only_versioned_urls_are_cached_for_long,
    removing_the_avatar_removes_its_file,
    deleting_the_account_removes_its_avatar_file,
    reads_during_concurrent_replacement_always_get_a_whole_image,
    avatars_need_a_token_and_an_existing_avatar,
    re_uploading_the_current_image_while_another_upload_replaces_it_keeps_its_file,
    the_sweep_removes_old_unreferenced_files_and_keeps_fresh_and_referenced_ones,
    the_server_sweeps_in_the_background,
);

const PNG: &str = "image/png";
const JPEG: &str = "image/jpeg";

async fn signed_in(app: &TestApp) -> (Value, String) {
    let user = app.register_user("ada@example.com").await;
    let token = app.access_token("ada@example.com").await;
    (user, token)
}

async fn upload_ok(app: &TestApp, token: &str, bytes: &[u8]) -> Value {
    let response = app.upload_avatar(token, bytes).await;
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(status, StatusCode::OK, "upload answered {body}");
    body
}

fn avatar_path(user: &Value) -> String {
    user["avatar_url"].as_str().expect("an avatar_url").to_owned()
}

/// Fetches an avatar and checks the headers every image response carries.
async fn fetch(app: &TestApp, token: &str, path: &str) -> (String, Vec<u8>) {
    let response = app.get(path, Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    let etag = header("etag").expect("an ETag");
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "a strong ETag: {etag}");
    assert!(header("cache-control").is_some(), "Cache-Control");
    let content_type = header("content-type").expect("a Content-Type");
    let bytes = response.bytes().await.expect("a body").to_vec();
    assert_eq!(etag.trim_matches('"').len(), 64, "the ETag is the SHA-256 of the bytes");
    (content_type, bytes)
}

async fn each_format_is_re_encoded_served_and_versioned(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, token) = signed_in(&app).await;
    assert_eq!(user["avatar_url"], Value::Null, "no avatar yet");
    let uploads = [
        ("PNG with transparency", png_with_alpha(300, 200), PNG, (300, 200)),
        ("opaque PNG", png(400, 100), JPEG, (400, 100)),
        ("JPEG", jpeg(640, 480, 90), JPEG, (512, 384)),
        ("WebP", webp(64, 48), JPEG, (64, 48)),
        ("1x1 PNG", png(1, 1), JPEG, (1, 1)),
    ];
    let mut urls = Vec::new();

    for (name, bytes, served_as, expected) in uploads {
        let updated = upload_ok(&app, &token, &bytes).await;
        let url = avatar_path(&updated);
        let prefix = format!("/api/v1/users/{}/avatar?v=", user["id"].as_str().expect("an id"));
        assert!(url.starts_with(&prefix), "{name}: {url}");
        let (content_type, served) = fetch(&app, &token, &url).await;
        assert_eq!(content_type, served_as, "{name}");
        assert_eq!(dimensions(&served), expected, "{name}");
        assert_ne!(served, bytes, "{name}: the original bytes are never served");
        let me: Value = app.get("/api/v1/users/me", Some(&token)).await.json().await.expect("json");
        assert_eq!(me["avatar_url"], url.as_str(), "{name}: GET /users/me agrees");
        assert_eq!(app.avatar_files().len(), 1, "{name}: the replaced image's file is gone");
        urls.push(url);
    }

    let distinct: std::collections::BTreeSet<&String> = urls.iter().collect();
    assert_eq!(distinct.len(), urls.len(), "avatar_url changes with every image: {urls:?}");
}

async fn a_jpeg_is_turned_upright_and_loses_its_exif_and_gps(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = signed_in(&app).await;
    let upload = jpeg_with_exif(300, 200, 6);

    let updated = upload_ok(&app, &token, &upload).await;

    let (_, served) = fetch(&app, &token, &avatar_path(&updated)).await;
    assert_eq!(dimensions(&served), (200, 300), "orientation 6 is applied");
    let files = app.avatar_files();
    assert_eq!(files.len(), 1);
    let stored = std::fs::read(&files[0]).expect("the stored file");
    assert_eq!(stored, served, "what is stored is what is served");
    for needle in [b"Exif".as_slice(), EXIF_MARKER, &[0xFF, 0xE1]] {
        assert!(!contains(&stored, needle), "the stored file has no {needle:?}");
    }
}

async fn a_6000_by_4000_photo_is_fitted_within_512(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = signed_in(&app).await;
    let upload = jpeg(6000, 4000, 75);
    assert!(upload.len() <= 5 * 1024 * 1024, "the photo fits the limit: {} bytes", upload.len());

    let started = std::time::Instant::now();
    let updated = upload_ok(&app, &token, &upload).await;
    eprintln!("6000x4000 upload answered in {:?}", started.elapsed());

    let (_, served) = fetch(&app, &token, &avatar_path(&updated)).await;
    let (width, height) = dimensions(&served);
    assert_eq!(width, MAX_SIDE);
    assert!((341..=342).contains(&height), "3:2 kept: {width}x{height}");
}

async fn hostile_and_malformed_uploads_are_refused_on_the_file_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = signed_in(&app).await;
    let current = upload_ok(&app, &token, &png(32, 32)).await;
    let before = app.avatar_files();
    let small = png(8, 8);
    let polyglot = png_header_then_html();
    let bomb = png_bomb(50_000, 50_000);
    let truncated = {
        let whole = jpeg(128, 128, 90);
        whole[..whole.len() * 2 / 3].to_vec()
    };
    let cases: Vec<(&str, Vec<Part<'_>>, &str)> = vec![
        ("a PNG header followed by HTML", vec![Part::file(&polyglot)], "invalid_image"),
        ("text claiming to be image/png", vec![Part::file(b"just some text, honestly")], "unsupported_format"),
        (
            "SVG with a script",
            vec![Part {
                content_type: Some("image/svg+xml"),
                ..Part::file(b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>")
            }],
            "unsupported_format",
        ),
        ("a truncated JPEG", vec![Part::file(&truncated)], "invalid_image"),
        ("a 50000x50000 PNG bomb", vec![Part::file(&bomb)], "too_many_pixels"),
        ("an empty file", vec![Part::file(b"")], "unsupported_format"),
        ("no file part", vec![Part { name: "picture", ..Part::file(&small) }], "required"),
        ("two file parts", vec![Part::file(&small), Part::file(&small)], "too_many_parts"),
        (
            "a file and another field",
            vec![Part::file(&small), Part { name: "note", ..Part::file(b"hi") }],
            "too_many_parts",
        ),
    ];
    for (name, parts, code) in &cases {
        let response = app.put_avatar_parts(&token, parts).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "file", "{name}: {problem}");
        assert_eq!(problem["errors"][0]["code"], *code, "{name}: {problem}");
    }
    let no_parts = app.put_avatar_raw(&token, "multipart/form-data; boundary=xyz", b"--xyz--\r\n".to_vec()).await;
    let problem = assert_problem(no_parts, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "file");
    assert_eq!(app.avatar_files(), before, "no refused upload stored anything or removed the current file");
    let me: Value = app.get("/api/v1/users/me", Some(&token)).await.json().await.expect("json");
    assert_eq!(me["avatar_url"], current["avatar_url"], "the avatar is unchanged");

    let appended = upload_ok(&app, &token, &png_then_html()).await;
    let (_, served) = fetch(&app, &token, &avatar_path(&appended)).await;
    assert!(!contains(&served, b"<script"), "HTML after a valid PNG is not carried over");
}

async fn an_upload_that_is_not_multipart_is_unsupported(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = signed_in(&app).await;
    let image = png(8, 8);

    for content_type in
        ["image/png", "application/json", "application/x-www-form-urlencoded", "multipart/mixed; boundary=x"]
    {
        let response = app.put_avatar_raw(&token, content_type, image.clone()).await;
        assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    }
    let without =
        app.client.put(app.url("/api/v1/users/me/avatar")).bearer_auth(&token).body(image).send().await.expect("sent");
    assert_problem(without, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    assert!(app.avatar_files().is_empty(), "nothing stored");
}

async fn an_upload_over_5_mib_is_refused_while_streaming(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = signed_in(&app).await;
    let mut oversized = png(8, 8);
    oversized.resize(5 * 1024 * 1024 + 1, 0);

    let declared = app.upload_avatar(&token, &oversized).await;
    assert_problem(declared, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    // Chunked, without a Content-Length: the client sends 8 MiB and then holds the body open
    // without ending it. A server that read everything before judging would never answer;
    // one that refuses while streaming answers before the body ends. (Asserting on how many
    // bytes the client managed to push before the answer arrived depends on scheduling.)
    let status = chunked_upload_held_open(&app, &token, 8 * 1024 * 1024).await;
    assert_eq!(status, Some(413), "a streamed oversized upload is refused before its body ends");
    let exactly = {
        let mut at_limit = png(8, 8);
        at_limit.resize(5 * 1024 * 1024, 0);
        at_limit
    };
    assert!(app.avatar_files().is_empty(), "nothing stored");
    let at_limit = app.upload_avatar(&token, &exactly).await;
    assert_eq!(at_limit.status(), StatusCode::OK, "5 MiB exactly is read and judged by content (a PNG, padded)");
}

/// Sends a chunked multipart upload of up to `total` bytes over a raw connection while
/// reading the response, and returns its status and how much had been sent when it arrived.
/// Streams `prefix` bytes of one multipart file field with chunked encoding, then keeps the
/// connection open without sending the final chunk. Returns the status of the response if one
/// arrives within 30 s while the body is still unfinished.
async fn chunked_upload_held_open(app: &TestApp, token: &str, prefix: usize) -> Option<u16> {
    let address = app.address.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&address).await.expect("connects");
    let (mut reader, mut writer) = stream.into_split();
    let boundary = "chunked-boundary";
    let head = format!(
        "PUT /api/v1/users/me/avatar HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n\
         Content-Type: image/png\r\n\r\n"
    );
    let writing = tokio::spawn(async move {
        // The multipart preamble travels in the first chunk.
        let (headers, preamble) = head.split_once("\r\n\r\n").expect("a head");
        let first = format!("{headers}\r\n\r\n{:x}\r\n{preamble}\r\n", preamble.len());
        if writer.write_all(first.as_bytes()).await.is_err() {
            return;
        }
        let block = vec![0u8; 64 * 1024];
        let frame = [format!("{:x}\r\n", block.len()).into_bytes(), block.clone(), b"\r\n".to_vec()].concat();
        for _ in 0..prefix / block.len() {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
        // Never send the terminating chunk: hold the body open until the test ends.
        std::future::pending::<()>().await;
    });
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while !contains(&response, b"\r\n\r\n") {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    writing.abort();
    read.ok()?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok())
}

async fn etags_answer_304_and_only_versioned_urls_are_cached_for_long(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = signed_in(&app).await;
    let updated = upload_ok(&app, &token, &png(50, 50)).await;
    let versioned = avatar_path(&updated);
    let bare = versioned.split('?').next().expect("a path").to_owned();

    let first = app.get(&versioned, Some(&token)).await;
    let header = |response: &reqwest::Response, name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    let etag = header(&first, "etag").expect("an ETag");
    assert_eq!(header(&first, "cache-control").as_deref(), Some("private, max-age=31536000, immutable"));
    let bare_response = app.get(&bare, Some(&token)).await;
    assert_eq!(header(&bare_response, "cache-control").as_deref(), Some("private, no-cache"));
    assert_eq!(header(&bare_response, "etag"), Some(etag.clone()), "the same image, the same ETag");

    let conditional =
        app.client.get(app.url(&bare)).bearer_auth(&token).header("if-none-match", &etag).send().await.expect("sent");
    assert_eq!(conditional.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&conditional, "etag"), Some(etag.clone()));
    assert!(conditional.bytes().await.expect("a body").is_empty(), "a 304 has no body");

    let replaced = upload_ok(&app, &token, &png(60, 60)).await;
    assert_ne!(avatar_path(&replaced), versioned, "a new image, a new URL");
    let stale =
        app.client.get(app.url(&bare)).bearer_auth(&token).header("if-none-match", &etag).send().await.expect("sent");
    assert_eq!(stale.status(), StatusCode::OK, "the old ETag no longer matches");
    assert_ne!(header(&stale, "etag"), Some(etag));
    let old_version = app.get(&versioned, Some(&token)).await;
    assert_eq!(old_version.status(), StatusCode::OK, "an old ?v= still gets the current image");
    assert_eq!(header(&old_version, "cache-control").as_deref(), Some("private, no-cache"), "but not for a year");
}

async fn removing_the_avatar_removes_its_file(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, token) = signed_in(&app).await;
    let updated = upload_ok(&app, &token, &png_with_alpha(20, 20)).await;
    assert_eq!(app.avatar_files().len(), 1);

    let response = app.send_authed(Method::DELETE, "/api/v1/users/me/avatar", &token, None).await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(app.avatar_files().is_empty(), "the file is removed");
    let gone = app.get(&avatar_path(&updated), Some(&token)).await;
    assert_problem(gone, StatusCode::NOT_FOUND, "not_found").await;
    let me: Value = app.get("/api/v1/users/me", Some(&token)).await.json().await.expect("json");
    assert_eq!(me["avatar_url"], Value::Null);
    let again = app.send_authed(Method::DELETE, "/api/v1/users/me/avatar", &token, None).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT, "removing no avatar is fine");
    let path = format!("/api/v1/users/{}/avatar", user["id"].as_str().expect("an id"));
    assert_problem(app.get(&path, Some(&token)).await, StatusCode::NOT_FOUND, "not_found").await;
}

async fn deleting_the_account_removes_its_avatar_file(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, token) = signed_in(&app).await;
    app.register_user("grace@example.com").await;
    let other = app.access_token("grace@example.com").await;
    upload_ok(&app, &token, &png(20, 20)).await;
    upload_ok(&app, &other, &png(20, 20)).await;
    assert_eq!(app.avatar_files().len(), 2, "the same picture, one file per user");

    let response =
        app.send_authed(Method::DELETE, "/api/v1/users/me", &token, Some(&json!({"password": PASSWORD}))).await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let remaining = app.avatar_files();
    assert_eq!(remaining.len(), 1, "only the other user's file stays: {remaining:?}");
    let path = format!("/api/v1/users/{}/avatar", user["id"].as_str().expect("an id"));
    assert_problem(app.get(&path, Some(&other)).await, StatusCode::NOT_FOUND, "not_found").await;
}

async fn reads_during_concurrent_replacement_always_get_a_whole_image(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let (user, token) = signed_in(&app).await;
    let images = [png_with_alpha(200, 120), jpeg(300, 300, 85), png(90, 160), webp(128, 64)];
    upload_ok(&app, &token, &images[0]).await;
    let path = format!("/api/v1/users/{}/avatar", user["id"].as_str().expect("an id"));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (app, token, path, done) = (app.clone(), token.clone(), path.clone(), done.clone());
            tokio::spawn(async move {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) {
                    let (content_type, bytes) = fetch(&app, &token, &path).await;
                    assert_eq!(sniff(&bytes).map(|f| f.content_type()), Some(content_type.as_str()));
                    let (width, height) = dimensions(&bytes);
                    assert!(width > 0 && height > 0);
                    reads += 1;
                }
                reads
            })
        })
        .collect();

    for round in 0..24 {
        upload_ok(&app, &token, &images[round % images.len()]).await;
    }
    done.store(true, Ordering::Relaxed);

    let mut total = 0;
    for reader in readers {
        total += reader.await.expect("every read got a whole, decodable image");
    }
    assert!(total > 10, "the readers really raced the uploads: {total} reads");
    assert_eq!(app.avatar_files().len(), 1, "every replaced file was removed");
}

async fn avatars_need_a_token_and_an_existing_avatar(backend: Backend) {
    let app = spawn_app(backend).await;
    let (user, token) = signed_in(&app).await;
    let path = format!("/api/v1/users/{}/avatar", user["id"].as_str().expect("an id"));

    assert_problem(app.get(&path, None).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_problem(app.get(&path, Some(&token)).await, StatusCode::NOT_FOUND, "not_found").await;
    let unknown = format!("/api/v1/users/{}/avatar", uuid::Uuid::now_v7());
    assert_problem(app.get(&unknown, Some(&token)).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(app.get("/api/v1/users/not-a-uuid/avatar", Some(&token)).await, StatusCode::NOT_FOUND, "not_found")
        .await;
    let (content_type, body) = gatehouse_tests::multipart(&[Part::file(&png(4, 4))]);
    let anonymous = app
        .client
        .put(app.url("/api/v1/users/me/avatar"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(app.avatar_files().is_empty());
}

/// The grace the tests of the sweep run with, as in production.
const GRACE_SECS: u32 = 600;

/// The avatar a stored file's name denotes.
fn avatar_of_file(path: &Path) -> Avatar {
    let name = path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 name");
    let (key, extension) = name.rsplit_once('.').expect("an extension");
    let format = match extension {
        "png" => AvatarFormat::Png,
        "jpg" => AvatarFormat::Jpeg,
        other => panic!("unexpected extension {other}"),
    };
    Avatar { key: AvatarKey::parse(key).expect("a content-addressed name"), format }
}

/// Makes a file look last written `by` ago.
fn backdate(path: &Path, by: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(SystemTime::now() - by))
        .expect("backdated");
}

fn user_id(user: &Value) -> UserId {
    user["id"].as_str().expect("an id").parse().expect("a user id")
}

/// The race of issue 8, step by step: the user has image A; request 1 uploads A again and has
/// stored its file (same name: it already existed) but not yet committed; request 2 uploads B,
/// commits, and discards A; request 1 commits A. Before the grace period, request 2 removed A's
/// file and the user ended up pointing at a missing file (404).
async fn re_uploading_the_current_image_while_another_upload_replaces_it_keeps_its_file(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.storage.avatar_sweep_grace_secs = GRACE_SECS).await;
    let (user, token) = signed_in(&app).await;
    upload_ok(&app, &token, &png_with_alpha(20, 20)).await;
    let [a_file]: [PathBuf; 1] = app.avatar_files().try_into().expect("one file");
    let a = avatar_of_file(&a_file);
    let a_bytes = std::fs::read(&a_file).expect("A's bytes");
    // Uploaded a while ago, as a current avatar usually is.
    backdate(&a_file, Duration::from_secs(3600));

    // Request 1, first step: the same adapter call the upload makes before committing.
    let store = FsAvatarStore::open(&app.settings.storage.avatar_dir).expect("the avatar directory");
    store.put(&a, a_bytes.clone()).await.expect("request 1 stores A again");
    // Request 2, whole: B replaces A and discards it.
    upload_ok(&app, &token, &jpeg(40, 40, 90)).await;
    assert!(a_file.exists(), "A was stored again just now, so it is not removed");
    // Request 1, second step: the commit the upload makes after storing.
    let at = chrono::Utc::now();
    let event = NewActivity::by_user(user_id(&user), ActivityAction::AvatarChanged, &RequestContext::default(), at);
    let change =
        app.database().await.users().set_avatar(user_id(&user), Some(a.clone()), at, event).await.expect("committed");
    assert_eq!(change.user.avatar, Some(a.clone()));

    let path = format!("/api/v1/users/{}/avatar", user["id"].as_str().expect("an id"));
    let (content_type, bytes) = fetch(&app, &token, &path).await;
    assert_eq!(content_type, PNG);
    assert_eq!(bytes, a_bytes, "the user's avatar is A, and its file is there");
}

async fn the_sweep_removes_old_unreferenced_files_and_keeps_fresh_and_referenced_ones(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.storage.avatar_sweep_grace_secs = GRACE_SECS).await;
    let (user, token) = signed_in(&app).await;
    upload_ok(&app, &token, &png_with_alpha(20, 20)).await;
    let [replaced]: [PathBuf; 1] = app.avatar_files().try_into().expect("one file");
    upload_ok(&app, &token, &jpeg(40, 40, 90)).await;
    assert!(replaced.exists(), "replaced within the grace: left for the sweep");
    let current = app.avatar_files().into_iter().find(|f| *f != replaced).expect("the current file");
    // A crash between storing and committing leaves files nobody references.
    let dir = &app.settings.storage.avatar_dir;
    let owner = user_id(&user);
    let crashed_long_ago = dir.join(format!("{owner}-{}.jpg", "e".repeat(64)));
    let crashed_just_now = dir.join(format!("{owner}-{}.jpg", "f".repeat(64)));
    std::fs::write(&crashed_long_ago, b"orphan").expect("written");
    std::fs::write(&crashed_just_now, b"orphan").expect("written");
    let foreign = dir.join("notes.txt");
    std::fs::write(&foreign, b"not an avatar").expect("written");
    let sweeper = prepare(&app.settings).await.expect("a second instance's services");

    let first = sweeper.avatars.sweep().await.expect("swept");
    assert_eq!(first, SweepReport::default(), "everything is within the grace: nothing even examined");
    for file in [&replaced, &current, &crashed_long_ago, &foreign] {
        backdate(file, Duration::from_secs(u64::from(GRACE_SECS) + 60));
    }

    let second = sweeper.avatars.sweep().await.expect("swept");

    assert_eq!(second, SweepReport { examined: 3, removed: 2, referenced: 1, skipped: 0, failed: 0 });
    assert!(!replaced.exists(), "the replaced image is removed once past the grace");
    assert!(!crashed_long_ago.exists(), "an old orphan is removed");
    assert!(crashed_just_now.exists(), "a fresh orphan may be about to be referenced: kept");
    assert!(current.exists(), "the referenced image is kept, however old");
    assert!(foreign.exists(), "files that are not avatars are never touched");
    let path = format!("/api/v1/users/{owner}/avatar");
    let (content_type, _) = fetch(&app, &token, &path).await;
    assert_eq!(content_type, JPEG);
    let again = sweeper.avatars.sweep().await.expect("a concurrent or repeated sweep is harmless");
    assert_eq!(again.removed, 0);
}

async fn the_server_sweeps_in_the_background(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.storage.avatar_sweep_grace_secs = GRACE_SECS;
        settings.storage.avatar_sweep_interval_secs = 1;
    })
    .await;
    let (user, token) = signed_in(&app).await;
    upload_ok(&app, &token, &png_with_alpha(20, 20)).await;
    let [current]: [PathBuf; 1] = app.avatar_files().try_into().expect("one file");
    let orphan = app.settings.storage.avatar_dir.join(format!("{}-{}.png", user_id(&user), "e".repeat(64)));
    std::fs::write(&orphan, b"orphan").expect("written");
    for file in [&orphan, &current] {
        backdate(file, Duration::from_secs(u64::from(GRACE_SECS) + 60));
    }

    let mut waited = Duration::ZERO;
    while orphan.exists() && waited < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }

    assert!(!orphan.exists(), "the periodic sweep removed the old orphan within {waited:?}");
    assert!(current.exists(), "and kept the referenced image");
}
