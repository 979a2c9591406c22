//! The warm-up, one pipeline for a release and for a preview, in the seed's
//! order: export, shared links, build, links, migrate, flip, check (a
//! release's, through www_warmup), ready, notify, journal. What differs
//! between the two (names, the pointer that flips, steps, environment,
//! journal event, messages) is the [`Job`]'s [`Target`]; everything else
//! runs once, here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::ctx::Ctx;
use crate::deploy::job::{Job, Target, WarmStage};
use crate::deploy::pointers::where_now;
use crate::error::{Error, IoContext, Result};
use crate::state::commit::Commit;
use crate::state::journal::{self, Entry, Outcome};
use crate::state::release::{self, Record, State};
use crate::state::release_name::ReleaseName;
use crate::sys::advice;
use crate::sys::output::{self, Stage};
use crate::sys::steps::{self, StepEnv};
use crate::{
    deploy::carry, deploy::export, deploy::preview, deploy::shared, state::repo, sys::faults,
    sys::symlink,
};

/// Warm `commit` up as the next release, with the lock held; returns
/// whether a release was built (its manifest written by this process just
/// now). A commit that already has a ready release only re-points `warmup`.
/// `then_promote`: see [`Target::Release`]'s `promote_follows`.
pub(crate) fn warm(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: Commit,
    git_ref: &str,
    rebuild: bool,
    then_promote: bool,
) -> Result<bool> {
    let target = Target::Release {
        rebuild,
        promote_follows: then_promote,
    };
    run(&Job::new(ctx, target, commit, git_ref), repo, true)
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
    // A strict push's failure advice is the same as a promote's.
    let target = Target::Release {
        rebuild: false,
        promote_follows: true,
    };
    run(&Job::new(ctx, target, commit, git_ref), repo, false)
}

/// Warm `commit` of the branch `git_ref` up as its preview, with the lock
/// held; `flip`: point `previews/<slug>/production` at it (strict mode flips
/// once git has the ref locked). Returns the preview's slug.
pub(crate) fn preview(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: Commit,
    git_ref: &str,
    flip: bool,
) -> Result<String> {
    let slug = preview::claim(ctx, git_ref)?;
    let target = Target::Preview { slug: slug.clone() };
    run(&Job::new(ctx, target, commit, git_ref), repo, flip)?;
    Ok(slug)
}

/// The pipeline; returns whether a release was built (a ready one is
/// reused unless a rebuild was asked for).
fn run(job: &Job, repo: &gix::Repository, flip: bool) -> Result<bool> {
    let ctx = job.ctx;
    let root = &ctx.root;
    let hex = job.commit.as_str();
    let subject = repo::subject(repo, job.commit.id()).unwrap_or_default();
    output::header(&job.header(&subject));
    if release::is_ready(root, &job.name) && !job.rebuild() {
        reuse(job, flip)?;
        return Ok(false);
    }
    remove_earlier_build(job)?;

    let mut entry = Entry::start(job.event(), Some(&job.commit.into()), Some(job.git_ref));
    journal::append(root, &entry)?;
    release::save_as(
        root,
        &job.name,
        &Record::building(job.commit, job.git_ref, subject),
    )?;
    let mut durations = BTreeMap::new();
    let started = Instant::now();
    let built = build(job, repo, &mut durations);
    entry.durations = durations;
    if let Err(e) = built {
        return Err(failed(job, entry, e, None));
    }
    // A release's check goes through www_warmup, so warmup points at the
    // release before it is ready; a crash in between leaves it `building`,
    // which recovery marks failed and moves warmup off. Strict mode checks
    // at git's `prepared`, once warmup may point here.
    let checked = flip && job.has_check();
    if !checked {
        release::set_state(root, &job.name, State::Ready, None)?;
    }
    if !flip {
        journal::append(root, &entry.end(Outcome::Built))?;
        output::detail_full(
            &format!(
                "{} is ready; {} flips to it once git accepts {}",
                job.name.place(),
                job.pointer(),
                job.git_ref
            ),
            hex,
        );
        return Ok(true);
    }
    // Where a check's failure moves warmup back to.
    let before = if checked { root.warmup() } else { None };
    faults::point(&format!("before-flip-{}", job.flip_fault()));
    job.point()?;
    faults::point(&format!("after-flip-{}", job.flip_fault()));
    if checked {
        if let Err(e) = check(job, &mut entry.durations) {
            let stuck = warmup_back(ctx, job.commit, before)
                .err()
                .map(|b| format!("warmup could not be moved back: {b}"));
            return Err(failed(job, entry, e, stuck));
        }
        release::set_state(root, &job.name, State::Ready, None)?;
    }

    if let Some(took) = job.notify(Outcome::Ok, None) {
        entry.durations.insert("notify".into(), took.as_secs_f64());
    }
    entry
        .durations
        .insert("total".into(), started.elapsed().as_secs_f64());
    journal::append(root, &entry.end(Outcome::Ok))?;
    job.finish_message(started.elapsed());
    Ok(true)
}

/// The commit has a ready release already: nothing is built. With `flip`
/// its pointer is re-pointed at it (journaled `unchanged`); a strict build
/// leaves that to the flip once git has the ref.
fn reuse(job: &Job, flip: bool) -> Result<()> {
    let root = &job.ctx.root;
    let hex = job.commit.as_str();
    let place = job.name.place();
    match (&job.target, flip) {
        (Target::Release { .. }, false) => {
            output::detail_full(
                &format!(
                    "{place} is already warmed up; warmup flips to it once git accepts {}",
                    job.git_ref
                ),
                hex,
            );
            return Ok(());
        }
        (Target::Release { .. }, true) => output::detail_full(
            &format!("{place} is already warmed up; not rebuilding (use `symdeploy warmup --rebuild` to redo it)"),
            hex,
        ),
        (Target::Preview { .. }, _) => output::detail(&format!("{place} is already warmed up")),
    }
    if !flip {
        return Ok(());
    }
    let entry = Entry::start(job.event(), Some(&job.commit.into()), Some(job.git_ref));
    journal::append(root, &entry)?;
    let started = Instant::now();
    job.point()?;
    journal::append(root, &entry.end(Outcome::Unchanged))?;
    job.finish_message(started.elapsed());
    Ok(())
}

/// An earlier build of the release (failed, cut short, or `--rebuild`) is
/// removed before a new one. A preview's is never pointed at (it is not
/// ready); a release that production or warmup points at is refused.
fn remove_earlier_build(job: &Job) -> Result<()> {
    let ctx = job.ctx;
    let root = &ctx.root;
    let name = &job.name;
    let dir = root.release(name);
    if !dir.exists() {
        return Ok(());
    }
    if let Target::Release { .. } = job.target {
        make_way(ctx, job.commit)?;
    }
    output::detail(&format!(
        "removing the earlier {} build of {}",
        release::effective_state(root, name),
        name.place()
    ));
    match job.target {
        Target::Release { .. } => {
            std::fs::remove_dir_all(&dir).at("remove the old release", &dir)?;
            release::forget(root, name);
        }
        Target::Preview { .. } => crate::housekeeping::trash::remove_release(ctx, name)?,
    }
    Ok(())
}

/// Before the release of `commit` is rebuilt: warmup moves off it to
/// production's release if it can; what still points at it refuses the
/// rebuild.
fn make_way(ctx: &Ctx, commit: Commit) -> Result<()> {
    let root = &ctx.root;
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
    match which {
        Some(which) => Err(Error::with_help(
            format!(
                "releases/{commit} is what {which} points at, so it cannot be rebuilt in place"
            ),
            "warm up and promote another commit first, then rebuild this one",
        )),
        None => Ok(()),
    }
}

/// A build that failed or was interrupted: the release is marked failed,
/// the run ended, chat and CI told (a post-receive push exits 0 whatever
/// happens), and the error returned whole for the renderer, with `stuck`
/// (what could not be undone) said in the same breath.
fn failed(job: &Job, entry: Entry, e: Error, stuck: Option<String>) -> Error {
    let ctx = job.ctx;
    let root = &ctx.root;
    let interrupted = matches!(e, Error::Interrupted { .. });
    // What could not be written down is said with the failure, never in
    // its place: the build's own error is what the pusher must see.
    let mut unrecorded = Vec::new();
    if let Err(marked) = release::set_state(root, &job.name, State::Failed, Some(e.to_string())) {
        unrecorded.push(marked.to_string());
    }
    let mut entry = entry;
    entry.error = Some(e.to_string());
    let result = if interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Failed
    };
    if let Err(journaled) = journal::append(root, &entry.end(result.clone())) {
        unrecorded.push(journaled.to_string());
    }
    let (message, help, now) = match &job.target {
        Target::Release {
            promote_follows, ..
        } => {
            if !interrupted {
                job.notify(Outcome::Failed, Some(&e));
                if *promote_follows {
                    // A promote was asked for (a tag, `-o promote`) and nothing was
                    // switched: its notify hears `failed` too.
                    crate::deploy::switch::notify(
                        ctx,
                        job.commit,
                        root.production(),
                        job.git_ref,
                        Outcome::Failed,
                        Some(&e),
                    );
                }
            }
            let (message, help) = if interrupted {
                (
                    format!(
                        "warm-up of {} was interrupted (the release is marked failed): {e}",
                        job.commit.short()
                    ),
                    e.help().unwrap_or_default(),
                )
            } else {
                (
                    format!("warm-up of {} failed: {e}", job.commit.short()),
                    advice(&e, job.commit, *promote_follows),
                )
            };
            (message, help, where_now(root))
        }
        Target::Preview { slug } => (
            format!("preview {slug} of {} {result}: {e}", job.commit.short()),
            e.help().unwrap_or_default(),
            preview::where_now(root, slug),
        ),
    };
    let message = match stuck {
        Some(stuck) => format!("{message} (and {stuck})"),
        None => message,
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
        now,
        help: Some(help).filter(|h| !h.is_empty()),
        source: Some(Box::new(e)),
    }
}

/// Run `warmup.check` against the release `warmup` points at now, retried
/// for `warmup.check_timeout`.
pub(crate) fn check(job: &Job, durations: &mut BTreeMap<String, f64>) -> Result<()> {
    let w = &job.ctx.config.warmup;
    let stage = Stage::start("check");
    faults::point("warmup-check");
    crate::deploy::switch::check_until(
        "check",
        &w.check,
        &job.step_env(),
        w.check_timeout,
        "warmup.check_timeout",
    )?;
    durations.insert("check".into(), stage.done().as_secs_f64());
    Ok(())
}

/// A failed check: `warmup` back where it pointed before the flip to
/// `commit`'s release (if that release is still ready), else off it the
/// usual way. It runs on an error path: a problem is returned to be told
/// with that error.
fn warmup_back(ctx: &Ctx, commit: Commit, before: Option<Commit>) -> Result<()> {
    let _unwinding = crate::sys::signals::unwinding("moving warmup back");
    let root = &ctx.root;
    if root.warmup() != Some(commit) {
        return Ok(());
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
    let back = moved?;
    output::detail(&format!(
        "warmup -> {} (back)",
        back.map(|c| format!("releases/{}", c.short()))
            .unwrap_or_else(|| "nothing".into())
    ));
    Ok(())
}

/// Export, carry, shared links, then the rest in [`Exported::finish`].
fn build(job: &Job, repo: &gix::Repository, durations: &mut BTreeMap<String, f64>) -> Result<()> {
    let ctx = job.ctx;
    let root = &ctx.root;
    let dir = root.release(&job.name);
    let (common, common_rel) = job.common();

    // Before anything is written: a deploy must not fill the disk. A
    // release carries paths over from the one before it; a preview does not.
    let carry_from = match job.target {
        Target::Release { .. } if !ctx.config.carry.is_empty() => {
            [root.warmup(), root.production()]
                .into_iter()
                .flatten()
                .find(|c| *c != job.commit && release::is_ready(root, &(*c).into()))
        }
        _ => None,
    };
    // The commit is peeled to its tree once, here: the disk check, the
    // export and a full disk's explanation all read that tree.
    let source = export::Source::of(repo, job.commit)?;
    crate::deploy::disk::preflight(ctx, repo, source, carry_from)?;

    // The export is written back to disk as it goes, and what is left is
    // flushed while carry, shared links and the steps run (composer takes
    // seconds): the sync before `ready` then only waits for what they
    // wrote. The result does not matter: that final sync vouches.
    let writeback = crate::deploy::writeback::Writeback::start(root.releases());
    let seed = export_stage(ctx, repo, source, &job.name, &writeback, durations);
    let early_sync = writeback.finish();
    let seed = seed?;
    crate::sys::signals::check(&format!("{} stopped after the export", job.what()))?;

    if let Target::Release { .. } = job.target {
        if !ctx.config.carry.is_empty() {
            let stage = Stage::start("carry");
            match &carry_from {
                Some(prev) => carry::carry(&root.main_release(*prev), &dir, &ctx.config.carry)?,
                None => output::detail("no previous release to carry from"),
            }
            durations.insert("carry".into(), stage.done().as_secs_f64());
        }
    }

    if !ctx.config.shared.is_empty() {
        let stage = Stage::start("shared");
        if let Target::Preview { slug } = &job.target {
            preview::seed_common(ctx, slug)?;
        }
        shared::link_all_into(&dir, &common, &common_rel, &ctx.config.shared)?;
        durations.insert("shared".into(), stage.done().as_secs_f64());
    }

    let (stages, fault_prefix) = job.stages();
    let exported = Exported {
        name: &job.name,
        dir: &dir,
        common: &common,
        what: job.what(),
        fault_prefix,
        seed: Some(&seed),
    };
    exported.finish(ctx, stages, &job.step_env(), Some(early_sync), durations)
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
    /// What the export wrote (blob ids, stamps): the manifest reads only the files changed since.
    pub(crate) seed: Option<&'a crate::deploy::manifest_seed::Seed>,
}

impl Exported<'_> {
    /// The build, links and migrate stages that have commands, then the web
    /// user's ACLs (after the steps, so caches they warmed up are covered
    /// too), then the sync that `ready` vouches for. `early_sync`: a flush
    /// started right after the export, waited for before the final one.
    pub(crate) fn finish(
        &self,
        ctx: &Ctx,
        stages: [(WarmStage, &Vec<String>); 3],
        env: &StepEnv,
        early_sync: Option<std::thread::JoinHandle<bool>>,
        durations: &mut BTreeMap<String, f64>,
    ) -> Result<()> {
        for (kind, commands) in stages {
            if commands.is_empty() {
                continue;
            }
            let name: &str = kind.into();
            // A preview's migrate runs against its own database, not production's.
            let main_migrate = kind == WarmStage::Migrate && self.fault_prefix.is_empty();
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
        // the ACLs (which change ctimes). It is made while the release is
        // synced, which `ready` needs anyway: a power cut must not leave a
        // ready release of empty files. The walk and hashing read what is
        // in the page cache and the encoding is CPU work, so they overlap
        // the sync's wait for the disk; the manifest is then synced on its
        // own (file and directory), before `ready` is recorded. It prints
        // nothing on success; its time is in the journal and the run log.
        crate::sys::signals::check(&format!(
            "{} stopped before the release was marked ready",
            self.what
        ))?;
        let known = self.seed.and_then(|s| s.known());
        let excluded = crate::state::manifest::excluded_paths(&ctx.config);
        let stage = Stage::start("sync");
        let phase = std::time::Instant::now();
        let (entries, work, synced) = std::thread::scope(|s| -> Result<_> {
            let dir = self.dir;
            let sync = s.spawn(move || {
                let started = std::time::Instant::now();
                if let Some(early) = early_sync {
                    let _ = early.join();
                }
                crate::sys::fs::sync_filesystem(dir).map(|()| started.elapsed())
            });
            let started = std::time::Instant::now();
            let entries = if cfg!(feature = "bench-without-manifest") {
                Ok(0)
            } else {
                crate::state::manifest::record(
                    &ctx.root,
                    self.name,
                    self.dir,
                    &excluded,
                    known.as_ref(),
                )
            };
            let work = started.elapsed();
            let synced = sync
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
            Ok((entries?, work, synced))
        })?;
        // Written after the sync began, so not covered by it.
        if !cfg!(feature = "bench-without-manifest") {
            crate::state::manifest::make_durable(&ctx.root, self.name)?;
        }
        let total = phase.elapsed();
        crate::sys::signals::check(&format!(
            "{} stopped before the release was marked ready",
            self.what
        ))?;
        // The manifest's stage is how long the warm-up waited for it beyond
        // the sync (its own work, in parallel, is in the run log). What its
        // work slows the sync by is not in it: scripts/bench measures that
        // against a build without the manifest.
        let added = total.saturating_sub(synced);
        tracing::info!(
            entries,
            work_seconds = work.as_secs_f64(),
            added_seconds = added.as_secs_f64(),
            sync_seconds = synced.as_secs_f64(),
            "manifest written"
        );
        durations.insert("manifest".into(), added.as_secs_f64());
        let _ = stage.done();
        durations.insert("sync".into(), synced.as_secs_f64());
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
/// Nothing is left behind when it fails. Returns what the export wrote,
/// taken once the release is in place and before anything else writes to it.
pub(crate) fn export_stage(
    ctx: &Ctx,
    repo: &gix::Repository,
    source: export::Source,
    name: &ReleaseName,
    writeback: &crate::deploy::writeback::Writeback,
    durations: &mut BTreeMap<String, f64>,
) -> Result<crate::deploy::manifest_seed::Seed> {
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
    let (stats, written) = match source.export_showing_progress(repo, &tmp, writeback) {
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
    let seed = crate::deploy::manifest_seed::Seed::new(written);
    let mut summary = vec![output::count(stats.files, "file", "files")];
    if stats.symlinks > 0 {
        summary.push(output::count(stats.symlinks, "symlink", "symlinks"));
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
    Ok(seed)
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
