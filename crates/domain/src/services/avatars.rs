//! Profile images: uploading, removing and reading them.
//!
//! An upload is processed (validated, re-encoded) before anything is stored; the re-encoded
//! bytes are stored under their content-addressed name before the user row points at them;
//! the reference changes, with its `user.avatar_changed` event, in one transaction; only then
//! is the replaced image removed. A reader therefore only ever follows a reference to a
//! complete file.
//!
//! # Removing images safely: the grace period
//!
//! Storing an image and pointing the user at it are two steps, so a request can hold a stored
//! image it has not yet referenced. If another request of the same user removed that image in
//! between, the first would then commit a reference to a deleted file. This happens when a user
//! uploads their current image again (same bytes, same name: the file already exists) while
//! another upload or a removal replaces it. A crash between the two steps leaves a file that
//! nothing references.
//!
//! Both are handled like `git gc` handles loose objects. [`AvatarStore::put`] refreshes an
//! image's last-write time even when it already exists, and an image is only ever removed when
//! it was last written more than [`AvatarSettings::sweep_grace`] ago
//! ([`AvatarStore::delete_if_written_before`], which a racing `put` wins) and no user
//! references it. A replaced or removed image is removed at once when it is older than the
//! grace, else left to [`AvatarService::sweep`], which removes every unreferenced image older
//! than the grace (crash leftovers too) and runs periodically on every instance (running it
//! twice at once is harmless). This is correct as long as no request takes longer than the
//! grace between storing an image and committing its reference (milliseconds; the grace is
//! minutes). Deleting an account removes its image at once, unconditionally: a deleted user
//! can no longer be pointed at an image, so no request can be about to reference it.
//!
//! [`AvatarStore::put`]: crate::ports::AvatarStore::put
//! [`AvatarStore::delete_if_written_before`]: crate::ports::AvatarStore::delete_if_written_before

use chrono::Duration;

use crate::activity::{ActivityAction, NewActivity};
use crate::avatar::{Avatar, AvatarKey, ImageRejected};
use crate::ids::UserId;
use crate::ports::UpdateUserError;
use crate::services::sessions::Principal;
use crate::services::{Ports, discard_avatar};
use crate::session::RequestContext;
use crate::user::User;

/// How many stored images one reference query asks about during a sweep.
const SWEEP_BATCH: usize = 500;

/// How many times at most a read follows the user's avatar reference when the file it named was
/// removed in between (the avatar was replaced while being read). Each further attempt needs a
/// newer reference, so this bounds only a user who replaces their avatar without pause.
const READ_ATTEMPTS: usize = 16;

/// Why an avatar could not be set.
#[derive(Debug, thiserror::Error)]
pub enum SetAvatarError {
    /// The upload is not an acceptable image.
    #[error(transparent)]
    Rejected(#[from] ImageRejected),
    /// The account no longer exists.
    #[error("the account no longer exists")]
    NotFound,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why an avatar could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveAvatarError {
    /// The account no longer exists.
    #[error("the account no longer exists")]
    NotFound,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why an avatar could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GetAvatarError {
    /// No such user, or the user has no avatar.
    #[error("no avatar")]
    NotFound,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// A stored avatar and its bytes, ready to serve.
#[derive(Clone, PartialEq, Eq)]
pub struct AvatarImage {
    /// Which avatar, in which format.
    pub avatar: Avatar,
    /// The stored (re-encoded) image.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for AvatarImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvatarImage").field("avatar", &self.avatar).field("bytes", &self.bytes.len()).finish()
    }
}

/// How images are cleaned up (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvatarSettings {
    /// Images written more recently than this are never removed: a request may be about to
    /// reference them. It must exceed the longest time a request takes between storing an
    /// image and committing its reference.
    pub sweep_grace: Duration,
}

impl Default for AvatarSettings {
    fn default() -> Self {
        Self { sweep_grace: Duration::minutes(10) }
    }
}

/// What one [`AvatarService::sweep`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Stored images older than the grace period.
    pub examined: usize,
    /// Of those, the ones removed (no user references them).
    pub removed: usize,
    /// The ones kept because a user references them.
    pub referenced: usize,
    /// The ones kept because they were written again while the sweep ran, or were already gone.
    pub skipped: usize,
    /// The ones that could not be removed (logged; the next sweep tries again).
    pub failed: usize,
}

/// Use cases on profile images.
#[derive(Clone)]
pub struct AvatarService {
    ports: Ports,
    settings: AvatarSettings,
}

impl AvatarService {
    /// Builds the service over the given ports.
    #[must_use]
    pub fn new(ports: Ports, settings: AvatarSettings) -> Self {
        Self { ports, settings }
    }

    /// Makes `upload` the caller's avatar, replacing (and removing) any previous one, and
    /// records `user.avatar_changed`. Returns the updated account.
    ///
    /// # Errors
    ///
    /// `Rejected` when the upload is not an acceptable image (nothing is stored), `NotFound`
    /// when the account was deleted meanwhile.
    #[tracing::instrument(skip(self, upload, context), fields(user_id = %principal.user_id, upload_bytes = upload.len()))]
    pub async fn set_avatar(
        &self,
        principal: &Principal,
        upload: Vec<u8>,
        context: RequestContext,
    ) -> Result<User, SetAvatarError> {
        let image = self.ports.avatar_processor.process(upload).await?;
        let key = AvatarKey::new(principal.user_id, &image.sha256_hex)
            .map_err(|e| anyhow::anyhow!(e).context("the image processor returned an invalid digest"))?;
        let avatar = Avatar { key, format: image.format };
        let now = self.ports.clock.now();
        let event = NewActivity::by_user(principal.user_id, ActivityAction::AvatarChanged, &context, now)
            .with_detail("change", "uploaded")
            .with_detail("version", avatar.key.version())
            .with_detail("content_type", avatar.format)
            .with_detail("size", format!("{}x{}", image.width, image.height));
        self.ports.avatar_store.put(&avatar, image.bytes).await?;
        match self.ports.users.set_avatar(principal.user_id, Some(avatar.clone()), now, event).await {
            Ok(change) => {
                if let Some(previous) = change.previous.filter(|previous| *previous != avatar) {
                    self.discard_replaced(&previous).await;
                }
                Ok(change.user)
            }
            Err(UpdateUserError::NotFound) => {
                discard_avatar(&self.ports, &avatar).await;
                Err(SetAvatarError::NotFound)
            }
            // The same image may already be this user's current avatar, so the file stays;
            // at worst it is an unreferenced file, which the log names.
            Err(e @ (UpdateUserError::UsernameTaken | UpdateUserError::LastAdmin)) => Err(SetAvatarError::Unexpected(
                anyhow::anyhow!("{e}: impossible on an avatar change (avatar file {})", avatar.file_name()),
            )),
            Err(UpdateUserError::Unexpected(e)) => Err(SetAvatarError::Unexpected(
                e.context(format!("could not point the user at avatar file {}", avatar.file_name())),
            )),
        }
    }

    /// Removes the caller's avatar, if they have one, and records `user.avatar_changed`.
    /// Removing an avatar that is not there succeeds and records nothing.
    ///
    /// # Errors
    ///
    /// `NotFound` when the account was deleted.
    #[tracing::instrument(skip(self, context), fields(user_id = %principal.user_id))]
    pub async fn remove_avatar(&self, principal: &Principal, context: RequestContext) -> Result<(), RemoveAvatarError> {
        let user = self.ports.users.find_by_id(principal.user_id).await?.ok_or(RemoveAvatarError::NotFound)?;
        let Some(current) = user.avatar else { return Ok(()) };
        let now = self.ports.clock.now();
        let event = NewActivity::by_user(principal.user_id, ActivityAction::AvatarChanged, &context, now)
            .with_detail("change", "removed")
            .with_detail("version", current.key.version());
        let change = self.ports.users.set_avatar(principal.user_id, None, now, event).await.map_err(|e| match e {
            UpdateUserError::NotFound => RemoveAvatarError::NotFound,
            e @ (UpdateUserError::UsernameTaken | UpdateUserError::LastAdmin) => {
                RemoveAvatarError::Unexpected(anyhow::anyhow!("{e}: impossible on an avatar change"))
            }
            UpdateUserError::Unexpected(e) => RemoveAvatarError::Unexpected(e),
        })?;
        if let Some(previous) = change.previous {
            self.discard_replaced(&previous).await;
        }
        Ok(())
    }

    /// Removes an image the user no longer references, unless it was written within the
    /// grace period: then another request of the same user may have just stored it again and
    /// be about to reference it, and [`AvatarService::sweep`] removes it later if not.
    async fn discard_replaced(&self, avatar: &Avatar) {
        let cutoff = self.ports.clock.now() - self.settings.sweep_grace;
        match self.ports.avatar_store.delete_if_written_before(avatar, cutoff).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(file = %avatar.file_name(), "a replaced avatar is recent; the sweep removes it later");
            }
            Err(e) => {
                tracing::error!(error = %e, file = %avatar.file_name(), "a replaced avatar could not be removed; the sweep tries again");
            }
        }
    }

    /// Removes every stored image that no user references and that was last written before
    /// the grace period: images replaced within the grace, and files left by a crash between
    /// storing an image and referencing it. Safe to run on several instances at once.
    ///
    /// # Errors
    ///
    /// When the stored images or the references cannot be listed; a file that cannot be
    /// removed is logged and counted instead.
    #[tracing::instrument(skip(self))]
    pub async fn sweep(&self) -> anyhow::Result<SweepReport> {
        let cutoff = self.ports.clock.now() - self.settings.sweep_grace;
        let candidates = self.ports.avatar_store.written_before(cutoff).await?;
        let mut report = SweepReport { examined: candidates.len(), ..SweepReport::default() };
        for batch in candidates.chunks(SWEEP_BATCH) {
            let keys = batch.iter().map(|avatar| avatar.key.clone()).collect();
            let referenced = self.ports.users.referenced_avatar_keys(keys).await?;
            for avatar in batch {
                if referenced.contains(&avatar.key) {
                    report.referenced += 1;
                    continue;
                }
                match self.ports.avatar_store.delete_if_written_before(avatar, cutoff).await {
                    Ok(true) => report.removed += 1,
                    Ok(false) => report.skipped += 1,
                    Err(e) => {
                        tracing::error!(error = %e, file = %avatar.file_name(), "an unreferenced avatar could not be removed");
                        report.failed += 1;
                    }
                }
            }
        }
        if report.removed > 0 || report.failed > 0 {
            tracing::info!(?report, "swept unreferenced avatars");
        }
        Ok(report)
    }

    /// The avatar user `id` has now, without reading its bytes (enough to answer a
    /// conditional request).
    ///
    /// # Errors
    ///
    /// `NotFound` when the user does not exist (or is deleted) or has no avatar.
    #[tracing::instrument(skip(self))]
    pub async fn current_avatar(&self, id: UserId) -> Result<Avatar, GetAvatarError> {
        self.ports.users.find_by_id(id).await?.and_then(|user| user.avatar).ok_or(GetAvatarError::NotFound)
    }

    /// The avatar of user `id` and its bytes. When the avatar is replaced while it is being
    /// read, this follows the new reference rather than failing; it gives up when the same
    /// reference names a missing file twice (the file is really gone).
    ///
    /// # Errors
    ///
    /// `NotFound` when the user does not exist (or is deleted) or has no avatar.
    #[tracing::instrument(skip(self))]
    pub async fn get_avatar(&self, id: UserId) -> Result<AvatarImage, GetAvatarError> {
        let mut missing: Option<Avatar> = None;
        for _ in 0..READ_ATTEMPTS {
            let user = self.ports.users.find_by_id(id).await?.ok_or(GetAvatarError::NotFound)?;
            let avatar = user.avatar.ok_or(GetAvatarError::NotFound)?;
            if missing.as_ref() == Some(&avatar) {
                break;
            }
            if let Some(bytes) = self.ports.avatar_store.get(&avatar).await? {
                return Ok(AvatarImage { avatar, bytes });
            }
            missing = Some(avatar);
        }
        tracing::warn!(user_id = %id, "the user's avatar reference names a file that is not stored");
        Err(GetAvatarError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use mockall::predicate::eq;

    use super::*;
    use crate::avatar::{AvatarFormat, ProcessedImage};
    use crate::ids::SessionId;
    use crate::ports::{AvatarChange, MockSessionRepository, MockUserRepository};
    use crate::services::testing::{Mocks, now, ports_with_mocks, sample_user};

    fn principal(user: &User) -> Principal {
        Principal { user_id: user.id, session_id: SessionId::generate(), roles: user.roles.clone() }
    }

    fn service(users: MockUserRepository, mocks: Mocks) -> AvatarService {
        AvatarService::new(ports_with_mocks(users, MockSessionRepository::new(), mocks), AvatarSettings::default())
    }

    fn cutoff() -> chrono::DateTime<chrono::Utc> {
        now() - AvatarSettings::default().sweep_grace
    }

    fn processed(fill: &str) -> ProcessedImage {
        ProcessedImage {
            bytes: vec![1, 2, 3],
            format: AvatarFormat::Jpeg,
            sha256_hex: fill.repeat(32),
            width: 512,
            height: 384,
        }
    }

    fn avatar_of(user: &User, fill: &str, format: AvatarFormat) -> Avatar {
        Avatar { key: AvatarKey::new(user.id, &fill.repeat(32)).expect("valid key"), format }
    }

    fn processing(image: ProcessedImage) -> Mocks {
        let mut mocks = Mocks::default();
        mocks.avatar_processor.expect_process().with(eq(vec![9u8, 9, 9])).times(1).return_once(move |_| Ok(image));
        mocks
    }

    #[tokio::test]
    async fn an_upload_is_stored_before_the_user_points_at_it_and_the_replaced_image_is_removed() {
        let user = sample_user();
        let new = avatar_of(&user, "ab", AvatarFormat::Jpeg);
        let old = avatar_of(&user, "cd", AvatarFormat::Png);
        let mut sequence = mockall::Sequence::new();
        let mut mocks = processing(processed("ab"));
        mocks
            .avatar_store
            .expect_put()
            .with(eq(new.clone()), eq(vec![1u8, 2, 3]))
            .times(1)
            .in_sequence(&mut sequence)
            .returning(|_, _| Ok(()));
        let mut users = MockUserRepository::new();
        let (stored, previous) = (user.clone(), old.clone());
        let expected = new.clone();
        users
            .expect_set_avatar()
            .withf(move |id, avatar, at, event| {
                *id == stored.id
                    && avatar.as_ref() == Some(&expected)
                    && *at == now()
                    && event.action == ActivityAction::AvatarChanged
                    && event.details.get("version").map(String::as_str) == Some(expected.key.version())
            })
            .times(1)
            .in_sequence(&mut sequence)
            .return_once(move |_, _, _, _| Ok(AvatarChange { user: sample_user(), previous: Some(previous) }));
        mocks
            .avatar_store
            .expect_delete_if_written_before()
            .with(eq(old), eq(cutoff()))
            .times(1)
            .in_sequence(&mut sequence)
            .returning(|_, _| Ok(true));

        let result =
            service(users, mocks).set_avatar(&principal(&user), vec![9, 9, 9], RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn a_replaced_image_written_within_the_grace_period_is_left_for_the_sweep() {
        let user = sample_user();
        let old = avatar_of(&user, "cd", AvatarFormat::Png);
        let mut mocks = processing(processed("ab"));
        mocks.avatar_store.expect_put().times(1).returning(|_, _| Ok(()));
        mocks
            .avatar_store
            .expect_delete_if_written_before()
            .with(eq(old.clone()), eq(cutoff()))
            .times(1)
            .returning(|_, _| Ok(false));
        mocks.avatar_store.expect_delete().never();
        let mut users = MockUserRepository::new();
        users
            .expect_set_avatar()
            .times(1)
            .return_once(move |_, _, _, _| Ok(AvatarChange { user: sample_user(), previous: Some(old) }));

        let result =
            service(users, mocks).set_avatar(&principal(&user), vec![9, 9, 9], RequestContext::default()).await;

        assert!(result.is_ok(), "a recent image is kept, and that is no failure: {result:?}");
    }

    #[tokio::test]
    async fn a_replaced_image_that_cannot_be_removed_does_not_fail_the_upload() {
        let user = sample_user();
        let old = avatar_of(&user, "cd", AvatarFormat::Png);
        let mut mocks = processing(processed("ab"));
        mocks.avatar_store.expect_put().times(1).returning(|_, _| Ok(()));
        mocks.avatar_store.expect_delete_if_written_before().times(1).returning(|_, _| Err(anyhow::anyhow!("EIO")));
        let mut users = MockUserRepository::new();
        users
            .expect_set_avatar()
            .times(1)
            .return_once(move |_, _, _, _| Ok(AvatarChange { user: sample_user(), previous: Some(old) }));

        let result =
            service(users, mocks).set_avatar(&principal(&user), vec![9, 9, 9], RequestContext::default()).await;

        assert!(result.is_ok(), "the reference is committed; the sweep retries the file: {result:?}");
    }

    #[tokio::test]
    async fn the_sweep_removes_only_unreferenced_images_older_than_the_grace_period() {
        let user = sample_user();
        let referenced = avatar_of(&user, "aa", AvatarFormat::Jpeg);
        let orphan = avatar_of(&user, "bb", AvatarFormat::Png);
        let rewritten = avatar_of(&user, "cc", AvatarFormat::Png);
        let mut mocks = Mocks::default();
        let listed = vec![referenced.clone(), orphan.clone(), rewritten.clone()];
        mocks.avatar_store.expect_written_before().with(eq(cutoff())).times(1).return_once(move |_| Ok(listed));
        mocks
            .avatar_store
            .expect_delete_if_written_before()
            .with(eq(orphan.clone()), eq(cutoff()))
            .times(1)
            .returning(|_, _| Ok(true));
        mocks
            .avatar_store
            .expect_delete_if_written_before()
            .with(eq(rewritten.clone()), eq(cutoff()))
            .times(1)
            .returning(|_, _| Ok(false));
        mocks.avatar_store.expect_delete().never();
        let mut users = MockUserRepository::new();
        let keys = vec![referenced.key.clone(), orphan.key.clone(), rewritten.key.clone()];
        let kept = referenced.key.clone();
        users
            .expect_referenced_avatar_keys()
            .with(eq(keys))
            .times(1)
            .return_once(move |_| Ok(std::collections::HashSet::from([kept])));

        let report = service(users, mocks).sweep().await.expect("swept");

        assert_eq!(report, SweepReport { examined: 3, removed: 1, referenced: 1, skipped: 1, failed: 0 });
    }

    #[tokio::test]
    async fn a_sweep_with_nothing_old_asks_no_reference_query() {
        let mut mocks = Mocks::default();
        mocks.avatar_store.expect_written_before().times(1).returning(|_| Ok(Vec::new()));
        let mut users = MockUserRepository::new();
        users.expect_referenced_avatar_keys().never();

        let report = service(users, mocks).sweep().await.expect("swept");

        assert_eq!(report, SweepReport::default());
    }

    #[tokio::test]
    async fn a_sweep_that_cannot_read_references_removes_nothing() {
        let user = sample_user();
        let orphan = avatar_of(&user, "bb", AvatarFormat::Png);
        let mut mocks = Mocks::default();
        mocks.avatar_store.expect_written_before().times(1).return_once(move |_| Ok(vec![orphan]));
        mocks.avatar_store.expect_delete_if_written_before().never();
        let mut users = MockUserRepository::new();
        users.expect_referenced_avatar_keys().times(1).returning(|_| Err(anyhow::anyhow!("database down")));

        let result = service(users, mocks).sweep().await;

        assert!(result.is_err(), "{result:?}");
    }

    #[tokio::test]
    async fn uploading_the_current_image_again_keeps_its_file() {
        let user = sample_user();
        let same = avatar_of(&user, "ab", AvatarFormat::Jpeg);
        let mut mocks = processing(processed("ab"));
        mocks.avatar_store.expect_put().times(1).returning(|_, _| Ok(()));
        mocks.avatar_store.expect_delete().never();
        mocks.avatar_store.expect_delete_if_written_before().never();
        let mut users = MockUserRepository::new();
        users
            .expect_set_avatar()
            .times(1)
            .return_once(move |_, _, _, _| Ok(AvatarChange { user: sample_user(), previous: Some(same) }));

        let result =
            service(users, mocks).set_avatar(&principal(&user), vec![9, 9, 9], RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn a_rejected_upload_stores_and_changes_nothing() {
        let user = sample_user();
        let mut mocks = Mocks::default();
        mocks.avatar_processor.expect_process().times(1).returning(|_| Err(ImageRejected::Corrupt));
        mocks.avatar_store.expect_put().never();
        let mut users = MockUserRepository::new();
        users.expect_set_avatar().never();

        let result =
            service(users, mocks).set_avatar(&principal(&user), vec![9, 9, 9], RequestContext::default()).await;

        assert!(matches!(result, Err(SetAvatarError::Rejected(ImageRejected::Corrupt))), "{result:?}");
    }

    #[tokio::test]
    async fn an_upload_for_a_deleted_account_removes_the_file_it_stored() {
        let user = sample_user();
        let new = avatar_of(&user, "ab", AvatarFormat::Jpeg);
        let mut mocks = processing(processed("ab"));
        mocks.avatar_store.expect_put().times(1).returning(|_, _| Ok(()));
        mocks.avatar_store.expect_delete().with(eq(new)).times(1).returning(|_| Ok(()));
        let mut users = MockUserRepository::new();
        users.expect_set_avatar().times(1).returning(|_, _, _, _| Err(UpdateUserError::NotFound));

        let result =
            service(users, mocks).set_avatar(&principal(&user), vec![9, 9, 9], RequestContext::default()).await;

        assert!(matches!(result, Err(SetAvatarError::NotFound)), "{result:?}");
    }

    #[tokio::test]
    async fn a_store_failure_changes_no_reference() {
        let user = sample_user();
        let mut mocks = processing(processed("ab"));
        mocks.avatar_store.expect_put().times(1).returning(|_, _| Err(anyhow::anyhow!("disk full")));
        let mut users = MockUserRepository::new();
        users.expect_set_avatar().never();

        let result =
            service(users, mocks).set_avatar(&principal(&user), vec![9, 9, 9], RequestContext::default()).await;

        assert!(matches!(result, Err(SetAvatarError::Unexpected(_))), "{result:?}");
    }

    #[tokio::test]
    async fn removing_an_avatar_clears_the_reference_records_it_and_removes_the_file() {
        let mut user = sample_user();
        let old = avatar_of(&user, "cd", AvatarFormat::Png);
        user.avatar = Some(old.clone());
        let mut users = MockUserRepository::new();
        let found = user.clone();
        users.expect_find_by_id().with(eq(user.id)).times(1).return_once(move |_| Ok(Some(found)));
        let previous = old.clone();
        users
            .expect_set_avatar()
            .withf(|_, avatar, _, event| {
                avatar.is_none()
                    && event.action == ActivityAction::AvatarChanged
                    && event.details.get("change").map(String::as_str) == Some("removed")
            })
            .times(1)
            .return_once(move |_, _, _, _| Ok(AvatarChange { user: sample_user(), previous: Some(previous) }));
        let mut mocks = Mocks::default();
        mocks
            .avatar_store
            .expect_delete_if_written_before()
            .with(eq(old), eq(cutoff()))
            .times(1)
            .returning(|_, _| Ok(true));

        let result = service(users, mocks).remove_avatar(&principal(&user), RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn removing_no_avatar_records_nothing() {
        let user = sample_user();
        let mut users = MockUserRepository::new();
        let found = user.clone();
        users.expect_find_by_id().times(1).return_once(move |_| Ok(Some(found)));
        users.expect_set_avatar().never();

        let result = service(users, Mocks::default()).remove_avatar(&principal(&user), RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn reading_follows_a_reference_that_moved_while_the_old_file_was_removed() {
        let mut before = sample_user();
        let old = avatar_of(&before, "cd", AvatarFormat::Png);
        let new = avatar_of(&before, "ab", AvatarFormat::Jpeg);
        before.avatar = Some(old.clone());
        let mut after = before.clone();
        after.avatar = Some(new.clone());
        let id = before.id;
        let mut users = MockUserRepository::new();
        let mut sequence = mockall::Sequence::new();
        users.expect_find_by_id().times(1).in_sequence(&mut sequence).return_once(move |_| Ok(Some(before)));
        users.expect_find_by_id().times(1).in_sequence(&mut sequence).return_once(move |_| Ok(Some(after)));
        let mut mocks = Mocks::default();
        mocks.avatar_store.expect_get().with(eq(old)).times(1).returning(|_| Ok(None));
        mocks.avatar_store.expect_get().with(eq(new.clone())).times(1).returning(|_| Ok(Some(vec![7])));

        let image = service(users, mocks).get_avatar(id).await.expect("the new image");

        assert_eq!(image, AvatarImage { avatar: new, bytes: vec![7] });
    }

    #[tokio::test]
    async fn a_user_without_an_avatar_has_none_to_read() {
        let user = sample_user();
        let id = user.id;
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().times(1).return_once(move |_| Ok(Some(user)));

        let result = service(users, Mocks::default()).get_avatar(id).await;

        assert!(matches!(result, Err(GetAvatarError::NotFound)), "{result:?}");
    }

    #[tokio::test]
    async fn a_reference_whose_file_stays_missing_is_not_found_after_one_more_look() {
        let mut user = sample_user();
        let lost = avatar_of(&user, "ef", AvatarFormat::WebP);
        user.avatar = Some(lost.clone());
        let id = user.id;
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().times(2).returning(move |_| Ok(Some(user.clone())));
        let mut mocks = Mocks::default();
        mocks.avatar_store.expect_get().with(eq(lost)).times(1).returning(|_| Ok(None));

        let result = service(users, mocks).get_avatar(id).await;

        assert!(matches!(result, Err(GetAvatarError::NotFound)), "{result:?}");
    }
}
