//! `symdeploy recover`, and the repair every locked operation runs first:
//! finish or undo runs that the journal shows as started and never ended
//! (a SIGKILL, a power cut, an OOM kill).
//!
//! The lock is held while this runs, so no such run is still alive: the
//! kernel dropped its flock when it died.

use crate::error::Result;
use crate::journal::{self, Entry};
use crate::ops::promote::{self, after_flip, roll_back, start_anyway};
use crate::ops::Ctx;
use crate::output;
use crate::release::{self, State};
use crate::root::short;

/// `symdeploy recover`: take the lock, repair, report.
pub fn run(ctx: &Ctx) -> Result<()> {
    crate::ops::open_run_log(&ctx.root, "recover", "journal");
    let _lock = crate::lock::acquire(&ctx.root, "recover", ctx.config.lock_timeout)?;
    crate::ops::maintain_journal(ctx);
    let repaired = recover_locked(ctx)?;
    crate::ops::warmup::tidy_leftovers(ctx);
    if repaired == 0 {
        output::success("nothing to recover: every run in the journal finished");
    }
    Ok(())
}

/// Repair interrupted runs; returns how many there were. Call with the lock held.
pub fn recover_locked(ctx: &Ctx) -> Result<usize> {
    if let Some(note) = crate::steps::end_orphans(&ctx.root) {
        output::header("a deploy step was interrupted");
        output::detail(&note);
    }
    // The open-run files, not the history: the cost does not grow with it.
    let open: Vec<Entry> = journal::open_runs(&ctx.root);
    for e in &open {
        repair(ctx, e)?;
    }
    Ok(open.len())
}

/// Is the commit in the repository (not only in a rejected push's quarantine)?
fn landed(ctx: &Ctx, commit: &str) -> bool {
    // When unsure (no commit recorded, no readable repository), assume it
    // landed: repairs then go on as for a post-receive hook.
    let Ok(id) = gix::ObjectId::from_hex(commit.as_bytes()) else {
        return true;
    };
    crate::repo::open(&ctx.root.repository()).map_or(true, |r| r.has_object(id))
}

/// Move warmup off a rejected commit (if it points there); returns where
/// warmup points now.
pub(crate) fn warmup_off(ctx: &Ctx, rejected: &str) -> Result<Option<String>> {
    if ctx.root.warmup().as_deref() != Some(rejected) {
        return Ok(ctx.root.warmup());
    }
    let back = fallback_warmup(ctx, rejected);
    match &back {
        Some(b) => crate::ops::warmup::point_warmup(ctx, b)?,
        None => {
            let _ = std::fs::remove_file(ctx.root.link(crate::root::WARMUP));
        }
    }
    Ok(back)
}

/// Where warmup goes back to when it points at a rejected commit: the newest
/// earlier warm-up that is still ready and in the repository, else production.
fn fallback_warmup(ctx: &Ctx, rejected: &str) -> Option<String> {
    let mut found = None;
    journal::for_each_rev(&ctx.root, |e| {
        let Some(c) = e.commit.filter(|_| e.event == "warmup" && e.phase == "end") else {
            return std::ops::ControlFlow::Continue(());
        };
        if matches!(e.result.as_deref(), Some("ok" | "unchanged"))
            && c != rejected
            && release::is_ready(&ctx.root, &c)
            && landed(ctx, &c)
        {
            found = Some(c);
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    });
    found.or_else(|| ctx.root.production())
}

fn repair(ctx: &Ctx, e: &Entry) -> Result<()> {
    let root = &ctx.root;
    let commit = e.commit.clone().unwrap_or_default();
    let git_ref = e.git_ref.clone().unwrap_or_default();
    output::header(&format!(
        "recovering an interrupted {} of {} (started {} by {}, pid {})",
        e.event,
        short(&commit),
        e.time,
        e.user,
        e.pid
    ));
    let mut end = e.end("interrupted");
    match e.event.as_str() {
        "warmup" if !landed(ctx, &commit) => {
            // A strict-mode (pre-receive) hook died: git rejected the push and
            // dropped its objects. Nothing may stay pointed at that commit.
            if release::load(root, &commit).is_some() {
                release::set_state(
                    root,
                    &commit,
                    State::Failed,
                    Some("interrupted; the push was rejected".into()),
                )?;
            }
            let back = warmup_off(ctx, &commit)?;
            output::detail(&format!(
                "the push of {} was rejected (its hook was killed), so releases/{} is marked failed; warmup -> {}",
                short(&commit),
                short(&commit),
                back.as_deref().map(short).unwrap_or("nothing")
            ));
        }
        "warmup" if release::is_ready(root, &commit) => {
            // Every step had succeeded; only the flip (or what follows it) was cut short.
            if root.warmup().as_deref() != Some(commit.as_str()) {
                crate::ops::warmup::point_warmup(ctx, &commit)?;
            }
            output::detail(&format!(
                "releases/{} had been warmed up completely; warmup -> releases/{} (its notify step did not run)",
                short(&commit),
                short(&commit)
            ));
            end = e.end("ok");
        }
        "warmup" => {
            if release::load(root, &commit).is_some_and(|r| r.state == State::Building) {
                release::set_state(root, &commit, State::Failed, Some("interrupted".into()))?;
            }
            output::detail(&format!(
                "releases/{} was never warmed up (marked failed); warmup stays on {}",
                short(&commit),
                root.warmup().as_deref().map(short).unwrap_or("nothing")
            ));
        }
        "promote" | "rollback" => {
            let previous = e.previous.as_deref();
            let switched = root.production().as_deref() == Some(commit.as_str());
            if switched && !landed(ctx, &commit) {
                // A strict-mode tag push whose hook died: git rejected it, so
                // production must not stay on it.
                output::detail(&format!(
                    "production had been switched, but the push of {} was rejected (its hook was killed); switching back",
                    short(&commit)
                ));
                let why = "interrupted; the push was rejected".to_string();
                roll_back(ctx, &commit, previous, &git_ref, State::Failed, why);
                end = e.end("rolled-back");
            } else if switched {
                output::detail(
                    "production had already been switched; finishing: after_switch, start, check",
                );
                let env = promote::step_env(ctx, &commit, previous, &git_ref, vec![]);
                match after_flip(ctx, &env) {
                    None => {
                        output::success(&format!(
                            "production -> releases/{commit} (finished after the interruption)"
                        ));
                        end = e.end("ok");
                    }
                    Some(f) => {
                        output::error(&format!("{} failed: {}; rolling back", f.what, f.error));
                        let why = format!("{}: {}", f.what, f.error);
                        roll_back(ctx, &commit, previous, &git_ref, State::Bad, why);
                        end = e.end("rolled-back");
                    }
                }
            } else {
                output::detail(&format!(
                    "production was not switched (still {}); starting the daemons that were stopped",
                    promote::describe(&root.production())
                ));
                let back = root.production().unwrap_or(commit.clone());
                start_anyway(
                    &ctx.config.promote.start,
                    &promote::step_env(ctx, &back, None, &git_ref, vec![]),
                );
            }
        }
        _ => output::detail("nothing to repair for this kind of run"),
    }
    end.time = crate::fsutil::now_rfc3339();
    end.pid = std::process::id();
    journal::append(root, &end)
}
