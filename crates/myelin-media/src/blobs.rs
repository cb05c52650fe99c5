//! The filesystem blob store: files named by their sha256, so identical content is stored once.
//! A blob is written to a temporary file while hashing and counting, flushed to disk, then
//! renamed into place: a reader never sees a partial blob, and a crash leaves only temp files.
//! Content that is stored already is recognised by its hash and not written a second time.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::{
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
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
        let blobs = root.join("blobs");
        std::fs::create_dir_all(&blobs)?;
        // All 256 fan-out directories up front (and their entries made durable once), so an
        // upload never pays for creating one and syncing its parent.
        let mut created = false;
        for byte in 0..=255u8 {
            let dir = blobs.join(format!("{byte:02x}"));
            if !dir.exists() {
                std::fs::create_dir(&dir)?;
                created = true;
            }
        }
        if created {
            std::fs::File::open(&blobs)?.sync_all()?;
        }
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

    /// Streams `length` bytes of a blob from `start`. One blocking thread reads the whole
    /// range in large chunks and hands them over a short channel: no thread-pool round trip per
    /// read, and memory stays at a few chunks whatever the size. Opening errors surface here;
    /// a read failing later ends the stream with the error.
    pub fn read_range(
        &self,
        sha256: &str,
        start: u64,
        length: u64,
    ) -> io::Result<impl Stream<Item = io::Result<Bytes>> + Send + 'static> {
        use std::io::{Read, Seek};
        let path = self.path(sha256).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad blob name"))?;
        let mut file = std::fs::File::open(path)?;
        if start > 0 {
            file.seek(io::SeekFrom::Start(start))?;
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(READ_CHANNEL_CHUNKS);
        tokio::task::spawn_blocking(move || {
            let mut left = length;
            while left > 0 {
                let want = left.min(READ_CHUNK as u64) as usize;
                let mut buffer = bytes::BytesMut::zeroed(want);
                let result = match file.read(&mut buffer) {
                    Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the blob is shorter than its record")),
                    Ok(n) => {
                        buffer.truncate(n);
                        left -= n as u64;
                        Ok(buffer.freeze())
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = result.is_err();
                // The client went away: stop reading.
                if tx.blocking_send(result).is_err() || failed {
                    return;
                }
            }
        });
        Ok(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
    }

    /// Streams `body` into the store, at most `max_size` bytes.
    ///
    /// The async side only receives and counts; a blocking thread hashes and writes, so the
    /// network and the disk work at the same time. A bounded channel between them keeps memory
    /// flat whatever the size.
    pub async fn write<S, E>(&self, body: S, max_size: u64) -> Result<StoredBlob, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
        let store = self.clone();
        let writer = tokio::task::spawn_blocking(move || store.write_blocking(rx));
        let received = Self::receive(body, max_size, &tx).await;
        if received.is_ok() {
            // The writer may have failed (disk full) and closed its end: its error says why.
            let _ = tx.send(Chunk::End).await;
        }
        drop(tx);
        let written = writer.await.map_err(|e| BlobError::Io(io::Error::other(e)))?;
        received?;
        written
    }

    async fn receive<S, E>(body: S, max_size: u64, tx: &tokio::sync::mpsc::Sender<Chunk>) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let mut size: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > max_size {
                return Err(BlobError::TooLarge);
            }
            if tx.send(Chunk::Data(chunk)).await.is_err() {
                // The writer stopped early; its result carries the error.
                return Ok(());
            }
        }
        Ok(())
    }

    /// The writer thread: hash and write to a temp file, then move it into place (or drop it
    /// when the same content is stored already). The temp file is removed on every failure.
    fn write_blocking(&self, rx: tokio::sync::mpsc::Receiver<Chunk>) -> Result<StoredBlob, BlobError> {
        let temp = self.root.join("tmp").join(myelin_core::util::random_string(24));
        let result = self.write_temp(&temp, rx).and_then(|blob| {
            self.move_into_place(&temp, &blob.sha256)?;
            Ok(blob)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    fn write_temp(&self, temp: &Path, mut rx: tokio::sync::mpsc::Receiver<Chunk>) -> Result<StoredBlob, BlobError> {
        let mut file = BufWriter::with_capacity(WRITE_BUFFER, std::fs::File::create(temp)?);
        let mut hasher = Sha256::new();
        let (mut size, mut flushed) = (0u64, 0u64);
        loop {
            match rx.blocking_recv() {
                Some(Chunk::Data(chunk)) => {
                    hasher.update(&chunk);
                    file.write_all(&chunk)?;
                    size += chunk.len() as u64;
                    if size - flushed >= WRITEBACK_STEP {
                        file.flush()?;
                        start_writeback(file.get_ref(), flushed, size - flushed);
                        flushed = size;
                    }
                }
                Some(Chunk::End) => break,
                // The receiving side gave up (too large, body broke off): keep nothing.
                None => return Err(BlobError::Body("upload interrupted".into())),
            }
        }
        file.flush()?;
        let digest = hasher.finalize();
        let sha256: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let Some(target) = self.path(&sha256) else {
            return Err(io::Error::other("computed a malformed digest").into());
        };
        // Content stored already needs no second copy on disk, so skip the flush too.
        if !target.exists() {
            file.get_ref().sync_data()?;
        }
        Ok(StoredBlob { sha256, size })
    }

    fn move_into_place(&self, temp: &Path, sha256: &str) -> io::Result<()> {
        let Some(target) = self.path(sha256) else {
            return Err(io::Error::other("computed a malformed digest"));
        };
        if target.exists() {
            // The same bytes are stored already.
            return std::fs::remove_file(temp);
        }
        let dir = target.parent().map(Path::to_owned).unwrap_or_else(|| self.root.clone());
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            // The new directory's own entry must reach the disk, not only what it holds.
            std::fs::File::open(self.root.join("blobs"))?.sync_all()?;
        }
        std::fs::rename(temp, &target)?;
        // The rename is durable only once the directory entry is on disk.
        std::fs::File::open(&dir)?.sync_all()
    }
}

/// What the receiving side hands the writer thread.
enum Chunk {
    Data(Bytes),
    /// The whole body arrived: finish the blob.
    End,
}

/// Download reads: large enough that a 100 MiB file is a hundred reads, few enough in flight
/// that a slow client holds at most a few MiB.
const READ_CHUNK: usize = 1024 * 1024;
const READ_CHANNEL_CHUNKS: usize = 4;

/// Chunks in flight between the receiving task and the writer thread (hyper's chunks are
/// 8–64 KiB, so at most a few MiB are buffered).
const CHANNEL_CHUNKS: usize = 32;
const WRITE_BUFFER: usize = 256 * 1024;
/// How much is written before the kernel is asked to start writing it back, so that the final
/// flush finds most of a large file on disk already instead of all of it.
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on a descriptor this function borrows for its duration; it reads
    // and writes no memory of ours. SYNC_FILE_RANGE_WRITE only starts the writeback, it does
    // not wait for it: a failure here just leaves the work to the final sync_data.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}

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
