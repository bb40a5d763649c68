//! What production refuses as a secret (`auth.jwt_secret`, `secrets.encryption_key`): the
//! values shipped in this repository, and values too predictable to be secret.
//!
//! The rule for "too predictable", kept simple so an operator can reason about a refusal:
//!
//! 1. the value is reduced to its shortest repeating unit (`abcabcab` → `abc`), so a word or a
//!    pattern repeated to reach the minimum length counts once;
//! 2. its entropy is estimated as length × the Shannon entropy of its byte frequencies, both for
//!    the bytes themselves and for the differences between neighbouring bytes (so a run such as
//!    `0123456789abcdef…` counts for almost nothing), and the lower estimate is kept;
//! 3. the estimate must reach [`MIN_SECRET_BITS`].
//!
//! A random secret passes with a wide margin (`openssl rand -base64 48` ≈ 350 bits,
//! `openssl rand -hex 32` ≈ 240); `aaaa…`, `0123456789…` repeated, a dictionary word repeated
//! and keyboard runs do not. The estimate only catches predictable *shapes*: a sentence or a
//! password someone chose can pass it and still be guessable, which is why the advice in every
//! error is to generate the value.

/// The least estimated entropy, in bits, of a production secret.
pub const MIN_SECRET_BITS: f64 = 128.0;

/// Every secret-looking value that appears in this repository (sample configurations, the
/// compose file, the README, tests and benchmarks), in one place. Production refuses them:
/// whoever read the repository knows them. Add a value here whenever one is added elsewhere.
pub const SHIPPED_SECRETS: &[&str] = &[
    // docker/docker-compose.yml, before the compose file required GATEHOUSE_JWT_SECRET.
    "local-only-secret-change-me-0123456789abcdef",
    // tests/support/lib.rs (`JWT_SECRET`).
    "test-secret-that-is-at-least-32-bytes-long",
    // tests/benches/admin_list.rs and login_flood.rs.
    "bench-secret-that-is-at-least-32-bytes-long",
    // crates/server/src/settings.rs tests.
    "jwt-secret-that-is-at-least-32-bytes-long",
    // crates/security/src/at_rest.rs tests (encryption keys).
    "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=",
    "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
];

/// Words that mark a placeholder someone forgot to replace; refused anywhere in a secret
/// (ignoring case).
const PLACEHOLDER_MARKERS: &[&str] =
    &["change-me", "changeme", "change_me", "replace-me", "replaceme", "replace_me", "placeholder", "your-secret"];

/// Why a value is not acceptable as a production secret.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// One of [`SHIPPED_SECRETS`], or a value containing a placeholder marker.
    Published,
    /// Its estimated entropy, in bits, is below [`MIN_SECRET_BITS`].
    Predictable(f64),
}

impl Refusal {
    /// The reason, for a one-line configuration error (never the value).
    #[must_use]
    pub fn describe(self) -> String {
        match self {
            Refusal::Published => {
                "is a sample value published with Gatehouse (or a placeholder): anyone who read the repository knows it"
                    .to_owned()
            }
            Refusal::Predictable(bits) => format!(
                "is too predictable (estimated {bits:.0} bits of entropy, at least {MIN_SECRET_BITS:.0} needed; \
                 repeated patterns, runs and few distinct characters count for little)"
            ),
        }
    }
}

/// Whether `value` (as configured) is a published sample or a placeholder.
#[must_use]
pub fn is_published(value: &str) -> bool {
    let trimmed = value.trim();
    let lower = trimmed.to_ascii_lowercase();
    SHIPPED_SECRETS.contains(&trimmed) || PLACEHOLDER_MARKERS.iter().any(|marker| lower.contains(marker))
}

/// Checks a configured secret: `value` as written, and `material` the bytes that matter (the
/// value itself for `auth.jwt_secret`, the decoded key for `secrets.encryption_key`).
///
/// # Errors
///
/// The [`Refusal`].
pub fn check(value: &str, material: &[u8]) -> Result<(), Refusal> {
    if is_published(value) {
        return Err(Refusal::Published);
    }
    let bits = estimated_bits(material);
    if bits < MIN_SECRET_BITS {
        return Err(Refusal::Predictable(bits));
    }
    Ok(())
}

/// The estimate of the module documentation, in bits.
#[must_use]
pub fn estimated_bits(value: &[u8]) -> f64 {
    let unit = &value[..shortest_period(value)];
    let differences: Vec<u8> = unit.windows(2).map(|pair| pair[1].wrapping_sub(pair[0])).collect();
    shannon_bits(unit).min(shannon_bits(&differences))
}

/// The smallest `p` with `value[i] == value[i + p]` for every `i` (the length when there is
/// none), from the prefix function.
fn shortest_period(value: &[u8]) -> usize {
    let mut border = vec![0_usize; value.len()];
    for i in 1..value.len() {
        let mut k = border[i - 1];
        while k > 0 && value[i] != value[k] {
            k = border[k - 1];
        }
        if value[i] == value[k] {
            k += 1;
        }
        border[i] = k;
    }
    value.len() - border.last().copied().unwrap_or(0)
}

/// `sample.len()` × the Shannon entropy of its byte frequencies.
#[allow(clippy::cast_precision_loss)] // lengths of configuration values
fn shannon_bits(sample: &[u8]) -> f64 {
    let mut counts = [0_usize; 256];
    for &byte in sample {
        counts[usize::from(byte)] += 1;
    }
    let total = sample.len() as f64;
    let per_byte: f64 = counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = count as f64 / total;
            -p * p.log2()
        })
        .sum();
    // A single repeated byte gives -0.0; report it as 0.
    if per_byte > 0.0 { per_byte * total } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use gatehouse_domain::ports::OpaqueTokens as _;
    use gatehouse_security::RandomTokens;
    use secrecy::ExposeSecret as _;

    use super::*;

    fn refused(value: &str) -> bool {
        check(value, value.as_bytes()).is_err()
    }

    #[test]
    fn every_shipped_secret_and_placeholder_is_refused() {
        for value in SHIPPED_SECRETS {
            assert_eq!(check(value, value.as_bytes()), Err(Refusal::Published), "{value}");
        }
        assert!(refused("  local-only-secret-change-me-0123456789abcdef\n"), "surrounding whitespace changes nothing");
        assert!(refused("prod-CHANGEME-9f8e7d6c5b4a39281706f5e4d3c2b1a0"), "a placeholder marker, any case");
    }

    #[test]
    fn predictable_shapes_are_refused() {
        for value in [
            "a".repeat(64),
            "0123456789".repeat(5),
            "0123456789abcdef".repeat(4),
            "password".repeat(8),
            "correcthorse".repeat(4),
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".to_owned(),
            "qwertyqwertyqwertyqwertyqwertyqwerty".to_owned(),
            "ab".repeat(40) + "c",
        ] {
            assert!(matches!(check(&value, value.as_bytes()), Err(Refusal::Predictable(_))), "{value}");
        }
        assert!(matches!(check("AAAA", &[0_u8; 32]), Err(Refusal::Predictable(_))), "an all-zero key");
    }

    #[test]
    fn generated_secrets_pass_with_a_margin() {
        for _ in 0..500 {
            let random = || URL_SAFE_NO_PAD.decode(RandomTokens.generate().secret.expose_secret()).expect("32 bytes");
            let token = RandomTokens.generate();
            let base64_48 = STANDARD.encode([random(), random()[..16].to_vec()].concat());
            let hex_32 = token.hash.as_str().to_owned();
            let key = random();
            for value in [token.secret.expose_secret(), base64_48.as_str(), hex_32.as_str()] {
                assert!(estimated_bits(value.as_bytes()) >= MIN_SECRET_BITS + 20.0, "{value}");
            }
            assert!(check(&base64_48, &key).is_ok(), "a random 32-byte key");
        }
    }

    /// Values assigned to a secret key in the files operators copy from: each must be a
    /// placeholder or interpolation, or be listed in [`SHIPPED_SECRETS`].
    #[test]
    fn every_secret_in_the_sample_configuration_is_listed() {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let mut files = vec![root.join("docker/docker-compose.yml"), root.join("docker/.env"), root.join("README.md")];
        files.extend(
            std::fs::read_dir(root.join("config"))
                .expect("config/ is readable")
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "toml")),
        );
        let keys = ["jwt_secret", "encryption_key", "retired_keys", "client_secret", "admin_password"];
        let mut checked = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for line in text.lines() {
                let lower = line.to_ascii_lowercase();
                // The key itself (`jwt_secret`, `APP__AUTH__JWT_SECRET`), not a longer name
                // ending with it (`jwt_retired_keys`).
                let at_key = |key: &str| {
                    lower.match_indices(key).map(|(start, _)| start).find(|&start| {
                        let before = &lower[..start];
                        before.is_empty()
                            || before.ends_with("__")
                            || !before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                    })
                };
                let Some((key, start)) = keys.iter().find_map(|key| at_key(key).map(|start| (key, start))) else {
                    continue;
                };
                let after = &line[start + key.len()..];
                let Some(value) = after.trim_start().strip_prefix([':', '=']) else { continue };
                let value = value.split(" #").next().unwrap_or_default().trim().trim_matches(['"', '\'', '`']);
                let placeholder = value.is_empty()
                    || value == "…"
                    || value.starts_with('[')
                    || value.contains(char::is_whitespace)
                    || value.starts_with("${")
                    || value.starts_with("$(")
                    || value.starts_with('<');
                checked += 1;
                if !placeholder {
                    assert!(is_published(value), "{}: {value:?} is not in SHIPPED_SECRETS", file.display());
                }
            }
        }
        assert!(checked > 0, "the scan found no secret key at all: it is broken");
    }

    #[test]
    fn the_period_is_the_shortest_repeating_unit() {
        assert_eq!(shortest_period(b"abcabcab"), 3);
        assert_eq!(shortest_period(b"aaaa"), 1);
        assert_eq!(shortest_period(b"abcd"), 4);
        assert_eq!(shortest_period(b""), 0);
    }
}
