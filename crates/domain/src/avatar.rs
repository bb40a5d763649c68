//! Avatars as the domain sees them: a reference to a stored, re-encoded image.
//!
//! The image bytes never pass through the domain's types except on their way between the
//! processing port and the storage port. What users, storage and the API share is an
//! [`Avatar`]: a content-addressed [`AvatarKey`] plus the [`AvatarFormat`] of the stored
//! file. The key changes whenever the image changes, so it doubles as the `ETag` and the
//! cache-busting version of `User.avatar_url`.

use std::fmt;
use std::str::FromStr;

use crate::ids::UserId;

/// The formats avatars are stored in (and the only ones uploads may be in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AvatarFormat {
    /// `image/png`.
    Png,
    /// `image/jpeg`.
    Jpeg,
    /// `image/webp`.
    WebP,
}

impl AvatarFormat {
    /// The media type, as stored and served in `Content-Type`.
    #[must_use]
    pub const fn content_type(self) -> &'static str {
        match self {
            AvatarFormat::Png => "image/png",
            AvatarFormat::Jpeg => "image/jpeg",
            AvatarFormat::WebP => "image/webp",
        }
    }

    /// The usual file extension, without the dot.
    #[must_use]
    pub const fn extension(self) -> &'static str {
        match self {
            AvatarFormat::Png => "png",
            AvatarFormat::Jpeg => "jpg",
            AvatarFormat::WebP => "webp",
        }
    }
}

/// The media type is not one avatars are stored in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown avatar content type {0:?}")]
pub struct UnknownAvatarFormat(pub String);

impl FromStr for AvatarFormat {
    type Err = UnknownAvatarFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "image/png" => Ok(AvatarFormat::Png),
            "image/jpeg" => Ok(AvatarFormat::Jpeg),
            "image/webp" => Ok(AvatarFormat::WebP),
            other => Err(UnknownAvatarFormat(other.to_owned())),
        }
    }
}

impl fmt::Display for AvatarFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.content_type())
    }
}

/// Where an avatar is stored: `{user id}-{SHA-256 of the stored bytes, lower-case hex}`.
///
/// Content-addressed, so a new image is a new key and a reader holding the old key never
/// sees half of the new file; scoped by user, so two users uploading the same picture do not
/// share (and cannot delete each other's) files. Safe as a file name or an object-store key:
/// only hex digits and hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AvatarKey {
    user: UserId,
    key: String,
}

/// Length of a SHA-256 digest in hex.
const DIGEST_HEX_LEN: usize = 64;
/// How many hex digits of the digest make the short version in `avatar_url`.
const VERSION_LEN: usize = 16;

/// The string is not an avatar key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid avatar key")]
pub struct InvalidAvatarKey;

impl AvatarKey {
    /// The key of `user`'s image whose bytes hash to `sha256_hex`.
    ///
    /// # Errors
    ///
    /// When `sha256_hex` is not 64 lower-case hex digits.
    pub fn new(user: UserId, sha256_hex: &str) -> Result<Self, InvalidAvatarKey> {
        if !is_digest(sha256_hex) {
            return Err(InvalidAvatarKey);
        }
        Ok(Self { user, key: format!("{user}-{sha256_hex}") })
    }

    /// Reads a key back from storage.
    ///
    /// # Errors
    ///
    /// When `raw` is not `{uuid}-{64 lower-case hex digits}`.
    pub fn parse(raw: &str) -> Result<Self, InvalidAvatarKey> {
        let (user, digest) = raw.split_at_checked(36).ok_or(InvalidAvatarKey)?;
        let digest = digest.strip_prefix('-').ok_or(InvalidAvatarKey)?;
        let user: UserId = user.parse().map_err(|_| InvalidAvatarKey)?;
        Self::new(user, digest)
    }

    /// The user whose image this is.
    #[must_use]
    pub fn user_id(&self) -> UserId {
        self.user
    }

    /// The SHA-256 of the stored bytes, in hex: a strong validator for `ETag`.
    #[must_use]
    pub fn digest(&self) -> &str {
        &self.key[self.key.len() - DIGEST_HEX_LEN..]
    }

    /// A short form of the digest that changes when the image changes (`?v=` of
    /// `avatar_url`).
    #[must_use]
    pub fn version(&self) -> &str {
        &self.digest()[..VERSION_LEN]
    }
}

fn is_digest(s: &str) -> bool {
    s.len() == DIGEST_HEX_LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl AsRef<str> for AvatarKey {
    fn as_ref(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for AvatarKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

/// A user's stored avatar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Avatar {
    /// Where the bytes are.
    pub key: AvatarKey,
    /// What they are.
    pub format: AvatarFormat,
}

impl Avatar {
    /// The object name a store keeps the bytes under: the key plus the extension.
    #[must_use]
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.key, self.format.extension())
    }
}

/// An upload after validation and re-encoding: what is stored and served. The original
/// bytes are gone by the time this exists.
#[derive(Clone, PartialEq, Eq)]
pub struct ProcessedImage {
    /// The re-encoded image, without metadata.
    pub bytes: Vec<u8>,
    /// Its format.
    pub format: AvatarFormat,
    /// SHA-256 of `bytes`, lower-case hex.
    pub sha256_hex: String,
    /// Width in pixels, at most 512.
    pub width: u32,
    /// Height in pixels, at most 512.
    pub height: u32,
}

impl fmt::Debug for ProcessedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessedImage")
            .field("bytes", &self.bytes.len())
            .field("format", &self.format)
            .field("sha256_hex", &self.sha256_hex)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// Why an upload is not an acceptable avatar. Every case is the client's; none is a
/// server failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRejected {
    /// The bytes are not PNG, JPEG or WebP (judged by their content, never by a name or a
    /// declared type).
    #[error("the file is not a PNG, JPEG or WebP image")]
    UnsupportedFormat,
    /// The bytes start like a supported image but do not decode: truncated, corrupt, or
    /// something else behind a valid header.
    #[error("the image could not be decoded")]
    Corrupt,
    /// The image declares more pixels than allowed; it is refused before decoding.
    #[error("the image is {width}×{height}, more than {max_pixels} pixels")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The limit.
        max_pixels: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_key_round_trips_and_exposes_its_digest_and_version() {
        let user = UserId::generate();
        let key = AvatarKey::new(user, DIGEST).expect("valid");
        assert_eq!(AvatarKey::parse(key.as_ref()), Ok(key.clone()));
        assert_eq!(key.digest(), DIGEST);
        assert_eq!(key.version(), &DIGEST[..16]);
        assert_eq!(key.as_ref(), format!("{user}-{DIGEST}"));
    }

    #[test]
    fn keys_that_could_escape_a_directory_or_are_malformed_are_refused() {
        let user = UserId::generate();
        for digest in ["", "../../etc/passwd", &DIGEST.to_uppercase(), &DIGEST[1..], &format!("{DIGEST}0")] {
            assert_eq!(AvatarKey::new(user, digest), Err(InvalidAvatarKey), "{digest}");
        }
        for raw in
            ["", "x", "../x", &format!("{user}/{DIGEST}"), &format!("not-a-uuid-at-all-but-36-chars-long-{DIGEST}")]
        {
            assert_eq!(AvatarKey::parse(raw), Err(InvalidAvatarKey), "{raw}");
        }
        assert_eq!(AvatarKey::parse("é"), Err(InvalidAvatarKey), "multi-byte input does not panic");
    }

    #[test]
    fn formats_round_trip_through_their_content_types() {
        for format in [AvatarFormat::Png, AvatarFormat::Jpeg, AvatarFormat::WebP] {
            assert_eq!(format.content_type().parse::<AvatarFormat>(), Ok(format));
        }
        assert!("image/svg+xml".parse::<AvatarFormat>().is_err());
    }
}
