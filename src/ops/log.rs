//! `symdeploy log [-n N | --all] [--json]`: the journal as a readable history.

use std::collections::HashSet;
use std::ops::ControlFlow;

use crate::ctx::Ctx;
use crate::error::Result;
use crate::state::journal::{self, Entry, LineKind};

/// Print the last `n` finished or interrupted runs (all of them with `all`).
/// `-n` reads backwards from the end, so it costs the same however long the
/// history; `--all` streams every segment, oldest first.
pub(crate) fn run(ctx: &Ctx, n: usize, all: bool, json: bool) -> Result<()> {
    let open: HashSet<String> = journal::open_runs(&ctx.root)
        .into_iter()
        .map(|e| e.run)
        .collect();
    // A run shows once: by its end, or by its start while it is still open.
    let shown = |e: &Entry| e.phase == LineKind::End || open.contains(&e.run);
    if all {
        let mut first = true;
        if json {
            println!("[");
        }
        journal::for_each(&ctx.root, |e| {
            if shown(&e) {
                if json {
                    let sep = if first { "" } else { "," };
                    println!("{sep}{}", serde_json::to_string(&e).unwrap_or_default());
                } else {
                    print_entry(&e);
                }
                first = false;
            }
            ControlFlow::Continue(())
        })?;
        if json {
            println!("]");
        } else if first {
            println!("the journal is empty: nothing was deployed here yet");
        }
        return Ok(());
    }
    let mut newest: Vec<Entry> = Vec::new();
    if n > 0 {
        journal::for_each_rev(&ctx.root, |e| {
            if shown(&e) {
                newest.push(e);
            }
            if newest.len() >= n {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
    }
    newest.reverse();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&newest).unwrap_or_default()
        );
        return Ok(());
    }
    if newest.is_empty() {
        println!("the journal is empty: nothing was deployed here yet");
    }
    for e in &newest {
        print_entry(e);
    }
    Ok(())
}

fn print_entry(e: &Entry) {
    let result = match (&e.phase, &e.result) {
        (LineKind::Start, _) => "interrupted",
        (_, Some(r)) => r.as_ref(),
        (_, None) => "?",
    };
    let took = e
        .durations
        .get("total")
        .map(|s| format!(" in {s:.1}s"))
        .unwrap_or_default();
    println!(
        "{}  {:<8} {:<12} {}  {}  by {}{}{}{}",
        e.time,
        e.event,
        result,
        e.commit
            .as_ref()
            .map_or_else(|| "-".to_string(), |c| c.label()),
        crate::sys::output::escape(e.git_ref.as_deref().unwrap_or("-")),
        e.who_where(),
        e.signer
            .as_deref()
            .map(|s| format!(", signed by {}", crate::sys::output::escape(s)))
            .or(e.unsigned.then(|| ", unsigned".to_string()))
            .unwrap_or_default(),
        took,
        e.error
            .as_deref()
            .map(|x| format!("\n    {}", crate::sys::output::escape(x)))
            .unwrap_or_default()
    );
}
