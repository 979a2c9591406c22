//! The warm-up, in the seed's order: lock, export, shared links, build, links,
//! migrate, flip `warmup`, check (through www_warmup), ready, notify, journal.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::ctx::Ctx;
use crate::deploy::pointers::{point_warmup, where_now};
use crate::error::{Error, IoContext, Result};
use crate::state::commit::Commit;
use crate::state::journal::{self, Entry, Event, Outcome};
use crate::state::release::{self, Record, State};
use crate::state::release_name::ReleaseName;
use crate::sys::advice;
use crate::sys::output::{self, Stage};
use crate::sys::steps::{self, StepEnv};
use crate::{
    deploy::carry, deploy::export, deploy::shared, state::repo, sys::faults, sys::symlink,
};

/// What follows a warm-up's build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Flip `warmup` to it; `then_promote`: a promote follows (a tag,
    /// `-o promote`), so the hint to promote is left out and a failure's
    /// advice names `symdeploy promote`.
    Flip { then_promote: bool },
    /// Strict mode: leave `warmup` alone until git has the ref locked.
    WaitForGit,
}

impl Then {
    fn then_promote(self) -> bool {
        match self {
            Then::Flip { then_promote } => then_promote,
            // A strict push's failure advice is the same as a promote's.
            Then::WaitForGit => true,
        }
    }
}

/// Warm up `commit` with the lock held; returns the commit.
/// A commit that already has a ready release only re-points `warmup`.
/// `then_promote`: a promote follows (a tag, `-o promote`), so the hint to
/// promote is left out and a failure's advice names `symdeploy promote`.
pub(crate) fn warm(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: Commit,
    git_ref: &str,
    rebuild: bool,
    then_promote: bool,
) -> Result<Commit> {
    warm_impl(
        ctx,
        repo,
        commit,
        git_ref,
        rebuild,
        Then::Flip { then_promote },
    )
    .map(|_| commit)
}

/// Strict mode's first half: build `commit`'s release (if it has no ready
/// one) without flipping `warmup`, which waits until git has the ref locked.
/// Returns whether a release was built.
pub(crate) fn build_only(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: Commit,
    git_ref: &str,
) -> Result<bool> {
    warm_impl(ctx, repo, commit, git_ref, false, Then::WaitForGit)
}

/// The warm-up in the seed's order; returns whether a release was built.
fn warm_impl(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: Commit,
    git_ref: &str,
    rebuild: bool,
    then: Then,
) -> Result<bool> {
    let root = &ctx.root;
    let subject = repo::subject(repo, commit.id()).unwrap_or_default();
    output::header(&format!(
        "warming up {} ({git_ref}): {subject}",
        commit.short()
    ));
    if release::is_ready(root, &commit.into()) && !rebuild {
        already_ready(ctx, commit, git_ref, then)?;
        return Ok(false);
    }
    remove_earlier_build(ctx, commit)?;

    let mut entry = Entry::start(Event::Warmup, Some(&commit.into()), Some(git_ref));
    journal::append(root, &entry)?;
    release::save(root, &Record::building(commit, git_ref, subject))?;
    let mut durations = BTreeMap::new();
    let started = Instant::now();
    let built = build(ctx, repo, commit, git_ref, &mut durations);
    entry.durations = durations;
    if let Err(e) = built {
        return Err(failed(ctx, entry, e, commit, git_ref, then));
    }
    if then == Then::WaitForGit {
        // Strict mode checks at git's `prepared`, once warmup may point here.
        release::set_state(root, &commit.into(), State::Ready, None)?;
        journal::append(root, &entry.end(Outcome::Built))?;
        output::detail_full(
            &format!(
                "releases/{} is ready; warmup flips to it once git accepts {git_ref}",
                commit.short()
            ),
            commit.as_str(),
        );
        return Ok(true);
    }
    if ctx.config.warmup.check.is_empty() {
        release::set_state(root, &commit.into(), State::Ready, None)?;
        faults::point("before-flip-warmup");
        point_warmup(ctx, commit)?;
        faults::point("after-flip-warmup");
    } else {
        // The check goes through www_warmup, so warmup points at the release
        // before it is ready; a crash in between leaves it `building`, which
        // recovery marks failed and moves warmup off.
        let before = root.warmup();
        faults::point("before-flip-warmup");
        point_warmup(ctx, commit)?;
        faults::point("after-flip-warmup");
        if let Err(e) = check(ctx, commit, git_ref, &mut entry.durations) {
            warmup_back(ctx, commit, before);
            return Err(failed(ctx, entry, e, commit, git_ref, then));
        }
        release::set_state(root, &commit.into(), State::Ready, None)?;
    }

    if let Some(took) = notify(ctx, commit, git_ref, Outcome::Ok, None) {
        entry.durations.insert("notify".into(), took.as_secs_f64());
    }
    entry
        .durations
        .insert("total".into(), started.elapsed().as_secs_f64());
    journal::append(root, &entry.end(Outcome::Ok))?;
    finish_message(ctx, commit, started.elapsed(), then.then_promote());
    Ok(true)
}

/// Run `warmup.check` against `commit`, which `warmup` points at now, retried
/// for `warmup.check_timeout`.
pub(crate) fn check(
    ctx: &Ctx,
    commit: Commit,
    git_ref: &str,
    durations: &mut BTreeMap<String, f64>,
) -> Result<()> {
    let w = &ctx.config.warmup;
    let stage = Stage::start("check");
    faults::point("warmup-check");
    crate::deploy::switch::check_until(
        "check",
        &w.check,
        &step_env(ctx, commit, git_ref),
        w.check_timeout,
        "warmup.check_timeout",
    )?;
    durations.insert("check".into(), stage.done().as_secs_f64());
    Ok(())
}

/// A failed check: `warmup` back where it pointed before the flip to `commit`
/// (if that release is still ready), else off `commit` the usual way. Never
/// fails: it runs on an error path, and a problem is reported.
pub(crate) fn warmup_back(ctx: &Ctx, commit: Commit, before: Option<Commit>) {
    let _unwinding = crate::sys::signals::unwinding("moving warmup back");
    let root = &ctx.root;
    if root.warmup() != Some(commit) {
        return;
    }
    let moved = match before.filter(|b| *b != commit && release::is_ready(root, &(*b).into())) {
        Some(b) => crate::deploy::pointers::flip_warmup(ctx, b).map(|_| Some(b)),
        None => match before {
            // It pointed nowhere: it points nowhere again.
            None => std::fs::remove_file(root.link(crate::state::root::WARMUP))
                .at("remove", root.link(crate::state::root::WARMUP))
                .map(|_| None),
            Some(_) => crate::deploy::pointers::warmup_off(ctx, commit),
        },
    };
    match moved {
        Ok(back) => output::detail(&format!(
            "warmup -> {} (back)",
            back.map(|c| format!("releases/{}", c.short()))
                .unwrap_or_else(|| "nothing".into())
        )),
        Err(e) => output::error(&format!("could not move warmup back: {e}")),
    }
}

/// The commit has a ready release already: nothing is built. A warm-up
/// re-points `warmup` at it (journaled `unchanged`); a strict build leaves
/// that to the flip once git has the ref.
fn already_ready(ctx: &Ctx, commit: Commit, git_ref: &str, then: Then) -> Result<()> {
    let Then::Flip { then_promote } = then else {
        output::detail_full(
            &format!(
                "releases/{} is already warmed up; warmup flips to it once git accepts {git_ref}",
                commit.short()
            ),
            commit.as_str(),
        );
        return Ok(());
    };
    let root = &ctx.root;
    let entry = Entry::start(Event::Warmup, Some(&commit.into()), Some(git_ref));
    journal::append(root, &entry)?;
    let started = Instant::now();
    output::detail_full(&format!("releases/{} is already warmed up; not rebuilding (use `symdeploy warmup --rebuild` to redo it)", commit.short()), commit.as_str());
    point_warmup(ctx, commit)?;
    journal::append(root, &entry.end(Outcome::Unchanged))?;
    finish_message(ctx, commit, started.elapsed(), then_promote);
    Ok(())
}

/// An earlier build of the commit (failed, cut short, or `--rebuild`) is
/// removed before a new one; one that production or warmup points at is
/// refused instead.
fn remove_earlier_build(ctx: &Ctx, commit: Commit) -> Result<()> {
    let root = &ctx.root;
    let dir = root.main_release(commit);
    if !dir.exists() {
        return Ok(());
    }
    let production = root.production();
    // The release warmup points at (one that changed since its warm-up, say)
    // can be rebuilt once warmup stands on production's complete release
    // meanwhile; it flips back when the rebuild is ready.
    if root.warmup() == Some(commit) {
        if let Some(p) =
            production.filter(|p| *p != commit && release::is_ready(root, &(*p).into()))
        {
            output::detail(&format!(
                "warmup -> releases/{} (production's) while releases/{} is rebuilt",
                p.short(),
                commit.short()
            ));
            crate::deploy::pointers::flip_warmup(ctx, p)?;
        }
    }
    let which = if production == Some(commit) {
        Some("production")
    } else if root.warmup() == Some(commit) {
        Some("warmup")
    } else {
        None
    };
    if let Some(which) = which {
        return Err(Error::with_help(
            format!(
                "releases/{commit} is what {which} points at, so it cannot be rebuilt in place"
            ),
            "warm up and promote another commit first, then rebuild this one",
        ));
    }
    output::detail(&format!(
        "removing the earlier {} build of releases/{}",
        release::effective_state(root, &commit.into()),
        commit.short()
    ));
    std::fs::remove_dir_all(&dir).at("remove the old release", &dir)?;
    release::forget(root, &commit.into());
    Ok(())
}

/// A build that failed or was interrupted: the release is marked failed,
/// the run ended, chat and CI told (a post-receive push exits 0 whatever
/// happens), and the error returned whole for the renderer.
fn failed(ctx: &Ctx, entry: Entry, e: Error, commit: Commit, git_ref: &str, then: Then) -> Error {
    let root = &ctx.root;
    let then_promote = then.then_promote();
    let interrupted = matches!(e, Error::Interrupted { .. });
    // What could not be written down is said with the failure, never in
    // its place: the build's own error is what the pusher must see.
    let mut unrecorded = Vec::new();
    if let Err(marked) =
        release::set_state(root, &commit.into(), State::Failed, Some(e.to_string()))
    {
        unrecorded.push(marked.to_string());
    }
    let mut entry = entry;
    entry.error = Some(e.to_string());
    let result = if interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Failed
    };
    if let Err(journaled) = journal::append(root, &entry.end(result)) {
        unrecorded.push(journaled.to_string());
    }
    if !interrupted {
        notify(ctx, commit, git_ref, Outcome::Failed, Some(&e));
        if then_promote {
            // A promote was asked for (a tag, `-o promote`) and nothing was
            // switched: its notify hears `failed` too.
            crate::deploy::switch::notify(
                ctx,
                commit,
                root.production(),
                git_ref,
                Outcome::Failed,
                Some(&e),
            );
        }
    }
    let (message, help) = if interrupted {
        (
            format!(
                "warm-up of {} was interrupted (the release is marked failed): {e}",
                commit.short()
            ),
            e.help().unwrap_or_default(),
        )
    } else {
        (
            format!("warm-up of {} failed: {e}", commit.short()),
            advice(&e, commit, then_promote),
        )
    };
    let message = match unrecorded.is_empty() {
        true => message,
        false => format!(
            "{message} (and it could not be recorded: {})",
            unrecorded.join("; ")
        ),
    };
    Error::Failed {
        code: e.exit_code(),
        message,
        now: where_now(root),
        help: Some(help).filter(|h| !h.is_empty()),
        source: Some(Box::new(e)),
    }
}

fn build(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: Commit,
    git_ref: &str,
    durations: &mut BTreeMap<String, f64>,
) -> Result<()> {
    let root = &ctx.root;
    let dir = root.main_release(commit);

    // Before anything is written: a deploy must not fill the disk.
    let carry_from = [root.warmup(), root.production()]
        .into_iter()
        .flatten()
        .find(|c| *c != commit && release::is_ready(root, &(*c).into()));
    let source = export::Source::of(repo, commit)?;
    crate::deploy::disk::preflight(
        ctx,
        repo,
        source,
        carry_from.filter(|_| !ctx.config.carry.is_empty()),
    )?;

    export_stage(ctx, repo, source, &commit.into(), durations)?;
    crate::sys::signals::check("the warm-up stopped after the export")?;
    // Flush the export to disk while carry, shared links and the steps run
    // (composer takes seconds): the sync before `ready` then only waits for
    // what they wrote. The result does not matter: that final sync vouches.
    let early_sync = {
        let dir = dir.clone();
        std::thread::spawn(move || crate::sys::fs::sync_filesystem(&dir).is_ok())
    };

    if !ctx.config.carry.is_empty() {
        let stage = Stage::start("carry");
        let previous = [root.warmup(), root.production()]
            .into_iter()
            .flatten()
            .find(|c| *c != commit && release::is_ready(root, &(*c).into()));
        match previous {
            Some(prev) => carry::carry(&root.main_release(prev), &dir, &ctx.config.carry)?,
            None => output::detail("no previous release to carry from"),
        }
        durations.insert("carry".into(), stage.done().as_secs_f64());
    }

    if !ctx.config.shared.is_empty() {
        let stage = Stage::start("shared");
        shared::link_all(&dir, &root.common(), &ctx.config.shared)?;
        durations.insert("shared".into(), stage.done().as_secs_f64());
    }

    let env = step_env(ctx, commit, git_ref);
    let w = &ctx.config.warmup;
    let stages = [
        ("build", &w.build),
        ("links", &w.links),
        ("migrate", &w.migrate),
    ];
    let exported = Exported {
        name: &commit.into(),
        dir: &dir,
        common: &root.common(),
        what: "the warm-up",
        fault_prefix: "",
    };
    exported.finish(ctx, stages, &env, Some(early_sync), durations)
}

/// A release directory whose export is done, and what the rest of its
/// build needs to know: the tail warm-ups and previews share.
pub(crate) struct Exported<'a> {
    /// The release: its manifest is stored by this name.
    pub(crate) name: &'a ReleaseName,
    /// The release directory.
    pub(crate) dir: &'a std::path::Path,
    /// Where its shared paths point (`common/`, or the preview's own).
    pub(crate) common: &'a std::path::Path,
    /// "the warm-up", "the preview": for the message of an interrupt.
    pub(crate) what: &'a str,
    /// Prefix of the steps' fault points (`preview-` for previews).
    pub(crate) fault_prefix: &'a str,
}

impl Exported<'_> {
    /// The build, links and migrate stages that have commands, then the web
    /// user's ACLs (after the steps, so caches they warmed up are covered
    /// too), then the sync that `ready` vouches for. `early_sync`: a flush
    /// started right after the export, waited for before the final one.
    pub(crate) fn finish(
        &self,
        ctx: &Ctx,
        stages: [(&str, &Vec<String>); 3],
        env: &StepEnv,
        early_sync: Option<std::thread::JoinHandle<bool>>,
        durations: &mut BTreeMap<String, f64>,
    ) -> Result<()> {
        for (name, commands) in stages {
            if commands.is_empty() {
                continue;
            }
            // A preview's migrate runs against its own database, not production's.
            let main_migrate = name == "migrate" && self.fault_prefix.is_empty();
            if main_migrate && MIGRATE_ELSEWHERE.load(Ordering::Relaxed) {
                output::line(
                    "-----> migrate: skipped (-o skip-migrate: another host of the fleet migrated the shared database)",
                );
                crate::state::schema::after_migrate(ctx, self.dir);
                continue;
            }
            let stage = Stage::start(name);
            faults::point(&format!("{}{name}", self.fault_prefix));
            steps::run_stage(name, commands, env)?;
            durations.insert(name.into(), stage.done().as_secs_f64());
            if main_migrate {
                crate::state::schema::after_migrate(ctx, self.dir);
            }
        }
        if let Some(user) = &ctx.config.web_user {
            let stage = Stage::start("writable");
            let web = crate::deploy::acl::resolve(user)?;
            crate::deploy::acl::grant_all(
                &web,
                self.common,
                &ctx.config.shared,
                self.dir,
                &ctx.config.writable,
            )?;
            durations.insert("writable".into(), stage.done().as_secs_f64());
        }
        // The manifest is of what `ready` vouches for: after the steps and
        // the ACLs (which change ctimes), before the sync. It prints nothing
        // on success; its time is in the journal and the run log.
        let started = std::time::Instant::now();
        let entries = crate::state::manifest::record(
            &ctx.root,
            self.name,
            self.dir,
            &crate::state::manifest::excluded_paths(&ctx.config),
        )?;
        let took = started.elapsed();
        tracing::info!(entries, seconds = took.as_secs_f64(), "manifest written");
        durations.insert("manifest".into(), took.as_secs_f64());
        // `ready` is recorded durably next; the files it vouches for must be
        // on disk first, or a power cut could leave a ready release of empty
        // files. On a big release this is most of what the warm-up costs
        // beyond the export itself, so it is a stage of its own.
        crate::sys::signals::check(&format!(
            "{} stopped before the release was marked ready",
            self.what
        ))?;
        let stage = Stage::start("sync");
        if let Some(early) = early_sync {
            let _ = early.join();
        }
        crate::sys::fs::sync_filesystem(self.dir)?;
        // The manifest is not synced on its own (see manifest::write): its
        // filesystem is, if it is not the release's.
        let manifests = ctx.root.manifests();
        if crate::sys::fs::device_of(&manifests) != crate::sys::fs::device_of(self.dir) {
            crate::sys::fs::sync_filesystem(&manifests)?;
            crate::sys::symlink::sync_dir(&manifests);
        }
        durations.insert("sync".into(), stage.done().as_secs_f64());
        Ok(())
    }
}

/// Set for a push with `-o skip-migrate`: another host of a fleet runs
/// `warmup.migrate` against the shared database, so this one skips it (and
/// records the schema all the same, for the rollback rule).
static MIGRATE_ELSEWHERE: AtomicBool = AtomicBool::new(false);

/// This process's warm-ups skip `warmup.migrate` (`-o skip-migrate`).
pub(crate) fn migrate_elsewhere() {
    MIGRATE_ELSEWHERE.store(true, Ordering::Relaxed);
}

/// The export stage of a warm-up or a preview: `commit` exported to a
/// temporary directory in releases/, its REVISION written, renamed to
/// `releases/<name>` (one rename), with the stage's one-line summary.
/// Nothing is left behind when it fails.
pub(crate) fn export_stage(
    ctx: &Ctx,
    repo: &gix::Repository,
    source: export::Source,
    name: &ReleaseName,
    durations: &mut BTreeMap<String, f64>,
) -> Result<()> {
    let root = &ctx.root;
    let commit = source.commit;
    let dir = root.release(name);
    let stage = Stage::start("export");
    let tmp = root.releases().join(format!(
        "{}{name}-{}",
        crate::state::root::TMP_PREFIX,
        std::process::id()
    ));
    faults::point("export");
    let stats = match source.export_showing_progress(repo, &tmp) {
        Ok(s) => s,
        Err(e) => {
            // A partial export is worth nothing; with a full disk it is worse than nothing.
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(explain_full_disk(e, repo, source, &root.releases()));
        }
    };
    if let Err(e) = export::write_revision(&tmp, commit) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    faults::point("before-rename-release");
    std::fs::rename(&tmp, &dir).at("rename the export into place as", &dir)?;
    symlink::sync_dir(&root.releases());
    let mut summary = vec![output::count(stats.files as u64, "file", "files")];
    if stats.symlinks > 0 {
        summary.push(output::count(stats.symlinks as u64, "symlink", "symlinks"));
    }
    summary.push(crate::sys::fs::human_bytes(stats.bytes));
    if stats.ignored > 0 {
        summary.push(format!("{} excluded by export-ignore", stats.ignored));
    }
    for sub in &stats.submodules {
        output::warning(&format!("submodule {sub} is exported as an empty directory (symdeploy does not fetch submodules)"));
    }
    durations.insert(
        "export".into(),
        stage.done_with(&summary.join(", ")).as_secs_f64(),
    );
    Ok(())
}

/// A full disk during the export, told with what the operator needs: where,
/// how much is free now that the partial export is gone, and how much the
/// commit needs. Other errors pass through unchanged.
fn explain_full_disk(
    e: Error,
    repo: &gix::Repository,
    exported: export::Source,
    releases: &std::path::Path,
) -> Error {
    let commit = exported.commit;
    let Error::Io { source, path, .. } = &e else {
        return e;
    };
    let full = matches!(source.raw_os_error(), Some(c) if c == nix::libc::ENOSPC || c == nix::libc::EDQUOT);
    if !full {
        return e;
    }
    let free = crate::sys::fs::free_space(releases)
        .map(crate::sys::fs::human_bytes)
        .unwrap_or_else(|| "an unknown amount".into());
    let needed = exported
        .bytes(repo)
        .map(|b| {
            format!(
                ", and {} needs about {}",
                commit.short(),
                crate::sys::fs::human_bytes(b)
            )
        })
        .unwrap_or_default();
    Error::with_help(
        format!(
            "the disk is full: could not write {} ({source}); the partial export was removed",
            path.display()
        ),
        format!(
            "the filesystem holding {} has {free} free{needed}; free some space (`symdeploy cleanup` removes old releases) or grow the filesystem, then deploy again",
            releases.display()
        ),
    )
}

/// The environment warm-up steps get.
pub(crate) fn step_env(ctx: &Ctx, commit: Commit, git_ref: &str) -> StepEnv {
    StepEnv {
        root: ctx.root.dir.clone(),
        release: ctx.root.main_release(commit),
        commit,
        git_ref: git_ref.to_string(),
        previous: ctx.root.production().map(|c| ctx.root.main_release(c)),
        extra: Vec::new(),
        timeout: ctx.config.step_timeout,
    }
}

/// Run warmup.notify with `SYMDEPLOY_RESULT` (ok or failed) and, after a
/// failure, `SYMDEPLOY_ERROR` (one line). Its own failure is a warning.
/// Returns how long it took, if it had commands.
pub(crate) fn notify(
    ctx: &Ctx,
    commit: Commit,
    git_ref: &str,
    result: Outcome,
    error: Option<&Error>,
) -> Option<std::time::Duration> {
    let commands = &ctx.config.warmup.notify;
    if commands.is_empty() {
        return None;
    }
    let stage = Stage::start("notify");
    let mut env = step_env(ctx, commit, git_ref);
    env.extra
        .push(("SYMDEPLOY_RESULT".into(), result.as_ref().into()));
    if let Some(e) = error {
        env.extra
            .push(("SYMDEPLOY_ERROR".into(), output::one_line(&e.to_string())));
    }
    if let Err(e) = steps::run_stage("notify", commands, &env) {
        output::warning(&format!(
            "{e} ({})",
            if result == Outcome::Ok {
                "the release is warmed up all the same"
            } else {
                "the failure above stands as reported"
            }
        ));
        return None;
    }
    Some(stage.done())
}

/// The one piece of advice after a failed warm-up: fixed in the commit means
/// a new push; fixed on the server (deploy.toml, `common/`, a missing
/// program, permissions, disk) means running it again there, since pushing
/// the same commit again runs no hook ("Everything up-to-date").
pub(crate) fn advice(e: &Error, commit: Commit, then_promote: bool) -> String {
    let again = if then_promote {
        format!(
            "`{}`",
            advice::command(&format!("promote {}", commit.short()))
        )
    } else {
        format!(
            "`{}`",
            advice::command(&format!("warmup {}", commit.short()))
        )
    };
    let log = output::log_path()
        .map(|p| format!("the whole output is in {}; ", p.display()))
        .unwrap_or_default();
    match e {
        Error::Step { status, .. } if status.not_found() => format!(
            "{log}a program the step runs is missing on the server: install it (or fix the command in deploy.toml), then run {again} there"
        ),
        Error::Step {
            status: crate::sys::steps::StepEnd::TimedOut(_),
            ..
        } => format!(
            "{log}make the step faster (in the commit, then push it again) or raise step_timeout in deploy.toml and run {again} on the server"
        ),
        Error::Step { .. } => format!(
            "{log}fix the commit and push it again (if the server was at fault, e.g. deploy.toml or common/, fix it there and run {again})"
        ),
        Error::Config { file, .. } => format!(
            "fix {} (`symdeploy check` validates it), then run {again} on the server",
            file.display()
        ),
        other => match other.help() {
            Some(h) => format!("{h}; then run {again} on the server"),
            None => format!("fix the cause on the server, then run {again} there"),
        },
    }
}

pub(crate) fn finish_message(
    ctx: &Ctx,
    commit: Commit,
    took: std::time::Duration,
    then_promote: bool,
) {
    output::success(&format!(
        "warmup -> releases/{} (warm-up took {})",
        commit.short(),
        crate::sys::fs::human_duration(took)
    ));
    output::log_only(&format!("       warmup -> releases/{commit}"));
    if then_promote {
        return;
    }
    // A tag name the configured glob accepts: `release-*` becomes `release-N`.
    let tag = ctx.config.promote.tags.replace(['*', '?'], "N");
    output::detail(&format!(
        "promote it: `{}` on the server, or git tag {tag} {} && git push deploy {tag}",
        advice::command(&format!("promote {}", commit.short())),
        commit.short()
    ));
}
