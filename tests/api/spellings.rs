//! Rate limits hold however a client spells a limited path. The router decodes and matches the
//! path before a rule applies, so every spelling that reaches a handler meets that handler's
//! limit and shares one budget with the canonical path; a spelling the router does not match
//! reaches no handler. Requests go over a raw socket: an HTTP client would normalise `/./`
//! and percent-encoding away before sending.

use gatehouse_server::settings::{RateRule, Settings};
use gatehouse_tests::{Backend, PASSWORD, on_both_backends, spawn_app_with};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

on_both_backends!(every_spelling_of_a_limited_route_meets_its_limit);

/// Requests that reach a handler per route before its limit answers 429.
const LIMIT: u32 = 4;
/// Spellings tried per route.
const SPELLINGS: usize = 24;

/// A limited route: its path, its body, and its content type.
struct LimitedRoute {
    path: &'static str,
    body: fn(usize) -> String,
    content_type: &'static str,
}

const ROUTES: &[LimitedRoute] = &[
    LimitedRoute {
        path: "/api/v1/auth/login",
        body: |i| format!(r#"{{"email":"nobody{i}@example.com","password":"wrong password"}}"#),
        content_type: "application/json",
    },
    LimitedRoute {
        path: "/api/v1/auth/token",
        body: |i| format!("grant_type=password&username=nobody{i}%40example.com&password=wrong"),
        content_type: "application/x-www-form-urlencoded",
    },
    LimitedRoute {
        path: "/api/v1/auth/register",
        body: |i| format!(r#"{{"email":"spelling{i}@example.com","password":"{PASSWORD}"}}"#),
        content_type: "application/json",
    },
    LimitedRoute {
        path: "/api/v1/auth/password/forgot",
        body: |i| format!(r#"{{"email":"nobody{i}@example.com"}}"#),
        content_type: "application/json",
    },
    LimitedRoute {
        path: "/api/v1/auth/verify-email/resend",
        body: |i| format!(r#"{{"email":"nobody{i}@example.com"}}"#),
        content_type: "application/json",
    },
];

fn limited(settings: &mut Settings) {
    settings.rate_limit.enabled = true;
    let rule = RateRule { limit: LIMIT, window_secs: 3600 };
    settings.rate_limit.login = rule;
    settings.rate_limit.register = rule;
    settings.rate_limit.recovery = rule;
    settings.server.trusted_proxies = vec!["127.0.0.0/8".to_owned()];
}

/// Another spelling of `path`: characters percent-encoded in either case, a slash doubled,
/// a `/./` inserted, a trailing slash. With `routable`, only the percent-encodings, which the
/// router decodes back to the same path.
fn spell(path: &str, rng: &mut StdRng, routable: bool) -> String {
    let mut out = String::new();
    for (i, c) in path.char_indices() {
        if c == '/' {
            out.push('/');
            if !routable && i > 0 && rng.random_bool(0.1) {
                out.push_str(if rng.random_bool(0.5) { "/" } else { "./" });
            }
        } else if rng.random_bool(0.4) {
            let hex = format!("{:02x}", u32::from(c));
            out.push('%');
            out.push_str(&if rng.random_bool(0.5) { hex.to_uppercase() } else { hex });
        } else {
            out.push(c);
        }
    }
    if !routable && rng.random_bool(0.2) {
        out.push('/');
    }
    out
}

/// The status and `RateLimit-Limit` of one raw HTTP/1.1 POST.
async fn post_raw(port: u16, target: &str, route: &LimitedRoute, i: usize, client_ip: &str) -> (u16, Option<u32>) {
    let body = (route.body)(i);
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         X-Forwarded-For: {client_ip}\r\nConnection: close\r\n\r\n{body}",
        route.content_type,
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connected");
    stream.write_all(request.as_bytes()).await.expect("request written");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("response read");
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let limit = text
        .lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("ratelimit-limit:").map(|v| v.trim().parse().ok()))
        .flatten();
    (status, limit)
}

async fn every_spelling_of_a_limited_route_meets_its_limit(backend: Backend) {
    let app = spawn_app_with(backend, limited).await;
    let port: u16 = app.address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    let seed: u64 = rand::rng().random();
    let mut rng = StdRng::seed_from_u64(seed);
    for (r, route) in ROUTES.iter().enumerate() {
        // Each route gets its own client address, so `/login` and `/token` (one rule) do not
        // share a budget here.
        let client_ip = format!("198.51.100.{}", r + 1);
        let mut admitted = 0;
        let mut refused = 0;
        for i in 0..SPELLINGS {
            let target = spell(route.path, &mut rng, i % 2 == 0);
            let (status, limit) = post_raw(port, &target, route, i, &client_ip).await;
            match status {
                404 | 405 => {
                    assert!(i % 2 == 1, "seed {seed}: the router decodes {target:?} to {}", route.path);
                    continue;
                }
                429 => refused += 1,
                _ => admitted += 1,
            }
            assert_eq!(limit, Some(LIMIT), "seed {seed}: {target:?} answered {status} outside {}'s rule", route.path);
        }
        assert_eq!(admitted, LIMIT, "seed {seed}: {} admitted more than its limit under other spellings", route.path);
        assert!(refused >= SPELLINGS / 2 - LIMIT as usize, "seed {seed}: {}: {refused} refused", route.path);
    }
}
