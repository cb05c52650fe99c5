//! What operators do to media: look, quarantine, delete, purge. Blobs go once nothing uses them.

use crate::MediaService;
use myelin_core::{Error, Result};
use myelin_store::{MediaRow, MediaScope};
use ruma::MxcUri;

/// Which media a purge removes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PurgeScope {
    All,
    Local,
    Remote,
}

fn parts(mxc: &str) -> Result<(String, String)> {
    let (server, media_id) = <&MxcUri>::from(mxc)
        .parts()
        .map_err(|e| Error::invalid_param(format!("\"{mxc}\" is not an mxc:// URI: {e}")))?;
    Ok((server.to_string(), media_id.to_owned()))
}

impl MediaService {
    /// The metadata of `mxc` and how many thumbnails it has.
    pub async fn info(&self, mxc: &str) -> Result<(MediaRow, i64)> {
        let (origin, media_id) = parts(mxc)?;
        let row = self.store.media().get(&origin, &media_id).await?.ok_or_else(|| Error::not_found("No such media"))?;
        let thumbnails = self.store.media().thumbnail_count(&origin, &media_id).await?;
        Ok((row, thumbnails))
    }

    /// Quarantined media answers 404 to everyone but server admins.
    pub async fn set_quarantined(&self, mxc: &str, quarantined: bool) -> Result<()> {
        let (origin, media_id) = parts(mxc)?;
        if !self.store.media().set_quarantined(&origin, &media_id, quarantined).await? {
            return Err(Error::not_found("No such media"));
        }
        Ok(())
    }

    /// Deletes the media and its thumbnails; returns the bytes freed on disk.
    pub async fn delete(&self, mxc: &str) -> Result<u64> {
        let (origin, media_id) = parts(mxc)?;
        self.delete_one(&origin, &media_id).await?.ok_or_else(|| Error::not_found("No such media"))
    }

    async fn delete_one(&self, origin: &str, media_id: &str) -> Result<Option<u64>> {
        let Some(blobs) = self.store.media().delete(origin, media_id).await? else {
            return Ok(None);
        };
        let mut freed = 0;
        for sha256 in blobs {
            let media = self.store.media();
            let in_use = async { media.blob_in_use(&sha256).await.map_err(std::io::Error::other) };
            freed += self
                .blobs
                .remove_unless_used(&sha256, in_use)
                .await
                .map_err(|e| Error::internal(format!("removing blob {sha256}: {e}")))?;
        }
        Ok(Some(freed))
    }

    /// Deletes all media created before `before_ms`; returns (items deleted, bytes freed).
    pub async fn purge(&self, before_ms: i64, scope: PurgeScope) -> Result<(u64, u64)> {
        let server = self.config.server_name.as_str();
        let scope = match scope {
            PurgeScope::All => MediaScope::All,
            PurgeScope::Local => MediaScope::Local(server),
            PurgeScope::Remote => MediaScope::Remote(server),
        };
        let (mut count, mut freed) = (0, 0);
        for (origin, media_id) in self.store.media().list_created_before(before_ms, scope).await? {
            if let Some(bytes) = self.delete_one(&origin, &media_id).await? {
                count += 1;
                freed += bytes;
            }
        }
        Ok((count, freed))
    }
}
