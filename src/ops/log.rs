//! `symdeploy log [-n N] [--json]`: the journal as a readable history.

use crate::error::Result;
use crate::journal;
use crate::ops::Ctx;
use crate::root::short;

/// Print the last `n` finished or interrupted runs.
pub fn run(ctx: &Ctx, n: usize, json: bool) -> Result<()> {
    let entries = journal::read(&ctx.root);
    let interrupted: Vec<&journal::Entry> = journal::interrupted(&entries);
    let mut shown: Vec<&journal::Entry> = entries
        .iter()
        .filter(|e| e.phase == "end" || interrupted.iter().any(|i| i.run == e.run))
        .collect();
    let skip = shown.len().saturating_sub(n);
    shown.drain(..skip);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&shown).unwrap_or_default()
        );
        return Ok(());
    }
    if shown.is_empty() {
        println!("the journal is empty: nothing was deployed here yet");
    }
    for e in shown {
        let result = if e.phase == "start" {
            "interrupted"
        } else {
            e.result.as_deref().unwrap_or("?")
        };
        let took = e
            .durations
            .get("total")
            .map(|s| format!(" in {s:.1}s"))
            .unwrap_or_default();
        println!(
            "{}  {:<8} {:<12} {}  {}  by {}@{}{}{}",
            e.time,
            e.event,
            result,
            e.commit.as_deref().map(short).unwrap_or("-"),
            crate::output::escape(e.git_ref.as_deref().unwrap_or("-")),
            e.user,
            e.host,
            took,
            e.error
                .as_deref()
                .map(|x| format!("\n    {}", crate::output::escape(x)))
                .unwrap_or_default()
        );
    }
    Ok(())
}
