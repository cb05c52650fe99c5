//! The filesystem blob store: files named by their sha256, so identical content is stored once.
//! A blob is written to a temporary file while hashing and counting, flushed to disk, then
//! renamed into place: a reader never sees a partial blob, and a crash leaves only temp files.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::{
    io,
    path::{Path, PathBuf},
};
use tokio::{
    fs::{self, File},
    io::{AsyncWriteExt, BufWriter},
};

#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

/// A blob now durable in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBlob {
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug)]
pub enum BlobError {
    /// The body grew past the limit; nothing was kept.
    TooLarge,
    /// The client's body broke off.
    Body(String),
    Io(io::Error),
}

impl From<io::Error> for BlobError {
    fn from(e: io::Error) -> Self {
        BlobError::Io(e)
    }
}

impl FsBlobStore {
    /// Opens (creating) the store at `root`, and removes temp files a crash left behind. Only
    /// old ones: another process (the admin CLI, a second server) may be writing the young ones.
    pub fn open(root: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(root.join("blobs"))?;
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let stale = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
        for entry in std::fs::read_dir(&tmp)?.flatten() {
            if entry.metadata().and_then(|m| m.modified()).is_ok_and(|modified| modified < stale) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(FsBlobStore { root: root.to_owned() })
    }

    /// Where the blob with this sha256 lives; None for anything but 64 lowercase hex digits,
    /// so no path from outside ever reaches the filesystem.
    pub fn path(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| self.root.join("blobs").join(&sha256[..2]).join(sha256))
    }

    pub async fn open_blob(&self, sha256: &str) -> io::Result<File> {
        let path = self.path(sha256).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad blob name"))?;
        File::open(path).await
    }

    /// Streams `body` into the store, at most `max_size` bytes.
    pub async fn write<S, E>(&self, body: S, max_size: u64) -> Result<StoredBlob, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let temp = self.root.join("tmp").join(myelin_core::util::random_string(24));
        let result = self.write_temp(&temp, body, max_size).await;
        match result {
            Ok((sha256, size)) => match self.move_into_place(&temp, &sha256).await {
                Ok(()) => Ok(StoredBlob { sha256, size }),
                Err(e) => {
                    let _ = fs::remove_file(&temp).await;
                    Err(e.into())
                }
            },
            Err(e) => {
                let _ = fs::remove_file(&temp).await;
                Err(e)
            }
        }
    }

    async fn write_temp<S, E>(&self, temp: &Path, body: S, max_size: u64) -> Result<(String, u64), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let mut file = BufWriter::with_capacity(256 * 1024, File::create(temp).await?);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > max_size {
                return Err(BlobError::TooLarge);
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.get_ref().sync_all().await?;
        let digest = hasher.finalize();
        let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
        Ok((sha256, size))
    }

    async fn move_into_place(&self, temp: &Path, sha256: &str) -> io::Result<()> {
        let Some(target) = self.path(sha256) else {
            return Err(io::Error::other("computed a malformed digest"));
        };
        if fs::try_exists(&target).await? {
            // The same bytes are stored already.
            return fs::remove_file(temp).await;
        }
        let dir = target.parent().map(Path::to_owned).unwrap_or_else(|| self.root.clone());
        fs::create_dir_all(&dir).await?;
        fs::rename(temp, &target).await?;
        // The rename is durable only once the directory entry is on disk.
        File::open(&dir).await?.sync_all().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> {
        futures_util::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn stores_once_by_content_and_enforces_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let a = store.write(body(&[b"hello ", b"world"]), 100).await.unwrap();
        assert_eq!(a.size, 11);
        assert_eq!(a.sha256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        let b = store.write(body(&[b"hello world"]), 100).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(std::fs::read(store.path(&a.sha256).unwrap()).unwrap(), b"hello world");
        assert!(matches!(store.write(body(&[b"0123456789", b"x"]), 10).await, Err(BlobError::TooLarge)));
        // Nothing is left behind by the refused upload.
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert!(store.path("../../etc/passwd").is_none());
        assert!(store.path(&"A".repeat(64)).is_none());
    }
}
