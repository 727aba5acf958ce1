//! Hot-path reads of the SQLite store, run on the calling thread.
//!
//! sqlx runs every SQLite connection on a thread of its own and hands each statement to it
//! and back: two thread wake-ups per query, which on a busy 2-core machine cost more than
//! the query (a manifest lookup is an index probe in pages the OS already caches). The
//! reads that serve pulls (manifest by tag or digest, blob size, tag and catalog pages)
//! therefore use a read-only connection owned by the current thread instead. This is a
//! deliberate exception to "async code does not block": each statement is a few
//! microseconds of CPU on a WAL database, never waits for the writer, and holds no lock.
//!
//! Connections are per thread and per store; a store's connections close on the thread's
//! next use after the store is dropped.

use crate::MetaError;
use rusqlite::{Connection, OpenFlags};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CONNECTIONS: RefCell<Vec<(u64, Weak<()>, Connection)>> = const { RefCell::new(Vec::new()) };
}

/// Read-only access to one database file through per-thread connections.
#[derive(Debug)]
pub(crate) struct FastReads {
    path: PathBuf,
    id: u64,
    /// Alive as long as the store; connections of a dropped store are closed lazily.
    alive: Arc<()>,
}

impl FastReads {
    pub(crate) fn new(path: &Path) -> FastReads {
        FastReads {
            path: path.to_path_buf(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_handler(Some(crate::sqlite::on_busy))?;
        c.set_prepared_statement_cache_capacity(32);
        Ok(c)
    }

    /// Runs `f` on this thread's connection to the database.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, MetaError> {
        CONNECTIONS.with(|cell| {
            let mut conns = cell.borrow_mut();
            conns.retain(|(_, alive, _)| alive.strong_count() > 0);
            let at = match conns.iter().position(|(id, _, _)| *id == self.id) {
                Some(i) => i,
                None => {
                    let c = self.open().map_err(backend)?;
                    conns.push((self.id, Arc::downgrade(&self.alive), c));
                    conns.len() - 1
                }
            };
            f(&conns[at].2).map_err(backend)
        })
    }
}

fn backend(e: rusqlite::Error) -> MetaError {
    MetaError::Backend(format!("sqlite read: {e}"))
}
