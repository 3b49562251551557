//! Fuzz targets for `chat-core`, one plain function per target.
//!
//! The bodies live in [`targets`] (`src/targets.rs`), a file that depends on
//! nothing but `chat_core` and `arbitrary`, so that
//! `chat-core/tests/fuzz_corpus.rs` can include it by path and replay the
//! committed seeds and regression inputs through the very same functions on
//! stable Rust. Each `fuzz_targets/*.rs` is a one-line call into here.

pub mod targets;

pub use targets::{cluster, cluster_entry, framing, nick, policies, sanitize, server};
