//! `symdeploy status [--json]`: production, warmup and previous, each with its
//! commit, subject, when and by whom; the lock holder; interrupted runs.

use serde::Serialize;

use crate::error::Result;
use crate::journal;
use crate::ops::Ctx;
use crate::output;
use crate::release;
use crate::root::short;

/// One pointed-at release, as status shows it.
#[derive(Debug, Serialize)]
pub struct Slot {
    /// Full commit hash.
    pub commit: String,
    /// Release directory, relative to the root.
    pub release: String,
    /// Its state (ready, bad, ...).
    pub state: String,
    /// Commit subject.
    pub subject: String,
    /// When it took this role (RFC 3339), if the journal knows.
    pub since: Option<String>,
    /// Who put it there, if the journal knows.
    pub by: Option<String>,
}

/// Everything status reports.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The deploy root.
    pub root: String,
    /// What production points at.
    pub production: Option<Slot>,
    /// What warmup points at.
    pub warmup: Option<Slot>,
    /// The production release before the current one (rollback's target).
    pub previous: Option<Slot>,
    /// Who holds the deploy lock, if anyone.
    pub lock: Option<String>,
    /// Runs that started and never finished.
    pub interrupted: Vec<journal::Entry>,
    /// Preview environments, most recently pushed first.
    pub previews: Vec<crate::ops::preview::Row>,
}

/// The release rollback would go back to: the newest production release
/// before the current one that is still ready and on disk. Reads
/// `production.json`, never the history.
pub fn previous_production(ctx: &Ctx) -> Option<String> {
    let current = ctx.root.production();
    journal::production_stack(&ctx.root)
        .into_iter()
        .rev()
        .map(|c| c.commit)
        .filter(|c| Some(c) != current.as_ref())
        .find(|c| release::is_ready(&ctx.root, c))
}

fn slot(
    ctx: &Ctx,
    commit: Option<String>,
    role: &str,
    stack: &[journal::ProductionChange],
) -> Option<Slot> {
    let commit = commit?;
    let record = release::load(&ctx.root, &commit);
    // Production: when and by whom it took production (production.json).
    // Warmup: the record's ready time and pusher, which is when its warm-up
    // ended; no history is read either way.
    let last: Option<(String, String)> = if role == "warmup" {
        None
    } else {
        stack
            .iter()
            .rev()
            .find(|c| c.commit == commit)
            .map(|c| (c.time.clone(), c.user.clone()))
    };
    Some(Slot {
        release: format!("releases/{commit}"),
        state: release::effective_state(&ctx.root, &commit).to_string(),
        subject: record
            .as_ref()
            .map(|r| r.subject.clone())
            .unwrap_or_default(),
        since: last
            .as_ref()
            .map(|l| l.0.clone())
            .or_else(|| record.as_ref().and_then(|r| r.ready_at.clone())),
        by: last
            .map(|l| l.1)
            .or_else(|| record.as_ref().map(|r| r.user.clone())),
        commit,
    })
}

/// Gather the status.
pub fn gather(ctx: &Ctx) -> Status {
    let stack = journal::production_stack(&ctx.root);
    let lock = crate::lock::holder(&ctx.root);
    // While a run holds the lock, its own start entry is not an interruption.
    let interrupted = journal::open_runs(&ctx.root)
        .into_iter()
        .filter(|e| {
            lock.as_ref()
                .is_none_or(|l| !l.starts_with(&format!("pid {} ", e.pid)))
        })
        .collect();
    Status {
        root: ctx.root.dir.display().to_string(),
        production: slot(ctx, ctx.root.production(), "production", &stack),
        warmup: slot(ctx, ctx.root.warmup(), "warmup", &stack),
        previous: slot(ctx, previous_production(ctx), "production", &stack),
        lock,
        interrupted,
        previews: crate::ops::preview::rows(ctx),
    }
}

/// `symdeploy status`.
pub fn run(ctx: &Ctx, json: bool) -> Result<()> {
    let s = gather(ctx);
    if json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
        return Ok(());
    }
    println!("deploy root {}", s.root);
    for (name, slot) in [
        ("production", &s.production),
        ("warmup", &s.warmup),
        ("previous", &s.previous),
    ] {
        match slot {
            Some(sl) => println!(
                "{name:<11} {} {:<8} {}{}",
                short(&sl.commit),
                sl.state,
                crate::output::escape(&sl.subject),
                match (&sl.since, &sl.by) {
                    (Some(t), Some(u)) => format!("  ({} by {u})", crate::fsutil::age(t)),
                    (Some(t), None) => format!("  ({})", crate::fsutil::age(t)),
                    _ => String::new(),
                }
            ),
            None => println!("{name:<11} (none)"),
        }
    }
    crate::ops::preview::print_rows(&s.previews);
    match &s.lock {
        Some(h) => println!("lock        held by {h}"),
        None => println!("lock        free"),
    }
    for e in &s.interrupted {
        output::warning(&format!(
            "interrupted {} of {} started {} by {} (pid {}); the next deploy or `symdeploy recover` repairs it",
            e.event,
            e.commit.as_deref().map(short).unwrap_or("?"),
            e.time,
            e.user,
            e.pid
        ));
    }
    Ok(())
}
