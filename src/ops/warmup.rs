//! The warm-up, in the seed's order: lock, export, shared links, build, links,
//! migrate, flip `warmup`, notify, journal.

use std::collections::BTreeMap;
use std::time::Instant;

use gix::ObjectId;

use crate::error::{Error, IoContext, Result};
use crate::journal::{self, Entry};
use crate::ops::Ctx;
use crate::output::{self, Stage};
use crate::release::{self, Record, State};
use crate::root::{short, WARMUP};
use crate::steps::{self, StepEnv};
use crate::{carry, export, faults, link, repo, shared};

/// `symdeploy warmup [--rebuild] [REV]`: the warm-up by hand.
pub fn run(ctx: &Ctx, rev: Option<&str>, rebuild: bool) -> Result<()> {
    let repo = repo::open(&ctx.root.repository())?;
    let branch_ref = ctx.config.branch_ref();
    let rev = rev.unwrap_or(&branch_ref);
    let commit = repo::resolve_commit(&repo, rev)?;
    let git_ref = if rev == branch_ref {
        branch_ref.clone()
    } else {
        rev.to_string()
    };
    crate::ops::open_run_log(&ctx.root, "warmup", short(&commit.to_string()));
    let _lock = crate::ops::lock_and_recover(
        ctx,
        &format!("warm-up of {} ({git_ref})", short(&commit.to_string())),
    )?;
    warm(ctx, &repo, commit, &git_ref, rebuild).map(|_| ())
}

/// Remove what crashed runs left behind: temporary export directories and
/// temporary links. Only ever called with the lock held.
pub fn tidy_leftovers(ctx: &Ctx) {
    link::remove_leftovers(&ctx.root.dir);
    crate::ops::cleanup::empty_trash(ctx);
    remove_dead_quarantine_views(&ctx.root.state_dir());
    crate::strict::remove_stale(&ctx.root);
    crate::ops::preview::tidy(ctx);
    // Half-written release records (release::save writes a temporary file
    // then renames it; only lock holders write them).
    if let Ok(entries) = std::fs::read_dir(ctx.root.states()) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let releases = ctx.root.releases();
    let Ok(entries) = std::fs::read_dir(&releases) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().starts_with(crate::root::TMP_PREFIX) {
            output::detail(&format!(
                "removing {}, left by an interrupted deploy",
                e.path().display()
            ));
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Remove the quarantine views of pre-receive hooks that died (a live hook
/// may be waiting for the lock with its view in use: its pid is alive).
fn remove_dead_quarantine_views(state_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(crate::hook::QUARANTINE_VIEW_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Warm up `commit` with the lock held; returns the commit's hex id.
/// A commit that already has a ready release only re-points `warmup`.
pub fn warm(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: ObjectId,
    git_ref: &str,
    rebuild: bool,
) -> Result<String> {
    warm_impl(ctx, repo, commit, git_ref, rebuild, true).map(|_| commit.to_string())
}

/// Strict mode's first half: build `commit`'s release (if it has no ready
/// one) without flipping `warmup`, which waits until git has the ref locked.
/// Returns whether a release was built.
pub fn build_only(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: ObjectId,
    git_ref: &str,
) -> Result<bool> {
    warm_impl(ctx, repo, commit, git_ref, false, false)
}

fn warm_impl(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: ObjectId,
    git_ref: &str,
    rebuild: bool,
    flip: bool,
) -> Result<bool> {
    let root = &ctx.root;
    let hex = commit.to_string();
    let subject = repo::subject(repo, commit).unwrap_or_default();
    let dir = root.release(&hex);
    output::header(&format!(
        "warming up {} ({git_ref}): {subject}",
        short(&hex)
    ));

    let pinned = [root.production(), root.warmup()]
        .into_iter()
        .flatten()
        .any(|c| c == hex);
    if release::is_ready(root, &hex) && !rebuild && !flip {
        output::detail(&format!(
            "releases/{hex} is already warmed up; warmup flips to it once git accepts {git_ref}"
        ));
        return Ok(false);
    }
    if release::is_ready(root, &hex) && !rebuild {
        let entry = Entry::start("warmup", Some(&hex), Some(git_ref));
        journal::append(root, &entry)?;
        output::detail(&format!("releases/{hex} is already warmed up; not rebuilding (use `symdeploy warmup --rebuild` to redo it)"));
        point_warmup(ctx, &hex)?;
        journal::append(root, &entry.end("unchanged"))?;
        finish_message(ctx, &hex);
        return Ok(false);
    }
    if dir.exists() {
        if pinned {
            let which = if root.production().as_deref() == Some(hex.as_str()) {
                "production"
            } else {
                "warmup"
            };
            return Err(Error::with_help(
                format!(
                    "releases/{hex} is what {which} points at, so it cannot be rebuilt in place"
                ),
                "warm up and promote another commit first, then rebuild this one",
            ));
        }
        output::detail(&format!(
            "removing the earlier {} build of releases/{}",
            release::effective_state(root, &hex),
            short(&hex)
        ));
        std::fs::remove_dir_all(&dir).at("remove the old release", &dir)?;
        release::forget(root, &hex);
    }

    let mut entry = Entry::start("warmup", Some(&hex), Some(git_ref));
    journal::append(root, &entry)?;
    release::save(
        root,
        &Record {
            state: State::Building,
            commit: hex.clone(),
            git_ref: git_ref.to_string(),
            subject,
            user: crate::fsutil::current_user(),
            created: crate::fsutil::now_rfc3339(),
            ready_at: None,
            error: None,
        },
    )?;
    let mut durations = BTreeMap::new();
    let started = Instant::now();
    match build(ctx, repo, commit, git_ref, &mut durations) {
        Ok(()) => {}
        Err(e) => {
            release::set_state(root, &hex, State::Failed, Some(e.to_string()))?;
            entry.durations = durations;
            entry.error = Some(e.to_string());
            let result = match e {
                Error::Interrupted { .. } => "interrupted",
                _ => "failed",
            };
            journal::append(root, &entry.end(result))?;
            output::report(&e);
            output::error(&format!(
                "warm-up of {} {}; warmup still points at {}",
                short(&hex),
                if result == "interrupted" {
                    "was interrupted (the release is marked failed)"
                } else {
                    "failed"
                },
                describe(root.warmup())
            ));
            return Err(Error::Reported {
                code: e.exit_code(),
            });
        }
    }
    release::set_state(root, &hex, State::Ready, None)?;
    if !flip {
        entry.durations = durations;
        journal::append(root, &entry.end("built"))?;
        output::detail(&format!(
            "releases/{hex} is ready; warmup flips to it once git accepts {git_ref}"
        ));
        return Ok(true);
    }
    faults::point("before-flip-warmup");
    point_warmup(ctx, &hex)?;
    faults::point("after-flip-warmup");

    let notify = Stage::start("notify");
    let env = step_env(ctx, &hex, git_ref);
    if let Err(e) = steps::run_stage("notify", &ctx.config.warmup.notify, &env) {
        output::warning(&format!("{e} (the release is warmed up all the same)"));
    }
    durations.insert("notify".into(), notify.done().as_secs_f64());
    durations.insert("total".into(), started.elapsed().as_secs_f64());
    entry.durations = durations;
    journal::append(root, &entry.end("ok"))?;
    finish_message(ctx, &hex);
    Ok(true)
}

fn build(
    ctx: &Ctx,
    repo: &gix::Repository,
    commit: ObjectId,
    git_ref: &str,
    durations: &mut BTreeMap<String, f64>,
) -> Result<()> {
    let root = &ctx.root;
    let hex = commit.to_string();
    let dir = root.release(&hex);

    // Before anything is written: a deploy must not fill the disk.
    let carry_from = [root.warmup(), root.production()]
        .into_iter()
        .flatten()
        .find(|c| *c != hex && release::is_ready(root, c));
    crate::ops::disk::preflight(
        ctx,
        repo,
        commit,
        carry_from
            .as_deref()
            .filter(|_| !ctx.config.carry.is_empty()),
    )?;

    let stage = Stage::start("export");
    let tmp = root.releases().join(format!(
        "{}{hex}-{}",
        crate::root::TMP_PREFIX,
        std::process::id()
    ));
    faults::point("export");
    let stats = match export::export_commit(repo, commit, &tmp) {
        Ok(s) => s,
        Err(e) => {
            // A partial export is worth nothing; with a full disk it is worse than nothing.
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(explain_full_disk(e, repo, commit, &root.releases()));
        }
    };
    if let Err(e) = export::write_revision(&tmp, &hex) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    faults::point("before-rename-release");
    std::fs::rename(&tmp, &dir).at("rename the export into place as", &dir)?;
    link::sync_dir(&root.releases());
    output::detail(&format!(
        "{} files, {} symlinks, {} ({} excluded by export-ignore)",
        stats.files,
        stats.symlinks,
        crate::fsutil::human_bytes(stats.bytes),
        stats.ignored
    ));
    for sub in &stats.submodules {
        output::warning(&format!("submodule {sub} is exported as an empty directory (symdeploy does not fetch submodules)"));
    }
    durations.insert("export".into(), stage.done().as_secs_f64());
    crate::signals::check("the warm-up stopped after the export")?;
    // Flush the export to disk while carry, shared links and the steps run
    // (composer takes seconds): the sync before `ready` then only waits for
    // what they wrote. The result does not matter: that final sync vouches.
    let early_sync = {
        let dir = dir.clone();
        std::thread::spawn(move || crate::fsutil::sync_filesystem(&dir).is_ok())
    };

    if !ctx.config.carry.is_empty() {
        let stage = Stage::start("carry");
        let previous = [root.warmup(), root.production()]
            .into_iter()
            .flatten()
            .find(|c| *c != hex && release::is_ready(root, c));
        match previous {
            Some(prev) => carry::carry(&root.release(&prev), &dir, &ctx.config.carry)?,
            None => output::detail("no previous release to carry from"),
        }
        durations.insert("carry".into(), stage.done().as_secs_f64());
    }

    if !ctx.config.shared.is_empty() {
        let stage = Stage::start("shared");
        shared::link_all(&dir, &root.common(), &ctx.config.shared)?;
        durations.insert("shared".into(), stage.done().as_secs_f64());
    }

    let env = step_env(ctx, &hex, git_ref);
    let w = &ctx.config.warmup;
    for (name, commands) in [
        ("build", &w.build),
        ("links", &w.links),
        ("migrate", &w.migrate),
    ] {
        if commands.is_empty() {
            continue;
        }
        let stage = Stage::start(name);
        faults::point(name);
        steps::run_stage(name, commands, &env)?;
        durations.insert(name.into(), stage.done().as_secs_f64());
    }
    if let Some(name) = &ctx.config.web_user {
        // After the steps, so that caches they warmed up are covered too.
        let stage = Stage::start("writable");
        let web = crate::acl::resolve(name)?;
        crate::acl::grant_all(
            &web,
            &root.common(),
            &ctx.config.shared,
            &dir,
            &ctx.config.writable,
        )?;
        durations.insert("writable".into(), stage.done().as_secs_f64());
    }
    // `ready` is recorded durably next; the files it vouches for must be on
    // disk first, or a power cut could leave a ready release of empty files.
    // On a big release this is most of what the warm-up costs beyond the
    // export itself, so it is a stage of its own, timed like the others.
    crate::signals::check("the warm-up stopped before the release was marked ready")?;
    let stage = Stage::start("sync");
    let _ = early_sync.join();
    crate::fsutil::sync_filesystem(&dir)?;
    durations.insert("sync".into(), stage.done().as_secs_f64());
    Ok(())
}

/// A full disk during the export, told with what the operator needs: where,
/// how much is free now that the partial export is gone, and how much the
/// commit needs. Other errors pass through unchanged.
fn explain_full_disk(
    e: Error,
    repo: &gix::Repository,
    commit: ObjectId,
    releases: &std::path::Path,
) -> Error {
    let Error::Io { source, path, .. } = &e else {
        return e;
    };
    let full = matches!(source.raw_os_error(), Some(c) if c == nix::libc::ENOSPC || c == nix::libc::EDQUOT);
    if !full {
        return e;
    }
    let free = crate::fsutil::free_space(releases)
        .map(crate::fsutil::human_bytes)
        .unwrap_or_else(|| "an unknown amount".into());
    let needed = export::commit_bytes(repo, commit)
        .map(|b| {
            format!(
                ", and {} needs about {}",
                short(&commit.to_string()),
                crate::fsutil::human_bytes(b)
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
pub fn step_env(ctx: &Ctx, hex: &str, git_ref: &str) -> StepEnv {
    StepEnv {
        root: ctx.root.dir.clone(),
        release: ctx.root.release(hex),
        commit: hex.to_string(),
        git_ref: git_ref.to_string(),
        previous: ctx.root.production().map(|c| ctx.root.release(&c)),
        extra: Vec::new(),
        timeout: ctx.config.step_timeout,
    }
}

/// Flip `warmup` to `hex` and repair the static links.
pub(crate) fn point_warmup(ctx: &Ctx, hex: &str) -> Result<()> {
    let stage = Stage::start("switch warmup");
    link::flip(&ctx.root.dir, WARMUP, &link::release_target(hex))?;
    output::detail(&format!("warmup -> releases/{hex}"));
    for changed in link::ensure_static(&ctx.root.dir, &ctx.config.links)? {
        output::detail(&format!("made link {changed}"));
    }
    stage.done();
    Ok(())
}

pub(crate) fn describe(commit: Option<String>) -> String {
    match commit {
        Some(c) => format!("releases/{}", short(&c)),
        None => "nothing (no release warmed up yet)".to_string(),
    }
}

pub(crate) fn finish_message(ctx: &Ctx, hex: &str) {
    output::success(&format!("warmup -> releases/{hex}"));
    // A tag name the configured glob accepts: `release-*` becomes `release-N`.
    let tag = ctx.config.promote.tags.replace(['*', '?'], "N");
    output::line(&format!(
        "       promote it with `symdeploy promote {}` on the server, or push a release tag: git tag {tag} {} && git push deploy {tag}",
        short(hex),
        short(hex)
    ));
}
