//! `promote --json` and `rollback --json`: one JSON object on stdout saying
//! what a switch did on this host, for orchestrators (the Ansible module in
//! `ansible/library/symdeploy.py`) that must know, per host, whether production
//! moved, from where to where and when, and symdeploy's own error text.
//!
//! The operation itself runs unchanged (its human output still goes to
//! stderr); the report is read back from the production link and from the
//! journal entry the run wrote, so it says what happened, not what was meant.

use serde::Serialize;

use crate::ctx::Ctx;
use crate::error::Result;
use crate::state::commit::Commit;
use crate::state::journal::{self, Entry, Event, LineKind};
use crate::state::release_name::Recorded;

/// What one promote or rollback did.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct SwitchReport {
    /// promote or rollback.
    pub(crate) event: Event,
    /// ok, rolled-back (switched, then undone by itself: check or start
    /// failed), failed (production never moved), unchanged (nothing to do).
    pub(crate) result: journal::Outcome,
    /// Whether production points somewhere else than before.
    pub(crate) changed: bool,
    /// The release's commit the run switched (or tried to switch) to.
    pub(crate) commit: Option<Commit>,
    /// Production's commit before the run.
    pub(crate) production_before: Option<Commit>,
    /// Production's commit after it.
    pub(crate) production_after: Option<Commit>,
    /// When production was flipped to `commit` (RFC 3339, milliseconds),
    /// also when it was flipped back afterwards (`rolled-back`).
    pub(crate) switched_at: Option<String>,
    /// Seconds the switch took (stop to notify).
    pub(crate) seconds: Option<f64>,
    /// symdeploy's error message, when it failed.
    pub(crate) error: Option<String>,
    /// The `help:` line that goes with the error.
    pub(crate) help: Option<String>,
    /// The exit code the command ends with.
    pub(crate) exit_code: i32,
    /// The per-run log on this host.
    pub(crate) log: Option<String>,
}

/// Run `op` (a promote or rollback: `event`) and print its [`SwitchReport`] as one
/// line of JSON on stdout, whether it succeeded or not; its result is
/// returned unchanged, so the exit code and stderr are those of the plain
/// command.
pub(crate) fn report(ctx: &Ctx, event: Event, op: impl FnOnce(&Ctx) -> Result<()>) -> Result<()> {
    let started = jiff::Timestamp::now();
    let before = ctx.root.production();
    let res = op(ctx);
    let after = ctx.root.production();
    // Read backwards only as far as this run: the cost does not grow with history.
    let mut entries = Vec::new();
    journal::for_each_rev(&ctx.root, |e| {
        let older = e
            .time
            .timestamp()
            .is_some_and(|t| t < started - jiff::SignedDuration::from_secs(1));
        if older {
            return std::ops::ControlFlow::Break(());
        }
        entries.push(e);
        std::ops::ControlFlow::Continue(())
    });
    entries.reverse();
    let ours = own_entries(&entries, std::process::id(), started);
    let outcome = summarize(event.clone(), &res, before, after, &ours);
    println!(
        "{}",
        serde_json::to_string(&outcome).unwrap_or_else(|e| format!(
            "{{\"event\":\"{event}\",\"result\":\"failed\",\"error\":\"cannot encode the report: {e}\"}}"
        ))
    );
    res
}

/// The journal entries this process wrote since `since`: a pid alone could be
/// an old run's that had the same pid.
fn own_entries(entries: &[Entry], pid: u32, since: jiff::Timestamp) -> Vec<&Entry> {
    // Journal times are rounded to the millisecond; allow for that.
    let since = since
        .checked_sub(jiff::SignedDuration::from_millis(1))
        .unwrap_or(since);
    entries
        .iter()
        .filter(|e| e.pid == pid)
        .filter(|e| e.time.timestamp().is_some_and(|t| t >= since))
        .collect()
}

/// When the run whose end entry is `end` flipped production: the end's time
/// less what came after the flip (`total` - `flip` seconds).
pub(crate) fn flip_time(end: &Entry) -> Option<jiff::Timestamp> {
    let t = end.time.timestamp()?;
    let total = *end.durations.get("total")?;
    let flip = *end.durations.get("flip")?;
    let after_flip = jiff::SignedDuration::try_from_secs_f64(total - flip).ok()?;
    t.checked_sub(after_flip).ok()
}

fn summarize(
    event: Event,
    res: &Result<()>,
    before: Option<Commit>,
    after: Option<Commit>,
    ours: &[&Entry],
) -> SwitchReport {
    let end = ours
        .iter()
        .rev()
        .find(|e| e.event == event && e.phase == LineKind::End);
    let result = match (res, end) {
        (_, Some(e)) => e.result.clone().unwrap_or(journal::Outcome::Failed),
        (Ok(()), None) => journal::Outcome::Unchanged,
        (Err(_), None) => journal::Outcome::Failed,
    };
    // A promote that failed in its warm-up has only the warm-up's entries.
    let commit = end
        .and_then(|e| e.commit.as_ref().and_then(Recorded::main))
        .or_else(|| {
            ours.iter()
                .rev()
                .find_map(|e| e.commit.as_ref().and_then(Recorded::main))
        })
        .or_else(|| res.as_ref().ok().and(after));
    let (error, help, exit_code) = match res {
        Ok(()) => (None, None, 0),
        Err(e) => (Some(e.to_string()), e.help(), e.exit_code()),
    };
    SwitchReport {
        event,
        result,
        changed: before != after,
        commit,
        production_before: before,
        production_after: after,
        switched_at: end
            .and_then(|e| flip_time(e))
            .map(|t| crate::sys::time::Time::at(t).to_string()),
        seconds: end.and_then(|e| e.durations.get("total").copied()),
        error,
        help,
        exit_code,
        log: ours.iter().rev().find_map(|e| e.log.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// A commit for each name the tests use.
    fn id(name: &str) -> Commit {
        let digit = match name {
            "old" => "1",
            "new" => "2",
            "c" => "3",
            "bad" => "4",
            _ => "5",
        };
        Commit::parse(&digit.repeat(40)).unwrap()
    }

    fn end(event: &str, commit: &str, result: &str, time: &str) -> Entry {
        // Spelled as in the journal file, which is what these stand for.
        let text = |s: &str| format!("\"{s}\"");
        let event: Event = serde_json::from_str(&text(event)).unwrap();
        let result: journal::Outcome = serde_json::from_str(&text(result)).unwrap();
        let mut e = Entry::start(event, Some(&id(commit).into()), None).end(result);
        e.time = crate::sys::time::Time::parse(time);
        e.durations.insert("flip".into(), 0.25);
        e.durations.insert("total".into(), 1.5);
        e
    }

    #[test]
    fn the_flip_is_dated_from_the_end_entry() {
        let e = end("promote", "c", "ok", "2026-11-26T14:00:02.000Z");
        assert_eq!(
            flip_time(&e)
                .map(|t| crate::sys::time::Time::at(t).to_string())
                .as_deref(),
            Some("2026-11-26T14:00:00.750Z")
        );
        let mut old = e.clone();
        old.durations.remove("flip");
        assert_eq!(flip_time(&old), None, "journals from before the flip key");
    }

    #[test]
    fn outcomes_say_what_moved() {
        let e = end("promote", "new", "ok", "2026-11-26T14:00:02.000Z");
        let ok = summarize(
            Event::Promote,
            &Ok(()),
            Some(id("old")),
            Some(id("new")),
            &[&e],
        );
        assert_eq!(ok.result.as_ref(), "ok");
        assert!(ok.changed);
        assert_eq!(ok.commit, Some(id("new")));
        assert_eq!(ok.switched_at.as_deref(), Some("2026-11-26T14:00:00.750Z"));

        let rb = end("promote", "new", "rolled-back", "2026-11-26T14:00:02.000Z");
        let err = Error::with_help("promote of new rolled back", "see the log");
        let out = summarize(
            Event::Promote,
            &Err(err),
            Some(id("old")),
            Some(id("old")),
            &[&rb],
        );
        assert_eq!(out.result.as_ref(), "rolled-back");
        assert!(!out.changed);
        assert_eq!(out.error.as_deref(), Some("promote of new rolled back"));
        assert_eq!(out.help.as_deref(), Some("see the log"));
        assert_eq!(out.exit_code, 1);

        let same = summarize(Event::Promote, &Ok(()), Some(id("c")), Some(id("c")), &[]);
        assert_eq!((same.result.as_ref(), same.changed), ("unchanged", false));
        assert_eq!(same.commit, Some(id("c")));

        let warm = end("warmup", "bad", "failed", "2026-11-26T14:00:02.000Z");
        let failed = summarize(
            Event::Promote,
            &Err(Error::msg("warm-up failed")),
            Some(id("c")),
            Some(id("c")),
            &[&warm],
        );
        assert_eq!(failed.result.as_ref(), "failed");
        assert_eq!(failed.commit, Some(id("bad")));
        assert_eq!(failed.switched_at, None);
    }

    #[test]
    fn another_process_with_the_same_pid_is_not_us() {
        let mut old = end("promote", "x", "ok", "2020-01-01T00:00:00Z");
        old.pid = 7;
        let since: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert!(own_entries(&[old.clone()], 7, since).is_empty());
        old.time = crate::sys::time::Time::parse("2026-01-01T00:00:00.500Z");
        assert_eq!(own_entries(&[old], 7, since).len(), 1);
    }
}
