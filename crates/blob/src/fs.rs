//! Blobs as files under one directory: the store for a single node with a local or
//! network disk, and the one the benchmark against CNCF Distribution measures.
//!
//! Layout below the root:
//!
//! ```text
//! blobs/<algo>/<first 2 hex>/<hex>   committed blobs, named by digest
//! uploads/<id>                       one file per upload, appended to
//! tmp/                               scratch (the `ping` probe); anything left is foreign
//! ```
//!
//! # Durability
//!
//! An append returns only after `fdatasync` of the upload file (which also covers its new
//! length). The upload file is created with an `fsync` of `uploads/`, so an acknowledged
//! upload survives a crash. A commit truncates the upload file to the committed length if it holds
//! more (and syncs that), renames it to its content path and `fsync`s that directory (and any
//! directory it had to create, via the parent's `fsync`), so a committed blob is never
//! seen half written and never lost once `upload_commit` returns. A crash between those
//! steps leaves either the upload (retried or aborted by the caller) or the blob. Deleting
//! is not synced: a deleted blob that reappears after a crash is harmless garbage.
//!
//! # Performance
//!
//! File system calls run on blocking threads. An append feeds the request body through a
//! bounded channel to one writer thread, which writes the received chunks as they are
//! (no copy), several at a time with `writev` when it falls behind. A read is served by a
//! thread that reads ahead in 1 MiB chunks.
//!
//! Appends, commits and aborts of one upload id are serialised inside the process, so a
//! writer thread left running by a cancelled request can never write into a later append
//! or into a committed blob. Two processes sharing a root rely on the caller's upload lock.

use crate::keys::{self, check_holds, check_upload_id, Needed};
use crate::{BlobError, BlobRead, BlobStore, ByteStream, Existing, UploadState};
use async_trait::async_trait;
use berth_oci::{Algorithm, Digest};
use bytes::{Buf, Bytes};
use futures::stream::{self, BoxStream, StreamExt};
use std::collections::HashMap;
use std::fs::{self, File, FileType, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;
use tokio::sync::{mpsc, OwnedMutexGuard};

/// Size of one read from a blob file.
const READ_CHUNK: usize = 1 << 20;
/// Chunks read ahead of the consumer.
const READ_AHEAD: usize = 2;
/// Incoming chunks queued for the writer thread.
const WRITE_QUEUE: usize = 64;
/// Bytes (in KiB) of one append queued for the writer thread at most.
const WRITE_BUDGET_KIB: u32 = 2 * 1024;
/// Most chunks handed to one `writev`.
const WRITE_BATCH: usize = 64;
/// Bytes an append writes between two requests for background writeback.
const SYNC_EVERY: u64 = 32 << 20;
/// Bytes an append writes between two hints that start the disk writing them.
const WRITEBACK_EVERY: u64 = 1 << 20;

const BLOBS: &str = "blobs";
const UPLOADS: &str = "uploads";
const TMP: &str = "tmp";

/// A [`BlobStore`] on a local (or mounted) file system. Cheap to clone; clones share the
/// in-process upload locks.
#[derive(Clone)]
pub struct FsBlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    blobs: PathBuf,
    uploads: PathBuf,
    tmp: PathBuf,
    locks: UploadLocks,
    /// Read buffers handed back by the HTTP layer once sent.
    buffers: Arc<BufferPool>,
}

impl std::fmt::Debug for FsBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsBlobStore")
            .field("root", &self.inner.root)
            .finish()
    }
}

impl FsBlobStore {
    /// Opens the store rooted at `root`, creating `root`, `blobs/`, `uploads/` and `tmp/`
    /// if they are missing. Meant for start-up: it does blocking file system calls.
    pub fn open(root: PathBuf) -> Result<Self, BlobError> {
        let blobs = root.join(BLOBS);
        let uploads = root.join(UPLOADS);
        let tmp = root.join(TMP);
        for dir in [&root, &blobs, &uploads, &tmp] {
            fs::create_dir_all(dir)?;
        }
        Ok(FsBlobStore {
            inner: Arc::new(Inner {
                buffers: Arc::new(BufferPool::default()),
                root,
                blobs,
                uploads,
                tmp,
                locks: UploadLocks::default(),
            }),
        })
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.blobs.join(keys::blob_rel(digest))
    }

    /// Path of an upload's file; `id` must have been checked.
    fn upload_path(&self, id: &str) -> PathBuf {
        self.inner.uploads.join(id)
    }
}

/// Runs blocking file system work off the async threads.
async fn blocking<T, F>(f: F) -> Result<T, BlobError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, BlobError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BlobError::Backend(format!("blocking file system task failed: {e}")))?
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `parent/name` if missing and makes its entry durable.
fn create_dir_durable(parent: &Path, name: &str) -> io::Result<PathBuf> {
    let dir = parent.join(name);
    match fs::create_dir(&dir) {
        Ok(()) => sync_dir(parent)?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    Ok(dir)
}

/// In-process mutual exclusion per upload id. The guard is moved into the blocking work it
/// protects, so it is released only when that work has really stopped.
#[derive(Default)]
struct UploadLocks {
    map: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

struct UploadGuard {
    map: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl UploadLocks {
    async fn lock(&self, id: &str) -> UploadGuard {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(map.entry(id.to_string()).or_default())
        };
        let guard = lock.lock_owned().await;
        UploadGuard {
            map: Arc::clone(&self.map),
            id: id.to_string(),
            guard: Some(guard),
        }
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        drop(self.guard.take());
        // Only the map holds the lock now (waiters clone it under the map lock): forget it.
        if map.get(&self.id).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(&self.id);
        }
    }
}

/// What the request side tells the writer thread.
enum WriteMsg {
    /// A chunk, and its share of the append's memory budget (released once written).
    Data(Bytes, tokio::sync::OwnedSemaphorePermit),
    /// The body ended normally: sync and report.
    Done,
}

/// Flushes what an append has written so far on a second thread while the append goes on
/// writing, so that the `fdatasync` before the append returns has little left to do (the
/// disk works while the body is still arriving). Requests coalesce: at most one waits.
struct Syncer {
    tx: std::sync::mpsc::SyncSender<()>,
    handle: std::thread::JoinHandle<io::Result<()>>,
}

impl Syncer {
    fn start(file: &File) -> io::Result<Syncer> {
        let file = file.try_clone()?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let handle = std::thread::Builder::new()
            .name("berth-fs-sync".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    file.sync_data()?;
                }
                Ok(())
            })?;
        Ok(Syncer { tx, handle })
    }

    fn request(&self) {
        // Full: a flush is already pending and will cover this. Disconnected: the thread
        // stopped on an error, which `finish` reports.
        let _ = self.tx.try_send(());
    }

    /// Waits for the thread; an error of any background flush is the append's error (a
    /// later `fdatasync` may not report it again).
    fn finish(self) -> io::Result<()> {
        drop(self.tx);
        self.handle
            .join()
            .map_err(|_| io::Error::other("background flush thread panicked"))?
    }
}

/// A chunk's share of [`WRITE_BUDGET_KIB`]: its size in KiB, rounded up, at most the whole.
fn chunk_cost(len: usize) -> u32 {
    u32::try_from(len.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .clamp(1, WRITE_BUDGET_KIB)
}

/// Why the writer thread stopped without an error of its own.
const WRITER_ABANDONED: &str = "append abandoned before the end of its data";

/// The writer thread of one append: truncates to `offset`, writes what arrives, and
/// `fdatasync`s once the body has ended. Stops without the final sync if the channel closes
/// before [`WriteMsg::Done`] (the request failed or was cancelled).
fn write_upload(
    path: &Path,
    id: &str,
    offset: u64,
    mut rx: mpsc::Receiver<WriteMsg>,
) -> Result<u64, BlobError> {
    let mut file = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if is_not_found(&e) => return Err(BlobError::UploadNotFound(id.to_string())),
        Err(e) => return Err(e.into()),
    };
    let have = file.metadata()?.len();
    check_holds(id, have, Needed::Offset(offset))?;
    if have != offset {
        // Bytes of an append that failed half way.
        file.set_len(offset)?;
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut syncer: Option<Syncer> = None;
    let result = write_body(&mut file, offset, &mut rx, &mut syncer);
    let flushed = syncer.map_or(Ok(()), Syncer::finish);
    let written = result?;
    flushed?;
    file.sync_data()?;
    Ok(written)
}

/// Writes what arrives (from `offset` on) until [`WriteMsg::Done`], asking `syncer` (started
/// once the append is big enough to profit) to flush every [`SYNC_EVERY`] bytes, and starting
/// the writeback of every [`WRITEBACK_EVERY`] bytes as soon as they are written.
fn write_body(
    file: &mut File,
    offset: u64,
    rx: &mut mpsc::Receiver<WriteMsg>,
    syncer: &mut Option<Syncer>,
) -> Result<u64, BlobError> {
    let mut written = 0u64;
    let mut flush_at = SYNC_EVERY;
    let mut started = 0u64;
    let mut batch: Vec<Bytes> = Vec::with_capacity(WRITE_BATCH);
    let mut permits = Vec::with_capacity(WRITE_BATCH);
    loop {
        let mut done = false;
        match rx.blocking_recv() {
            Some(WriteMsg::Data(b, permit)) => {
                batch.push(b);
                permits.push(permit);
            }
            Some(WriteMsg::Done) => done = true,
            None => return Err(BlobError::Io(io::Error::other(WRITER_ABANDONED))),
        }
        // Whatever queued up while the last write ran goes out in one writev.
        while !done && batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(WriteMsg::Data(b, permit)) => {
                    batch.push(b);
                    permits.push(permit);
                }
                Ok(WriteMsg::Done) => done = true,
                Err(_) => break,
            }
        }
        written += batch.iter().map(|b| b.len() as u64).sum::<u64>();
        write_all_vectored(file, &mut batch)?;
        batch.clear();
        permits.clear();
        if done {
            return Ok(written);
        }
        if written - started >= WRITEBACK_EVERY {
            start_writeback(file, offset + started, written - started);
            started = written;
        }
        if written >= flush_at {
            flush_at = written + SYNC_EVERY;
            if syncer.is_none() {
                *syncer = Some(Syncer::start(file)?);
            }
            if let Some(s) = syncer {
                s.request();
            }
        }
    }
}

/// Starts writing `len` bytes at `from` to the disk without waiting for them, so that
/// the `fdatasync` that ends the append has less left to wait for: a chunked push's
/// `PATCH` spends less time between the last byte received and its `202`.
///
/// `POSIX_FADV_DONTNEED` is the only way to do so without `unsafe` (rustix has no
/// `sync_file_range`): Linux starts the writeback of the range's dirty pages
/// (`WB_SYNC_NONE`: no waiting, no cache flush) and then drops only the range's clean
/// pages, which for bytes just written are at most the few whose write finished at once.
/// A hint: whether it works changes no result, so its error is ignored.
fn start_writeback(file: &File, from: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        file,
        from,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
}

/// Writes every buffer, in order, with as few `writev` calls as the kernel allows.
fn write_all_vectored(file: &mut File, bufs: &mut [Bytes]) -> io::Result<()> {
    let mut first = 0;
    while first < bufs.len() {
        if bufs[first].is_empty() {
            first += 1;
            continue;
        }
        let slices: Vec<IoSlice<'_>> = bufs[first..].iter().map(|b| IoSlice::new(b)).collect();
        let mut n = match file.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 {
            let len = bufs[first].len();
            if n >= len {
                n -= len;
                first += 1;
            } else {
                bufs[first].advance(n);
                n = 0;
            }
        }
    }
    Ok(())
}

/// Reads exactly `n` bytes into `buf`'s allocation (reclaimed once the previous chunks
/// handed out from it have been dropped) and hands them out.
/// Read buffers kept for reuse: a pull reads into a buffer that has already been
/// written to (no page faults, no zero-filling) and the buffer comes back when the HTTP
/// layer drops the chunk after sending it. At most [`POOLED_BUFFERS`] are kept.
#[derive(Default)]
struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// Buffers the pool keeps (a few MiB: the read-ahead of a couple of concurrent pulls).
const POOLED_BUFFERS: usize = 8;

/// A chunk of a pooled buffer; gives the buffer back when dropped.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut free = self
            .pool
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if free.len() < POOLED_BUFFERS {
            free.push(buf);
        }
    }
}

/// Reads exactly `n` (at most [`READ_CHUNK`]) bytes into a pooled buffer.
fn read_chunk(file: &mut File, pool: &Arc<BufferPool>, n: usize) -> io::Result<Bytes> {
    let reused = pool
        .free
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop();
    let mut buf = reused.unwrap_or_else(|| vec![0; READ_CHUNK]);
    if buf.len() < n {
        buf.resize(n, 0);
    }
    file.read_exact(&mut buf[..n])?;
    Ok(Bytes::from_owner(Pooled {
        buf,
        len: n,
        pool: pool.clone(),
    }))
}

/// A stream fed by blocking work on another thread.
fn channel_stream<T: Send + 'static>(
    capacity: usize,
    work: impl FnOnce(&mpsc::Sender<Result<T, BlobError>>) -> Result<(), BlobError> + Send + 'static,
) -> BoxStream<'static, Result<T, BlobError>> {
    let (tx, rx) = mpsc::channel(capacity);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = work(&tx) {
            // The consumer may be gone; then nobody needs the error.
            let _ = tx.blocking_send(Err(e));
        }
    });
    receiver_stream(rx)
}

fn receiver_stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> BoxStream<'static, T> {
    stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

/// `read_dir` that treats a directory removed under our feet as empty.
fn read_dir_entries(dir: &Path) -> io::Result<Vec<(String, FileType, PathBuf)>> {
    let iter = match fs::read_dir(dir) {
        Ok(it) => it,
        Err(e) if is_not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in iter {
        let entry = entry?;
        let ft = entry.file_type()?;
        // A name that is not UTF-8 cannot be a key of ours: report it lossily as foreign.
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push((name, ft, entry.path()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn algorithm_named(name: &str) -> bool {
    [Algorithm::Sha256, Algorithm::Sha512]
        .iter()
        .any(|a| a.as_str() == name)
}

fn is_fan_name(name: &str) -> bool {
    name.len() == 2
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether the entry `name` (of type `ft`) inside the directory `parent` (store-relative
/// components) is foreign to the layout. Inside a foreign directory everything is foreign.
fn entry_is_foreign(parent: &[&str], name: &str, ft: FileType) -> bool {
    match parent {
        [] => !([BLOBS, UPLOADS, TMP].contains(&name) && ft.is_dir()),
        [TMP] => true,
        [UPLOADS] => !(keys::is_valid_upload_id(name) && ft.is_file()),
        [BLOBS] => !(algorithm_named(name) && ft.is_dir()),
        [BLOBS, _] => !(is_fan_name(name) && ft.is_dir()),
        [BLOBS, algo, fan] => !(ft.is_file() && keys::parse_blob_rel(algo, fan, name).is_some()),
        _ => true,
    }
}

/// Walks the layout and sends every foreign key (not descending into foreign directories).
fn scan_foreign(
    dir: &Path,
    parent: &mut Vec<String>,
    tx: &mpsc::Sender<Result<String, BlobError>>,
) -> Result<bool, BlobError> {
    for (name, ft, path) in read_dir_entries(dir)? {
        let parts: Vec<&str> = parent.iter().map(String::as_str).collect();
        if entry_is_foreign(&parts, &name, ft) {
            let mut key = parent.join("/");
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(&name);
            if tx.blocking_send(Ok(key)).is_err() {
                return Ok(false);
            }
        } else if ft.is_dir() {
            parent.push(name);
            let go_on = scan_foreign(&path, parent, tx)?;
            parent.pop();
            if !go_on {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Components of a store-relative key, if it is a plain relative path.
fn key_components(key: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = key.split('/').collect();
    let plain = parts
        .iter()
        .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\0'));
    plain.then_some(parts)
}

fn blob_stream(first: Bytes, rest: Option<ByteStream>) -> ByteStream {
    let first = (!first.is_empty()).then_some(Ok(first));
    let head = stream::iter(first);
    match rest {
        Some(rest) => head.chain(rest).boxed(),
        None => head.boxed(),
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    fn kind(&self) -> &'static str {
        "filesystem"
    }

    async fn ping(&self) -> Result<(), BlobError> {
        static PROBES: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "ping-{}-{}",
            std::process::id(),
            PROBES.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.inner.tmp.join(name);
        blocking(move || {
            fs::write(&path, b"ping")?;
            fs::remove_file(&path)?;
            Ok(())
        })
        .await
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        let path = self.blob_path(digest);
        blocking(move || match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }

    async fn get(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<BlobRead, BlobError> {
        let path = self.blob_path(digest);
        let pool = self.inner.buffers.clone();
        // Open, check the range and read the first chunk in one hop: small blobs need no more.
        let (file, pool, size, first, remaining) = blocking(move || {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if is_not_found(&e) => return Err(BlobError::NotFound),
                Err(e) => return Err(e.into()),
            };
            let size = file.metadata()?.len();
            let (start, end) = match range {
                None => (0, size),
                Some((s, e)) if s <= e && e <= size => (s, e),
                Some(_) => return Err(BlobError::Range),
            };
            if start > 0 {
                file.seek(SeekFrom::Start(start))?;
            }
            let want = end - start;
            let n = want.min(READ_CHUNK as u64) as usize;
            // A small blob is read into a buffer of its own size, not a pooled 1 MiB one.
            let first = if n < READ_CHUNK {
                let mut small = vec![0; n];
                file.read_exact(&mut small)?;
                Bytes::from(small)
            } else {
                read_chunk(&mut file, &pool, n)?
            };
            Ok((file, pool, size, first, want - n as u64))
        })
        .await?;
        if remaining == 0 {
            return Ok(BlobRead {
                size,
                stream: blob_stream(first, None),
            });
        }
        let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(READ_AHEAD);
        tokio::task::spawn_blocking(move || {
            let (mut file, mut remaining) = (file, remaining);
            while remaining > 0 {
                let n = remaining.min(READ_CHUNK as u64) as usize;
                let chunk = read_chunk(&mut file, &pool, n);
                let failed = chunk.is_err();
                // A closed channel means the reader went away: stop reading.
                if tx.blocking_send(chunk).is_err() || failed {
                    return;
                }
                remaining -= n as u64;
            }
        });
        Ok(BlobRead {
            size,
            stream: blob_stream(first, Some(receiver_stream(rx))),
        })
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, BlobError> {
        let path = self.blob_path(digest);
        blocking(move || match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        })
        .await
    }

    fn list(&self) -> BoxStream<'static, Result<(Digest, u64), BlobError>> {
        let blobs = self.inner.blobs.clone();
        channel_stream(256, move |tx| {
            for (algo, ft, algo_path) in read_dir_entries(&blobs)? {
                if !(ft.is_dir() && algorithm_named(&algo)) {
                    continue;
                }
                for (fan, ft, fan_path) in read_dir_entries(&algo_path)? {
                    if !(ft.is_dir() && is_fan_name(&fan)) {
                        continue;
                    }
                    for (hex, ft, path) in read_dir_entries(&fan_path)? {
                        let Some(digest) = keys::parse_blob_rel(&algo, &fan, &hex) else {
                            continue;
                        };
                        if !ft.is_file() {
                            continue;
                        }
                        let size = match fs::symlink_metadata(&path) {
                            Ok(m) => m.len(),
                            // Deleted while we walked.
                            Err(e) if is_not_found(&e) => continue,
                            Err(e) => return Err(e.into()),
                        };
                        if tx.blocking_send(Ok((digest, size))).is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            Ok(())
        })
    }

    fn list_foreign(&self) -> BoxStream<'static, Result<String, BlobError>> {
        let root = self.inner.root.clone();
        channel_stream(256, move |tx| {
            scan_foreign(&root, &mut Vec::new(), tx)?;
            Ok(())
        })
    }

    async fn delete_foreign(&self, key: &str) -> Result<(), BlobError> {
        let parts: Vec<String> = key_components(key)
            .ok_or(BlobError::NotFound)?
            .into_iter()
            .map(str::to_string)
            .collect();
        let root = self.inner.root.clone();
        blocking(move || {
            // Only what list_foreign would report (or lies inside it) may go: walk down the
            // key and find the first foreign component.
            let mut path = root;
            for i in 0..parts.len() {
                path.push(&parts[i]);
                let ft = match fs::symlink_metadata(&path) {
                    Ok(m) => m.file_type(),
                    Err(e) if is_not_found(&e) => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                let parent: Vec<&str> = parts[..i].iter().map(String::as_str).collect();
                if entry_is_foreign(&parent, &parts[i], ft) {
                    let target: PathBuf = parts[i + 1..].iter().fold(path, |p, c| p.join(c));
                    let ft = match fs::symlink_metadata(&target) {
                        Ok(m) => m.file_type(),
                        Err(e) if is_not_found(&e) => return Ok(()),
                        Err(e) => return Err(e.into()),
                    };
                    let removed = if ft.is_dir() {
                        fs::remove_dir_all(&target)
                    } else {
                        fs::remove_file(&target)
                    };
                    return match removed {
                        Err(e) if !is_not_found(&e) => Err(e.into()),
                        _ => Ok(()),
                    };
                }
            }
            // A committed blob, an upload or the layout itself: not foreign.
            Err(BlobError::NotFound)
        })
        .await
    }

    fn list_uploads(&self) -> BoxStream<'static, Result<(String, u64), BlobError>> {
        let uploads = self.inner.uploads.clone();
        channel_stream(256, move |tx| {
            let now = SystemTime::now();
            for (id, ft, path) in read_dir_entries(&uploads)? {
                if !(ft.is_file() && keys::is_valid_upload_id(&id)) {
                    continue;
                }
                let modified = match fs::symlink_metadata(&path) {
                    Ok(m) => m.modified()?,
                    Err(e) if is_not_found(&e) => continue,
                    Err(e) => return Err(e.into()),
                };
                let age = now.duration_since(modified).unwrap_or_default().as_secs();
                if tx.blocking_send(Ok((id, age))).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        })
    }

    async fn upload_start(&self, id: &str) -> Result<UploadState, BlobError> {
        check_upload_id(id)?;
        let guard = self.inner.locks.lock(id).await;
        let path = self.upload_path(id);
        let dir = self.inner.uploads.clone();
        blocking(move || {
            let _guard = guard;
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            // The directory's sync makes the new (empty) file's entry durable; the file has
            // no data to sync yet.
            sync_dir(&dir)?;
            Ok(UploadState::default())
        })
        .await
    }

    async fn upload_append(
        &self,
        id: &str,
        state: &UploadState,
        offset: u64,
        mut data: ByteStream,
    ) -> Result<(UploadState, u64), BlobError> {
        check_upload_id(id)?;
        let guard = self.inner.locks.lock(id).await;
        let path = self.upload_path(id);
        let owned_id = id.to_string();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let budget = Arc::new(tokio::sync::Semaphore::new(WRITE_BUDGET_KIB as usize));
        let writer = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            write_upload(&path, &owned_id, offset, rx)
        });
        // Err(Some): the body failed; Err(None): the writer stopped (its result says why).
        let fed: Result<(), Option<io::Error>> = async {
            while let Some(item) = data.next().await {
                let chunk = item.map_err(Some)?;
                if !chunk.is_empty() {
                    // Bound the bytes queued for the disk, so memory stays flat however
                    // large the blob and however slow the disk.
                    let cost = chunk_cost(chunk.len());
                    let permit = budget
                        .clone()
                        .acquire_many_owned(cost)
                        .await
                        .map_err(|_| None)?;
                    tx.send(WriteMsg::Data(chunk, permit))
                        .await
                        .map_err(|_| None)?;
                }
            }
            tx.send(WriteMsg::Done).await.map_err(|_| None)
        }
        .await;
        drop(tx);
        let written = writer
            .await
            .map_err(|e| BlobError::Backend(format!("upload writer thread failed: {e}")))?;
        match fed {
            Ok(()) => written.map(|n| (state.clone(), n)),
            Err(Some(e)) => Err(BlobError::Source(e)),
            Err(None) => match written {
                Err(e) => Err(e),
                Ok(_) => Err(BlobError::Backend(
                    "upload writer stopped early without an error".into(),
                )),
            },
        }
    }

    async fn upload_commit(
        &self,
        id: &str,
        _state: &UploadState,
        len: u64,
        digest: &Digest,
        existing: Existing,
    ) -> Result<(), BlobError> {
        check_upload_id(id)?;
        let guard = self.inner.locks.lock(id).await;
        let upload = self.upload_path(id);
        let target = self.blob_path(digest);
        let blobs = self.inner.blobs.clone();
        let algo = digest.algorithm().as_str();
        let fan = digest.hex()[..2].to_string();
        let owned_id = id.to_string();
        blocking(move || {
            let _guard = guard;
            let there = fs::metadata(&target).is_ok_and(|m| m.is_file());
            if there && existing == Existing::Keep {
                // Already committed (by another repository, or a retried commit).
                return match fs::remove_file(&upload) {
                    Err(e) if !is_not_found(&e) => Err(e.into()),
                    _ => Ok(()),
                };
            }
            // With `Replace`, the rename below swaps the upload in over the stored bytes.
            let file = match OpenOptions::new().write(true).open(&upload) {
                Ok(f) => f,
                // A retried commit: the upload became the blob.
                Err(e) if is_not_found(&e) && there => return Ok(()),
                Err(e) if is_not_found(&e) => return Err(BlobError::UploadNotFound(owned_id)),
                Err(e) => return Err(e.into()),
            };
            let have = file.metadata()?.len();
            check_holds(&owned_id, have, Needed::Commit(len))?;
            // The appends made the first `len` bytes durable already; only a truncation
            // needs another sync.
            if have != len {
                file.set_len(len)?;
                file.sync_data()?;
            }
            drop(file);
            let algo_dir = create_dir_durable(&blobs, algo)?;
            let fan_dir = create_dir_durable(&algo_dir, &fan)?;
            fs::rename(&upload, &target)?;
            sync_dir(&fan_dir)?;
            Ok(())
        })
        .await
    }

    async fn upload_abort(&self, id: &str, _state: &UploadState) -> Result<(), BlobError> {
        check_upload_id(id)?;
        let guard = self.inner.locks.lock(id).await;
        let path = self.upload_path(id);
        blocking(move || {
            let _guard = guard;
            match fs::remove_file(&path) {
                Err(e) if !is_not_found(&e) => Err(e.into()),
                _ => Ok(()),
            }
        })
        .await
    }
}
