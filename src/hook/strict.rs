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
use std::path::PathBuf;
use std::process::ExitCode;

use crate::ctx::Ctx;
use crate::deploy::job::{Job, Target};
use crate::error::{Error, IoContext, Result};
use crate::hook::files::{hook_installed, install_hook, HookInstall};
use crate::hook::pending::{
    load, pending_path, prepared, receive_pack, save, Pending, PendingUpdate, TxnState, UpdateKind,
    UpdateState,
};
use crate::hook::push::{Action, RefUpdate};
use crate::session::recovery::undo;
use crate::state::commit::Commit;
use crate::state::journal::{self, Entry, Event, GitTxn, Outcome};
use crate::state::release;
use crate::state::release_name::Recorded;
use crate::state::root::Root;
use crate::sys::output;

// ----------------------------------------------------------------------------- pre-receive

/// The pre-receive half: build every pushed release, move nothing, and leave
/// the plan for the reference-transaction hook.
pub(crate) fn pre_receive(
    ctx: &Ctx,
    repo: &gix::Repository,
    updates: &[RefUpdate],
    promote_option: bool,
) -> Result<ExitCode> {
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
                return Err(Error::with_help(
                    format!(
                        "strict mode needs symdeploy's {}, but another hook of that name is there; nothing was deployed and the push is refused",
                        path.display()
                    ),
                    "make that hook also call `symdeploy hook reference-transaction \"$1\"` (reading the same stdin), or remove it and run `symdeploy init ROOT`, then push again",
                ));
            }
        }
    }
    let (pid, started) = receive_pack()?;
    let mut pending = Pending {
        receive_pack: pid,
        started,
        updates: Vec::new(),
        locks: Vec::new(),
        pushed: updates
            .iter()
            .map(|u| (u.name.clone(), u.new.clone()))
            .collect(),
    };
    let mut failure = None;
    for update in updates {
        let action = crate::hook::push::route(ctx, update);
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
                    commit: None,
                    kind: UpdateKind::RemovePreview,
                    state: UpdateState::Built,
                    runs: Vec::new(),
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
                match build_preview(ctx, repo, update) {
                    Ok((commit, slug)) => pending.updates.push(PendingUpdate {
                        old: update.old.clone(),
                        new: update.new.clone(),
                        name: update.name.clone(),
                        commit: Some(commit),
                        kind: UpdateKind::Preview { slug },
                        state: UpdateState::Built,
                        runs: Vec::new(),
                    }),
                    Err(e) => {
                        failure.get_or_insert(e.exit_code());
                        crate::session::close_run(Err(e));
                    }
                }
                output::close_log();
                continue;
            }
            Action::Warmup => (true, promote_option),
            Action::Promote => (false, true),
        };
        match build(ctx, repo, update, warm) {
            Ok((commit, built)) => pending.updates.push(PendingUpdate {
                old: update.old.clone(),
                new: update.new.clone(),
                name: update.name.clone(),
                commit: Some(commit),
                kind: UpdateKind::Release {
                    // A tag of a commit this push built moves warmup too,
                    // as a promote that warms up does.
                    warm: warm || built,
                    promote,
                },
                state: UpdateState::Built,
                runs: Vec::new(),
            }),
            Err(e) => {
                failure.get_or_insert(e.exit_code());
                crate::session::close_run(Err(e));
            }
        }
        output::close_log();
    }
    if let Some(code) = failure {
        return Ok(crate::error::exit(code));
    }
    save(&ctx.root, &pending)?;
    Ok(ExitCode::SUCCESS)
}

/// Build a preview branch's release without flipping `previews/<slug>`;
/// returns the commit and the preview's slug.
fn build_preview(
    ctx: &Ctx,
    repo: &gix::Repository,
    update: &RefUpdate,
) -> Result<(Commit, String)> {
    let new = gix::ObjectId::from_hex(update.new.as_bytes())
        .map_err(|e| Error::msg(format!("bad object id {}: {e}", update.new)))?;
    let commit = crate::state::repo::peel_to_commit(repo, new, &update.name)?;
    let _run = crate::session::begin(
        ctx,
        crate::deploy::preview::EVENT,
        commit.short(),
        &format!(
            "preview build of {} ({}) for a strict push",
            commit.short(),
            update.name
        ),
    )?;
    let slug = crate::deploy::warmup::preview(ctx, repo, commit, &update.name, false)?;
    Ok((commit, slug))
}

fn build(
    ctx: &Ctx,
    repo: &gix::Repository,
    update: &RefUpdate,
    warm: bool,
) -> Result<(Commit, bool)> {
    let new = gix::ObjectId::from_hex(update.new.as_bytes())
        .map_err(|e| Error::msg(format!("bad object id {}: {e}", update.new)))?;
    let commit = crate::state::repo::peel_to_commit(repo, new, &update.name)?;
    let _run = crate::session::begin(
        ctx,
        if warm { Event::Warmup } else { Event::Promote },
        commit.short(),
        &format!(
            "build of {} ({}) for a strict push",
            commit.short(),
            update.name
        ),
    )?;
    let built = crate::deploy::warmup::build_only(ctx, repo, commit, &update.name)?;
    Ok((commit, built))
}

// ----------------------------------------------------------------------------- reference-transaction

/// `symdeploy hook reference-transaction STATE`: the second half. Anything
/// that is not a ref of a strict push this root's pre-receive hook built for
/// (other git commands on the server, other pushes) passes untouched.
pub(crate) fn reference_transaction(state: &str) -> Result<ExitCode> {
    let git_dir = std::env::var_os("GIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut input = Vec::new();
    // git feeds every line; read them all whatever happens next.
    let _ = std::io::stdin().read_to_end(&mut input);
    let Ok(state) = state.parse::<TxnState>() else {
        return Ok(ExitCode::SUCCESS);
    };
    let Ok(root) = Root::from_repository(&git_dir) else {
        return Ok(ExitCode::SUCCESS);
    };
    crate::sys::advice::in_hook_of(root.dir.clone());
    let pid = nix::unistd::getppid().as_raw() as u32;
    let path = pending_path(&root, pid);
    let Some(mut pending) = load(&path) else {
        return Ok(ExitCode::SUCCESS);
    };
    if crate::sys::fs::start_time(pid) != Some(pending.started) {
        return Ok(ExitCode::SUCCESS);
    }
    // Line by line: HEAD and symbolic-ref lines are no `refs/` updates.
    let lines: Vec<RefUpdate> = input
        .split(|&b| b == b'\n')
        .filter_map(|l| crate::hook::push::parse_input(l).ok())
        .flat_map(|p| p.updates)
        .collect();
    let wanted = state.acts_on();
    let matched: Vec<usize> = pending
        .updates
        .iter()
        .enumerate()
        .filter(|(_, p)| p.state == wanted && lines.iter().any(|l| p.matches(l)))
        .map(|(i, _)| i)
        .collect();
    if matched.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if state == TxnState::Prepared {
        // git holds these ref locks until the transaction ends; a SIGKILL of
        // the push from here on leaves them behind. Recorded first, before
        // anything can wait or be killed, so recovery can remove them.
        pending.locks = transaction_locks(&root, &input);
        save(&root, &pending)?;
    } else {
        // Committed or aborted: git has released them.
        pending.locks.clear();
    }
    let ctx = Ctx::load(root)?;
    let first = pending.updates[matched[0]].commit;
    crate::session::open_run_log(
        &ctx.root,
        state.as_ref(),
        first.as_ref().map_or("deletion", Commit::short),
    );
    let result = match state {
        TxnState::Prepared => on_prepared(&ctx, &mut pending, &matched),
        TxnState::Committed => on_committed(&ctx, &mut pending, &matched),
        TxnState::Aborted => on_aborted(&ctx, &mut pending, &matched),
    };
    let failed = crate::session::close_run(result);
    let saved = save(&ctx.root, &pending);
    match failed {
        // git aborts the transaction on this code; the pending file says why.
        Some(code) => Ok(crate::error::exit(code)),
        None => saved.map(|()| ExitCode::SUCCESS),
    }
}

/// The ref lock files git holds for the transaction whose hook input is
/// `input` (`<old> <new> <ref>` lines; HEAD is among them when it follows
/// the branch).
fn transaction_locks(root: &Root, input: &[u8]) -> Vec<crate::state::reflocks::HeldLock> {
    let mut names = Vec::new();
    let mut deletes = false;
    for line in input.split(|&b| b == b'\n') {
        let mut fields = line.splitn(3, |&b| b == b' ');
        let (Some(_old), Some(new), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        deletes |= !new.is_empty() && new.iter().all(|&b| b == b'0');
        names.push(name);
    }
    crate::state::reflocks::held(&root.repository(), names, deletes)
}

fn on_prepared(ctx: &Ctx, pending: &mut Pending, matched: &[usize]) -> Result<()> {
    let refs: Vec<String> = matched
        .iter()
        .map(|&i| output::escape(&pending.updates[i].name).into_owned())
        .collect();
    let _run = crate::session::lock_and_recover(
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
            // git aborts the transaction without calling `aborted`: undo
            // everything this transaction flipped, newest first.
            for (_, runs) in done.iter().rev() {
                for run in runs.iter().rev() {
                    undo(ctx, run, "the promote failed, so the push is refused");
                }
            }
            for (j, _) in &done {
                pending.updates[*j].state = UpdateState::Failed;
            }
            // One error, told after the undo, so it says where things
            // point once everything this push moved is back.
            let refused = format!(
                "the push of {} is refused: git keeps {} where {} was",
                u.commit.as_ref().map_or(u.name.as_str(), Commit::short),
                refs.join(", "),
                if refs.len() == 1 { "it" } else { "they" }
            );
            let e = match e {
                Error::Failed {
                    code,
                    message,
                    help,
                    source,
                    ..
                } => Error::Failed {
                    code,
                    message: format!("{message}; {refused}"),
                    now: crate::deploy::pointers::where_now(&ctx.root),
                    help,
                    source,
                },
                other => Error::Failed {
                    code: other.exit_code(),
                    message: format!("{other}; {refused}"),
                    now: crate::deploy::pointers::where_now(&ctx.root),
                    help: other.help(),
                    source: Some(Box::new(other)),
                },
            };
            return Err(e);
        }
    }
    for (i, runs) in done {
        pending.updates[i].state = UpdateState::Prepared;
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
        warmup_before: root.warmup().map(Into::into),
        preview_before: None,
    };
    let (warm, promote) = match &u.kind {
        // Removed once git has deleted the branch (`committed`).
        UpdateKind::RemovePreview => return Ok(()),
        UpdateKind::Preview { slug } => return flip_preview(ctx, txn, u, u.commit()?, slug, runs),
        UpdateKind::Release { warm, promote } => (*warm, *promote),
    };
    let commit = u.commit()?;
    if !release::is_ready(root, &commit.into()) {
        return Err(Error::with_help(
            format!(
                "releases/{} is {} now, no longer the ready release the pre-receive hook built",
                commit.short(),
                release::effective_state(root, &commit.into())
            ),
            "something changed it in between (a cleanup, a rollback); push again",
        ));
    }
    if warm {
        let job = Job::new(
            ctx,
            Target::Release {
                rebuild: false,
                promote_follows: promote,
            },
            commit,
            &u.name,
        );
        let mut run = Entry::start(Event::Warmup, Some(&commit.into()), Some(&u.name));
        run.txn = Some(txn.clone());
        journal::append(root, &run)?;
        runs.push(run.clone());
        crate::sys::faults::point("strict-before-flip-warmup");
        job.point()?;
        if !ctx.config.warmup.check.is_empty() {
            warmup_check(ctx, &job)?;
        }
        job.notify(Outcome::Ok, None);
        journal::append(root, &prepared(&run))?;
        job.finish_message(started.elapsed());
    }
    if promote {
        if root.production() == Some(commit) {
            output::line(&format!(
                "-----> {} is already production; nothing to do",
                commit.short()
            ));
        } else {
            // pre-receive refused an unsigned promote unless `-o unsigned`
            // asked for it, so none found here is that one.
            let tag = u
                .name
                .strip_prefix("refs/tags/")
                .is_some_and(|t| ctx.config.is_promote_tag(t))
                .then_some((u.new.as_str(), u.name.as_str()));
            crate::access::authorize_promote(ctx, commit, tag, true, "a promote", "")?;
            crate::deploy::verify::before_switch(
                ctx,
                commit,
                crate::deploy::verify::Before::Promote,
            )?;
            // The rollback rule holds for a tag of an older release too.
            let plan = crate::deploy::schema_gate::plan(ctx, commit, false)?;
            let run = crate::deploy::switch::switch_with(
                ctx,
                commit,
                Event::Promote,
                &u.name,
                Some(txn),
                plan,
            )?;
            runs.push(run);
        }
    }
    Ok(())
}

/// `warmup.check` of a strict push: only here may `warmup` point at the new
/// release, so the check that pre-receive could not run runs now, and its
/// failure refuses the push (the caller undoes the flips, so warmup goes
/// back). The release is marked failed and notify hears `failed`.
fn warmup_check(ctx: &Ctx, job: &Job) -> Result<()> {
    let commit = job.commit;
    let mut durations = Default::default();
    let Err(e) = crate::deploy::warmup::check(job, &mut durations) else {
        return Ok(());
    };
    if let Err(marked) = release::set_state(
        &ctx.root,
        &commit.into(),
        release::State::Failed,
        Some(e.to_string()),
    ) {
        output::warning(&format!(
            "could not mark releases/{commit} failed: {marked}"
        ));
    }
    job.notify(Outcome::Failed, Some(&e));
    Err(Error::Failed {
        code: e.exit_code(),
        message: format!("warm-up of {} failed: {e}", commit.short()),
        now: Vec::new(),
        // A strict push's failure advice is the same as a promote's.
        help: Some(crate::deploy::warmup::advice(&e, commit, true)),
        source: Some(Box::new(e)),
    })
}

/// A preview's flip, with git holding its branch locked.
fn flip_preview(
    ctx: &Ctx,
    mut txn: GitTxn,
    u: &PendingUpdate,
    commit: Commit,
    slug: &str,
    runs: &mut Vec<Entry>,
) -> Result<()> {
    let root = &ctx.root;
    let job = Job::new(
        ctx,
        Target::Preview {
            slug: slug.to_string(),
        },
        commit,
        &u.name,
    );
    let name = &job.name;
    if !release::is_ready(root, name) {
        return Err(Error::with_help(
            format!(
                "releases/{name} is {} now, no longer the ready preview the pre-receive hook built",
                release::effective_state(root, name)
            ),
            "something changed it in between (a cleanup, `preview rm`); push again",
        ));
    }
    txn.preview_before = root.preview_pointed(slug).map(Into::into);
    let mut run = Entry::start(
        crate::deploy::preview::EVENT,
        Some(&commit.into()),
        Some(&u.name),
    );
    run.txn = Some(txn);
    journal::append(root, &run)?;
    runs.push(run.clone());
    crate::sys::faults::point("strict-before-flip-preview");
    job.point()?;
    job.notify(Outcome::Ok, None);
    journal::append(root, &prepared(&run))?;
    output::success(&format!("previews/{slug} -> releases/{name}"));
    Ok(())
}

fn on_committed(ctx: &Ctx, pending: &mut Pending, matched: &[usize]) -> Result<()> {
    let mut promoted = false;
    let mut watch = Vec::new();
    let mut removals = Vec::new();
    let mut previews = Vec::new();
    for &i in matched {
        let u = &mut pending.updates[i];
        match &u.kind {
            UpdateKind::RemovePreview => removals.push(u.name.clone()),
            UpdateKind::Preview { slug } => previews.push(slug.clone()),
            UpdateKind::Release { .. } => {}
        }
        for run in &u.runs {
            journal::append(&ctx.root, &run.end(Outcome::Ok))?;
            promoted |= run.event == Event::Promote;
            if run.event == Event::Promote {
                watch.push(run.clone());
            }
        }
        output::success_last(&format!(
            "git updated {} to {}",
            u.name,
            u.commit.as_ref().map_or("nothing (deleted)", Commit::short)
        ));
        u.state = UpdateState::Done;
    }
    pending.updates.retain(|u| u.state != UpdateState::Done);
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
        if let Ok(_lock) =
            crate::session::lock::acquire(&ctx.root, "cleanup", std::time::Duration::ZERO)
        {
            for slug in previews {
                for e in crate::deploy::preview::remove_unpointed(ctx, &slug) {
                    output::warning(&e.to_string());
                }
            }
        }
    }
    for run in watch {
        // git has the ref: the promote stands, so its watch starts. The lock
        // was git's hook's; the watch's record is written with it taken again.
        if let Ok(_lock) =
            crate::session::lock::acquire(&ctx.root, "watch", ctx.config.lock_timeout)
        {
            if let Some(commit) = run.commit.as_ref().and_then(Recorded::main) {
                crate::deploy::watch::start(
                    ctx,
                    commit,
                    run.git_ref.as_deref().unwrap_or_default(),
                    run.previous.as_ref().and_then(Recorded::main),
                );
            }
        }
    }
    if promoted {
        // Without waiting: another deploy holding the lock cleans up itself.
        // Production has moved: a cleanup problem is a warning, never a failure.
        if let Ok(_lock) =
            crate::session::lock::acquire(&ctx.root, "cleanup", std::time::Duration::ZERO)
        {
            crate::housekeeping::cleanup::after_promote(ctx);
        }
    }
    Ok(())
}

fn on_aborted(ctx: &Ctx, pending: &mut Pending, matched: &[usize]) -> Result<()> {
    let _run = crate::session::lock_and_recover(ctx, "undoing the flips of a refused strict push")?;
    // Newest first: a promote's production goes back before a warm-up it
    // followed marks the release failed.
    for &i in matched.iter().rev() {
        let u = &mut pending.updates[i];
        output::error(&format!(
            "git did not update {} to {}; undoing its flips",
            u.name,
            u.commit.as_ref().map_or("nothing (deleted)", Commit::short)
        ));
        for run in u.runs.iter().rev() {
            undo(ctx, run, "git did not update the ref");
        }
        u.state = UpdateState::Done;
    }
    pending.updates.retain(|u| u.state != UpdateState::Done);
    Ok(())
}
