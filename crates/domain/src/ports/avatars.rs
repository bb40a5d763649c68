//! Avatar images: turning untrusted uploads into safe images, and keeping the results.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::avatar::{Avatar, ImageRejected, ProcessedImage};

/// Validates and re-encodes uploaded images. Implementations decode untrusted bytes, so
/// they MUST bound the work and memory an upload can cost and run it off the async workers.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AvatarProcessor: Send + Sync {
    /// Turns an upload into the image to store: decoded by its content, oriented, stripped
    /// of all metadata, fitted within the avatar size and re-encoded.
    ///
    /// # Errors
    ///
    /// MUST return [`ImageRejected`] for every input it does not accept, whatever the
    /// bytes, and never panic. There is no separate infrastructure error: an implementation
    /// that fails internally on some input (a decoder bug) logs it and reports
    /// [`ImageRejected::Corrupt`], so no upload can make the server answer 500.
    async fn process(&self, upload: Vec<u8>) -> Result<ProcessedImage, ImageRejected>;
}

/// Keeps avatar images under their content-addressed names (a filesystem directory, or an
/// S3-compatible bucket). A name is written once with one content: storing under an existing
/// name stores the same bytes again.
///
/// Every stored object has a last-write time, which [`AvatarStore::put`] sets even when the
/// name already holds the bytes. Removal of unreferenced images relies on it (see
/// `services::avatars`): an image written recently may be about to be referenced by a request
/// still in flight, so only images last written before a grace period are ever removed by
/// [`AvatarStore::delete_if_written_before`].
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AvatarStore: Send + Sync {
    /// Stores `bytes` as `avatar`. Once this returns `Ok`, [`AvatarStore::get`] MUST return
    /// exactly these bytes, and no reader may ever observe a partial write (write elsewhere,
    /// then publish atomically). The object's last-write time MUST become the time of this
    /// call, also when `avatar` was already stored (re-uploading an image makes it recent).
    ///
    /// # Errors
    ///
    /// Only infrastructure failures (disk full, permissions, the bucket unreachable).
    async fn put(&self, avatar: &Avatar, bytes: Vec<u8>) -> anyhow::Result<()>;

    /// The bytes stored as `avatar`.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; nothing stored under the name is `Ok(None)`.
    async fn get(&self, avatar: &Avatar) -> anyhow::Result<Option<Vec<u8>>>;

    /// Removes `avatar`'s bytes.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; removing what is not there is `Ok(())`.
    async fn delete(&self, avatar: &Avatar) -> anyhow::Result<()>;

    /// The stored avatars last written before `cutoff`: the candidates for a sweep. Objects
    /// that are not avatars (foreign or temporary files) are not listed.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn written_before(&self, cutoff: DateTime<Utc>) -> anyhow::Result<Vec<Avatar>>;

    /// Removes `avatar`'s bytes only if they were last written before `cutoff`, and says
    /// whether it did. A [`AvatarStore::put`] of the same name racing with this call MUST
    /// win: either it happens first, making the object recent so it is kept, or it stores
    /// the bytes again afterwards. Removing what is not there is `Ok(false)`.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn delete_if_written_before(&self, avatar: &Avatar, cutoff: DateTime<Utc>) -> anyhow::Result<bool>;
}
