//! Strict mode's record of git's ref transaction: what the pre-receive hook
//! built for each ref (the pending file of a receive-pack), the `prepared`
//! journal line, and whether git kept a ref. Shared by the hooks
//! (`crate::hook::strict`), recovery and the sweep of leftovers.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::hook::push::RefUpdate;
use crate::state::journal::{self, Entry, Event, Outcome};
use crate::state::root::Root;
use crate::sys::fs::start_time;

/// The journal phase of a strict run whose flips are done and wait for git.
pub(crate) const PREPARED_PHASE: journal::Phase = journal::Phase::Prepared;

/// The `prepared` line of a run.
pub(crate) fn prepared(run: &Entry) -> Entry {
    Entry {
        time: crate::sys::fs::now_rfc3339(),
        phase: PREPARED_PHASE,
        pid: std::process::id(),
        ..run.clone()
    }
}

/// What the pre-receive hook built, for the reference-transaction hook.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) receive_pack: u32,
    pub(crate) started: u64,
    pub(crate) updates: Vec<PendingUpdate>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PendingUpdate {
    pub(crate) old: String,
    pub(crate) new: String,
    pub(crate) name: String,
    /// The commit (`new` peeled).
    pub(crate) commit: String,
    /// Flip warmup to it.
    pub(crate) warm: bool,
    /// Promote it.
    pub(crate) promote: bool,
    /// `built`, then `prepared`.
    pub(crate) state: String,
    /// The journal runs `prepared` left open.
    #[serde(default)]
    pub(crate) runs: Vec<Entry>,
    /// A preview branch: the preview's slug; `previews/<slug>` flips instead of warmup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) preview: Option<String>,
    /// A deleted preview branch: the preview goes once git committed the deletion.
    #[serde(default)]
    pub(crate) remove_preview: bool,
}

impl PendingUpdate {
    pub(crate) fn matches(&self, u: &RefUpdate) -> bool {
        self.old == u.old && self.new == u.new && self.name == u.name
    }
}

pub(crate) fn pending_dir(root: &Root) -> PathBuf {
    root.strict_pending()
}

pub(crate) fn pending_path(root: &Root, receive_pack: u32) -> PathBuf {
    pending_dir(root).join(format!("{receive_pack}.json"))
}

pub(crate) fn save(root: &Root, p: &Pending) -> Result<()> {
    let dir = pending_dir(root);
    std::fs::create_dir_all(&dir).at("create directory", &dir)?;
    let path = pending_path(root, p.receive_pack);
    if p.updates.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove", &path, e))
            }
            _ => Ok(()),
        };
    }
    let json = serde_json::to_vec_pretty(p)
        .map_err(|e| Error::msg(format!("cannot encode {}: {e}", path.display())))?;
    let tmp = dir.join(format!(".tmp-{}", p.receive_pack));
    std::fs::write(&tmp, json).at("write", &tmp)?;
    std::fs::rename(&tmp, &path).at("rename into place", &path)
}

pub(crate) fn load(path: &Path) -> Option<Pending> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Remove the pending files of receive-packs that are gone (lock held),
/// recording in the journal each built ref that git refused before its
/// transaction (non-fast-forward, an existing tag, a lost race): nothing
/// was flipped for it, and the journal says why.
pub(crate) fn remove_stale(root: &Root) {
    let Ok(entries) = std::fs::read_dir(pending_dir(root)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix(".tmp-")
            .and_then(|p| p.parse::<u32>().ok())
        {
            // Being written by a live hook (pending files are saved without the lock).
            if start_time(pid).is_some() {
                continue;
            }
        }
        let pending = load(&e.path());
        if let Some(p) = &pending {
            if start_time(p.receive_pack) == Some(p.started) {
                continue;
            }
            let repo = crate::state::repo::open(&root.repository()).ok();
            for u in p
                .updates
                .iter()
                .filter(|u| u.state == "built" && !u.remove_preview)
            {
                let now = repo
                    .as_ref()
                    .and_then(|r| crate::state::repo::ref_commit(r, &u.name))
                    .map(|c| c.to_string());
                if now.as_deref() == Some(u.commit.as_str()) {
                    continue;
                }
                let event = if u.preview.is_some() {
                    Event::Preview
                } else if u.promote {
                    Event::Promote
                } else {
                    Event::Warmup
                };
                let mut end =
                    Entry::start(event, Some(&u.commit), Some(&u.name)).end(Outcome::Rejected);
                end.error = Some(format!(
                    "git refused {} before updating it (e.g. not a fast-forward, the tag exists, or another push won the race); warmup and production were not moved",
                    u.name
                ));
                end.log = None;
                let _ = journal::append(root, &end);
            }
        }
        let _ = std::fs::remove_file(e.path());
    }
}

/// The receive-pack running this hook: its parent (the hook script `exec`s us).
pub(crate) fn receive_pack() -> Result<(u32, u64)> {
    let pid = nix::unistd::getppid().as_raw() as u32;
    let started = start_time(pid).ok_or_else(|| {
        Error::with_help(
            format!("cannot read /proc/{pid}/stat, the process of git receive-pack"),
            "strict mode needs /proc (Linux); mount it, or use the default post-receive hook",
        )
    })?;
    Ok((pid, started))
}

/// Does some ref of the repository keep `commit` (is it reachable)? When the
/// repository cannot be read, assume not: nothing then stays pointed at it.
pub(crate) fn kept(ctx: &Ctx, commit: &str) -> bool {
    let Ok(id) = gix::ObjectId::from_hex(commit.as_bytes()) else {
        return false;
    };
    crate::state::repo::open(&ctx.root.repository())
        .and_then(|r| crate::state::repo::reachable_from_refs(&r, id))
        .unwrap_or(false)
}

/// Did git update `git_ref` to `commit` (is it there now)?
pub(crate) fn ref_kept(ctx: &Ctx, git_ref: &str, commit: &str) -> bool {
    crate::state::repo::open(&ctx.root.repository())
        .ok()
        .and_then(|r| crate::state::repo::ref_commit(&r, git_ref))
        .is_some_and(|c| c == commit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::journal::GitTxn;

    #[test]
    fn a_txn_is_undecided_only_while_its_process_lives() {
        let me = std::process::id();
        let started = start_time(me).unwrap();
        let txn = |started| GitTxn {
            receive_pack: me,
            started,
            new: String::new(),
            warmup_before: None,
            preview_before: None,
        };
        assert!(txn(started).undecided());
        // The same pid with another start time is another process.
        assert!(!txn(started + 1).undecided());
    }

    #[test]
    fn pending_updates_match_git_lines_exactly() {
        let z = "0".repeat(40);
        let a = "a".repeat(40);
        let u = PendingUpdate {
            old: z.clone(),
            new: a.clone(),
            name: "refs/tags/release-1".into(),
            commit: a.clone(),
            warm: true,
            promote: true,
            state: "built".into(),
            runs: Vec::new(),
            preview: None,
            remove_preview: false,
        };
        let line = |old: &str, new: &str, name: &str| RefUpdate {
            old: old.into(),
            new: new.into(),
            name: name.into(),
        };
        assert!(u.matches(&line(&z, &a, "refs/tags/release-1")));
        assert!(!u.matches(&line(&a, &a, "refs/tags/release-1")));
        assert!(!u.matches(&line(&z, &a, "refs/tags/release-2")));
    }
}
