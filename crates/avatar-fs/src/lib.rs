//! The domain's [`AvatarStore`] port on a local directory (`storage.avatar_dir`).
//!
//! Each avatar is one file named after its content-addressed key (`{user id}-{sha256}.{ext}`,
//! see [`Avatar::file_name`]). A write goes to a uniquely named temporary file in the same
//! directory, is flushed to disk, and is then renamed over the final name: readers see the
//! whole file or no file, never a partial one. Since a name always denotes the same bytes,
//! replacing an avatar writes a new name and removes the old one; nothing is ever rewritten in
//! place. Temporary files left by a crash are swept when the store opens.
//!
//! Every filesystem call runs on tokio's blocking pool. This crate depends on the domain only;
//! an S3-compatible store would be a sibling crate implementing the same port.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use gatehouse_domain::Avatar;
use gatehouse_domain::ports::AvatarStore;

/// Temporary files end with this; nothing else in the directory does.
const TEMP_SUFFIX: &str = ".partial";
/// Temporary files older than this are leftovers of a crash (a write takes milliseconds),
/// even when several instances share the directory.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// Avatars as files in one directory.
#[derive(Debug, Clone)]
pub struct FsAvatarStore {
    dir: PathBuf,
}

impl FsAvatarStore {
    /// Opens (creating it if needed) the directory and removes stale temporary files. Blocks
    /// briefly on the filesystem: call it at start-up.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created or read.
    pub fn open(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).with_context(|| format!("could not create the avatar directory {}", dir.display()))?;
        let store = Self { dir };
        store.sweep_stale_temporaries()?;
        Ok(store)
    }

    /// The directory the files are in.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, avatar: &Avatar) -> PathBuf {
        self.dir.join(avatar.file_name())
    }

    fn sweep_stale_temporaries(&self) -> anyhow::Result<()> {
        let entries = fs::read_dir(&self.dir).with_context(|| format!("could not list {}", self.dir.display()))?;
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let is_temp = entry.file_name().to_str().is_some_and(|name| name.ends_with(TEMP_SUFFIX));
            let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| now.duration_since(t).ok());
            if is_temp && age.is_some_and(|age| age > STALE_TEMP_AGE) {
                match fs::remove_file(entry.path()) {
                    Ok(()) => tracing::info!(file = %entry.path().display(), "removed a stale temporary avatar file"),
                    Err(e) => {
                        tracing::warn!(error = %e, file = %entry.path().display(), "could not remove a stale temporary avatar file")
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically: a temporary sibling, fsync, rename, and an fsync of the
/// directory so the rename survives a crash.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = dir.join(format!(".{}{TEMP_SUFFIX}", uuid::Uuid::now_v7().simple()));
    let written = File::create_new(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| fs::rename(&temp, path));
    if let Err(e) = renamed {
        // Best effort: the sweep at the next start removes what this cannot.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // Directories cannot be opened for syncing everywhere; the data itself is already durable.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> anyhow::Result<T> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        work()
    })
    .await
    .map_err(|e| anyhow!(e).context("an avatar file task panicked or was cancelled"))?
}

#[async_trait]
impl AvatarStore for FsAvatarStore {
    #[tracing::instrument(level = "debug", skip(self, bytes), fields(file = %avatar.file_name(), bytes = bytes.len()), err)]
    async fn put(&self, avatar: &Avatar, bytes: Vec<u8>) -> anyhow::Result<()> {
        let dir = self.dir.clone();
        let path = self.path_of(avatar);
        blocking(move || {
            write_atomically(&dir, &path, &bytes).with_context(|| format!("could not write {}", path.display()))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self), fields(file = %avatar.file_name()), err)]
    async fn get(&self, avatar: &Avatar) -> anyhow::Result<Option<Vec<u8>>> {
        let path = self.path_of(avatar);
        blocking(move || match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow!(e).context(format!("could not read {}", path.display()))),
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self), fields(file = %avatar.file_name()), err)]
    async fn delete(&self, avatar: &Avatar) -> anyhow::Result<()> {
        let path = self.path_of(avatar);
        blocking(move || match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(anyhow!(e).context(format!("could not remove {}", path.display()))),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use gatehouse_domain::{AvatarFormat, AvatarKey, UserId};

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("gatehouse-avatar-fs-{}", uuid::Uuid::now_v7().simple()));
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn avatar(fill: &str) -> Avatar {
        Avatar { key: AvatarKey::new(UserId::generate(), &fill.repeat(32)).expect("valid"), format: AvatarFormat::Png }
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("listable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn put_get_and_delete_round_trip_under_the_content_addressed_name() {
        let temp = TempDir::new();
        let store = FsAvatarStore::open(&temp.0).expect("opens and creates the directory");
        let image = avatar("ab");

        store.put(&image, vec![1, 2, 3]).await.expect("stored");

        assert_eq!(store.get(&image).await.expect("readable"), Some(vec![1, 2, 3]));
        assert_eq!(files_in(&temp.0), vec![image.file_name()], "one file, no temporary left");
        store.put(&image, vec![1, 2, 3]).await.expect("storing the same name again succeeds");
        store.delete(&image).await.expect("removed");
        assert_eq!(store.get(&image).await.expect("readable"), None);
        assert!(files_in(&temp.0).is_empty());
        store.delete(&image).await.expect("removing what is not there succeeds");
    }

    #[tokio::test]
    async fn an_unknown_avatar_is_none() {
        let temp = TempDir::new();
        let store = FsAvatarStore::open(&temp.0).expect("opens");
        assert_eq!(store.get(&avatar("cd")).await.expect("readable"), None);
    }

    #[tokio::test]
    async fn stale_temporary_files_are_swept_and_fresh_ones_kept() {
        let temp = TempDir::new();
        fs::create_dir_all(&temp.0).expect("created");
        let stale = temp.0.join(format!(".old{TEMP_SUFFIX}"));
        let fresh = temp.0.join(format!(".new{TEMP_SUFFIX}"));
        fs::write(&stale, b"half").expect("written");
        fs::write(&fresh, b"half").expect("written");
        File::options()
            .write(true)
            .open(&stale)
            .and_then(|f| f.set_modified(SystemTime::now() - STALE_TEMP_AGE * 2))
            .expect("backdated");

        FsAvatarStore::open(&temp.0).expect("opens");

        assert_eq!(
            files_in(&temp.0),
            vec![format!(".new{TEMP_SUFFIX}")],
            "another instance may be writing the fresh one"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_never_sees_a_partial_file_while_it_is_being_written() {
        let temp = TempDir::new();
        let store = Arc::new(FsAvatarStore::open(&temp.0).expect("opens"));
        let big = vec![7u8; 4 * 1024 * 1024];
        let images: Vec<Avatar> = (0..20).map(|i| avatar(&format!("{:02x}", i))).collect();
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (store, images, done) = (store.clone(), images.clone(), done.clone());
            tokio::spawn(async move {
                let mut seen = 0;
                while !done.load(Ordering::Relaxed) {
                    for image in &images {
                        if let Some(bytes) = store.get(image).await.expect("readable") {
                            assert_eq!(bytes.len(), 4 * 1024 * 1024, "a whole file or none");
                            seen += 1;
                        }
                    }
                }
                seen
            })
        };

        for image in &images {
            store.put(image, big.clone()).await.expect("stored");
        }
        done.store(true, Ordering::Relaxed);

        let seen = reader.await.expect("the reader finishes");
        assert!(seen > 0, "the reader saw files appear");
    }
}
