//! The filesystem blob store: files named by their sha256, so identical content is stored once.
//! A blob is written to a temporary file while hashing and counting, flushed to disk (when the
//! store flushes: `media.sync_uploads`), then renamed into place: a reader never sees a partial
//! blob, and a crash leaves only temp files.
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
    /// Flush new blobs (file and directory entry) before they count as stored. Without it a
    /// blob survives a crash of the server (the kernel holds what was written) but a power cut
    /// may lose it — as SQLite's "normal" mode may lose the row pointing at it.
    flush: bool,
}

/// A blob now in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBlob {
    pub sha256: String,
    pub size: u64,
    /// When the content was stored already, the new copy is kept (unflushed) until the row
    /// that uses it is committed: if a concurrent delete took the stored blob away meanwhile,
    /// `settle` puts this copy in its place.
    pub spare: Option<PathBuf>,
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
    pub fn open(root: &Path, flush: bool) -> io::Result<Self> {
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
        Ok(FsBlobStore { root: root.to_owned(), flush })
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
        // A blob shorter than its record was cut off by a power cut before it reached the disk
        // (`media.sync_uploads` off): its content is lost, say so before sending any of it.
        if file.metadata()?.len() < start.saturating_add(length) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "the blob is shorter than its record: content lost"));
        }
        if start > 0 {
            file.seek(io::SeekFrom::Start(start))?;
        }
        let mapped = length >= MAP_AT_LEAST;
        let depth = if mapped { MAP_CHANNEL_WINDOWS } else { READ_CHANNEL_BATCHES };
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(depth);
        tokio::task::spawn_blocking(move || {
            let mut left = length;
            let mut position = start;
            while left > 0 {
                // Large ranges are sent from the page cache mapped into memory, without the
                // copy a read makes (see `Mapped`); a window that cannot be mapped is read.
                if mapped {
                    let window = left.min(MAP_WINDOW as u64) as usize;
                    if let Ok(pages) = Mapped::new(&file, position, window) {
                        left -= window as u64;
                        position += window as u64;
                        if tx.blocking_send(Ok(Bytes::from_owner(pages))).is_err() {
                            return;
                        }
                        continue;
                    }
                    if let Err(e) = file.seek(io::SeekFrom::Start(position)) {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
                let want = left.min(READ_CHUNK as u64) as usize;
                let mut buffer = bytes::BytesMut::zeroed(want);
                let result = match file.read(&mut buffer) {
                    Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the blob is shorter than its record")),
                    Ok(n) => {
                        buffer.truncate(n);
                        left -= n as u64;
                        position += n as u64;
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
    /// The async side receives, counts and hashes; a blocking thread writes, so the network,
    /// the hash and the disk work at the same time (sha256 is the costliest part of an upload,
    /// about 0.6 ms per MiB on one core). A bounded channel between them keeps memory flat
    /// whatever the size.
    pub async fn write<S, E>(&self, body: S, max_size: u64) -> Result<StoredBlob, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(CHANNEL_BATCHES);
        let store = self.clone();
        let writer = tokio::task::spawn_blocking(move || store.write_blocking(rx));
        let received = Self::receive(body, max_size, &tx).await;
        if let Ok(digest) = &received {
            // The writer may have failed (disk full) and closed its end: its error says why.
            let _ = tx.send(Chunk::End(digest.clone())).await;
        }
        drop(tx);
        let written = writer.await.map_err(|e| BlobError::Io(io::Error::other(e)))?;
        received?;
        written
    }

    /// Receives the body, hashes it and hands it to the writer in batches; returns the
    /// content's sha256 in lowercase hex. (Hashing here costs the runtime at most a few hundred
    /// microseconds per chunk, hyper's chunks being at most about 400 KiB.)
    async fn receive<S, E>(body: S, max_size: u64, tx: &tokio::sync::mpsc::Sender<Chunk>) -> Result<String, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let mut size: u64 = 0;
        let mut hasher = Sha256::new();
        // Chunks go to the writer in batches: each hand-off wakes its thread, and waking a
        // thread on the other core costs more than the write of a 16 KiB chunk.
        let (mut batch, mut batched) = (Vec::new(), 0usize);
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > max_size {
                return Err(BlobError::TooLarge);
            }
            hasher.update(&chunk);
            batched += chunk.len();
            batch.push(chunk);
            if batched >= BATCH_BYTES {
                batched = 0;
                if tx.send(Chunk::Data(std::mem::take(&mut batch))).await.is_err() {
                    // The writer stopped early; its result carries the error.
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(Chunk::Data(batch)).await;
        }
        Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The writer thread: write to a temp file, then move it into place under the name the
    /// receiving side computed (or drop it when the same content is stored already). The temp
    /// file is removed on every failure.
    fn write_blocking(&self, rx: tokio::sync::mpsc::Receiver<Chunk>) -> Result<StoredBlob, BlobError> {
        let temp = self.root.join("tmp").join(myelin_core::util::random_string(24));
        let result = self.write_temp(&temp, rx).and_then(|mut blob| {
            if self.move_into_place(&temp, &blob.sha256)? {
                blob.spare = Some(temp.clone());
            }
            Ok(blob)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    fn write_temp(&self, temp: &Path, mut rx: tokio::sync::mpsc::Receiver<Chunk>) -> Result<StoredBlob, BlobError> {
        // Chunks of at least WRITE_BUFFER bytes go straight to the file; only small ones are
        // gathered first.
        let mut file = BufWriter::with_capacity(WRITE_BUFFER, std::fs::File::create(temp)?);
        let (mut size, mut flushed) = (0u64, 0u64);
        let sha256 = loop {
            match rx.blocking_recv() {
                Some(Chunk::Data(batch)) => {
                    for chunk in batch {
                        file.write_all(&chunk)?;
                        size += chunk.len() as u64;
                    }
                    if self.flush && size - flushed >= WRITEBACK_STEP {
                        file.flush()?;
                        start_writeback(file.get_ref(), flushed, size - flushed);
                        flushed = size;
                    }
                }
                Some(Chunk::End(sha256)) => break sha256,
                // The receiving side gave up (too large, body broke off): keep nothing.
                None => return Err(BlobError::Body("upload interrupted".into())),
            }
        };
        file.flush()?;
        let Some(target) = self.path(&sha256) else {
            return Err(io::Error::other("computed a malformed digest").into());
        };
        // Content stored already needs no second copy on disk, so skip the flush too.
        if self.flush && !target.exists() {
            file.get_ref().sync_data()?;
        }
        Ok(StoredBlob { sha256, size, spare: None })
    }

    /// Renames the temp file to its content's name; true when the content was there already
    /// (the temp file is then left for `settle`).
    fn move_into_place(&self, temp: &Path, sha256: &str) -> io::Result<bool> {
        let Some(target) = self.path(sha256) else {
            return Err(io::Error::other("computed a malformed digest"));
        };
        if target.exists() {
            return Ok(true);
        }
        let dir = target.parent().map(Path::to_owned).unwrap_or_else(|| self.root.clone());
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            // The new directory's own entry must reach the disk, not only what it holds.
            std::fs::File::open(self.root.join("blobs"))?.sync_all()?;
        }
        std::fs::rename(temp, &target)?;
        // The rename is durable only once the directory entry is on disk.
        if self.flush {
            std::fs::File::open(&dir)?.sync_all()?;
        }
        Ok(false)
    }

    /// Called once the row using `blob` is committed (or failed): drops the spare copy, or
    /// makes it the blob if the stored one was deleted in the meantime.
    pub async fn settle(&self, blob: &StoredBlob) -> io::Result<()> {
        let Some(spare) = blob.spare.clone() else {
            return Ok(());
        };
        let store = self.clone();
        let sha256 = blob.sha256.clone();
        tokio::task::spawn_blocking(move || {
            let Some(target) = store.path(&sha256) else {
                return std::fs::remove_file(&spare);
            };
            if target.exists() {
                return std::fs::remove_file(&spare);
            }
            if store.flush {
                std::fs::File::open(&spare)?.sync_data()?;
            }
            store.move_into_place(&spare, &sha256).map(drop)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Deletes a blob unless `in_use` (asked after the blob is set aside) says a row took it
    /// meanwhile; then it is put back. With `settle` on the writing side, a blob is never
    /// lost to a delete racing an upload of the same content. Returns the bytes freed.
    pub async fn remove_unless_used<F>(&self, sha256: &str, in_use: F) -> io::Result<u64>
    where
        F: Future<Output = io::Result<bool>>,
    {
        let Some(target) = self.path(sha256) else {
            return Ok(0);
        };
        let aside = self.root.join("tmp").join(format!("{sha256}.{}.deleting", myelin_core::util::random_string(8)));
        match tokio::fs::rename(&target, &aside).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        }
        let size = tokio::fs::metadata(&aside).await.map(|m| m.len()).unwrap_or(0);
        let used = match in_use.await {
            Ok(used) => used,
            Err(e) => {
                // Unsure: keep the blob.
                let _ = tokio::fs::rename(&aside, &target).await;
                return Err(e);
            }
        };
        if used && !tokio::fs::try_exists(&target).await.unwrap_or(false) {
            tokio::fs::rename(&aside, &target).await?;
            return Ok(0);
        }
        tokio::fs::remove_file(&aside).await?;
        Ok(if used { 0 } else { size })
    }
}

/// What the receiving side hands the writer thread.
enum Chunk {
    Data(Vec<Bytes>),
    /// The whole body arrived, with this sha256: finish the blob.
    End(String),
}

/// Download reads: large enough that a 100 MiB file is a hundred reads, few enough in flight
/// that a slow client holds at most a few MiB.
const READ_CHUNK: usize = 1024 * 1024;
const READ_CHANNEL_BATCHES: usize = 4;
/// Ranges of at least this size are sent from mappings of `MAP_WINDOW` bytes, at most
/// `MAP_CHANNEL_WINDOWS` waiting to be sent: mapped pages count in the server's RSS.
const MAP_AT_LEAST: u64 = 4 * 1024 * 1024;
const MAP_WINDOW: usize = 4 * 1024 * 1024;
const MAP_CHANNEL_WINDOWS: usize = 2;
#[cfg(target_os = "linux")]
const MAP_FLAGS: libc::c_int = libc::MAP_SHARED | libc::MAP_POPULATE;
#[cfg(not(target_os = "linux"))]
const MAP_FLAGS: libc::c_int = libc::MAP_SHARED;

/// A window of a blob mapped read-only, unmapped when the last `Bytes` of it is dropped.
///
/// A download read into a buffer costs the copy from the page cache and then the copy into the
/// socket, both on the server's two cores; `perf` of 100 MiB downloads had each at about 30%
/// of the server's CPU. Mapped, the socket copies straight from the page cache. Blobs are
/// immutable (written under a temporary name and renamed into place, removed by unlinking), so
/// the bytes under the mapping never change while it lives; `MAP_POPULATE` maps every page at
/// once (100 MiB downloads: about 7,500 MB/s, without it 6,400, read 6,400, same machine).
struct Mapped {
    base: std::ptr::NonNull<libc::c_void>,
    mapped_len: usize,
    /// Where the window starts within the mapping (the mapping starts on a page boundary).
    skip: usize,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; reading it from any thread is
// sound, and it is unmapped once, on drop.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    fn new(file: &std::fs::File, offset: u64, len: usize) -> io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        // SAFETY: sysconf has no memory effects.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1);
        let aligned = offset - offset % page;
        let skip = (offset - aligned) as usize;
        let mapped_len = skip + len;
        let file_offset = libc::off_t::try_from(aligned).map_err(io::Error::other)?;
        // SAFETY: a new read-only mapping of a descriptor we hold, of a range the caller checked
        // lies within the file (`read_range` compares it with the file's length, and blobs never
        // shrink); nothing else refers to the returned memory.
        let base = unsafe {
            libc::mmap(std::ptr::null_mut(), mapped_len, libc::PROT_READ, MAP_FLAGS, file.as_raw_fd(), file_offset)
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = std::ptr::NonNull::new(base).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapped { base, mapped_len, skip, len })
    }
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the mapping covers `skip + len` readable bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().cast::<u8>().add(self.skip), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; no reference to it outlives `self`.
        unsafe {
            libc::munmap(self.base.as_ptr(), self.mapped_len);
        }
    }
}

/// Batches in flight between the receiving task and the writer thread, and their size: at
/// most a few MiB are buffered whatever the upload's size.
const CHANNEL_BATCHES: usize = 8;
const BATCH_BYTES: usize = 256 * 1024;
const WRITE_BUFFER: usize = 16 * 1024;
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
        let store = FsBlobStore::open(dir.path(), true).unwrap();
        let a = store.write(body(&[b"hello ", b"world"]), 100).await.unwrap();
        assert_eq!(a.size, 11);
        assert_eq!(a.sha256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        let b = store.write(body(&[b"hello world"]), 100).await.unwrap();
        assert_eq!((&a.sha256, a.size), (&b.sha256, b.size));
        // The second copy waits as a spare until settled.
        assert!(a.spare.is_none() && b.spare.is_some());
        store.settle(&b).await.unwrap();
        assert!(!b.spare.as_ref().unwrap().exists());
        assert_eq!(std::fs::read(store.path(&a.sha256).unwrap()).unwrap(), b"hello world");
        assert!(matches!(store.write(body(&[b"0123456789", b"x"]), 10).await, Err(BlobError::TooLarge)));
        // Nothing is left behind by the refused upload.
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert!(store.path("../../etc/passwd").is_none());

        // A delete racing an upload of the same content: the spare takes the blob's place.
        let c = store.write(body(&[b"hello world"]), 100).await.unwrap();
        let freed = store.remove_unless_used(&a.sha256, async { Ok(false) }).await.unwrap();
        assert_eq!(freed, 11);
        assert!(!store.path(&a.sha256).unwrap().exists());
        store.settle(&c).await.unwrap();
        assert_eq!(std::fs::read(store.path(&a.sha256).unwrap()).unwrap(), b"hello world");
        // A row that took the blob while it was set aside keeps it.
        let freed = store.remove_unless_used(&a.sha256, async { Ok(true) }).await.unwrap();
        assert_eq!(freed, 0);
        assert!(store.path(&a.sha256).unwrap().exists());
        assert!(store.path(&"A".repeat(64)).is_none());
    }

    #[tokio::test]
    async fn large_ranges_are_read_whole_from_any_offset() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path(), false).unwrap();
        // Over two mapping windows, so that ranges span several of them.
        let whole: Vec<u8> = (0..(2 * MAP_WINDOW + 12_345)).map(|i| (i % 253) as u8).collect();
        let body = futures_util::stream::iter([Ok::<_, String>(Bytes::from(whole.clone()))]);
        let blob = store.write(body, whole.len() as u64).await.unwrap();
        let read = |start: u64, length: u64| {
            let stream = store.read_range(&blob.sha256, start, length).unwrap();
            async move {
                let parts: Vec<Bytes> = stream.map(|part| part.unwrap()).collect().await;
                parts.concat()
            }
        };
        let size = whole.len() as u64;
        // Whole, from an offset off page boundaries (mapped), to the end, and small (read).
        for (start, length) in [(0, size), (4097, size - 4097), (1, MAP_AT_LEAST), (size - 100, 100), (3, 5000)] {
            let got = read(start, length).await;
            assert_eq!(got.len() as u64, length, "range {start}+{length}");
            assert!(got == whole[start as usize..(start + length) as usize], "range {start}+{length}");
        }
        // A range past the end is refused before anything is sent.
        assert!(store.read_range(&blob.sha256, 1, size).is_err());
        // The mapping itself (the stream above would fall back to reads were it to fail).
        let file = std::fs::File::open(store.path(&blob.sha256).unwrap()).unwrap();
        for (offset, len) in [(0usize, MAP_WINDOW), (4097, 100), (MAP_WINDOW + 1, MAP_WINDOW)] {
            let pages = Mapped::new(&file, offset as u64, len).unwrap();
            assert!(pages.as_ref() == &whole[offset..offset + len], "mapping {offset}+{len}");
        }
    }

    #[tokio::test]
    async fn many_chunks_arrive_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path(), false).unwrap();
        // More than a few batches, in chunks of uneven sizes.
        let chunks: Vec<Bytes> =
            (0..300u32).map(|i| Bytes::from(vec![(i % 251) as u8; 1000 + (i as usize % 7) * 3000])).collect();
        let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert!(whole.len() > 4 * BATCH_BYTES);
        let body = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, String>));
        let blob = store.write(body, whole.len() as u64).await.unwrap();
        let expected: String = Sha256::digest(&whole).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!((blob.sha256.as_str(), blob.size), (expected.as_str(), whole.len() as u64));
        assert_eq!(std::fs::read(store.path(&blob.sha256).unwrap()).unwrap(), whole);
        // One byte over the limit, in the last chunk: nothing kept.
        let body =
            futures_util::stream::iter([Ok::<_, String>(Bytes::from(whole.clone())), Ok(Bytes::from_static(b"x"))]);
        assert!(matches!(store.write(body, whole.len() as u64).await, Err(BlobError::TooLarge)));
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
