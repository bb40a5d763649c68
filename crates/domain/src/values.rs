//! Value objects that can only hold valid values: parse, don't validate.
//!
//! Each type has one fallible constructor and read access through `AsRef<str>`/`Display`.
//! Holding an [`Email`] means holding a valid, trimmed address; holding a [`NewPassword`]
//! means holding a password that meets the policy of `API.md`.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use email_address::{EmailAddress, Options};
use secrecy::{ExposeSecret, SecretString};

use crate::error::FieldError;

/// The longest email address SMTP can carry (RFC 5321 path limit).
const EMAIL_MAX_LEN: usize = 254;

/// Why a string is not an acceptable email address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Empty after trimming.
    #[error("email is required")]
    Empty,
    /// Longer than 254 characters.
    #[error("email must be at most {EMAIL_MAX_LEN} characters")]
    TooLong,
    /// Not of the form `local@domain.tld`.
    #[error("email is not a valid address")]
    InvalidFormat,
}

impl From<EmailError> for FieldError {
    fn from(e: EmailError) -> Self {
        let code = match e {
            EmailError::Empty => "required",
            EmailError::TooLong => "too_long",
            EmailError::InvalidFormat => "invalid_format",
        };
        FieldError::new("email", code, e.to_string())
    }
}

/// A syntactically valid email address, trimmed. Compared case-insensitively by storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Trims and parses an address: one `@`, a dotted domain, no display name, no domain
    /// literal, no whitespace or control characters.
    ///
    /// # Errors
    ///
    /// Returns the [`EmailError`] naming the first rule broken.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.chars().count() > EMAIL_MAX_LEN {
            return Err(EmailError::TooLong);
        }
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::InvalidFormat);
        }
        let options = Options {
            minimum_sub_domains: 2,
            allow_domain_literal: false,
            allow_display_text: false,
            ..Options::default()
        };
        EmailAddress::parse_with_options(trimmed, options).map_err(|_| EmailError::InvalidFormat)?;
        Ok(Self(trimmed.to_owned()))
    }

    /// The part before the `@`, used to derive a username.
    #[must_use]
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(self.0.as_str(), |(local, _)| local)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Username length bounds, in characters.
const USERNAME_MIN: usize = 3;
const USERNAME_MAX: usize = 50;

/// Why a string is not an acceptable username.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// Fewer than 3 characters.
    #[error("username must be at least {USERNAME_MIN} characters")]
    TooShort,
    /// More than 50 characters.
    #[error("username must be at most {USERNAME_MAX} characters")]
    TooLong,
    /// A character other than a letter, a digit, `.`, `_` or `-`.
    #[error("username may contain only letters, digits, '.', '_' and '-'")]
    InvalidCharacters,
}

impl From<UsernameError> for FieldError {
    fn from(e: UsernameError) -> Self {
        let code = match e {
            UsernameError::TooShort => "too_short",
            UsernameError::TooLong => "too_long",
            UsernameError::InvalidCharacters => "invalid_characters",
        };
        FieldError::new("username", code, e.to_string())
    }
}

/// A username: 3–50 letters, digits, `.`, `_` or `-`, trimmed. Unique case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// Trims and parses a username.
    ///
    /// # Errors
    ///
    /// Returns the [`UsernameError`] naming the first rule broken.
    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        let trimmed = raw.trim();
        let len = trimmed.chars().count();
        if len < USERNAME_MIN {
            return Err(UsernameError::TooShort);
        }
        if len > USERNAME_MAX {
            return Err(UsernameError::TooLong);
        }
        if !trimmed.chars().all(is_username_char) {
            return Err(UsernameError::InvalidCharacters);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Derives a username from an email's local part: allowed characters are kept, others
    /// dropped, and short results padded with `user`. `suffix` (for example a random number
    /// after a collision) is appended after a `-`, and the base is shortened so the whole
    /// stays within 50 characters.
    #[must_use]
    pub fn derive_from(email: &Email, suffix: Option<&str>) -> Self {
        let mut base: String = email.local_part().chars().filter(|c| is_username_char(*c)).collect();
        if base.chars().count() < USERNAME_MIN {
            base.insert_str(0, "user");
        }
        let room = suffix.map_or(USERNAME_MAX, |s| USERNAME_MAX - 1 - s.chars().count());
        let mut name: String = base.chars().take(room).collect();
        if let Some(suffix) = suffix {
            name.push('-');
            name.push_str(suffix);
        }
        Self(name)
    }
}

fn is_username_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '-')
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const DISPLAY_NAME_MAX: usize = 100;

/// Why a string is not an acceptable display name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DisplayNameError {
    /// Empty after trimming.
    #[error("display name must not be empty")]
    Empty,
    /// More than 100 characters.
    #[error("display name must be at most {DISPLAY_NAME_MAX} characters")]
    TooLong,
    /// Contains control characters (newlines, NUL…).
    #[error("display name must not contain control characters")]
    ControlCharacters,
}

impl From<DisplayNameError> for FieldError {
    fn from(e: DisplayNameError) -> Self {
        let code = match e {
            DisplayNameError::Empty => "required",
            DisplayNameError::TooLong => "too_long",
            DisplayNameError::ControlCharacters => "invalid_characters",
        };
        FieldError::new("display_name", code, e.to_string())
    }
}

/// A person's display name: 1–100 characters, trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

impl DisplayName {
    /// Trims and parses a display name.
    ///
    /// # Errors
    ///
    /// Returns the [`DisplayNameError`] naming the first rule broken.
    pub fn parse(raw: &str) -> Result<Self, DisplayNameError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(DisplayNameError::Empty);
        }
        if trimmed.chars().count() > DISPLAY_NAME_MAX {
            return Err(DisplayNameError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(DisplayNameError::ControlCharacters);
        }
        Ok(Self(trimmed.to_owned()))
    }
}

impl AsRef<str> for DisplayName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const PASSWORD_MIN: usize = 8;
const PASSWORD_MAX: usize = 128;

/// The 10,000 most common passwords (see `data/README.md`), lower-cased.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("../data/common-passwords.txt").lines().collect());

/// Why a password does not meet the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Fewer than 8 characters.
    #[error("password must be at least {PASSWORD_MIN} characters")]
    TooShort,
    /// More than 128 characters.
    #[error("password must be at most {PASSWORD_MAX} characters")]
    TooLong,
    /// The same as the account's email address.
    #[error("password must not be the email address")]
    EqualsEmail,
    /// On the list of the 10,000 most common passwords.
    #[error("password is too common")]
    TooCommon,
}

impl PasswordError {
    /// The error as a [`FieldError`] on the given request field (`password`, `new_password`).
    #[must_use]
    pub fn on_field(self, field: &'static str) -> FieldError {
        let code = match self {
            PasswordError::TooShort => "too_short",
            PasswordError::TooLong => "too_long",
            PasswordError::EqualsEmail => "equals_email",
            PasswordError::TooCommon => "too_common",
        };
        FieldError::new(field, code, self.to_string())
    }
}

impl From<PasswordError> for FieldError {
    fn from(e: PasswordError) -> Self {
        e.on_field("password")
    }
}

/// A password chosen by a user that meets the policy: 8–128 characters (Unicode scalar
/// values), not the account's email, not a common password. Kept secret so `Debug` and logs
/// never show it.
#[derive(Debug, Clone)]
pub struct NewPassword(SecretString);

impl NewPassword {
    /// Checks `raw` against the policy for an account with the given email.
    ///
    /// # Errors
    ///
    /// Returns the [`PasswordError`] naming the first rule broken.
    pub fn parse(raw: SecretString, email: &Email) -> Result<Self, PasswordError> {
        let value = raw.expose_secret();
        let len = value.chars().count();
        if len < PASSWORD_MIN {
            return Err(PasswordError::TooShort);
        }
        if len > PASSWORD_MAX {
            return Err(PasswordError::TooLong);
        }
        if value.trim().to_lowercase() == email.as_ref().to_lowercase() {
            return Err(PasswordError::EqualsEmail);
        }
        if COMMON_PASSWORDS.contains(value.to_lowercase().as_str()) {
            return Err(PasswordError::TooCommon);
        }
        Ok(Self(raw))
    }

    /// The password itself, for the hasher.
    #[must_use]
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn email(s: &str) -> Email {
        Email::parse(s).expect("valid email")
    }

    #[test]
    fn an_email_is_trimmed_and_keeps_its_case() {
        assert_eq!(email("  Ada@Example.com ").as_ref(), "Ada@Example.com");
    }

    #[test]
    fn invalid_emails_are_refused() {
        let long = format!("{}@example.com", "a".repeat(300));
        for (raw, expected) in [
            ("", EmailError::Empty),
            ("   ", EmailError::Empty),
            ("plainaddress", EmailError::InvalidFormat),
            ("@example.com", EmailError::InvalidFormat),
            ("ada@", EmailError::InvalidFormat),
            ("ada@localhost", EmailError::InvalidFormat),
            ("ada@@example.com", EmailError::InvalidFormat),
            ("ada lovelace@example.com", EmailError::InvalidFormat),
            ("Ada <ada@example.com>", EmailError::InvalidFormat),
            ("ada@[127.0.0.1]", EmailError::InvalidFormat),
            ("ada\u{0}@example.com", EmailError::InvalidFormat),
            ("ада@\u{202e}example.com", EmailError::InvalidFormat),
            ("💥@💥", EmailError::InvalidFormat),
            (long.as_str(), EmailError::TooLong),
        ] {
            assert_eq!(Email::parse(raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn internationalised_addresses_are_accepted() {
        assert!(Email::parse("josé@exämple.com").is_ok());
    }

    #[test]
    fn usernames_follow_the_rules() {
        assert!(Username::parse("ada").is_ok());
        assert!(Username::parse("a.b_c-d9").is_ok());
        assert_eq!(Username::parse("ab"), Err(UsernameError::TooShort));
        assert_eq!(Username::parse(&"a".repeat(51)), Err(UsernameError::TooLong));
        assert_eq!(Username::parse("ada lovelace"), Err(UsernameError::InvalidCharacters));
        assert_eq!(Username::parse("ada'; drop table users;--"), Err(UsernameError::InvalidCharacters));
    }

    #[test]
    fn a_derived_username_is_always_valid() {
        for raw in ["a+b@example.com", "x@example.com", &format!("{}@example.com", "y".repeat(64))] {
            let derived = Username::derive_from(&email(raw), Some("4821"));
            assert!(Username::parse(derived.as_ref()).is_ok(), "{derived}");
            let derived = Username::derive_from(&email(raw), None);
            assert!(Username::parse(derived.as_ref()).is_ok(), "{derived}");
        }
        assert_eq!(Username::derive_from(&email("ada+news@example.com"), None).as_ref(), "adanews");
        assert_eq!(Username::derive_from(&email("x@example.com"), None).as_ref(), "userx");
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Ada  ").map(|d| d.to_string()), Ok("Ada".to_owned()));
        assert_eq!(DisplayName::parse(" "), Err(DisplayNameError::Empty));
        assert_eq!(DisplayName::parse(&"é".repeat(101)), Err(DisplayNameError::TooLong));
        assert_eq!(DisplayName::parse("a\nb"), Err(DisplayNameError::ControlCharacters));
    }

    #[test]
    fn the_password_policy_holds() {
        let owner = email("ada@example.com");
        let check = |p: &str| NewPassword::parse(secret(p), &owner).map(|_| ());
        assert_eq!(check("short"), Err(PasswordError::TooShort));
        assert_eq!(check(&"x".repeat(129)), Err(PasswordError::TooLong));
        assert_eq!(check("ADA@example.com"), Err(PasswordError::EqualsEmail));
        assert_eq!(check("password"), Err(PasswordError::TooCommon));
        assert_eq!(check("Baseball1"), Err(PasswordError::TooCommon), "case-insensitive");
        assert_eq!(check("correct horse battery staple"), Ok(()));
        assert_eq!(check(&"é".repeat(128)), Ok(()), "counts characters, not bytes");
        assert_eq!(check("ééééééé"), Err(PasswordError::TooShort));
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let password =
            NewPassword::parse(secret("correct horse battery staple"), &email("a@example.com")).expect("valid");
        assert!(!format!("{password:?}").contains("horse"));
    }
}
