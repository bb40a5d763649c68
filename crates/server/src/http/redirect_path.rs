//! [`RedirectPath`]: where a client may ask to be sent back after a sign-in, and nothing else.
//!
//! Browsers are generous with what they treat as a URL: they drop tabs and newlines anywhere,
//! trim leading spaces and control characters, and read `\` as `/` in paths. So `/\t/evil.example`
//! becomes `//evil.example`, another site. A redirect path is therefore accepted only as a
//! *plain* path: one leading `/`, printable ASCII only (no control characters, no whitespace,
//! no backslash anywhere), no percent-encoded slash, backslash or control character (which a
//! front end that decodes before navigating would turn back into one), at most 512 bytes.

use std::fmt;

/// The longest path accepted, in bytes.
pub const MAX_LEN: usize = 512;

/// A same-origin path to send the browser back to, checked as described in the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectPath(String);

/// Why a string is not a [`RedirectPath`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedirectPathError {
    /// It does not start with exactly one `/`.
    #[error("redirect_to must be a path on this site, starting with a single /")]
    NotAPath,
    /// It holds a character a browser could reinterpret, or its percent-encoding.
    #[error("redirect_to may only hold printable ASCII: no spaces, control characters or backslashes")]
    ForbiddenCharacter,
    /// It is longer than [`MAX_LEN`].
    #[error("redirect_to must be at most 512 bytes")]
    TooLong,
}

impl RedirectPath {
    /// Checks `raw`.
    ///
    /// # Errors
    ///
    /// See [`RedirectPathError`].
    pub fn parse(raw: &str) -> Result<Self, RedirectPathError> {
        if raw.len() > MAX_LEN {
            return Err(RedirectPathError::TooLong);
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
            return Err(RedirectPathError::ForbiddenCharacter);
        }
        if !raw.starts_with('/') || raw.starts_with("//") {
            return Err(RedirectPathError::NotAPath);
        }
        if encodes_a_forbidden_byte(raw) {
            return Err(RedirectPathError::ForbiddenCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The path.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedirectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `raw` percent-encodes a slash, a backslash, whitespace or a control character.
fn encodes_a_forbidden_byte(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && std::str::from_utf8(&w[1..])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .is_some_and(|b| matches!(b, b'/' | b'\\' | b' ' | 0x00..=0x1f | 0x7f))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_accepted() {
        for path in ["/", "/home", "/settings/security?tab=2#keys", "/a/./b", "/caf%C3%A9", "/50%25"] {
            assert_eq!(RedirectPath::parse(path).map(|p| p.to_string()), Ok(path.to_owned()), "{path}");
        }
    }

    #[test]
    fn anything_a_browser_could_turn_into_another_origin_is_refused() {
        let refused = [
            "",
            "home",
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            " /evil",
            "/ /evil",
            "/\u{0}/evil",
            "/\u{7f}",
            "/\u{a0}/evil",
            "/\u{2028}",
            "/\u{ff0f}evil.example",
            "/%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/%5cevil",
            "/%09/evil.example",
            "/%0a",
            "/%20/evil",
            "/%7F",
        ];
        for path in refused {
            assert!(RedirectPath::parse(path).is_err(), "{path:?} is accepted");
        }
    }

    #[test]
    fn every_control_character_whitespace_and_backslash_is_refused_anywhere() {
        let bad: Vec<char> = (0u32..0x3000)
            .filter_map(char::from_u32)
            .filter(|c| c.is_control() || c.is_whitespace() || *c == '\\' || !c.is_ascii())
            .collect();
        for c in bad {
            for path in [format!("/{c}evil.example"), format!("/home{c}"), format!("/a/{c}/b"), format!("{c}/home")] {
                assert!(RedirectPath::parse(&path).is_err(), "{path:?} is accepted");
            }
        }
    }

    #[test]
    fn length_is_capped() {
        let long = format!("/{}", "a".repeat(MAX_LEN));
        assert_eq!(RedirectPath::parse(&long), Err(RedirectPathError::TooLong));
        assert!(RedirectPath::parse(&long[..MAX_LEN]).is_ok());
    }
}
