//! Preview environments: a push to a branch matching `previews.branches`
//! warms that commit up as `ROOT/previews/<slug>`.
//!
//! It is the warm-up pipeline ([`crate::deploy::warmup`], whose
//! `Target::Preview` it is: export, shared links, steps, sync, ready, one
//! rename) with three differences that keep a preview away from production:
//!
//! - it has a root of its own, `previews/<slug>/` ([`crate::deploy::preview_root`]):
//!   its release is `previews/<slug>/releases/<commit>` (known by the name
//!   `preview-<slug>-<commit>`), so every relative path its steps use
//!   resolves inside the preview root, never in production's `common/`;
//! - its shared paths point into `previews/<slug>/common/` (seeded from
//!   `previews.seed`, else empty), which its steps see as SYMDEPLOY_SHARED;
//! - it runs `[previews]`' steps: by default the warm-up's build and links,
//!   no migrate, and notify with SYMDEPLOY_STAGE=preview.
//!
//! This file holds what is a preview's own: its slug and record, its flip,
//! its data's seed, its removal, cleanup and recovery. The flip is of
//! `previews/<slug>/production` alone; `warmup` and `production` never move. Each run is journaled (`preview`, `preview-remove`) with a run log,
//! under the deploy lock, and recovered after a kill like a warm-up.
//!
//! Deleting the branch (or `symdeploy preview rm`, or cleanup's `keep` and
//! `ttl_days`) removes the link, the preview's releases and its record. Its
//! `previews/<slug>/common/` stays unless removal is asked for explicitly
//! (`preview rm --data`): it may hold what a tester uploaded.

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::state::commit::Commit;
use crate::state::journal::{self, Entry, Event, Outcome};
use crate::state::release::{self, State};
use crate::state::release_name::{Recorded, ReleaseName};
use crate::state::root::Root;
use crate::sys::output;
use crate::{state::repo, sys::faults, sys::symlink};

/// The journal event of a preview's warm-up.
pub(crate) const EVENT: Event = Event::Preview;
/// The journal event of a preview's removal.
pub(crate) const REMOVE_EVENT: Event = Event::PreviewRemove;

/// Longest DNS label.
const MAX_LABEL: usize = 63;

/// What symdeploy remembers of one preview: which branch owns the slug (so
/// the slug stays the same however other branches come and go) and when it
/// was last pushed (for `ttl_days`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The DNS label: previews/<slug>.
    pub(crate) slug: String,
    /// The branch (without refs/heads/).
    pub(crate) branch: String,
    /// When the preview was first pushed (RFC 3339).
    pub(crate) created: String,
    /// When it was last pushed (RFC 3339).
    pub(crate) pushed: String,
}

/// The branch name as a DNS label: lower case, every run of characters
/// outside `[a-z0-9]` one `-`, trimmed, at most 63 characters.
pub(crate) fn slug_base(branch: &str) -> String {
    let mut out = String::new();
    for c in branch.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut s = out.trim_matches('-').to_string();
    s.truncate(MAX_LABEL);
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() {
        "preview".to_string()
    } else {
        s
    }
}

/// A short stable hash of a branch name (FNV-1a), for colliding slugs.
fn branch_hash(branch: &str, salt: u32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in branch.bytes().chain(salt.to_le_bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{:06x}", h & 0x00ff_ffff)
}

/// `base` with a `-<hash>` suffix, still a DNS label.
fn with_suffix(base: &str, branch: &str, salt: u32) -> String {
    let hash = branch_hash(branch, salt);
    let mut b = base.to_string();
    b.truncate(MAX_LABEL - hash.len() - 1);
    format!("{}-{hash}", b.trim_end_matches('-'))
}

/// The slug `branch` gets, given the previews that exist: its own if it has
/// one, else its base label, else (taken by another branch) the base with
/// a short hash of the branch name.
pub(crate) fn choose_slug(branch: &str, existing: &[Meta]) -> String {
    if let Some(m) = existing.iter().find(|m| m.branch == branch) {
        return m.slug.clone();
    }
    let taken = |s: &str| existing.iter().any(|m| m.slug == s);
    let base = slug_base(branch);
    if !taken(&base) {
        return base;
    }
    (0..)
        .map(|salt| with_suffix(&base, branch, salt))
        .find(|s| !taken(s))
        .unwrap_or(base)
}

fn meta_path(root: &Root, slug: &str) -> std::path::PathBuf {
    root.preview_records().join(format!("{slug}.json"))
}

/// Every preview record.
pub(crate) fn all_meta(root: &Root) -> Vec<Meta> {
    let mut out: Vec<Meta> = std::fs::read_dir(root.preview_records())
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a: &Meta, b: &Meta| a.slug.cmp(&b.slug));
    out
}

/// The record of the preview of `branch`, if it has one.
pub(crate) fn meta_of_branch(root: &Root, branch: &str) -> Option<Meta> {
    all_meta(root).into_iter().find(|m| m.branch == branch)
}

fn save_meta(root: &Root, m: &Meta) -> Result<()> {
    let dir = root.preview_records();
    std::fs::create_dir_all(&dir).at("create directory", &dir)?;
    let json = serde_json::to_vec_pretty(m)
        .map_err(|e| Error::msg(format!("cannot encode the preview record: {e}")))?;
    let tmp = dir.join(format!(".tmp-{}-{}", m.slug, std::process::id()));
    std::fs::write(&tmp, json).at("write", &tmp)?;
    let path = meta_path(root, &m.slug);
    std::fs::rename(&tmp, &path).at("rename into place", &path)?;
    symlink::sync_dir(&dir);
    Ok(())
}

/// The slug of `branch`, recording it (and the push time) if new. Lock held.
fn claim_slug(root: &Root, branch: &str) -> Result<Meta> {
    let now = crate::sys::fs::now_rfc3339();
    let existing = all_meta(root);
    let meta = match existing.iter().find(|m| m.branch == branch) {
        Some(m) => Meta {
            pushed: now,
            ..m.clone()
        },
        None => Meta {
            slug: choose_slug(branch, &existing),
            branch: branch.to_string(),
            created: now.clone(),
            pushed: now,
        },
    };
    save_meta(root, &meta)?;
    Ok(meta)
}

/// The slug of the branch `git_ref`'s preview, claimed (recorded with the
/// push time) and its preview root made ready for a warm-up. Lock held.
pub(crate) fn claim(ctx: &Ctx, git_ref: &str) -> Result<String> {
    let branch = ctx.config.preview_branch(git_ref).ok_or_else(|| {
        Error::with_help(
            format!("{git_ref} is not a branch that gets a preview"),
            "previews are for branches matching `previews.branches` in deploy.toml",
        )
    })?;
    let meta = claim_slug(&ctx.root, branch)?;
    crate::deploy::preview_root::ensure(ctx, &meta.slug)?;
    Ok(meta.slug)
}

/// Where `previews/<slug>/production` points, for a failure's report.
pub(crate) fn where_now(root: &Root, slug: &str) -> Vec<String> {
    vec![format!(
        "previews/{slug}/production -> {} (unchanged)",
        root.preview_pointed(slug)
            .map(|n| format!("releases/{}", n.commit().short()))
            .unwrap_or_else(|| "nothing".into())
    )]
}

/// Point `previews/<slug>/production` at the release `name` (one rename)
/// and make the preview root's static links.
pub(crate) fn point(ctx: &Ctx, slug: &str, name: &ReleaseName) -> Result<()> {
    let dir = ctx.root.preview_dir(slug);
    std::fs::create_dir_all(&dir).at("create directory", &dir)?;
    symlink::flip(
        &dir,
        crate::state::root::PRODUCTION,
        &ctx.root.preview_target(name),
    )?;
    crate::deploy::preview_root::ensure_links(ctx, slug)?;
    output::detail_full(
        &format!(
            "previews/{slug}/production -> releases/{}",
            name.commit().short()
        ),
        name.commit().as_str(),
    );
    Ok(())
}

/// Remove the releases of `slug` that `previews/<slug>` does not point at;
/// returns what could not be removed, for the caller to warn of (the
/// preview itself is up).
pub(crate) fn remove_unpointed(ctx: &Ctx, slug: &str) -> Vec<Error> {
    let pointed = ctx.root.preview_pointed(slug);
    let mut stuck = Vec::new();
    for name in ctx.root.preview_release_dirs().unwrap_or_default() {
        if name.slug() == Some(slug) && Some(&name) != pointed.as_ref() {
            match crate::housekeeping::trash::remove_release(ctx, &name) {
                Ok(()) => output::detail(&format!("removed {}", rel_shown(&name))),
                Err(e) => stuck.push(e),
            }
        }
    }
    stuck
}

/// `previews/<slug>/releases/<short>`: where a preview release is, for people.
fn rel_shown(name: &ReleaseName) -> String {
    name.place()
}

/// Make `previews/<slug>/common/` if it is not there: a copy of
/// `previews.seed` if configured, else empty. Never touches common/.
pub(crate) fn seed_common(ctx: &Ctx, slug: &str) -> Result<()> {
    let root = &ctx.root;
    let common = root.common_preview(slug);
    if std::fs::symlink_metadata(&common).is_ok() {
        return Ok(());
    }
    let parent = root.preview_dir(slug);
    std::fs::create_dir_all(&parent).at("create directory", &parent)?;
    let Some(seed) = &ctx.config.previews.seed else {
        std::fs::create_dir(&common).at("create directory", &common)?;
        output::detail(&format!("previews/{slug}/common/ created empty"));
        return Ok(());
    };
    let seed = if seed.is_absolute() {
        seed.clone()
    } else {
        root.dir.join(seed)
    };
    if !seed.is_dir() {
        return Err(Error::with_help(
            format!(
                "previews.seed {} is not a directory, so previews/{slug}/common/ cannot be seeded",
                seed.display()
            ),
            "create it with what a new preview starts from (e.g. a config pointing at a preview database), or remove `seed` from [previews]",
        ));
    }
    // Copied aside and renamed: a half copy never looks like a seeded preview.
    let tmp = parent.join(format!(".tmp-{slug}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    crate::deploy::carry::copy_tree(&seed, &tmp)?;
    std::fs::rename(&tmp, &common).at("rename into place", &common)?;
    output::detail(&format!(
        "previews/{slug}/common/ seeded from {}",
        seed.display()
    ));
    Ok(())
}

/// Remove what a crashed preview run left (lock held): temporary links in
/// previews/, half-copied seeds in common-previews/ and half-written
/// records, in previews/, each preview root and the old layout's
/// common-previews/ (all named `.tmp-*` or with the flip's temporary
/// prefix; nothing a preview serves or a tester wrote).
pub(crate) fn tidy(ctx: &Ctx) {
    symlink::remove_leftovers(&ctx.root.previews());
    crate::deploy::preview_root::tidy(&ctx.root);
    for dir in [ctx.root.common_previews(), ctx.root.preview_records()] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let p = e.path();
                let _ = match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
                    _ => std::fs::remove_file(&p),
                };
            }
        }
    }
}

/// Remove a preview with the lock held: the link first (so the web server
/// stops serving it), then its releases and records; its data only if
/// `data`. Journaled; safe to repeat (recovery repeats it after a kill).
pub(crate) fn remove(ctx: &Ctx, meta: &Meta, data: bool, why: &str) -> Result<()> {
    let root = &ctx.root;
    crate::deploy::preview_root::adopt(ctx, &meta.slug)?;
    let pointed = root.preview_pointed(&meta.slug);
    let commit = pointed.as_ref().map(|n| ReleaseName::Main(n.commit()));
    output::header(&format!(
        "removing preview {} ({}): {why}",
        meta.slug, meta.branch
    ));
    let entry = Entry::start(
        REMOVE_EVENT,
        commit.as_ref(),
        Some(&format!("refs/heads/{}", meta.branch)),
    );
    journal::append(root, &entry)?;
    let link = root.preview_link(&meta.slug);
    match std::fs::remove_file(&link) {
        Ok(()) => output::detail(&format!("removed previews/{}/production", meta.slug)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", &link, e)),
    }
    symlink::sync_dir(&root.preview_dir(&meta.slug));
    faults::point("preview-remove");
    let mut failed = Vec::new();
    for name in root.preview_release_dirs()? {
        if name.slug() == Some(meta.slug.as_str()) {
            match crate::housekeeping::trash::remove_release(ctx, &name) {
                Ok(()) => output::detail(&format!("removed {}", rel_shown(&name))),
                Err(e) => failed.push(e),
            }
        }
    }
    let failed = Error::gather(failed, |n| {
        format!("preview {} could not remove {n} of its releases", meta.slug)
    });
    let common = root.common_preview(&meta.slug);
    if data {
        if let Ok(m) = std::fs::symlink_metadata(&common) {
            crate::deploy::shared::remove_release_copy(&common, &m)?;
            output::detail(&format!("removed previews/{}/common/", meta.slug));
        }
    } else if common.exists() {
        output::detail(&format!(
            "kept previews/{}/common/ (its data; `symdeploy preview rm --data {}` removes it)",
            meta.slug, meta.slug
        ));
    }
    if failed.is_none() {
        crate::deploy::preview_root::remove_shell(ctx, &meta.slug);
    }
    if let Some(e) = failed {
        journal::append(root, &entry.end(Outcome::Failed))?;
        return Err(e);
    }
    let path = meta_path(root, &meta.slug);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", &path, e)),
    }
    journal::append(root, &entry.end(Outcome::Ok))?;
    output::success(&format!("preview {} removed", meta.slug));
    Ok(())
}

/// One preview, as `status`, `releases` and `preview list` show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PreviewRow {
    /// previews/<slug>.
    pub(crate) slug: String,
    /// Its branch.
    pub(crate) branch: String,
    /// The commit served, if any.
    pub(crate) commit: Option<Commit>,
    /// The release directory served, relative to the root.
    pub(crate) release: Option<String>,
    /// Its state.
    pub(crate) state: Option<String>,
    /// Commit subject.
    pub(crate) subject: String,
    /// Last push (RFC 3339).
    pub(crate) pushed: String,
}

/// Every preview, most recently pushed first.
pub(crate) fn rows(ctx: &Ctx) -> Vec<PreviewRow> {
    let root = &ctx.root;
    let mut metas = all_meta(root);
    metas.sort_by(|a, b| b.pushed.cmp(&a.pushed).then(a.slug.cmp(&b.slug)));
    metas
        .into_iter()
        .map(|m| {
            let pointed = root.preview_pointed(&m.slug);
            let rec = pointed.as_ref().and_then(|n| release::load(root, n));
            PreviewRow {
                commit: pointed.as_ref().map(ReleaseName::commit),
                state: pointed
                    .as_ref()
                    .map(|n| release::effective_state(root, n).to_string()),
                release: pointed.map(|n| {
                    root.release(&n)
                        .strip_prefix(&root.dir)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| n.to_string())
                }),
                subject: rec.map(|r| r.subject).unwrap_or_default(),
                slug: m.slug,
                branch: m.branch,
                pushed: m.pushed,
            }
        })
        .collect()
}

/// One line per preview (for status, releases and preview list).
pub(crate) fn print_rows(rows: &[PreviewRow]) {
    for r in rows {
        println!(
            "preview     {:<24} {:<12} {:<8} {:>8}  {}  ({})",
            r.slug,
            r.commit.as_ref().map_or("(none)", Commit::short),
            r.state.as_deref().unwrap_or("-"),
            crate::sys::fs::age(&r.pushed),
            output::escape(&r.subject),
            output::escape(&r.branch)
        );
    }
}

/// What cleanup does with previews: remove those whose branch is gone, those
/// past `ttl_days`, then the least recently pushed beyond `keep`, then
/// releases no preview points at.
/// Lock held (or `dry_run`).
pub(crate) fn cleanup(ctx: &Ctx, dry_run: bool) -> Result<()> {
    let root = &ctx.root;
    if !dry_run {
        crate::deploy::preview_root::adopt_all(ctx)?;
    }
    let p = &ctx.config.previews;
    let mut metas = all_meta(root);
    metas.sort_by(|a, b| b.pushed.cmp(&a.pushed).then(a.slug.cmp(&b.slug)));
    let now = jiff::Timestamp::now();
    let ttl = jiff::SignedDuration::from_hours(24 * p.ttl_days as i64);
    let mut doomed: Vec<(Meta, String)> = Vec::new();
    let mut kept = 0;
    let repo = repo::open(&root.repository()).ok();
    for m in metas {
        // Deleted while previews were off, or a new branch a strict push refused.
        let gone = repo
            .as_ref()
            .is_some_and(|r| repo::ref_commit(r, &format!("refs/heads/{}", m.branch)).is_none());
        if gone {
            let why = format!("its branch {} no longer exists", output::escape(&m.branch));
            doomed.push((m, why));
            continue;
        }
        let age = m
            .pushed
            .parse::<jiff::Timestamp>()
            .map(|t| now.duration_since(t))
            .unwrap_or_default();
        if age > ttl {
            let why = format!(
                "not pushed to for {} days (ttl_days {})",
                age.as_hours() / 24,
                p.ttl_days
            );
            doomed.push((m, why));
        } else if kept >= p.keep {
            let why = format!(
                "older than the {} most recently pushed previews (keep)",
                p.keep
            );
            doomed.push((m, why));
        } else {
            kept += 1;
        }
    }
    if doomed.is_empty() && kept == 0 && root.preview_release_dirs()?.is_empty() {
        return Ok(());
    }
    output::header(&format!(
        "previews{}: {} kept, removing {}",
        if dry_run {
            " (dry run: nothing is removed)"
        } else {
            ""
        },
        kept,
        doomed.len()
    ));
    let mut failed = Vec::new();
    for (m, why) in &doomed {
        if dry_run {
            output::detail(&format!("would remove preview {} ({why})", m.slug));
            continue;
        }
        if let Err(e) = remove(ctx, m, false, why) {
            failed.push(e);
        }
    }
    // Releases no preview serves: failed builds, or a preview whose record is gone.
    let live: Vec<String> = all_meta(root).into_iter().map(|m| m.slug).collect();
    for name in root.preview_release_dirs()? {
        let slug = name.slug().unwrap_or_default().to_string();
        let serving = live.contains(&slug) && root.preview_pointed(&slug).as_ref() == Some(&name);
        let doomed_slug = doomed.iter().any(|(m, _)| m.slug == slug);
        if serving || (dry_run && doomed_slug) {
            continue;
        }
        if dry_run {
            output::detail(&format!(
                "would remove {} (no preview serves it)",
                rel_shown(&name)
            ));
        } else {
            match crate::housekeeping::trash::remove_release(ctx, &name) {
                Ok(()) => output::detail(&format!(
                    "removed {} (no preview served it)",
                    rel_shown(&name)
                )),
                Err(e) => failed.push(e),
            }
        }
    }
    // Told once, by whoever ran the cleanup, with the releases' own failures.
    match Error::gather(failed, |n| format!("{n} previews could not be removed")) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Recover an interrupted preview run (lock held); returns its end entry, or
/// `None` when the run was ended here already.
pub(crate) fn repair(ctx: &Ctx, e: &Entry, lines: &[&Entry]) -> Result<Option<Entry>> {
    let root = &ctx.root;
    let git_ref = e.git_ref.clone().unwrap_or_default();
    let branch = git_ref.trim_start_matches("refs/heads/");
    let meta = meta_of_branch(root, branch);
    if e.event == REMOVE_EVENT {
        return Ok(Some(match meta {
            Some(m) => {
                output::detail(&format!(
                    "it was removing preview {}; removing it again",
                    m.slug
                ));
                remove(ctx, &m, false, "finishing an interrupted removal")?;
                e.end(Outcome::Ok)
            }
            None => {
                output::detail("the preview was removed completely");
                e.end(Outcome::Ok)
            }
        }));
    }
    let Some(meta) = meta else {
        output::detail("its preview was removed since; nothing to repair");
        return Ok(Some(e.end(Outcome::Interrupted)));
    };
    let Some(name) = e
        .commit
        .as_ref()
        .and_then(Recorded::release)
        .and_then(|n| ReleaseName::preview(&meta.slug, n.commit()))
    else {
        output::warning(&format!(
            "the interrupted preview run {} names no commit; nothing is done for it but end it as interrupted",
            e.run
        ));
        return Ok(Some(e.end(Outcome::Interrupted)));
    };
    let commit = name.commit();
    let prepared = lines
        .iter()
        .any(|x| x.phase == crate::hook::pending::PREPARED_PHASE);
    if let Some(txn) = &e.txn {
        if crate::hook::pending::ref_kept(ctx, &git_ref, commit) && prepared {
            output::detail(&format!(
                "git updated {git_ref} to {}; the preview flip stands",
                commit.short()
            ));
            return Ok(Some(e.end(Outcome::Ok)));
        }
        if !crate::hook::pending::ref_kept(ctx, &git_ref, commit) {
            output::detail(&format!(
                "git did not update {git_ref} to {}; undoing the preview flip",
                commit.short()
            ));
            undo(
                ctx,
                e,
                txn.preview_before.as_ref().and_then(Recorded::release),
                "interrupted before git updated the ref",
            );
            return Ok(None);
        }
    }
    let landed = crate::hook::pending::kept(ctx, commit);
    if !landed {
        // A strict pre-receive hook died: git rejected the push.
        if release::load(root, &name).is_some() {
            release::set_state(
                root,
                &name,
                State::Failed,
                Some("interrupted; the push was rejected".into()),
            )?;
        }
        output::detail(&format!(
            "the push of {} was rejected (its hook was killed), so {} is marked failed; previews/{} is unchanged",
            commit.short(),
            rel_shown(&name),
            meta.slug
        ));
        return Ok(Some(e.end(Outcome::Interrupted)));
    }
    if release::is_ready(root, &name) {
        if root.preview_pointed(&meta.slug).as_ref() != Some(&name) {
            point(ctx, &meta.slug, &name)?;
        }
        output::detail(&format!(
            "{} had been warmed up completely; previews/{}/production -> it (its notify step did not run)",
            rel_shown(&name),
            meta.slug
        ));
        return Ok(Some(e.end(Outcome::Ok)));
    }
    if release::load(root, &name).is_some_and(|r| r.state == State::Building) {
        release::set_state(root, &name, State::Failed, Some("interrupted".into()))?;
    }
    output::detail(&format!(
        "{} was never warmed up (marked failed); previews/{} stays on {}",
        rel_shown(&name),
        meta.slug,
        root.preview_pointed(&meta.slug)
            .map_or_else(|| "nothing".into(), |n| n.to_string())
    ));
    Ok(Some(e.end(Outcome::Interrupted)))
}

/// Undo a strict preview flip git did not keep: `previews/<slug>` back to
/// `before` (or removed when there was none), the release marked failed,
/// the run ended `rejected`. Never fails; safe to repeat.
pub(crate) fn undo(ctx: &Ctx, run: &Entry, before: Option<&ReleaseName>, why: &str) {
    let root = &ctx.root;
    let commit = run
        .commit
        .as_ref()
        .and_then(Recorded::release)
        .map(ReleaseName::commit);
    let git_ref = run.git_ref.clone().unwrap_or_default();
    let branch = git_ref.trim_start_matches("refs/heads/");
    let meta = meta_of_branch(root, branch);
    let name = meta
        .as_ref()
        .zip(commit)
        .and_then(|(m, c)| ReleaseName::preview(&m.slug, c));
    if let (Some(meta), Some(name)) = (meta, name) {
        if root.preview_pointed(&meta.slug).as_ref() == Some(&name) {
            let back = before.filter(|b| **b != name && release::is_ready(root, b));
            let moved = match back {
                Some(b) => point(ctx, &meta.slug, b),
                None => std::fs::remove_file(root.preview_link(&meta.slug))
                    .at("remove", root.preview_link(&meta.slug)),
            };
            if let Err(e) = moved {
                output::error(&format!("could not move previews/{} back: {e}", meta.slug));
            }
        }
        if release::is_ready(root, &name) {
            let _ = release::set_state(
                root,
                &name,
                State::Failed,
                Some(format!("{git_ref} was not updated: {why}")),
            );
        }
    }
    if let Err(e) = journal::append(root, &run.rejected(&git_ref, why)) {
        output::warning(&format!("could not end the run in the journal: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(slug: &str, branch: &str) -> Meta {
        Meta {
            slug: slug.into(),
            branch: branch.into(),
            created: String::new(),
            pushed: String::new(),
        }
    }

    #[test]
    fn slugs_are_dns_labels() {
        assert_eq!(slug_base("feature/login-form"), "feature-login-form");
        assert_eq!(slug_base("Feature/Login_Form"), "feature-login-form");
        assert_eq!(slug_base("--a//b__c--"), "a-b-c");
        assert_eq!(slug_base("ünï/côde"), "n-c-de");
        assert_eq!(slug_base("///"), "preview");
        let long = slug_base(&format!("feature/{}", "x".repeat(100)));
        assert_eq!(long.len(), 63);
        // Cut at 63 must not end on a dash.
        let cut = slug_base(&format!("{}/yyy", "a".repeat(62)));
        assert_eq!(cut, "a".repeat(62));
    }

    #[test]
    fn colliding_branches_get_a_stable_suffix() {
        let existing = vec![meta("feature-a", "feature/a")];
        assert_eq!(choose_slug("feature/a", &existing), "feature-a");
        let other = choose_slug("feature_a", &existing);
        assert!(
            other.starts_with("feature-a-") && other.len() == "feature-a-".len() + 6,
            "{other}"
        );
        assert_eq!(other, choose_slug("feature_a", &existing), "stable");
        assert_ne!(other, choose_slug("FEATURE/A", &existing));
        let long = format!("f/{}", "x".repeat(80));
        let taken = vec![meta(&slug_base(&long), "other")];
        let s = choose_slug(&long, &taken);
        assert!(s.len() <= 63, "{s}");
        assert!(s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }
}
