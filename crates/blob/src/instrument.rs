//! [`Instrumented`]: the wrapper that records, for every call of a [`BlobStore`], its
//! latency (`berth_store_call_duration_seconds{store="BlobStore", method}`) and, when it
//! fails, an error (`berth_store_errors_total{store="BlobStore", method}`), the same
//! series the metadata stores' wrapper writes. The labels are the method names, a closed
//! set. A read is timed until its stream is open, not while it is consumed; the listing
//! streams are passed through untimed (they serve fsck and storage verification).

use crate::{BlobError, BlobRead, BlobStore, ByteStream, Existing, UploadState};
use async_trait::async_trait;
use berth_oci::Digest;
use futures::stream::BoxStream;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// A blob store wrapped to record the latency and the errors of every call.
pub struct Instrumented {
    inner: Arc<dyn BlobStore>,
}

impl Instrumented {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn BlobStore>) -> Self {
        Instrumented { inner }
    }
}

/// Runs one call of `method` and records its latency and, if it fails, an error.
async fn observe<T>(
    method: &'static str,
    call: impl Future<Output = Result<T, BlobError>>,
) -> Result<T, BlobError> {
    let start = Instant::now();
    let out = call.await;
    let labels = [("store", "BlobStore"), ("method", method)];
    metrics::histogram!("berth_store_call_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    if out.is_err() {
        metrics::counter!("berth_store_errors_total", &labels).increment(1);
    }
    out
}

/// The implementation: the listing streams and `kind` pass through, and every `async`
/// method, written here as `name(arguments) -> Ok type`, forwards through [`observe`].
macro_rules! instrumented {
    ($($m:ident($($arg:ident: $ty:ty),*) -> $ok:ty;)*) => {
        #[async_trait]
        impl BlobStore for Instrumented {
            fn kind(&self) -> &'static str {
                self.inner.kind()
            }

            fn list(&self) -> BoxStream<'static, Result<(Digest, u64), BlobError>> {
                self.inner.list()
            }

            fn list_foreign(&self) -> BoxStream<'static, Result<String, BlobError>> {
                self.inner.list_foreign()
            }

            fn list_uploads(&self) -> BoxStream<'static, Result<(String, u64), BlobError>> {
                self.inner.list_uploads()
            }

            $(
                async fn $m(&self, $($arg: $ty),*) -> Result<$ok, BlobError> {
                    observe(stringify!($m), self.inner.$m($($arg),*)).await
                }
            )*
        }
    };
}

instrumented! {
    ping() -> ();
    stat(digest: &Digest) -> Option<u64>;
    get(digest: &Digest, range: Option<(u64, u64)>) -> BlobRead;
    delete(digest: &Digest) -> bool;
    delete_foreign(key: &str) -> ();
    upload_start(id: &str) -> UploadState;
    upload_append(id: &str, state: &UploadState, offset: u64, data: ByteStream) -> (UploadState, u64);
    upload_commit(id: &str, state: &UploadState, len: u64, digest: &Digest, existing: Existing) -> ();
    upload_abort(id: &str, state: &UploadState) -> ();
}
