//! The database schema across releases, as data symdeploy understands.
//!
//! `migrations = "migrations/*.sql"` names a release's migration files; their
//! file names are the migration ids, and a release "knows" the ids it has.
//! Each successful run of `warmup.migrate` records the set the database now
//! has (the migrating release's set, or what `migrations_applied` prints),
//! and which schemas each release has served production against: the
//! release in production while the warm-up migrated (the warm-up window
//! proves it works on the new schema) and every release a switch put live.
//!
//! The rollback rule ([`judge`]): going back to a release that never served
//! production against the current schema and lacks some applied migration
//! is refused by default. Kept in `.symdeploy/schema.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::state::commit::Commit;
use crate::state::root::Root;
use crate::sys::output;

/// What symdeploy knows of the database schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Known {
    /// The migration ids the database has, as of the last record (sorted).
    #[serde(default)]
    pub(crate) applied: Vec<String>,
    /// Whether `applied` was ever recorded.
    #[serde(default)]
    pub(crate) recorded: bool,
    /// Per release (commit): fingerprints of the schemas it served
    /// production against.
    #[serde(default)]
    pub(crate) served: BTreeMap<String, Vec<String>>,
}

fn path(root: &Root) -> PathBuf {
    root.state_dir().join("schema.json")
}

/// The record; empty when there is none (or it cannot be read: a warning).
pub(crate) fn load(root: &Root) -> Known {
    let p = path(root);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            output::warning(&format!(
                "{} cannot be read ({e}); the schema record starts over",
                p.display()
            ));
            Known::default()
        }),
        Err(_) => Known::default(),
    }
}

fn save(root: &Root, k: &Known) -> Result<()> {
    let p = path(root);
    let json = serde_json::to_vec_pretty(k)
        .map_err(|e| Error::msg(format!("cannot encode the schema record: {e}")))?;
    let tmp = root
        .state_dir()
        .join(format!(".tmp-schema-{}", std::process::id()));
    std::fs::write(&tmp, json).at("write", &tmp)?;
    std::fs::rename(&tmp, &p).at("rename into place", &p)?;
    crate::sys::symlink::sync_dir(&root.state_dir());
    Ok(())
}

/// A short stable name for a set of ids (FNV-1a 64 of the sorted ids).
pub(crate) fn fingerprint(ids: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut sorted: Vec<&String> = ids.iter().collect();
    sorted.sort();
    for id in sorted {
        for b in id.bytes().chain([b'\n']) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The migration ids a release directory knows (sorted), or `None` when
/// `migrations` is not configured.
pub(crate) fn release_set(ctx: &Ctx, release: &Path) -> Option<Vec<String>> {
    let glob = ctx.config.schema.migrations.as_deref()?;
    let (dir, pattern) = glob.rsplit_once('/').unwrap_or(("", glob));
    let mut ids: Vec<String> = std::fs::read_dir(release.join(dir))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| {
                    gix::glob::wildmatch(
                        pattern.into(),
                        n.as_str().into(),
                        gix::glob::wildmatch::Mode::NO_MATCH_SLASH_LITERAL,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    Some(ids)
}

/// The ids `migrations_applied` prints, run in `release`; `None` when it is
/// not configured or fails (a warning: the recorded set is used instead).
fn ask_app(ctx: &Ctx, release: &Path) -> Option<Vec<String>> {
    let cmd = ctx.config.schema.applied_cmd.as_deref()?;
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(release)
        .env("SYMDEPLOY_ROOT", &ctx.root.dir)
        .env("SYMDEPLOY_RELEASE", release)
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let mut ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            ids.sort();
            ids.dedup();
            Some(ids)
        }
        Ok(o) => {
            output::warning(&format!(
                "migrations_applied \"{cmd}\" failed ({}); using the recorded schema",
                o.status
            ));
            None
        }
        Err(e) => {
            output::warning(&format!(
                "migrations_applied \"{cmd}\" could not run ({e}); using the recorded schema"
            ));
            None
        }
    }
}

/// After `warmup.migrate` succeeded in `release`: the database now has that
/// release's set (or what the app says), and the release in production
/// served against it all through the window. Lock held; problems are
/// warnings (the migration itself succeeded).
pub(crate) fn after_migrate(ctx: &Ctx, release: &Path) {
    let Some(set) = release_set(ctx, release) else {
        return;
    };
    let applied = ask_app(ctx, release).unwrap_or(set);
    let mut k = load(&ctx.root);
    k.applied = applied;
    k.recorded = true;
    if let Some(prod) = ctx.root.production() {
        note_served(&mut k, prod);
    }
    match save(&ctx.root, &k) {
        Ok(()) => output::detail(&format!(
            "schema: {} migration{} applied (newest {})",
            k.applied.len(),
            if k.applied.len() == 1 { "" } else { "s" },
            k.applied.last().map(String::as_str).unwrap_or("-")
        )),
        Err(e) => output::warning(&format!("could not record the schema: {e}")),
    }
}

fn note_served(k: &mut Known, commit: Commit) {
    let fp = fingerprint(&k.applied);
    let list = k.served.entry(commit.to_string()).or_default();
    if !list.contains(&fp) {
        list.push(fp);
    }
}

/// Production serves `commit` against the current schema (after a switch).
pub(crate) fn served(ctx: &Ctx, commit: Commit) {
    if ctx.config.schema.migrations.is_none() {
        return;
    }
    let mut k = load(&ctx.root);
    if !k.recorded {
        return;
    }
    note_served(&mut k, commit);
    if let Err(e) = save(&ctx.root, &k) {
        output::warning(&format!("could not record the schema: {e}"));
    }
}

/// The undo steps ran: the database no longer has `undone`.
pub(crate) fn after_undo(ctx: &Ctx, undone: &[String]) -> Result<()> {
    let mut k = load(&ctx.root);
    k.applied.retain(|id| !undone.contains(id));
    save(&ctx.root, &k)
}

/// Forget what releases no longer on disk served (cleanup).
pub(crate) fn forget(ctx: &Ctx, name: &crate::state::release_name::ReleaseName) {
    let mut k = load(&ctx.root);
    if k.served.remove(&name.to_string()).is_some() {
        let _ = save(&ctx.root, &k);
    }
}

/// What the rule says about going back to a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Migrations are not tracked (or nothing was ever recorded).
    Untracked,
    /// The target knows every applied migration.
    Knows,
    /// The target served production against the current schema already.
    Proven,
    /// Neither: these applied migrations are unknown to it, newest first.
    Unknown(Vec<String>),
}

impl Verdict {
    /// May a switch go there without undo or `--keep-schema`?
    pub(crate) fn allowed(&self) -> bool {
        !matches!(self, Verdict::Unknown(_))
    }
}

/// The rollback rule, pure: `applied` (the database), `target_set` (what the
/// target release knows), `proven` (the schemas it served production against).
pub(crate) fn judge(applied: &[String], target_set: &[String], proven: &[String]) -> Verdict {
    let mut unknown: Vec<String> = applied
        .iter()
        .filter(|id| !target_set.contains(id))
        .cloned()
        .collect();
    if unknown.is_empty() {
        return Verdict::Knows;
    }
    if proven.contains(&fingerprint(applied)) {
        return Verdict::Proven;
    }
    unknown.sort();
    unknown.reverse();
    Verdict::Unknown(unknown)
}

/// The rule for switching production to `target`, with what is on disk and
/// recorded now. The app's own answer (`migrations_applied`) is asked in the
/// release in production, when there is one.
pub(crate) fn verdict(ctx: &Ctx, target: Commit) -> Verdict {
    let Some(target_set) = release_set(ctx, &ctx.root.main_release(target)) else {
        return Verdict::Untracked;
    };
    let k = load(&ctx.root);
    let asked = ctx
        .root
        .production()
        .and_then(|p| ask_app(ctx, &ctx.root.main_release(p)));
    let applied = match asked {
        Some(a) => a,
        None if k.recorded => k.applied.clone(),
        None => return Verdict::Untracked,
    };
    let proven = k.served.get(target.as_str()).cloned().unwrap_or_default();
    judge(&applied, &target_set, &proven)
}

/// One release as `status` and `releases` show it: how many migrations it
/// knows, the newest, and whether a rollback reaches it without undo.
pub(crate) fn describe(ctx: &Ctx, commit: Commit) -> Option<(String, bool)> {
    let set = release_set(ctx, &ctx.root.main_release(commit))?;
    let k = load(&ctx.root);
    let newest = set.last().cloned().unwrap_or_else(|| "none".into());
    let ok = !k.recorded
        || judge(
            &k.applied,
            &set,
            k.served
                .get(commit.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default(),
        )
        .allowed();
    Some((format!("schema {} ({newest})", set.len()), ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_rule_refuses_only_unknown_and_unproven() {
        let applied = ids(&["001.sql", "002.sql", "003.sql"]);
        let v1 = ids(&["001.sql"]);
        let v2 = ids(&["001.sql", "002.sql"]);
        // v3 knows them all.
        assert_eq!(judge(&applied, &applied, &[]), Verdict::Knows);
        // v2 served during v3's warm-up: proven.
        let fp = fingerprint(&applied);
        assert_eq!(judge(&applied, &v2, &[fp]), Verdict::Proven);
        // v1 never did: refused, newest first.
        assert_eq!(
            judge(&applied, &v1, &[fingerprint(&v1)]),
            Verdict::Unknown(ids(&["003.sql", "002.sql"]))
        );
        // Once undone, v1 knows the schema again.
        assert_eq!(judge(&v1, &v1, &[]), Verdict::Knows);
    }

    #[test]
    fn fingerprints_ignore_order() {
        assert_eq!(
            fingerprint(&ids(&["b", "a"])),
            fingerprint(&ids(&["a", "b"]))
        );
        assert_ne!(fingerprint(&ids(&["a"])), fingerprint(&ids(&["a", "b"])));
        assert_ne!(fingerprint(&ids(&["ab"])), fingerprint(&ids(&["a", "b"])));
    }
}
