//! An in-process [`BlobStore`] for tests of the layers above: the same semantics as the
//! durable stores (upload ids, truncation on append, dedup on commit, ranges), none of the
//! durability. Clones share their contents, which is how a test plays "another process".

use crate::keys::{self, check_holds, check_upload_id, Needed};
use crate::{BlobError, BlobRead, BlobStore, ByteStream, Existing, UploadState};
use async_trait::async_trait;
use berth_oci::Digest;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Largest chunk a read hands out, as the file store does.
const READ_CHUNK: usize = 1 << 20;

/// A [`BlobStore`] in memory. Cheap to clone; clones share the same blobs and uploads.
#[derive(Clone, Default)]
pub struct MemoryBlobStore {
    blobs: Arc<Mutex<HashMap<Digest, Bytes>>>,
    uploads: Arc<Mutex<HashMap<String, Upload>>>,
}

struct Upload {
    data: BytesMut,
    modified: Instant,
}

impl std::fmt::Debug for MemoryBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBlobStore")
            .field("blobs", &lock(&self.blobs).len())
            .field("uploads", &lock(&self.uploads).len())
            .finish()
    }
}

/// Our critical sections never panic half way; a poisoned lock still holds a whole value.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryBlobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), BlobError> {
        Ok(())
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        Ok(lock(&self.blobs).get(digest).map(|b| b.len() as u64))
    }

    async fn get(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<BlobRead, BlobError> {
        let blob = lock(&self.blobs)
            .get(digest)
            .cloned()
            .ok_or(BlobError::NotFound)?;
        let size = blob.len() as u64;
        let (start, end) = match range {
            None => (0, size),
            Some((s, e)) if s <= e && e <= size => (s, e),
            Some(_) => return Err(BlobError::Range),
        };
        let mut rest = blob.slice(start as usize..end as usize);
        let mut chunks = Vec::new();
        while !rest.is_empty() {
            let n = rest.len().min(READ_CHUNK);
            chunks.push(Ok(rest.split_to(n)));
        }
        Ok(BlobRead {
            size,
            stream: stream::iter(chunks).boxed(),
        })
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, BlobError> {
        Ok(lock(&self.blobs).remove(digest).is_some())
    }

    fn list(&self) -> BoxStream<'static, Result<(Digest, u64), BlobError>> {
        let all: BTreeMap<Digest, u64> = lock(&self.blobs)
            .iter()
            .map(|(d, b)| (d.clone(), b.len() as u64))
            .collect();
        stream::iter(all.into_iter().map(Ok)).boxed()
    }

    fn list_foreign(&self) -> BoxStream<'static, Result<String, BlobError>> {
        // Nothing can be written here except through the trait: no strays.
        stream::empty().boxed()
    }

    async fn delete_foreign(&self, key: &str) -> Result<(), BlobError> {
        // A key naming a committed blob is not foreign; anything else is absent.
        match keys::parse_blob_key(key) {
            Some(d) if lock(&self.blobs).contains_key(&d) => Err(BlobError::NotFound),
            _ => Ok(()),
        }
    }

    fn list_uploads(&self) -> BoxStream<'static, Result<(String, u64), BlobError>> {
        let all: BTreeMap<String, u64> = lock(&self.uploads)
            .iter()
            .map(|(id, u)| (id.clone(), u.modified.elapsed().as_secs()))
            .collect();
        stream::iter(all.into_iter().map(Ok)).boxed()
    }

    async fn upload_start(&self, id: &str) -> Result<UploadState, BlobError> {
        check_upload_id(id)?;
        let upload = Upload {
            data: BytesMut::new(),
            modified: Instant::now(),
        };
        lock(&self.uploads).insert(id.to_string(), upload);
        Ok(UploadState::default())
    }

    async fn upload_append(
        &self,
        id: &str,
        state: &UploadState,
        offset: u64,
        mut data: ByteStream,
    ) -> Result<(UploadState, u64), BlobError> {
        check_upload_id(id)?;
        if !lock(&self.uploads).contains_key(id) {
            return Err(BlobError::UploadNotFound(id.to_string()));
        }
        // Collect first: the lock is not held across awaits, and a failed body adds nothing.
        let mut chunks = Vec::new();
        while let Some(chunk) = data.next().await {
            chunks.push(chunk.map_err(BlobError::Source)?);
        }
        let mut uploads = lock(&self.uploads);
        let upload = uploads
            .get_mut(id)
            .ok_or_else(|| BlobError::UploadNotFound(id.to_string()))?;
        check_holds(id, upload.data.len() as u64, Needed::Offset(offset))?;
        upload.data.truncate(offset as usize);
        let mut n = 0u64;
        for chunk in chunks {
            n += chunk.len() as u64;
            upload.data.extend_from_slice(&chunk);
        }
        upload.modified = Instant::now();
        Ok((state.clone(), n))
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
        // Lock order: uploads, then blobs.
        let mut uploads = lock(&self.uploads);
        let mut blobs = lock(&self.blobs);
        let there = blobs.contains_key(digest);
        if there && (existing == Existing::Keep || !uploads.contains_key(id)) {
            uploads.remove(id);
            return Ok(());
        }
        let upload = uploads
            .get(id)
            .ok_or_else(|| BlobError::UploadNotFound(id.to_string()))?;
        check_holds(id, upload.data.len() as u64, Needed::Commit(len))?;
        if let Some(mut upload) = uploads.remove(id) {
            upload.data.truncate(len as usize);
            blobs.insert(digest.clone(), upload.data.freeze());
        }
        Ok(())
    }

    async fn upload_abort(&self, id: &str, _state: &UploadState) -> Result<(), BlobError> {
        check_upload_id(id)?;
        lock(&self.uploads).remove(id);
        Ok(())
    }
}
