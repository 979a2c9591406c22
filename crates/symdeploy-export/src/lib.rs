//! A git tree → a new directory, with gix and no `git` subprocess.
//!
//! Context-free: it knows nothing of deploy roots, releases or the journal.
//! The caller resolves the commit to its tree and decides what an error
//! means to its operator; this crate says what failed, where, and what would
//! fix it.

#![deny(missing_docs)]

mod blobstream;
mod error;
mod tree;

pub use error::{Error, Result};
pub use tree::{export_tree, tree_bytes, Stats};
