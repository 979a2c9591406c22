//! Strict mode's record of git's ref transaction: what the pre-receive hook
//! built for each ref (the pending file of a receive-pack), the `prepared`
//! journal line, and whether git kept a ref. Shared by the hooks
//! (`crate::hook::strict`), recovery and the sweep of leftovers.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::hook::push::RefUpdate;
use crate::state::commit::Commit;
use crate::state::journal::{self, Entry, Event, Outcome};
use crate::state::root::Root;
use crate::sys::fs::start_time;

/// The journal phase of a strict run whose flips are done and wait for git.
pub(crate) const PREPARED_PHASE: journal::LineKind = journal::LineKind::Prepared;

/// The `prepared` line of a run.
pub(crate) fn prepared(run: &Entry) -> Entry {
    Entry {
        time: crate::sys::time::Time::now(),
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
    /// The ref lock files git holds for the transaction now in `prepared`:
    /// what a SIGKILL of the receive-pack would leave behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) locks: Vec<crate::state::reflocks::HeldLock>,
    /// Every ref of the push with its new value: the locks git takes for
    /// them before the hook can record any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) pushed: Vec<(String, String)>,
}

/// One ref of a strict push: what pre-receive built for it and what
/// happens once git has it locked. Stored as [`StoredUpdate`], the fields
/// the pending file has always had.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "StoredUpdate", into = "StoredUpdate")]
pub(crate) struct PendingUpdate {
    /// The ref's old value, as git gave it.
    pub(crate) old: String,
    /// Its new value (a commit, or a tag object), as git gave it.
    pub(crate) new: String,
    /// The ref.
    pub(crate) name: String,
    /// The commit (`new` peeled); none for a deleted branch.
    pub(crate) commit: Option<Commit>,
    /// What its flips are.
    pub(crate) kind: UpdateKind,
    /// Where this ref is in git's transaction.
    pub(crate) state: UpdateState,
    /// The journal runs `prepared` left open.
    pub(crate) runs: Vec<Entry>,
}

/// What a pushed ref's flips are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpdateKind {
    /// The deploy branch or a release tag: `warm` flips warmup to its
    /// release, `promote` promotes it.
    Release {
        /// Flip warmup to it.
        warm: bool,
        /// Promote it.
        promote: bool,
    },
    /// A preview branch: `previews/<slug>/production` flips instead of warmup.
    Preview {
        /// The preview's slug.
        slug: String,
    },
    /// A deleted preview branch: the preview goes once git committed the deletion.
    RemovePreview,
}

impl UpdateKind {
    /// Does it promote?
    pub(crate) fn promotes(&self) -> bool {
        matches!(self, UpdateKind::Release { promote: true, .. })
    }
}

/// A pending update as the file spells it (four flags for its kind).
#[derive(Serialize, Deserialize)]
struct StoredUpdate {
    old: String,
    new: String,
    name: String,
    /// `""` for a deleted branch.
    #[serde(with = "commit_or_empty")]
    commit: Option<Commit>,
    warm: bool,
    promote: bool,
    state: UpdateState,
    #[serde(default)]
    runs: Vec<Entry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    preview: Option<String>,
    #[serde(default)]
    remove_preview: bool,
}

impl From<StoredUpdate> for PendingUpdate {
    fn from(s: StoredUpdate) -> PendingUpdate {
        let kind = match (s.remove_preview, s.preview) {
            (true, _) => UpdateKind::RemovePreview,
            (false, Some(slug)) => UpdateKind::Preview { slug },
            (false, None) => UpdateKind::Release {
                warm: s.warm,
                promote: s.promote,
            },
        };
        PendingUpdate {
            old: s.old,
            new: s.new,
            name: s.name,
            commit: s.commit,
            kind,
            state: s.state,
            runs: s.runs,
        }
    }
}

impl From<PendingUpdate> for StoredUpdate {
    fn from(u: PendingUpdate) -> StoredUpdate {
        let (warm, promote) = match u.kind {
            UpdateKind::Release { warm, promote } => (warm, promote),
            _ => (false, false),
        };
        let preview = match &u.kind {
            UpdateKind::Preview { slug } => Some(slug.clone()),
            _ => None,
        };
        StoredUpdate {
            remove_preview: u.kind == UpdateKind::RemovePreview,
            old: u.old,
            new: u.new,
            name: u.name,
            commit: u.commit,
            warm,
            promote,
            state: u.state,
            runs: u.runs,
            preview,
        }
    }
}

impl PendingUpdate {
    /// The commit this update builds or flips; an error for a deletion,
    /// which has none (callers deal with deletions first).
    pub(crate) fn commit(&self) -> Result<Commit> {
        self.commit.ok_or_else(|| {
            Error::msg(format!(
                "the pending update of {} names no commit (a deleted branch)",
                self.name
            ))
        })
    }
}

/// `Option<Commit>` as the pending file has always spelled it: the hex, or
/// `""` for none.
mod commit_or_empty {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::state::commit::Commit;

    pub(super) fn serialize<S: Serializer>(c: &Option<Commit>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.as_ref().map_or("", Commit::as_str))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Commit>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        Commit::parse(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// Where one pushed ref is in strict mode's two phases. Written as the
/// plain words the pending file has always held.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::AsRefStr, strum::EnumString, strum::VariantNames,
)]
#[strum(serialize_all = "lowercase")]
pub(crate) enum UpdateState {
    /// pre-receive built its release; nothing is flipped yet.
    Built,
    /// git holds the ref locked and our flips are done (`prepared`).
    Prepared,
    /// A flip of this push failed and was undone; git will abort.
    Failed,
    /// git committed or aborted it and we acted on that: forgotten next.
    Done,
}

crate::sys::word::serde_as_word!(UpdateState);

/// The state git passes the reference-transaction hook, as git spells it
/// (also in the run log's name); any other word (a newer git's) does not
/// parse and is not ours to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::AsRefStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub(crate) enum TxnState {
    /// The refs are locked; a non-zero exit aborts the transaction.
    Prepared,
    /// The refs are updated.
    Committed,
    /// The transaction was abandoned.
    Aborted,
}

impl TxnState {
    /// The state a pushed ref must be in for this transaction state to act on it.
    pub(crate) fn acts_on(self) -> UpdateState {
        match self {
            TxnState::Prepared => UpdateState::Built,
            TxnState::Committed | TxnState::Aborted => UpdateState::Prepared,
        }
    }
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
    let entries: Vec<std::fs::DirEntry> = entries.flatten().collect();
    // The refs strict pushes still running are updating: their lock files
    // are theirs, whatever a dead push's pending file says.
    let busy: Vec<String> = entries
        .iter()
        .filter_map(|e| load(&e.path()))
        .filter(|p| start_time(p.receive_pack) == Some(p.started))
        .flat_map(|p| p.pushed.into_iter().map(|(name, _)| name))
        .collect();
    for e in entries {
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
            // Before the file that names them goes: once it is gone,
            // nothing tells these locks from a live git process's.
            release_locks(root, p);
            if let Ok(saved) = e.metadata().and_then(|m| m.modified()) {
                release_unrecorded(root, p, saved, &busy);
            }
            let repo = crate::state::repo::open(&root.repository()).ok();
            for u in p
                .updates
                .iter()
                .filter(|u| u.state == UpdateState::Built && u.kind != UpdateKind::RemovePreview)
            {
                let now = repo
                    .as_ref()
                    .and_then(|r| crate::state::repo::ref_commit(r, &u.name));
                if now.is_some() && now == u.commit {
                    continue;
                }
                let event = match u.kind {
                    UpdateKind::Preview { .. } => Event::Preview,
                    _ if u.kind.promotes() => Event::Promote,
                    _ => Event::Warmup,
                };
                let mut end = Entry::start(event, u.commit.map(Into::into).as_ref(), Some(&u.name))
                    .end(Outcome::Rejected);
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

/// Remove the ref lock files a receive-pack that is gone held in
/// `prepared` and never released (it was SIGKILLed): only the very files
/// recorded, so a lock a live git process made since is never touched.
fn release_locks(root: &Root, p: &Pending) {
    let git_dir = root.repository();
    for lock in &p.locks {
        match crate::state::reflocks::remove_if_same(&git_dir, lock) {
            Ok(true) => crate::sys::output::detail(&format!(
                "removed {}: git's lock of a ref, left by a killed push (receive-pack pid {}); pushes of that ref work again",
                git_dir.join(&lock.path).display(),
                p.receive_pack
            )),
            Ok(false) => {}
            Err(e) => crate::sys::output::warning(&format!(
                "cannot remove {}, left by a killed push: {e}; pushes of that ref fail until it is removed (`rm` it)",
                git_dir.join(&lock.path).display()
            )),
        }
    }
}

/// The lock files of a dead push that its hook had no time to record: for
/// each ref it pushed, `<ref>.lock` holding the pushed id (and `HEAD.lock`,
/// empty, when HEAD follows that ref), made after the pending file was last
/// saved, unchanged for [`SETTLED`](crate::state::reflocks::SETTLED), and
/// of no ref a running strict push updates.
fn unrecorded_locks(
    root: &Root,
    p: &Pending,
    saved: std::time::SystemTime,
    busy: &[String],
) -> Vec<(crate::state::reflocks::HeldLock, std::time::Duration)> {
    let git_dir = root.repository();
    let head = std::fs::read_to_string(git_dir.join("HEAD")).unwrap_or_default();
    let head = head
        .trim()
        .strip_prefix("ref: ")
        .unwrap_or_default()
        .to_string();
    let mut out = Vec::new();
    for (name, new) in &p.pushed {
        if busy.contains(name) {
            continue;
        }
        let mut candidates = vec![(format!("{name}.lock"), vec![new.as_str()])];
        if *name == head {
            candidates.push(("HEAD.lock".to_string(), vec!["", new.as_str()]));
        }
        for (rel, want) in candidates {
            if p.locks.iter().any(|l| l.path == rel) {
                continue; // recorded: that record decides
            }
            if let Some(found) = crate::state::reflocks::unrecorded(&git_dir, &rel, &want, saved) {
                out.push(found);
            }
        }
    }
    out
}

fn release_unrecorded(root: &Root, p: &Pending, saved: std::time::SystemTime, busy: &[String]) {
    let settled = crate::state::reflocks::SETTLED;
    let found = unrecorded_locks(root, p, saved, busy);
    if let Some(youngest) = found.iter().map(|(_, age)| *age).min() {
        // A live git process changes or removes its lock within this.
        std::thread::sleep(settled.saturating_sub(youngest));
    }
    let locks: Vec<_> = found.into_iter().map(|(l, _)| l).collect();
    release_locks(
        root,
        &Pending {
            receive_pack: p.receive_pack,
            started: p.started,
            updates: Vec::new(),
            locks,
            pushed: Vec::new(),
        },
    );
}

/// Who holds a ref lock file of the repository, as far as strict mode knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LockOwner {
    /// A strict push whose receive-pack is gone: recovery removes it.
    KilledPush(u32),
    /// A strict push still running (its flips run while git holds the ref).
    LivePush(u32),
    /// No strict push recorded it: some other git process, alive or not.
    Unknown,
}

/// Every ref lock file of the repository with its owner.
pub(crate) fn ref_locks(root: &Root) -> Vec<(crate::state::reflocks::Present, LockOwner)> {
    let present = crate::state::reflocks::present(&root.repository());
    if present.is_empty() {
        return Vec::new();
    }
    let pendings: Vec<(Pending, std::time::SystemTime)> = std::fs::read_dir(pending_dir(root))
        .map(|d| {
            d.flatten()
                .filter_map(|e| Some((load(&e.path())?, e.metadata().ok()?.modified().ok()?)))
                .collect()
        })
        .unwrap_or_default();
    let live = |p: &Pending| start_time(p.receive_pack) == Some(p.started);
    let busy: Vec<String> = pendings
        .iter()
        .filter(|(p, _)| live(p))
        .flat_map(|(p, _)| p.pushed.iter().map(|(name, _)| name.clone()))
        .collect();
    present
        .into_iter()
        .map(|l| {
            let rel = l.lock.path.trim_end_matches(".lock");
            let owner = pendings
                .iter()
                .find(|(p, saved)| {
                    p.locks.contains(&l.lock)
                        || (!live(p)
                            && unrecorded_locks(root, p, *saved, &busy)
                                .iter()
                                .any(|(u, _)| *u == l.lock))
                        || (live(p) && p.pushed.iter().any(|(name, _)| name == rel))
                })
                .map(|(p, _)| {
                    if live(p) {
                        LockOwner::LivePush(p.receive_pack)
                    } else {
                        LockOwner::KilledPush(p.receive_pack)
                    }
                })
                .unwrap_or(LockOwner::Unknown);
            (l, owner)
        })
        .collect()
}

/// How old a lock file no push of ours recorded must be before it is
/// reported: git holds one for milliseconds, outside strict mode's flips.
const UNKNOWN_LOCK_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// The ref lock files `status --check` and `check` report, each with what
/// to run: left by a killed strict push (`symdeploy recover`), or by some
/// other git process long enough ago that it is likely dead.
pub(crate) fn ref_lock_problems(root: &Root) -> Vec<String> {
    ref_locks(root)
        .into_iter()
        .filter_map(|(l, owner)| match owner {
            LockOwner::KilledPush(pid) => Some(format!(
                "{} was left by a killed strict push (receive-pack pid {pid}): every push of that ref fails until it goes; `symdeploy recover` removes it",
                l.full.display()
            )),
            LockOwner::LivePush(_) => None,
            LockOwner::Unknown => l.age.filter(|a| *a >= UNKNOWN_LOCK_AGE).map(|a| {
                format!(
                    "{} is a git lock file {} old that no symdeploy push holds: pushes of that ref fail while it exists; if no git command is running on {}, remove it (`rm {}`)",
                    l.full.display(),
                    crate::sys::fs::human_duration(a),
                    root.repository().display(),
                    l.full.display()
                )
            }),
        })
        .collect()
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
pub(crate) fn kept(ctx: &Ctx, commit: Commit) -> bool {
    crate::state::repo::open(&ctx.root.repository())
        .and_then(|r| crate::state::repo::reachable_from_refs(&r, commit.id()))
        .unwrap_or(false)
}

/// Did git update `git_ref` to `commit` (is it there now)?
pub(crate) fn ref_kept(ctx: &Ctx, git_ref: &str, commit: Commit) -> bool {
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
            commit: Commit::parse_stored(&a),
            kind: UpdateKind::Release {
                warm: true,
                promote: true,
            },
            state: UpdateState::Built,
            runs: Vec::new(),
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

    /// The kind is stored in the four fields the pending file has always
    /// had, so a file an earlier version wrote reads as it meant.
    #[test]
    fn update_kinds_keep_the_pending_file_s_fields() {
        let a = "a".repeat(40);
        let old = |extra: &str| {
            format!(
                r#"{{"old":"{a}","new":"{a}","name":"refs/heads/x","commit":"{a}","state":"built",{extra}}}"#
            )
        };
        for (extra, kind) in [
            (
                r#""warm":true,"promote":false"#,
                UpdateKind::Release {
                    warm: true,
                    promote: false,
                },
            ),
            (
                r#""warm":false,"promote":true"#,
                UpdateKind::Release {
                    warm: false,
                    promote: true,
                },
            ),
            (
                r#""warm":false,"promote":false,"preview":"feat""#,
                UpdateKind::Preview {
                    slug: "feat".into(),
                },
            ),
            (
                r#""warm":false,"promote":false,"remove_preview":true"#,
                UpdateKind::RemovePreview,
            ),
        ] {
            let u: PendingUpdate = serde_json::from_str(&old(extra)).unwrap();
            assert_eq!(u.kind, kind, "{extra}");
            let again: PendingUpdate =
                serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
            assert_eq!(again.kind, kind, "round trip of {extra}");
        }
        let deleted = r#"{"old":"a","new":"0","name":"refs/heads/x","commit":"","warm":false,"promote":false,"state":"built","remove_preview":true}"#;
        let u: PendingUpdate = serde_json::from_str(deleted).unwrap();
        assert_eq!(u.commit, None);
        let written = serde_json::to_string(&u).unwrap();
        assert!(written.contains(r#""commit":"""#), "{written}");
    }
}
