//! Strict mode as a two-phase commit with git: flip only what git accepted.
//!
//! 1. **pre-receive** (objects in quarantine, refs untouched): build and
//!    verify each pushed commit's release; no pointer moves. A failed build
//!    rejects the push. What the flips will be is written to a pending file
//!    named by the receive-pack's pid (`.symdeploy/strict/<pid>.json`).
//! 2. **reference-transaction `prepared`** (objects migrated, the refs locked
//!    by git, the old values verified, the update can still be aborted): for
//!    each ref of the transaction that the pending file names, flip `warmup`,
//!    and for a release tag or `-o promote` run the promote with its health
//!    check. Any failure is undone here and makes the hook exit non-zero, so
//!    git aborts the transaction and the push fails. The journal runs stay
//!    open with a `prepared` line: whether they stand is git's call.
//! 3. **`committed`**: the runs end `ok`. **`aborted`**: the flips are undone
//!    (warmup and production back) and the runs end `rejected`.
//!
//! A ref git refuses before its transaction (non-fast-forward, an existing
//! tag, a lost compare-and-swap) never reaches `prepared`, so nothing moves
//! for it. A process killed anywhere leaves an open run recording the
//! receive-pack (pid and start time): while that receive-pack lives, git has
//! not decided and recovery leaves the run alone; once it is gone, recovery
//! decides by what git kept, i.e. whether the ref points at the commit.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::hook::{Action, RefUpdate};
use crate::journal::{self, Entry, Event, Outcome};
use crate::ops::{self, Ctx};
use crate::output;
use crate::release::{self, State};
use crate::root::{short, Root};

/// The journal phase of a strict run whose flips are done and wait for git.
pub const PREPARED_PHASE: crate::journal::Phase = crate::journal::Phase::Prepared;

/// Which git ref transaction a strict run belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitTxn {
    /// The receive-pack process that runs the transaction.
    pub receive_pack: u32,
    /// Its start time (clock ticks after boot, /proc/PID/stat), so a reused
    /// pid is never mistaken for it.
    pub started: u64,
    /// The value pushed for the ref (a tag object for annotated tags).
    pub new: String,
    /// Where warmup pointed before this run: where an undo puts it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_before: Option<String>,
    /// For a preview: the release `previews/<slug>` pointed at before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_before: Option<String>,
}

impl GitTxn {
    /// Is its receive-pack still running, i.e. has git not decided yet?
    pub fn undecided(&self) -> bool {
        start_time(self.receive_pack) == Some(self.started)
    }
}

/// A process's start time, from /proc/PID/stat (field 22).
fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The receive-pack running this hook: its parent (the hook script `exec`s us).
fn receive_pack() -> Result<(u32, u64)> {
    let pid = nix::unistd::getppid().as_raw() as u32;
    let started = start_time(pid).ok_or_else(|| {
        Error::with_help(
            format!("cannot read /proc/{pid}/stat, the process of git receive-pack"),
            "strict mode needs /proc (Linux); mount it, or use the default post-receive hook",
        )
    })?;
    Ok((pid, started))
}

/// The `prepared` line of a run.
pub fn prepared(run: &Entry) -> Entry {
    Entry {
        time: crate::fsutil::now_rfc3339(),
        phase: PREPARED_PHASE,
        pid: std::process::id(),
        ..run.clone()
    }
}

/// What the pre-receive hook built, for the reference-transaction hook.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    receive_pack: u32,
    started: u64,
    updates: Vec<PendingUpdate>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingUpdate {
    old: String,
    new: String,
    name: String,
    /// The commit (`new` peeled).
    commit: String,
    /// Flip warmup to it.
    warm: bool,
    /// Promote it.
    promote: bool,
    /// `built`, then `prepared`.
    state: String,
    /// The journal runs `prepared` left open.
    #[serde(default)]
    runs: Vec<Entry>,
    /// A preview branch: the preview's slug; `previews/<slug>` flips instead of warmup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    preview: Option<String>,
    /// A deleted preview branch: the preview goes once git committed the deletion.
    #[serde(default)]
    remove_preview: bool,
}

impl PendingUpdate {
    fn matches(&self, u: &RefUpdate) -> bool {
        self.old == u.old && self.new == u.new && self.name == u.name
    }
}

fn pending_dir(root: &Root) -> PathBuf {
    root.state_dir().join("strict")
}

fn pending_path(root: &Root, receive_pack: u32) -> PathBuf {
    pending_dir(root).join(format!("{receive_pack}.json"))
}

fn save(root: &Root, p: &Pending) -> Result<()> {
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

fn load(path: &Path) -> Option<Pending> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Remove the pending files of receive-packs that are gone (lock held),
/// recording in the journal each built ref that git refused before its
/// transaction (non-fast-forward, an existing tag, a lost race): nothing
/// was flipped for it, and the journal says why.
pub fn remove_stale(root: &Root) {
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
            let repo = crate::repo::open(&root.repository()).ok();
            for u in p
                .updates
                .iter()
                .filter(|u| u.state == "built" && !u.remove_preview)
            {
                let now = repo
                    .as_ref()
                    .and_then(|r| crate::repo::ref_commit(r, &u.name))
                    .map(|c| c.to_string());
                if now.as_deref() == Some(u.commit.as_str()) {
                    continue;
                }
                let event = if u.preview.is_some() {
                    crate::ops::preview::EVENT
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

const REFERENCE_TRANSACTION: &str = include_str!("../hooks/reference-transaction");

/// What [`install_hook`] found or did.
#[derive(Debug)]
pub enum HookInstall {
    /// symdeploy's hook, calling this binary, was already there.
    Kept(PathBuf),
    /// It was missing and is now installed.
    Installed(PathBuf),
    /// Another hook of that name is there; it is left alone.
    Foreign(PathBuf),
}

/// Install strict mode's reference-transaction hook in `hooks` (calling
/// `binary`) unless a hook of that name exists already.
pub fn install_hook(hooks: &Path, binary: &Path) -> Result<HookInstall> {
    use std::os::unix::fs::PermissionsExt;
    let path = hooks.join("reference-transaction");
    let wanted = REFERENCE_TRANSACTION.replace(
        "@SYMDEPLOY@",
        &crate::ops::init::shell_quote(&binary.display().to_string()),
    );
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == wanted => Ok(HookInstall::Kept(path)),
        Ok(_) => Ok(HookInstall::Foreign(path)),
        Err(_) => {
            // Written aside and renamed: git may look for the hook at any moment.
            let tmp = hooks.join(".reference-transaction.tmp");
            std::fs::write(&tmp, wanted).at("write", &tmp)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
                .at("make executable", &tmp)?;
            std::fs::rename(&tmp, &path).at("install", &path)?;
            Ok(HookInstall::Installed(path))
        }
    }
}

/// The reference-transaction hook of `root`'s repository, if it is symdeploy's.
pub fn hook_installed(root: &Root) -> bool {
    std::fs::read_to_string(root.repository().join("hooks/reference-transaction"))
        .is_ok_and(|t| t.contains(" hook reference-transaction"))
}

// ----------------------------------------------------------------------------- pre-receive

/// The pre-receive half: build every pushed release, move nothing, and leave
/// the plan for the reference-transaction hook.
pub fn pre_receive(
    ctx: &Ctx,
    repo: &gix::Repository,
    updates: &[RefUpdate],
    promote_option: bool,
) -> Result<()> {
    if !hook_installed(&ctx.root) {
        // A root made by an older `init` has only the pre-receive hook. Git
        // looks a hook up each time it runs one, so installing it now makes
        // this very push two-phase; a foreign hook of that name is refused.
        let binary = std::env::current_exe()
            .and_then(std::fs::canonicalize)
            .at("find", "the symdeploy binary")?;
        match install_hook(&ctx.root.repository().join("hooks"), &binary)? {
            HookInstall::Installed(path) => output::detail(&format!(
                "installed {} (strict mode's second half, which an older `symdeploy init` did not install)",
                path.display()
            )),
            HookInstall::Kept(_) => {}
            HookInstall::Foreign(path) => {
                let e = Error::with_help(
                    format!(
                        "strict mode needs symdeploy's {}, but another hook of that name is there; nothing was deployed and the push is refused",
                        path.display()
                    ),
                    "make that hook also call `symdeploy hook reference-transaction \"$1\"` (reading the same stdin), or remove it and run `symdeploy init ROOT`, then push again",
                );
                output::report(&e);
                return Err(Error::Reported {
                    code: e.exit_code(),
                });
            }
        }
    }
    let (pid, started) = receive_pack()?;
    let mut pending = Pending {
        receive_pack: pid,
        started,
        updates: Vec::new(),
    };
    let mut failure = None;
    for update in updates {
        let action = crate::hook::route(ctx, update);
        let (warm, promote) = match action {
            Action::Ignore(why) => {
                output::line(&format!("-----> ignored: {why}"));
                continue;
            }
            Action::RemovePreview => {
                output::line(&format!(
                    "-----> {}: its preview is removed once git deletes the branch",
                    output::escape(&update.name)
                ));
                pending.updates.push(PendingUpdate {
                    old: update.old.clone(),
                    new: update.new.clone(),
                    name: update.name.clone(),
                    commit: String::new(),
                    warm: false,
                    promote: false,
                    state: "built".into(),
                    runs: Vec::new(),
                    preview: None,
                    remove_preview: true,
                });
                continue;
            }
            Action::Preview => {
                if promote_option {
                    output::warning(&format!(
                        "-o promote does not apply to {}: a preview branch never moves production",
                        output::escape(&update.name)
                    ));
                }
                let result = build_preview(ctx, repo, update);
                output::close_log();
                match result {
                    Ok(built) => pending.updates.push(PendingUpdate {
                        old: update.old.clone(),
                        new: update.new.clone(),
                        name: update.name.clone(),
                        commit: built.commit,
                        warm: false,
                        promote: false,
                        state: "built".into(),
                        runs: Vec::new(),
                        preview: Some(built.slug),
                        remove_preview: false,
                    }),
                    Err(e) => {
                        if !matches!(e, Error::Reported { .. }) {
                            output::report(&e);
                        }
                        failure.get_or_insert(e);
                    }
                }
                continue;
            }
            Action::Warmup => (true, promote_option),
            Action::Promote => (false, true),
        };
        let result = build(ctx, repo, update, warm);
        output::close_log();
        match result {
            Ok((commit, built)) => pending.updates.push(PendingUpdate {
                old: update.old.clone(),
                new: update.new.clone(),
                name: update.name.clone(),
                commit,
                // A tag of a commit this push built moves warmup too, as a
                // promote that warms up does.
                warm: warm || built,
                promote,
                state: "built".into(),
                runs: Vec::new(),
                preview: None,
                remove_preview: false,
            }),
            Err(e) => {
                if !e.is_reported() {
                    output::report(&e);
                }
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        return Err(Error::Reported {
            code: e.exit_code(),
        });
    }
    save(&ctx.root, &pending)
}

/// Build a preview branch's release without flipping `previews/<slug>`.
fn build_preview(
    ctx: &Ctx,
    repo: &gix::Repository,
    update: &RefUpdate,
) -> Result<crate::ops::preview::Built> {
    let new = gix::ObjectId::from_hex(update.new.as_bytes())
        .map_err(|e| Error::msg(format!("bad object id {}: {e}", update.new)))?;
    let commit = crate::repo::peel_to_commit(repo, new, &update.name)?;
    ops::open_run_log(
        &ctx.root,
        crate::ops::preview::EVENT.as_str(),
        commit.short(),
    );
    let _lock = ops::lock_and_recover(
        ctx,
        &format!(
            "preview build of {} ({}) for a strict push",
            commit.short(),
            update.name
        ),
    )?;
    crate::ops::preview::warm(ctx, repo, commit, &update.name, false)
}

fn build(
    ctx: &Ctx,
    repo: &gix::Repository,
    update: &RefUpdate,
    warm: bool,
) -> Result<(String, bool)> {
    let new = gix::ObjectId::from_hex(update.new.as_bytes())
        .map_err(|e| Error::msg(format!("bad object id {}: {e}", update.new)))?;
    let commit = crate::repo::peel_to_commit(repo, new, &update.name)?;
    let hex = commit.to_string();
    ops::open_run_log(
        &ctx.root,
        if warm { "warmup" } else { "promote" },
        short(&hex),
    );
    let _lock = ops::lock_and_recover(
        ctx,
        &format!(
            "build of {} ({}) for a strict push",
            short(&hex),
            update.name
        ),
    )?;
    let built = crate::ops::warmup::build_only(ctx, repo, commit, &update.name)?;
    Ok((hex, built))
}

// ----------------------------------------------------------------------------- reference-transaction

/// `symdeploy hook reference-transaction STATE`: the second half. Anything
/// that is not a ref of a strict push this root's pre-receive hook built for
/// (other git commands on the server, other pushes) passes untouched.
pub fn reference_transaction(state: &str) -> Result<()> {
    let git_dir = std::env::var_os("GIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut input = Vec::new();
    // git feeds every line; read them all whatever happens next.
    let _ = std::io::stdin().read_to_end(&mut input);
    if !matches!(state, "prepared" | "committed" | "aborted") {
        return Ok(());
    }
    let Ok(root) = Root::from_repository(&git_dir) else {
        return Ok(());
    };
    let pid = nix::unistd::getppid().as_raw() as u32;
    let path = pending_path(&root, pid);
    let Some(mut pending) = load(&path) else {
        return Ok(());
    };
    if start_time(pid) != Some(pending.started) {
        return Ok(());
    }
    let lines: Vec<RefUpdate> = String::from_utf8_lossy(&input)
        .lines()
        .filter_map(|l| crate::hook::parse_input(l).ok())
        .flatten()
        .collect();
    let wanted = if state == "prepared" {
        "built"
    } else {
        "prepared"
    };
    let matched: Vec<usize> = pending
        .updates
        .iter()
        .enumerate()
        .filter(|(_, p)| p.state == wanted && lines.iter().any(|l| p.matches(l)))
        .map(|(i, _)| i)
        .collect();
    if matched.is_empty() {
        return Ok(());
    }
    let ctx = Ctx::load(root)?;
    let first = pending.updates[matched[0]].commit.clone();
    ops::open_run_log(&ctx.root, state, short(&first));
    let result = match state {
        "prepared" => on_prepared(&ctx, &mut pending, &matched),
        "committed" => on_committed(&ctx, &mut pending, &matched),
        _ => on_aborted(&ctx, &mut pending, &matched),
    };
    output::close_log();
    let saved = save(&ctx.root, &pending);
    result.and(saved)
}

fn on_prepared(ctx: &Ctx, pending: &mut Pending, matched: &[usize]) -> Result<()> {
    let refs: Vec<String> = matched
        .iter()
        .map(|&i| output::escape(&pending.updates[i].name).into_owned())
        .collect();
    let _lock = ops::lock_and_recover(
        ctx,
        &format!("strict flips for {} (git holds the refs)", refs.join(" ")),
    )?;
    let mut done: Vec<(usize, Vec<Entry>)> = Vec::new();
    for &i in matched {
        let u = pending.updates[i].clone();
        let mut runs = Vec::new();
        let result = flip(ctx, pending, &u, &mut runs);
        done.push((i, runs));
        if let Err(e) = result {
            if !e.is_reported() {
                output::report(&e);
            }
            // git aborts the transaction without calling `aborted`: undo
            // everything this transaction flipped, newest first.
            for (_, runs) in done.iter().rev() {
                for run in runs.iter().rev() {
                    undo(ctx, run, "the promote failed, so the push is refused");
                }
            }
            for (j, _) in &done {
                pending.updates[*j].state = "failed".into();
            }
            output::error(&format!(
                "the push of {} is refused: git keeps {} where {} was",
                short(&u.commit),
                refs.join(", "),
                if refs.len() == 1 { "it" } else { "they" }
            ));
            return Err(Error::Reported {
                code: e.exit_code(),
            });
        }
    }
    for (i, runs) in done {
        pending.updates[i].state = "prepared".into();
        pending.updates[i].runs = runs;
    }
    Ok(())
}

/// The flips of one ref, with git holding it locked.
fn flip(ctx: &Ctx, pending: &Pending, u: &PendingUpdate, runs: &mut Vec<Entry>) -> Result<()> {
    let started = std::time::Instant::now();
    let root = &ctx.root;
    let txn = GitTxn {
        receive_pack: pending.receive_pack,
        started: pending.started,
        new: u.new.clone(),
        warmup_before: root.warmup(),
        preview_before: None,
    };
    if u.remove_preview {
        // Removed once git has deleted the branch (`committed`).
        return Ok(());
    }
    if let Some(slug) = &u.preview {
        return flip_preview(ctx, txn, u, slug, runs);
    }
    if !release::is_ready(root, &u.commit) {
        return Err(Error::with_help(
            format!(
                "releases/{} is {} now, no longer the ready release the pre-receive hook built",
                short(&u.commit),
                release::effective_state(root, &u.commit)
            ),
            "something changed it in between (a cleanup, a rollback); push again",
        ));
    }
    if u.warm {
        let mut run = Entry::start(Event::Warmup, Some(&u.commit), Some(&u.name));
        run.txn = Some(txn.clone());
        journal::append(root, &run)?;
        runs.push(run.clone());
        crate::faults::point("strict-before-flip-warmup");
        crate::ops::warmup::point_warmup(ctx, &u.commit)?;
        crate::ops::warmup::notify(ctx, &u.commit, &u.name, "ok", None);
        journal::append(root, &prepared(&run))?;
        crate::ops::warmup::finish_message(ctx, &u.commit, started.elapsed(), u.promote);
    }
    if u.promote {
        if root.production().as_deref() == Some(u.commit.as_str()) {
            output::line(&format!(
                "-----> {} is already production; nothing to do",
                short(&u.commit)
            ));
        } else {
            let run = crate::ops::promote::switch_with(
                ctx,
                &u.commit,
                Event::Promote,
                &u.name,
                Some(txn),
            )?;
            runs.push(run);
        }
    }
    Ok(())
}

/// A preview's flip, with git holding its branch locked.
fn flip_preview(
    ctx: &Ctx,
    mut txn: GitTxn,
    u: &PendingUpdate,
    slug: &str,
    runs: &mut Vec<Entry>,
) -> Result<()> {
    let root = &ctx.root;
    let name = root.preview_release_name(slug, &u.commit);
    if !release::is_ready(root, &name) {
        return Err(Error::with_help(
            format!(
                "releases/{name} is {} now, no longer the ready preview the pre-receive hook built",
                release::effective_state(root, &name)
            ),
            "something changed it in between (a cleanup, `preview rm`); push again",
        ));
    }
    txn.preview_before = root.preview_pointed(slug);
    let mut run = Entry::start(crate::ops::preview::EVENT, Some(&u.commit), Some(&u.name));
    run.txn = Some(txn);
    journal::append(root, &run)?;
    runs.push(run.clone());
    crate::faults::point("strict-before-flip-preview");
    crate::ops::preview::point(ctx, slug, &name)?;
    let built = crate::ops::preview::Built {
        slug: slug.to_string(),
        name,
        commit: u.commit.clone(),
    };
    crate::ops::preview::notify(ctx, &built, &u.name, &mut Default::default());
    journal::append(root, &prepared(&run))?;
    output::success(&format!("previews/{slug} -> releases/{}", built.name));
    Ok(())
}

fn on_committed(ctx: &Ctx, pending: &mut Pending, matched: &[usize]) -> Result<()> {
    let mut promoted = false;
    let mut removals = Vec::new();
    let mut previews = Vec::new();
    for &i in matched {
        let u = &mut pending.updates[i];
        if u.remove_preview {
            removals.push(u.name.clone());
        }
        if let Some(slug) = &u.preview {
            previews.push(slug.clone());
        }
        for run in &u.runs {
            journal::append(&ctx.root, &run.end(Outcome::Ok))?;
            promoted |= run.event == Event::Promote;
        }
        output::success(&format!("git updated {} to {}", u.name, short(&u.commit)));
        u.state = "done".into();
    }
    pending.updates.retain(|u| u.state != "done");
    for git_ref in removals {
        // git has deleted the branch: its preview goes now.
        if let Err(e) = crate::ops::preview::delete_branch(ctx, &git_ref) {
            output::warning(&format!(
                "{e}; remove it with `symdeploy preview rm` (the branch is deleted all the same)"
            ));
        }
    }
    if !previews.is_empty() {
        // The releases the new ones replace; without waiting, like the cleanup below.
        if let Ok(_lock) = crate::lock::acquire(&ctx.root, "cleanup", std::time::Duration::ZERO) {
            for slug in previews {
                crate::ops::preview::remove_unpointed(ctx, &slug);
            }
        }
    }
    if promoted {
        // Without waiting: another deploy holding the lock cleans up itself.
        // Production has moved: a cleanup problem is a warning, never a failure.
        if let Ok(_lock) = crate::lock::acquire(&ctx.root, "cleanup", std::time::Duration::ZERO) {
            crate::ops::cleanup::after_promote(ctx);
        }
    }
    Ok(())
}

fn on_aborted(ctx: &Ctx, pending: &mut Pending, matched: &[usize]) -> Result<()> {
    let _lock = ops::lock_and_recover(ctx, "undoing the flips of a refused strict push")?;
    for &i in matched {
        let u = &mut pending.updates[i];
        output::error(&format!(
            "git did not update {} to {}; undoing its flips",
            u.name,
            short(&u.commit)
        ));
        for run in u.runs.iter().rev() {
            undo(ctx, run, "git did not update the ref");
        }
        u.state = "done".into();
    }
    pending.updates.retain(|u| u.state != "done");
    Ok(())
}

/// Undo a strict run git did not keep: production back (for a promote),
/// warmup back to where it was, the release marked failed unless some ref
/// keeps its commit, and the run ended `rejected`. Never fails: every step is
/// reported, and it is safe to repeat (recovery repeats it after a kill).
pub(crate) fn undo(ctx: &Ctx, run: &Entry, why: &str) {
    if run.event == crate::ops::preview::EVENT {
        let before = run.txn.as_ref().and_then(|t| t.preview_before.as_deref());
        return crate::ops::preview::undo(ctx, run, before, why);
    }
    let root = &ctx.root;
    let commit = run.commit.clone().unwrap_or_default();
    let git_ref = run.git_ref.clone().unwrap_or_default();
    if run.event == Event::Promote {
        let previous = run.previous.as_deref();
        if root.production().as_deref() == Some(commit.as_str()) {
            crate::ops::promote::flip_back(ctx, &commit, previous, &git_ref);
        } else {
            // It may have been killed after `stop`.
            let back = root.production().unwrap_or(commit.clone());
            crate::ops::promote::start_anyway(
                &ctx.config.promote.start,
                &crate::ops::promote::step_env(ctx, &back, None, &git_ref, vec![]),
            );
        }
    }
    let before = run.txn.as_ref().and_then(|t| t.warmup_before.as_deref());
    // Warmup is only moved back if this run moved it there.
    if root.warmup().as_deref() == Some(commit.as_str()) && before != Some(commit.as_str()) {
        let before = run
            .txn
            .as_ref()
            .and_then(|t| t.warmup_before.clone())
            .filter(|b| *b != commit && release::is_ready(root, b) && kept(ctx, b));
        let moved = match &before {
            Some(b) => crate::ops::warmup::point_warmup(ctx, b).map(|_| before.clone()),
            None => crate::ops::recover::warmup_off(ctx, &commit),
        };
        match moved {
            Ok(w) => output::detail(&format!(
                "warmup -> {} (back)",
                w.map(|c| format!("releases/{c}"))
                    .unwrap_or_else(|| "nothing".into())
            )),
            Err(e) => output::error(&format!("could not move warmup back: {e}")),
        }
    }
    if !kept(ctx, &commit) && release::is_ready(root, &commit) {
        if let Err(e) = release::set_state(
            root,
            &commit,
            State::Failed,
            Some(format!("{git_ref} was not updated: {why}")),
        ) {
            output::warning(&format!("could not mark releases/{commit} failed: {e}"));
        }
    }
    let mut end = run.end(Outcome::Rejected);
    end.pid = std::process::id();
    end.error = Some(format!("{git_ref}: {why}"));
    if let Err(e) = journal::append(root, &end) {
        output::warning(&format!("could not end the run in the journal: {e}"));
    }
}

/// Does some ref of the repository keep `commit` (is it reachable)? When the
/// repository cannot be read, assume not: nothing then stays pointed at it.
pub(crate) fn kept(ctx: &Ctx, commit: &str) -> bool {
    let Ok(id) = gix::ObjectId::from_hex(commit.as_bytes()) else {
        return false;
    };
    crate::repo::open(&ctx.root.repository())
        .and_then(|r| crate::repo::reachable_from_refs(&r, id))
        .unwrap_or(false)
}

/// Did git update `git_ref` to `commit` (is it there now)?
pub(crate) fn ref_kept(ctx: &Ctx, git_ref: &str, commit: &str) -> bool {
    crate::repo::open(&ctx.root.repository())
        .ok()
        .and_then(|r| crate::repo::ref_commit(&r, git_ref))
        .is_some_and(|c| c == commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
        let me = start_time(std::process::id());
        assert!(me.is_some());
        assert_eq!(me, start_time(std::process::id()));
    }

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
