//! A commit into a release directory: the tree export itself is the
//! `symdeploy-export` crate; here the commit is peeled to its tree, the
//! crate's errors become ours, and `REVISION` is written.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use gix::ObjectId;
pub(crate) use symdeploy_export::Stats;

use crate::error::{Error, IoContext, Result};
use crate::state::commit::Commit;

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

/// A commit to export, peeled to its tree once: the disk check, the export
/// and a full disk's explanation all read that one tree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source {
    /// The commit, for names and messages.
    pub(crate) commit: Commit,
    /// Its tree.
    pub(crate) tree: ObjectId,
}

impl Source {
    /// `commit` of `repo`, peeled to its tree.
    pub(crate) fn of(repo: &gix::Repository, commit: Commit) -> Result<Source> {
        Ok(Source {
            commit,
            tree: crate::state::repo::tree_of(repo, commit.id())?,
        })
    }

    /// Export it into `dest`, which must not exist yet; its parent must.
    pub(crate) fn export(&self, repo: &gix::Repository, dest: &Path) -> Result<Stats> {
        Ok(symdeploy_export::export_tree(repo, self.tree, dest)?)
    }

    /// [`Source::export`], and a long export says how far it has come every
    /// few seconds, so the pusher does not stare at a silent stage; the
    /// bytes written so far go to `writeback` as they grow.
    /// Every file comes back with its blob id and stamp, for the manifest
    /// (`crate::deploy::manifest_seed`).
    pub(crate) fn export_showing_progress(
        &self,
        repo: &gix::Repository,
        dest: &Path,
        writeback: &crate::deploy::writeback::Writeback,
    ) -> Result<(Stats, Vec<symdeploy_export::Written>)> {
        let started = std::time::Instant::now();
        let every = progress_every();
        // Milliseconds since `started` of the last line shown.
        let shown = std::sync::atomic::AtomicU64::new(0);
        let report = |p: symdeploy_export::Progress| {
            writeback.written(p.bytes);
            let now = started.elapsed();
            let last = std::time::Duration::from_millis(shown.load(Ordering::Relaxed));
            // Nothing written yet (the walk is still reading trees) says nothing.
            if p.files == 0 || now < last + every {
                return;
            }
            shown.store(now.as_millis() as u64, Ordering::Relaxed);
            crate::sys::output::detail(&format!(
                "{} so far ({}, {}s)",
                crate::sys::output::count(p.files, "file", "files"),
                crate::sys::fs::human_bytes(p.bytes),
                now.as_secs()
            ))
        };
        // Often enough for the writeback to follow the bytes closely.
        let poll = every.min(WRITEBACK_POLL);
        if cfg!(feature = "bench-without-manifest") {
            let stats = symdeploy_export::export_tree_reporting(
                repo,
                self.tree,
                dest,
                Some((poll, &report)),
            )?;
            return Ok((stats, Vec::new()));
        }
        Ok(symdeploy_export::export_tree_recording(
            repo,
            self.tree,
            dest,
            Some((poll, &report)),
        )?)
    }

    /// The bytes an export writes, for a full-disk message.
    pub(crate) fn bytes(&self, repo: &gix::Repository) -> Result<u64> {
        Ok(symdeploy_export::tree_bytes(repo, self.tree)?)
    }
}

/// Write `REVISION` (the commit hash) at the top of an export. A REVISION the
/// commit brings itself is replaced, never written through (it may be a symlink).
pub(crate) fn write_revision(dir: &Path, commit: Commit) -> Result<()> {
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
    f.write_all(format!("{commit}\n").as_bytes())
        .at("write", &path)
}

/// How often the export's progress reaches the writeback: at 0.3 GB/s,
/// every 8 MiB.
const WRITEBACK_POLL: std::time::Duration = std::time::Duration::from_millis(25);

/// How often a long export says how far it has come: every 5 s, or
/// SYMDEPLOY_EXPORT_PROGRESS_MS (tests make it short).
fn progress_every() -> std::time::Duration {
    let ms = std::env::var("SYMDEPLOY_EXPORT_PROGRESS_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .unwrap_or(5000);
    std::time::Duration::from_millis(ms)
}
