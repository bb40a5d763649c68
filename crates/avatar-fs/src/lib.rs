//! The domain's [`AvatarStore`] port on a local directory (`storage.avatar_dir`).
//!
//! Each avatar is one file named after its content-addressed key (`{user id}-{sha256}.{ext}`,
//! see [`Avatar::file_name`]). A write goes to a uniquely named temporary file in the same
//! directory, is flushed to disk, and is then renamed over the final name: readers see the
//! whole file or no file, never a partial one. Since a name always denotes the same bytes,
//! replacing an avatar writes a new name and removes the old one; nothing is ever rewritten in
//! place. Temporary files left by a crash are swept when the store opens.
//!
//! An image's last-write time is its file's modification time. [`AvatarStore::put`] always
//! writes a new file and renames it over the name, so storing an image that is already there
//! makes it recent again, as the port requires. A conditional removal
//! ([`AvatarStore::delete_if_written_before`]) first renames the file aside (atomic), then
//! checks the modification time of what it moved: a `put` that landed before the rename made
//! it recent, and it is renamed back; a `put` after the rename creates the name afresh.
//!
//! Every filesystem call runs on tokio's blocking pool. This crate depends on the domain only;
//! an S3-compatible store would be a sibling crate implementing the same port.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gatehouse_domain::ports::AvatarStore;
use gatehouse_domain::{Avatar, AvatarFormat, AvatarKey};

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

/// The avatar a file name denotes (see [`Avatar::file_name`]), if it is one.
fn avatar_named(name: &str) -> Option<Avatar> {
    let (key, extension) = name.rsplit_once('.')?;
    let format = [AvatarFormat::Png, AvatarFormat::Jpeg, AvatarFormat::WebP]
        .into_iter()
        .find(|format| format.extension() == extension)?;
    let avatar = Avatar { key: AvatarKey::parse(key).ok()?, format };
    (avatar.file_name() == name).then_some(avatar)
}

/// The modification time of `path`, as the last-write time of the image in it.
fn written_at(path: &Path) -> io::Result<DateTime<Utc>> {
    Ok(DateTime::<Utc>::from(fs::metadata(path)?.modified()?))
}

/// Removes `path` if its file was last written before `cutoff`; see the module documentation
/// for why it is renamed aside first.
fn remove_if_written_before(dir: &Path, path: &Path, cutoff: DateTime<Utc>) -> io::Result<bool> {
    let aside = dir.join(format!(".{}{TEMP_SUFFIX}", uuid::Uuid::now_v7().simple()));
    match fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    let old = match written_at(&aside) {
        Ok(at) => at < cutoff,
        Err(e) => {
            // Put it back rather than lose an image over a failed stat.
            fs::rename(&aside, path)?;
            return Err(e);
        }
    };
    if old {
        // If this fails, the file is a stale temporary, removed when a store next opens.
        fs::remove_file(&aside)?;
    } else {
        // Written again meanwhile, so maybe about to be referenced. Should a `put` have
        // recreated the name since, this replaces identical bytes (the name is their hash).
        fs::rename(&aside, path)?;
    }
    Ok(old)
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
    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn written_before(&self, cutoff: DateTime<Utc>) -> anyhow::Result<Vec<Avatar>> {
        let dir = self.dir.clone();
        blocking(move || {
            let entries = fs::read_dir(&dir).with_context(|| format!("could not list {}", dir.display()))?;
            let mut old = Vec::new();
            for entry in entries {
                let entry = entry.with_context(|| format!("could not list {}", dir.display()))?;
                let Some(avatar) = entry.file_name().to_str().and_then(avatar_named) else { continue };
                match written_at(&entry.path()) {
                    Ok(at) if at < cutoff => old.push(avatar),
                    Ok(_) => {}
                    // Removed since the listing (by another instance's sweep).
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(anyhow!(e).context(format!("could not read {}", entry.path().display()))),
                }
            }
            Ok(old)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self), fields(file = %avatar.file_name()), err)]
    async fn delete_if_written_before(&self, avatar: &Avatar, cutoff: DateTime<Utc>) -> anyhow::Result<bool> {
        let dir = self.dir.clone();
        let path = self.path_of(avatar);
        blocking(move || {
            remove_if_written_before(&dir, &path, cutoff)
                .with_context(|| format!("could not remove {}", path.display()))
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

    fn backdate(path: &Path, by: Duration) {
        File::options().write(true).open(path).and_then(|f| f.set_modified(SystemTime::now() - by)).expect("backdated");
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn minutes_ago(minutes: i64) -> DateTime<Utc> {
        Utc::now() - chrono::Duration::minutes(minutes)
    }

    #[tokio::test]
    async fn storing_an_image_that_is_already_there_makes_it_recent_again() {
        let temp = TempDir::new();
        let store = FsAvatarStore::open(&temp.0).expect("opens");
        let image = avatar("ab");
        store.put(&image, vec![1, 2, 3]).await.expect("stored");
        backdate(&temp.0.join(image.file_name()), HOUR);
        assert_eq!(store.written_before(minutes_ago(10)).await.expect("listed"), vec![image.clone()]);

        store.put(&image, vec![1, 2, 3]).await.expect("stored again");

        assert!(store.written_before(minutes_ago(10)).await.expect("listed").is_empty(), "the re-upload is recent");
        assert_eq!(store.get(&image).await.expect("readable"), Some(vec![1, 2, 3]));
    }

    #[tokio::test]
    async fn only_avatars_written_before_the_cutoff_are_listed() {
        let temp = TempDir::new();
        let store = FsAvatarStore::open(&temp.0).expect("opens");
        let (old, recent) = (avatar("ab"), Avatar { format: AvatarFormat::WebP, ..avatar("cd") });
        store.put(&old, vec![1]).await.expect("stored");
        store.put(&recent, vec![2]).await.expect("stored");
        backdate(&temp.0.join(old.file_name()), HOUR);
        for foreign in ["README.txt", "not-a-key.png", &format!(".x{TEMP_SUFFIX}")] {
            fs::write(temp.0.join(foreign), b"x").expect("written");
            backdate(&temp.0.join(foreign), HOUR);
        }

        let listed = store.written_before(minutes_ago(10)).await.expect("listed");

        assert_eq!(listed, vec![old], "old avatars only; never recent ones, foreign or temporary files");
        assert!(store.get(&recent).await.expect("readable").is_some());
    }

    #[tokio::test]
    async fn a_conditional_removal_removes_an_old_image_and_keeps_a_recent_one() {
        let temp = TempDir::new();
        let store = FsAvatarStore::open(&temp.0).expect("opens");
        let (old, recent) = (avatar("ab"), avatar("cd"));
        store.put(&old, vec![1]).await.expect("stored");
        store.put(&recent, vec![2]).await.expect("stored");
        backdate(&temp.0.join(old.file_name()), HOUR);

        assert!(store.delete_if_written_before(&old, minutes_ago(10)).await.expect("removal"), "old: removed");
        assert!(!store.delete_if_written_before(&recent, minutes_ago(10)).await.expect("removal"), "recent: kept");
        assert!(!store.delete_if_written_before(&old, minutes_ago(10)).await.expect("removal"), "gone: nothing to do");

        assert_eq!(store.get(&old).await.expect("readable"), None);
        assert_eq!(store.get(&recent).await.expect("readable"), Some(vec![2]));
        assert_eq!(files_in(&temp.0), vec![recent.file_name()], "nothing left aside");
    }

    #[tokio::test]
    async fn an_image_stored_again_survives_a_removal_planned_while_it_was_old() {
        let temp = TempDir::new();
        let store = FsAvatarStore::open(&temp.0).expect("opens");
        let image = avatar("ab");
        store.put(&image, vec![1]).await.expect("stored");
        backdate(&temp.0.join(image.file_name()), HOUR);
        let cutoff = minutes_ago(10);
        assert_eq!(store.written_before(cutoff).await.expect("listed"), vec![image.clone()], "a sweep plans it");

        store.put(&image, vec![1]).await.expect("a request stores the same image again");

        assert!(!store.delete_if_written_before(&image, cutoff).await.expect("removal"), "the put wins");
        assert_eq!(store.get(&image).await.expect("readable"), Some(vec![1]));
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
