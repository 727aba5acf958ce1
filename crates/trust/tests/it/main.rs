//! The trust crate's tests: golden files written by the real notary client, and update
//! validation over metadata these tests sign themselves.

mod golden;
mod update;
