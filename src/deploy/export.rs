//! A commit into a release directory: the tree export itself is the
//! `symdeploy-export` crate; here the commit is peeled to its tree, the
//! crate's errors become ours, and `REVISION` is written.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use gix::ObjectId;
pub(crate) use symdeploy_export::Stats;

use crate::error::{Error, IoContext, Result};

impl From<symdeploy_export::Error> for Error {
    fn from(e: symdeploy_export::Error) -> Self {
        match e {
            symdeploy_export::Error::Io {
                action,
                path,
                source,
            } => Error::io(action, path, source),
            symdeploy_export::Error::Other { message, help } => Error::Other { message, help },
        }
    }
}

/// Export `commit` (peeled to its tree) of `repo` into `dest`, which must not
/// exist yet; its parent must.
pub(crate) fn export_commit(
    repo: &gix::Repository,
    commit: ObjectId,
    dest: &Path,
) -> Result<Stats> {
    let tree = crate::state::repo::tree_of(repo, commit)?;
    Ok(symdeploy_export::export_tree(repo, tree, dest)?)
}

/// The bytes an export of `commit` writes, for a full-disk message.
pub(crate) fn commit_bytes(repo: &gix::Repository, commit: ObjectId) -> Result<u64> {
    let tree = crate::state::repo::tree_of(repo, commit)?;
    Ok(symdeploy_export::tree_bytes(repo, tree)?)
}

/// Write `REVISION` (the commit hash) at the top of an export. A REVISION the
/// commit brings itself is replaced, never written through (it may be a symlink).
pub(crate) fn write_revision(dir: &Path, hex: &str) -> Result<()> {
    let path = dir.join("REVISION");
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        crate::sys::output::warning(
            "the commit has its own REVISION; replacing it with the commit hash",
        );
        crate::deploy::shared::remove_release_copy(&path, &meta)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .at("write", &path)?;
    f.write_all(format!("{hex}\n").as_bytes())
        .at("write", &path)
}
