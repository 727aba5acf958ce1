//! The core's integration tests, one test binary: GC as a model and as runs, and the
//! background jobs, on the real SQLite store and the memory blob store.

mod gc_model;
mod gc_run;
mod jobs;
