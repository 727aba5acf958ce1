//! Blobs in any S3-compatible object store, through `object_store`'s low-level multipart
//! API: the store for replicated deployments, where every replica must be able to continue
//! an upload another one started.
//!
//! Keys below the configured prefix:
//!
//! ```text
//! blobs/<algo>/<first 2 hex>/<hex>   committed blobs
//! uploads/<id>/upload                marker: exists while the upload does; holds the
//!                                    multipart id once there is one
//! uploads/<id>/data                  the multipart upload's target, completed at commit
//! uploads/<id>/tail.<start>          bytes from <start> not yet sent as a part
//! ```
//!
//! S3 parts must be at least 5 MiB except the last, and a part cannot be appended to, so an
//! append sends its data as parts of 8 MiB (several in flight while the body still
//! arrives) and stores what is left, fewer than 5 MiB, as a tail object that the next append
//! or the commit reads back and puts in front. The [`UploadState`] records the multipart
//! id, the part ETags and how many bytes they hold. A tail is named by the offset it starts
//! at, and the tail the given state points at is kept until the next part boundary, so an
//! append retried from the previous state (the caller crashed before saving the new one)
//! still finds its bytes.
//!
//! A commit completes the multipart upload to `uploads/<id>/data` and copies it to its
//! content key (a blob that never filled a part is written there directly), then deletes
//! the upload's objects. The copy is one `CopyObject`, which AWS limits to 5 GiB.

use crate::keys::{self, check_upload_id};
use crate::{BlobError, BlobRead, BlobStore, ByteStream, Existing, UploadState};
use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;

/// Smallest part S3 accepts, except for the last one.
const MIN_PART: usize = 5 << 20;
/// Size of the parts a large append is cut into.
const PART_SIZE: usize = 8 << 20;
/// Parts being sent at once by one append.
const PARTS_IN_FLIGHT: usize = 3;

/// Where and how to reach the bucket. Deserialises from the `[storage.s3]` section of the
/// configuration; every field but `bucket` has a default. `Debug` never shows the secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible service; AWS itself when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The bucket; it must exist.
    pub bucket: String,
    /// Region to sign requests for.
    #[serde(default = "default_region")]
    pub region: String,
    /// Static credentials; when absent, the instance or container role is used.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret of `access_key_id`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// `endpoint/bucket/key` requests instead of `bucket.endpoint/key`.
    #[serde(default)]
    pub path_style: bool,
    /// Allow a plain `http://` endpoint.
    #[serde(default)]
    pub allow_http: bool,
    /// Key prefix, treated as a directory (`a/b` and `a/b/` are the same); empty for the
    /// bucket's root.
    #[serde(default)]
    pub prefix: String,
}

fn default_region() -> String {
    "us-east-1".to_string()
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            bucket: String::new(),
            region: default_region(),
            access_key_id: None,
            secret_access_key: None,
            path_style: false,
            allow_http: false,
            prefix: String::new(),
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("path_style", &self.path_style)
            .field("allow_http", &self.allow_http)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// A [`BlobStore`] in an S3 bucket. Cheap to clone.
#[derive(Clone)]
pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    bucket: String,
    /// Normalised prefix: empty, or ending with one `/`.
    prefix: String,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// What the caller keeps for us between appends, as JSON in [`UploadState`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct S3State {
    /// The multipart upload to `uploads/<id>/data`, once the first part was needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multipart: Option<String>,
    /// ETags of the parts that hold the upload's first `sent` bytes, in order.
    #[serde(default)]
    parts: Vec<String>,
    /// Bytes held by `parts`; the tail object `tail.<sent>` holds what follows.
    #[serde(default)]
    sent: u64,
    /// Start of the tail the previous state pointed at, kept for a retry from that state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev_tail: Option<u64>,
}

impl S3State {
    fn parse(state: &UploadState) -> Result<S3State, BlobError> {
        if state.0.is_empty() {
            return Ok(S3State::default());
        }
        serde_json::from_str(&state.0)
            .map_err(|e| BlobError::Backend(format!("invalid s3 upload state: {e}")))
    }

    fn to_state(&self) -> Result<UploadState, BlobError> {
        serde_json::to_string(self)
            .map(UploadState)
            .map_err(|e| BlobError::Backend(format!("cannot encode s3 upload state: {e}")))
    }
}

/// Content of `uploads/<id>/upload`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Marker {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multipart: Option<String>,
}

fn backend(e: object_store::Error) -> BlobError {
    BlobError::Backend(e.to_string())
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// Store-relative key of `upload`'s data, if it is one: `uploads/<valid id>/<name>`.
fn upload_of_key(rel: &str) -> Option<&str> {
    let rest = rel.strip_prefix("uploads/")?;
    let (id, name) = rest.split_once('/')?;
    (keys::is_valid_upload_id(id) && !name.is_empty()).then_some(id)
}

/// Takes the first `n` bytes (or all there is) out of a queue of chunks, without copying.
fn take_front(pending: &mut VecDeque<Bytes>, pending_len: &mut usize, n: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut need = n;
    while need > 0 {
        let Some(mut front) = pending.pop_front() else {
            break;
        };
        if front.len() <= need {
            need -= front.len();
            out.push(front);
        } else {
            out.push(front.split_to(need));
            need = 0;
            pending.push_front(front);
        }
    }
    *pending_len -= n - need;
    out
}

impl S3BlobStore {
    /// Builds a client for `cfg`. Nothing is read from the environment (this machine's and
    /// many others' `AWS_*` variables would otherwise change where and how it connects),
    /// and nothing is sent until the first request.
    pub fn new(cfg: S3Config) -> Result<Self, BlobError> {
        if cfg.bucket.is_empty() {
            return Err(BlobError::Backend("s3 bucket is not configured".into()));
        }
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_allow_http(cfg.allow_http)
            .with_virtual_hosted_style_request(!cfg.path_style);
        if let Some(endpoint) = &cfg.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &cfg.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &cfg.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| BlobError::Backend(format!("s3 configuration: {e}")))?;
        let trimmed = cfg.prefix.trim_matches('/');
        let prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("{trimmed}/")
        };
        Ok(S3BlobStore {
            store: Arc::new(store),
            bucket: cfg.bucket,
            prefix,
        })
    }

    /// The object path of a store-relative key.
    fn key(&self, rel: &str) -> Path {
        Path::from(format!("{}{}", self.prefix, rel))
    }

    fn root(&self) -> Option<Path> {
        (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()))
    }

    /// The store-relative key of a listed object.
    fn rel<'a>(&self, location: &'a Path) -> Option<&'a str> {
        location.as_ref().strip_prefix(self.prefix.as_str())
    }

    fn blob_key(&self, digest: &Digest) -> Path {
        self.key(&format!("blobs/{}", keys::blob_rel(digest)))
    }

    fn marker_key(&self, id: &str) -> Path {
        self.key(&format!("uploads/{id}/upload"))
    }

    fn data_key(&self, id: &str) -> Path {
        self.key(&format!("uploads/{id}/data"))
    }

    fn tail_key(&self, id: &str, start: u64) -> Path {
        self.key(&format!("uploads/{id}/tail.{start}"))
    }

    /// The upload's marker; `UploadNotFound` if the upload does not exist.
    async fn marker(&self, id: &str) -> Result<Marker, BlobError> {
        let got = match self.store.get(&self.marker_key(id)).await {
            Ok(got) => got,
            Err(e) if is_not_found(&e) => return Err(BlobError::UploadNotFound(id.to_string())),
            Err(e) => return Err(backend(e)),
        };
        let bytes = got.bytes().await.map_err(backend)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| BlobError::Backend(format!("invalid marker of upload {id}: {e}")))
    }

    async fn put_marker(&self, id: &str, marker: &Marker) -> Result<(), BlobError> {
        let body = serde_json::to_vec(marker)
            .map_err(|e| BlobError::Backend(format!("cannot encode upload marker: {e}")))?;
        self.store
            .put(&self.marker_key(id), PutPayload::from(body))
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// The first `len` bytes of the tail starting at `start`.
    async fn read_tail(&self, id: &str, start: u64, len: u64) -> Result<Bytes, BlobError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let bytes = match self
            .store
            .get_range(&self.tail_key(id, start), 0..len)
            .await
        {
            Ok(b) => b,
            Err(e) if is_not_found(&e) => return Err(BlobError::UploadNotFound(id.to_string())),
            Err(e) => return Err(backend(e)),
        };
        if bytes.len() as u64 != len {
            return Err(BlobError::Backend(format!(
                "tail of upload {id} holds {} bytes, the upload state expects {len}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// Aborts the multipart upload, if any, and deletes every object of the upload, the
    /// marker last so that an interrupted clean-up is still listed and can be retried.
    async fn remove_upload(&self, id: &str, multipart: Option<&str>) -> Result<(), BlobError> {
        if let Some(mp) = multipart {
            match self
                .store
                .abort_multipart(&self.data_key(id), &mp.to_string())
                .await
            {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        let marker = self.marker_key(id);
        let mut objects: Vec<Path> = self
            .store
            .list(Some(&self.key(&format!("uploads/{id}"))))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(backend)?;
        objects.retain(|p| *p != marker);
        objects.push(marker);
        for path in objects {
            match self.store.delete(&path).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(())
    }

    /// Starts the multipart upload the first time a part is needed and records its id in
    /// the marker, so an abort finds it even without the caller's state.
    async fn ensure_multipart(&self, id: &str, st: &mut S3State) -> Result<String, BlobError> {
        if let Some(mp) = &st.multipart {
            return Ok(mp.clone());
        }
        let mp = self
            .store
            .create_multipart(&self.data_key(id))
            .await
            .map_err(backend)?;
        let marker = Marker {
            multipart: Some(mp.clone()),
        };
        if let Err(e) = self.put_marker(id, &marker).await {
            // Unrecorded, nobody could ever abort it: do it now.
            if let Err(abort) = self.store.abort_multipart(&self.data_key(id), &mp).await {
                tracing::warn!(upload = id, error = %abort, "could not abort an unrecorded multipart upload");
            }
            return Err(e);
        }
        st.multipart = Some(mp.clone());
        Ok(mp)
    }
}

/// Parts of one append being sent in the background.
struct PartUploads {
    tasks: JoinSet<(usize, Result<PartId, object_store::Error>)>,
    /// ETags by part index, as they complete.
    done: BTreeMap<usize, String>,
}

impl PartUploads {
    fn new() -> Self {
        PartUploads {
            tasks: JoinSet::new(),
            done: BTreeMap::new(),
        }
    }

    fn spawn(&mut self, store: &S3BlobStore, path: Path, mp: String, idx: usize, data: Vec<Bytes>) {
        let store = Arc::clone(&store.store);
        let payload: PutPayload = data.into_iter().collect();
        self.tasks.spawn(async move {
            let res = store.put_part(&path, &mp, idx, payload).await;
            (idx, res)
        });
    }

    /// Waits for one part to finish.
    async fn join_one(&mut self) -> Result<(), BlobError> {
        match self.tasks.join_next().await {
            None => Ok(()),
            Some(Ok((idx, Ok(part)))) => {
                self.done.insert(idx, part.content_id);
                Ok(())
            }
            Some(Ok((idx, Err(e)))) => Err(BlobError::Backend(format!("sending part {idx}: {e}"))),
            Some(Err(e)) => Err(BlobError::Backend(format!("part upload task failed: {e}"))),
        }
    }

    async fn join_all(&mut self) -> Result<(), BlobError> {
        while !self.tasks.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn ping(&self) -> Result<(), BlobError> {
        self.store
            .list_with_delimiter(self.root().as_ref())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        match self.store.head(&self.blob_key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn get(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<BlobRead, BlobError> {
        let path = self.blob_key(digest);
        let sized = |size: u64, stream: ByteStream| Ok(BlobRead { size, stream });
        match range {
            Some((s, e)) if s > e => return Err(BlobError::Range),
            Some((s, e)) if s == e => {
                // S3 has no empty range: answer from the object's size.
                let size = self.stat(digest).await?.ok_or(BlobError::NotFound)?;
                if e > size {
                    return Err(BlobError::Range);
                }
                return sized(size, stream::empty().boxed());
            }
            _ => {}
        }
        let options = GetOptions {
            range: range.map(|(s, e)| GetRange::Bounded(s..e)),
            ..GetOptions::default()
        };
        let got = match self.store.get_opts(&path, options).await {
            Ok(got) => got,
            Err(e) if is_not_found(&e) => return Err(BlobError::NotFound),
            Err(e) => {
                // Most likely a range past the end (416): say which.
                if let Some((_, end)) = range {
                    match self.stat(digest).await? {
                        None => return Err(BlobError::NotFound),
                        Some(size) if end > size => return Err(BlobError::Range),
                        Some(_) => {}
                    }
                }
                return Err(backend(e));
            }
        };
        let size = got.meta.size;
        if range.is_some_and(|(_, e)| e > size) {
            return Err(BlobError::Range);
        }
        let stream = got.into_stream().map_err(std::io::Error::other).boxed();
        sized(size, stream)
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, BlobError> {
        let path = self.blob_key(digest);
        if self.stat(digest).await?.is_none() {
            return Ok(false);
        }
        match self.store.delete(&path).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }

    fn list(&self) -> BoxStream<'static, Result<(Digest, u64), BlobError>> {
        let this = self.clone();
        self.store
            .list(Some(&self.key("blobs")))
            .map_err(backend)
            .try_filter_map(move |meta| {
                let blob = this
                    .rel(&meta.location)
                    .and_then(keys::parse_blob_key)
                    .map(|d| (d, meta.size));
                async move { Ok(blob) }
            })
            .boxed()
    }

    fn list_foreign(&self) -> BoxStream<'static, Result<String, BlobError>> {
        let this = self.clone();
        self.store
            .list(self.root().as_ref())
            .map_err(backend)
            .try_filter_map(move |meta| {
                let foreign = match this.rel(&meta.location) {
                    Some(rel) if keys::parse_blob_key(rel).is_some() => None,
                    Some(rel) if upload_of_key(rel).is_some() => None,
                    Some(rel) => Some(rel.to_string()),
                    None => None,
                };
                async move { Ok(foreign) }
            })
            .boxed()
    }

    async fn delete_foreign(&self, key: &str) -> Result<(), BlobError> {
        if keys::parse_blob_key(key).is_some() || upload_of_key(key).is_some() {
            return Err(BlobError::NotFound);
        }
        let path = Path::parse(format!("{}{key}", self.prefix)).map_err(|_| BlobError::NotFound)?;
        match self.store.delete(&path).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    fn list_uploads(&self) -> BoxStream<'static, Result<(String, u64), BlobError>> {
        let this = self.clone();
        let listing = self.store.list(Some(&self.key("uploads")));
        let collected = async move {
            // An upload is several objects: its age is that of the newest one.
            let mut newest: BTreeMap<String, i64> = BTreeMap::new();
            let mut listing = listing;
            while let Some(meta) = listing.try_next().await.map_err(backend)? {
                if let Some(id) = this.rel(&meta.location).and_then(upload_of_key) {
                    let t = meta.last_modified.timestamp();
                    let e = newest.entry(id.to_string()).or_insert(t);
                    *e = (*e).max(t);
                }
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let ages: Vec<Result<(String, u64), BlobError>> = newest
                .into_iter()
                .map(|(id, t)| Ok((id, now.saturating_sub(t).max(0) as u64)))
                .collect();
            Ok::<_, BlobError>(stream::iter(ages))
        };
        stream::once(collected).try_flatten().boxed()
    }

    async fn upload_start(&self, id: &str) -> Result<UploadState, BlobError> {
        check_upload_id(id)?;
        self.put_marker(id, &Marker::default()).await?;
        S3State::default().to_state()
    }

    async fn upload_append(
        &self,
        id: &str,
        state: &UploadState,
        offset: u64,
        mut data: ByteStream,
    ) -> Result<(UploadState, u64), BlobError> {
        check_upload_id(id)?;
        let mut st = S3State::parse(state)?;
        let marker = self.marker(id).await?;
        if st.multipart.is_none() {
            // A multipart started by an append whose new state the caller never saved.
            st.multipart = marker.multipart;
        }
        if offset < st.sent {
            return Err(BlobError::Backend(format!(
                "upload {id}: offset {offset} is before the {} bytes already sent",
                st.sent
            )));
        }
        let old_sent = st.sent;
        let tail = self.read_tail(id, old_sent, offset - old_sent).await?;

        let mut pending: VecDeque<Bytes> = VecDeque::new();
        let mut pending_len = tail.len();
        if !tail.is_empty() {
            pending.push_back(tail);
        }
        let mut parts = PartUploads::new();
        let mut next_idx = st.parts.len();
        let mut sent = old_sent;
        let mut received = 0u64;
        let data_key = self.data_key(id);
        loop {
            let chunk = match data.next().await {
                Some(Ok(chunk)) => chunk,
                // Dropping `parts` cancels what is still being sent: nothing counts.
                Some(Err(e)) => return Err(BlobError::Source(e)),
                None => break,
            };
            received += chunk.len() as u64;
            pending_len += chunk.len();
            pending.push_back(chunk);
            while pending_len >= PART_SIZE {
                if parts.tasks.len() >= PARTS_IN_FLIGHT {
                    parts.join_one().await?;
                }
                let mp = self.ensure_multipart(id, &mut st).await?;
                let body = take_front(&mut pending, &mut pending_len, PART_SIZE);
                parts.spawn(self, data_key.clone(), mp, next_idx, body);
                next_idx += 1;
                sent += PART_SIZE as u64;
            }
        }
        if received == 0 {
            return Ok((state.clone(), 0));
        }
        if pending_len >= MIN_PART {
            let mp = self.ensure_multipart(id, &mut st).await?;
            let n = pending_len;
            let body = take_front(&mut pending, &mut pending_len, n);
            parts.spawn(self, data_key.clone(), mp, next_idx, body);
            sent += n as u64;
        }
        parts.join_all().await?;
        st.parts.extend(parts.done.into_values());
        st.sent = sent;

        // Always written, even empty: its time is the upload's last activity.
        let rest: PutPayload = pending.into_iter().collect();
        self.store
            .put(&self.tail_key(id, sent), rest)
            .await
            .map_err(backend)?;
        if sent != old_sent {
            if let Some(prev) = st.prev_tail.filter(|p| *p != old_sent) {
                // Two states back: no retry can need it any more.
                if let Err(e) = self.store.delete(&self.tail_key(id, prev)).await {
                    if !is_not_found(&e) {
                        tracing::warn!(upload = id, error = %e, "could not delete an old upload tail");
                    }
                }
            }
            st.prev_tail = Some(old_sent);
        }
        Ok((st.to_state()?, received))
    }

    async fn upload_commit(
        &self,
        id: &str,
        state: &UploadState,
        len: u64,
        digest: &Digest,
        existing: Existing,
    ) -> Result<(), BlobError> {
        check_upload_id(id)?;
        let st = S3State::parse(state)?;
        let target = self.blob_key(digest);
        let there = self.stat(digest).await?.is_some();
        if there && existing == Existing::Keep {
            // Already there (pushed to another repository, or a retried commit).
            let mp = match self.marker(id).await {
                Ok(m) => st.multipart.clone().or(m.multipart),
                Err(BlobError::UploadNotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            return self.remove_upload(id, mp.as_deref()).await;
        }
        // With `Replace`, the put or copy below overwrites the stored object (one atomic
        // step for S3 readers).
        let marker = match self.marker(id).await {
            Ok(m) => m,
            // A retried commit: the upload became the blob.
            Err(BlobError::UploadNotFound(_)) if there => return Ok(()),
            Err(e) => return Err(e),
        };
        let multipart = st.multipart.clone().or(marker.multipart);
        if len < st.sent {
            return Err(BlobError::Backend(format!(
                "upload {id}: cannot commit {len} bytes, {} were already sent as parts",
                st.sent
            )));
        }
        let tail = self.read_tail(id, st.sent, len - st.sent).await?;
        let leftover_multipart = match (&multipart, st.parts.is_empty()) {
            (Some(mp), false) => {
                let data_key = self.data_key(id);
                let mut parts: Vec<PartId> = st
                    .parts
                    .iter()
                    .map(|etag| PartId {
                        content_id: etag.clone(),
                    })
                    .collect();
                if !tail.is_empty() {
                    let last = self
                        .store
                        .put_part(&data_key, mp, parts.len(), PutPayload::from(tail))
                        .await
                        .map_err(backend)?;
                    parts.push(last);
                }
                if let Err(e) = self.store.complete_multipart(&data_key, mp, parts).await {
                    // A retried commit finds the upload already completed.
                    match self.store.head(&data_key).await {
                        Ok(meta) if meta.size == len => {}
                        _ => return Err(backend(e)),
                    }
                }
                self.store.copy(&data_key, &target).await.map_err(backend)?;
                None
            }
            (_, true) => {
                // Never reached a part: the tail is the whole blob.
                self.store
                    .put(&target, PutPayload::from(tail))
                    .await
                    .map_err(backend)?;
                multipart
            }
            (None, false) => {
                return Err(BlobError::Backend(format!(
                    "upload {id}: state lists parts but no multipart upload"
                )))
            }
        };
        self.remove_upload(id, leftover_multipart.as_deref()).await
    }

    async fn upload_abort(&self, id: &str, state: &UploadState) -> Result<(), BlobError> {
        check_upload_id(id)?;
        let st = S3State::parse(state).unwrap_or_default();
        let from_marker = match self.marker(id).await {
            Ok(m) => m.multipart,
            Err(BlobError::UploadNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let mp = st.multipart.or(from_marker);
        self.remove_upload(id, mp.as_deref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let cfg = S3Config {
            bucket: "b".into(),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI-very-secret".into()),
            ..S3Config::default()
        };
        let shown = format!("{cfg:?} {cfg:#?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("AKIDEXAMPLE"));
    }

    #[test]
    fn config_defaults() {
        let cfg: S3Config = serde_json::from_str(r#"{"bucket":"registry"}"#).expect("config");
        assert_eq!(cfg.region, "us-east-1");
        assert_eq!(cfg.prefix, "");
        assert!(!cfg.path_style && !cfg.allow_http);
        assert!(cfg.endpoint.is_none() && cfg.secret_access_key.is_none());
        assert!(serde_json::from_str::<S3Config>(r#"{"bucket":"b","bukket":"x"}"#).is_err());
        assert!(serde_json::from_str::<S3Config>(r#"{"region":"x"}"#).is_err());
    }

    #[test]
    fn take_front_splits_without_losing_bytes() {
        let mut q: VecDeque<Bytes> = [&b"abc"[..], b"defg", b"h"]
            .into_iter()
            .map(Bytes::from_static)
            .collect();
        let mut len = 8;
        let a = take_front(&mut q, &mut len, 5);
        assert_eq!(a.concat(), b"abcde");
        assert_eq!(len, 3);
        let b = take_front(&mut q, &mut len, 10);
        assert_eq!(b.concat(), b"fgh");
        assert_eq!(len, 0);
    }

    #[test]
    fn upload_keys() {
        assert_eq!(upload_of_key("uploads/abc-1/tail.0"), Some("abc-1"));
        assert_eq!(upload_of_key("uploads/abc/upload"), Some("abc"));
        assert_eq!(upload_of_key("uploads/abc"), None);
        assert_eq!(upload_of_key("uploads/a.b/data"), None);
        assert_eq!(upload_of_key("uploads/abc/"), None);
        assert_eq!(upload_of_key("tmp/abc/data"), None);
    }

    #[test]
    fn state_round_trips_and_tolerates_empty() {
        let st = S3State {
            multipart: Some("mp".into()),
            parts: vec!["e1".into(), "e2".into()],
            sent: 16 << 20,
            prev_tail: Some(0),
        };
        let back = S3State::parse(&st.to_state().expect("encode")).expect("decode");
        assert_eq!(back.parts, st.parts);
        assert_eq!(back.sent, st.sent);
        assert!(S3State::parse(&UploadState::default()).is_ok());
        assert!(S3State::parse(&UploadState("{".into())).is_err());
    }
}
