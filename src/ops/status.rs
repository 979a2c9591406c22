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
}

/// The stack of production releases, oldest first, from the journal:
/// promotes push, rollbacks pop back to their target.
pub fn production_history(entries: &[journal::Entry]) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    for e in entries
        .iter()
        .filter(|e| e.phase == "end" && e.result.as_deref() == Some("ok"))
    {
        let Some(c) = e.commit.clone() else { continue };
        match e.event.as_str() {
            "promote" if stack.last() != Some(&c) => stack.push(c),
            "promote" => {}
            "rollback" => {
                if let Some(pos) = stack.iter().rposition(|s| *s == c) {
                    stack.truncate(pos + 1);
                } else {
                    stack.push(c);
                }
            }
            _ => {}
        }
    }
    stack
}

/// The release rollback would go back to: the newest production release
/// before the current one that is still ready and on disk.
pub fn previous_production(ctx: &Ctx) -> Option<String> {
    let current = ctx.root.production();
    let history = production_history(&journal::read(&ctx.root));
    history
        .iter()
        .rev()
        .filter(|c| Some(*c) != current.as_ref())
        .find(|c| release::is_ready(&ctx.root, c))
        .cloned()
}

fn slot(ctx: &Ctx, commit: Option<String>, role: &str, entries: &[journal::Entry]) -> Option<Slot> {
    let commit = commit?;
    let record = release::load(&ctx.root, &commit);
    let last = entries.iter().rev().find(|e| {
        e.phase == "end"
            && e.result.as_deref() == Some("ok")
            && e.commit.as_deref() == Some(commit.as_str())
            && match role {
                "warmup" => e.event == "warmup",
                _ => e.event == "promote" || e.event == "rollback",
            }
    });
    Some(Slot {
        release: format!("releases/{commit}"),
        state: release::effective_state(&ctx.root, &commit).to_string(),
        subject: record
            .as_ref()
            .map(|r| r.subject.clone())
            .unwrap_or_default(),
        since: last
            .map(|e| e.time.clone())
            .or_else(|| record.as_ref().and_then(|r| r.ready_at.clone())),
        by: last
            .map(|e| e.user.clone())
            .or_else(|| record.as_ref().map(|r| r.user.clone())),
        commit,
    })
}

/// Gather the status.
pub fn gather(ctx: &Ctx) -> Status {
    let entries = journal::read(&ctx.root);
    let lock = crate::lock::holder(&ctx.root);
    // While a run holds the lock, its own start entry is not an interruption.
    let interrupted = journal::interrupted(&entries)
        .into_iter()
        .filter(|e| {
            lock.as_ref()
                .is_none_or(|l| !l.starts_with(&format!("pid {} ", e.pid)))
        })
        .cloned()
        .collect();
    Status {
        root: ctx.root.dir.display().to_string(),
        production: slot(ctx, ctx.root.production(), "production", &entries),
        warmup: slot(ctx, ctx.root.warmup(), "warmup", &entries),
        previous: slot(ctx, previous_production(ctx), "production", &entries),
        lock,
        interrupted,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Entry;

    fn ended(event: &str, commit: &str, result: &str) -> Entry {
        Entry::start(event, Some(commit), None).end(result)
    }

    #[test]
    fn history_is_a_stack() {
        let e = vec![
            ended("promote", "a", "ok"),
            ended("promote", "b", "ok"),
            ended("promote", "c", "rolled-back"),
            ended("promote", "d", "ok"),
            ended("rollback", "b", "ok"),
        ];
        assert_eq!(production_history(&e), vec!["a", "b"]);
    }
}
