//! The blob stores' integration tests, one test binary: the conformance suite against each
//! implementation (filesystem, memory, S3), plus each one's own cases.

mod fs;
mod memory;
mod s3;
