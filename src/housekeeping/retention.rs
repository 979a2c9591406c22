//! What cleanup keeps and what it lets go: the release decisions (newest
//! ready releases, production, warmup, the previous production release) and
//! the retention of run logs and records. Pure apart from reading state.

use crate::ctx::Ctx;
use crate::error::Result;
use crate::state::commit::Commit;
use crate::state::release;
use crate::state::release_name::ReleaseName;
use crate::sys::output;

/// One release and what cleanup decided for it.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    /// The release.
    pub(crate) commit: Commit,
    /// Its effective state.
    pub(crate) state: release::Effective,
    /// Kept or removed, and why.
    pub(crate) keep: bool,
    /// Pointed at (production, warmup, previous production): never
    /// removed, not even under disk pressure.
    pub(crate) protected: bool,
    /// Why.
    pub(crate) why: String,
}

/// When a release was made, for "newest first": its recorded time (ready,
/// else created; whole seconds), then its directory's mtime, which has
/// sub-second precision and orders releases made within the same second.
/// A release without a record is dated by its directory alone.
pub(crate) type MadeAt = (jiff::Timestamp, std::time::SystemTime);

/// The `MadeAt` of one release.
pub(crate) fn made_at(root: &crate::state::root::Root, name: &ReleaseName) -> MadeAt {
    let mtime = std::fs::symlink_metadata(root.release(name))
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH);
    let recorded =
        release::load(root, name).and_then(|r| r.ready_at.unwrap_or(r.created).timestamp());
    let from_mtime = || {
        jiff::Timestamp::try_from(mtime)
            .ok()
            .and_then(|t| t.round(jiff::Unit::Second).ok())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    };
    (recorded.unwrap_or_else(from_mtime), mtime)
}

/// Decide what to keep; pure apart from reading state.
pub(crate) fn plan(ctx: &Ctx, keep: usize) -> Result<Vec<Decision>> {
    let root = &ctx.root;
    let production = root.production();
    let warmup = root.warmup();
    let previous = crate::deploy::pointers::previous_production(ctx);
    let mut all: Vec<(Commit, release::Effective, MadeAt)> = root
        .release_dirs()?
        .into_iter()
        .map(|c| {
            let state = release::effective_state(root, &c.into());
            let when = made_at(root, &c.into());
            (c, state, when)
        })
        .collect();
    // Newest first.
    all.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let newest_ready = all
        .iter()
        .find(|r| r.1 == release::Effective::Ready)
        .map(|r| r.2);
    let mut ready_seen = 0;
    let mut out = Vec::new();
    for (commit, state, when) in all {
        let protected = if Some(commit) == production {
            Some("production")
        } else if Some(commit) == warmup {
            Some("warmup")
        } else if Some(commit) == previous {
            Some("previous production")
        } else {
            None
        };
        let (keep_it, why) = if state == release::Effective::Ready {
            ready_seen += 1;
            match protected {
                Some(p) => (true, p.to_string()),
                None if ready_seen <= keep => {
                    (true, format!("one of the {keep} newest ready releases"))
                }
                None => (
                    false,
                    format!("older than the {keep} newest ready releases"),
                ),
            }
        } else if let Some(p) = protected {
            (true, p.to_string())
        } else if newest_ready.as_ref().is_some_and(|n| when < *n) {
            (
                false,
                format!("{state}, older than the newest ready release"),
            )
        } else {
            (
                true,
                format!("{state}, newer than every ready release (kept for inspection)"),
            )
        };
        out.push(Decision {
            commit,
            state,
            keep: keep_it,
            protected: protected.is_some(),
            why,
        });
    }
    Ok(out)
}

/// What retention would remove: run logs, release records.
struct Retention {
    logs: Vec<std::path::PathBuf>,
    records: Vec<std::path::PathBuf>,
}

fn retention_plan(ctx: &Ctx) -> Retention {
    let root = &ctx.root;
    let on_disk: std::collections::HashSet<Commit> = root
        .release_dirs()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let shorts: std::collections::HashSet<&str> = on_disk.iter().map(Commit::short).collect();
    let mut records = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.states()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(commit) = name.strip_suffix(".json") else {
                continue;
            };
            if Commit::parse_stored(commit).is_some_and(|c| !on_disk.contains(&c)) {
                records.push(e.path());
            }
        }
    }
    // Log names start with a UTC timestamp: name order is time order.
    let mut logs: Vec<String> = std::fs::read_dir(root.logs())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".log"))
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    let old = logs.len().saturating_sub(ctx.config.keep_logs.max(1));
    let logs = logs
        .into_iter()
        .take(old)
        // <time>-<event>-<label>-<pid>.log: the label of a warm-up or promote
        // is the release's short commit.
        .filter(|n| n.split('-').nth(2).is_none_or(|l| !shorts.contains(l)))
        .map(|n| root.logs().join(n))
        .collect();
    Retention { logs, records }
}

pub(crate) fn retention_due(ctx: &Ctx) -> bool {
    let r = retention_plan(ctx);
    !r.logs.is_empty() || !r.records.is_empty()
}

/// Remove the run logs and release records retention lets go (with the lock
/// held), or say what would go.
pub(crate) fn retention(ctx: &Ctx, dry_run: bool) -> Result<()> {
    let r = retention_plan(ctx);
    if r.logs.is_empty() && r.records.is_empty() {
        return Ok(());
    }
    output::detail(&format!(
        "{} {} run logs (keeping the newest {} and those of releases on disk) and {} records of removed releases",
        if dry_run { "would remove" } else { "removing" },
        r.logs.len(),
        ctx.config.keep_logs,
        r.records.len()
    ));
    if dry_run {
        return Ok(());
    }
    for p in r.logs.iter().chain(&r.records) {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(crate::error::Error::io("remove", p, e)),
        }
    }
    crate::sys::symlink::sync_dir(&ctx.root.states());
    Ok(())
}
