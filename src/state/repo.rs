//! The bare repository, read with gix: open it, resolve revisions and refs, peel
//! tags, read commit subjects. No `git` subprocess anywhere.

use std::path::Path;

use gix::ObjectId;

use crate::state::commit::Commit;

use crate::error::{Error, Result};

/// Open the bare repository at `git_dir`.
///
/// Isolated from the caller's environment and global configuration: a hook runs
/// with GIT_DIR and friends set, and the export must not depend on them.
pub(crate) fn open(git_dir: &Path) -> Result<gix::Repository> {
    let opts = gix::open::Options::isolated()
        .strict_config(false)
        .with(gix::sec::Trust::Full);
    let repo = gix::open_opts(git_dir, opts).map_err(|e| {
        Error::with_help(
            format!("cannot open the repository {}: {e}", git_dir.display()),
            "check that it is a bare git repository (symdeploy init creates one)",
        )
    })?;
    Ok(repo)
}

/// Resolve a revision (hash, branch, tag, `HEAD~2`) to the commit it names,
/// peeling annotated tags.
pub(crate) fn resolve_commit(repo: &gix::Repository, rev: &str) -> Result<Commit> {
    let id = repo.rev_parse_single(rev).map_err(|e| {
        Error::with_help(
            format!(
                "cannot resolve `{rev}` in {}: {e}",
                repo.git_dir().display()
            ),
            "name a commit, branch or tag that was pushed to the deploy repository",
        )
    })?;
    peel_to_commit(repo, id.detach(), rev)
}

/// Peel an object id (maybe an annotated tag) to a commit; trees and blobs are
/// refused with a message naming `what`.
pub(crate) fn peel_to_commit(repo: &gix::Repository, id: ObjectId, what: &str) -> Result<Commit> {
    let object = repo.find_object(id).map_err(|e| {
        Error::with_help(
            format!("`{what}` points at object {id}, which the repository does not have: {e}"),
            "push the commit again; if this repeats, run `git fsck` in the deploy repository",
        )
    })?;
    let peeled = object
        .peel_tags_to_end()
        .map_err(|e| Error::msg(format!("cannot peel tag `{what}` ({id}): {e}")))?;
    match peeled.kind {
        gix::object::Kind::Commit => Ok(Commit::from(peeled.id)),
        other => Err(Error::with_help(
            format!(
                "`{what}` points at a {other} ({}), not a commit; only commits can be deployed",
                peeled.id
            ),
            "tag or push a commit instead",
        )),
    }
}

/// Is `commit` reachable from any ref (branch, tag, anything under refs/)?
/// A commit can be in the object store without being kept: git migrates a
/// push's objects before it updates the refs, and a rejected ref leaves them
/// behind, unreferenced. Only a reachable commit is one git accepted.
pub(crate) fn reachable_from_refs(repo: &gix::Repository, commit: ObjectId) -> Result<bool> {
    let what = |e: &dyn std::fmt::Display| {
        Error::msg(format!(
            "cannot list the refs of {}: {e}",
            repo.git_dir().display()
        ))
    };
    let platform = repo.references().map_err(|e| what(&e))?;
    let mut tips = Vec::new();
    for r in platform.all().map_err(|e| what(&e))? {
        let Ok(mut r) = r else { continue };
        let Ok(id) = r.peel_to_id() else { continue };
        // Refs naming trees or blobs are nobody's history.
        if let Ok(c) = peel_to_commit(repo, id.detach(), "ref") {
            if c.id() == commit {
                return Ok(true);
            }
            tips.push(c.id());
        }
    }
    if tips.is_empty() {
        return Ok(false);
    }
    let walk = repo.rev_walk(tips).all().map_err(|e| what(&e))?;
    for info in walk {
        match info {
            Ok(info) if info.id == commit => return Ok(true),
            Ok(_) => {}
            Err(e) => return Err(what(&e)),
        }
    }
    Ok(false)
}

/// The commit a ref points at now (annotated tags peeled), if it exists.
pub(crate) fn ref_commit(repo: &gix::Repository, name: &str) -> Option<Commit> {
    let mut r = repo.try_find_reference(name).ok()??;
    let id = r.peel_to_id().ok()?.detach();
    peel_to_commit(repo, id, name).ok()
}

/// The root tree of a commit.
pub(crate) fn tree_of(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId> {
    let commit_obj = repo
        .find_commit(commit)
        .map_err(|e| Error::msg(format!("cannot read commit {commit}: {e}")))?;
    commit_obj
        .tree_id()
        .map(|t| t.detach())
        .map_err(|e| Error::msg(format!("cannot read the tree of commit {commit}: {e}")))
}

/// The first line of a commit message, for status and the journal.
pub(crate) fn subject(repo: &gix::Repository, commit: ObjectId) -> Option<String> {
    let c = repo.find_commit(commit).ok()?;
    let msg = c.message_raw_sloppy();
    let first = msg.lines().next().unwrap_or_default();
    Some(String::from_utf8_lossy(first).trim().to_string())
}

use gix::bstr::ByteSlice;
