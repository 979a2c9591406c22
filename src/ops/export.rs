//! `symdeploy export [--repo GIT_DIR] REV DIR`: like `git archive | tar -x`,
//! straight to a directory, with the same code the warm-up uses.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::{deploy::export, state::repo, sys::fs};

/// Export `rev` of the repository into `dir` (which must not exist).
pub(crate) fn run(
    repo_dir: Option<&Path>,
    root: Option<&Path>,
    rev: &str,
    dir: &Path,
) -> Result<()> {
    let git_dir: PathBuf = match repo_dir {
        Some(d) => d.to_path_buf(),
        None => match std::env::var_os("GIT_DIR") {
            Some(d) => PathBuf::from(d),
            None => crate::state::root::Root::locate(root)?.repository(),
        },
    };
    if std::fs::symlink_metadata(dir).is_ok() {
        return Err(Error::with_help(
            format!("{} already exists", dir.display()),
            "export creates the directory itself; name one that does not exist yet",
        ));
    }
    let started = Instant::now();
    let repo = repo::open(&git_dir)?;
    let commit = repo::resolve_commit(&repo, rev)?;
    let stats = export::Source::of(&repo, commit)?.export(&repo, dir)?;
    export::write_revision(dir, commit)?;
    eprintln!(
        "exported {commit} to {}: {} files, {} symlinks, {} directories, {} ({} excluded by export-ignore) in {}",
        dir.display(),
        stats.files,
        stats.symlinks,
        stats.dirs,
        fs::human_bytes(stats.bytes),
        stats.ignored,
        fs::human_duration(started.elapsed())
    );
    for sub in &stats.submodules {
        eprintln!("warning: submodule {sub} exported as an empty directory");
    }
    Ok(())
}
