//! Avatar images: turning untrusted uploads into safe images, and keeping the results.

use async_trait::async_trait;

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
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AvatarStore: Send + Sync {
    /// Stores `bytes` as `avatar`. Once this returns `Ok`, [`AvatarStore::get`] MUST return
    /// exactly these bytes, and no reader may ever observe a partial write (write elsewhere,
    /// then publish atomically).
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
}
