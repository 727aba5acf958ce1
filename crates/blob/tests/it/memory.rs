//! The conformance suite against the in-memory store. A clone of the store plays the
//! restarted process: clones share their contents.

use berth_blob::conformance::Fixture;
use berth_blob::memory::MemoryBlobStore;

berth_blob::blob_store_conformance!(memory, async {
    let store = MemoryBlobStore::new();
    Fixture::new((), move || Ok(store.clone()))
});
