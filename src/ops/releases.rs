//! `symdeploy releases [--json]`: every release directory with its state.

use serde::Serialize;

use crate::ctx::Ctx;
use crate::error::Result;
use crate::state::commit::Commit;
use crate::state::release;
use crate::state::release_name::ReleaseName;

/// One row of the listing.
#[derive(Debug, Serialize)]
pub(crate) struct ReleaseRow {
    /// The commit.
    pub(crate) commit: Commit,
    /// ready, failed, bad or incomplete.
    pub(crate) state: release::Effective,
    /// Commit subject.
    pub(crate) subject: String,
    /// Bytes on disk (files below the release, symlinks not followed).
    pub(crate) size: u64,
    /// When it was built.
    pub(crate) created: Option<crate::sys::time::Time>,
    /// production, warmup, previous.
    pub(crate) markers: Vec<String>,
    /// Why it failed, for failed and bad releases.
    pub(crate) error: Option<String>,
    /// The schema it knows (`schema N (newest id)`), when migrations are tracked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) schema: Option<String>,
    /// Can a rollback reach it without undoing migrations (tracked only)?
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reachable: Option<bool>,
    /// Who built it (the deployer's name, else the Unix user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) by: Option<String>,
}

/// A preview's release directory, as `releases` lists it.
#[derive(Debug, Serialize)]
pub(crate) struct PreviewReleaseRow {
    /// The release's name (`preview-<slug>-<commit>`; its directory is
    /// `previews/<slug>/releases/<commit>`).
    pub(crate) name: ReleaseName,
    /// The preview's slug.
    pub(crate) slug: String,
    /// The commit.
    pub(crate) commit: Commit,
    /// ready, failed or incomplete.
    pub(crate) state: release::Effective,
    /// Does `previews/<slug>/production` point at it?
    pub(crate) served: bool,
    /// The preview's branch, if it still has a record.
    pub(crate) branch: Option<String>,
    /// Commit subject.
    pub(crate) subject: String,
    /// Bytes on disk.
    pub(crate) size: u64,
    /// When it was built.
    pub(crate) created: Option<crate::sys::time::Time>,
}

/// Preview release directories, by slug.
pub(crate) fn preview_rows(ctx: &Ctx) -> Result<Vec<PreviewReleaseRow>> {
    let metas = crate::deploy::preview::all_meta(&ctx.root);
    let mut out: Vec<PreviewReleaseRow> = ctx
        .root
        .preview_release_dirs()?
        .into_iter()
        .map(|name| {
            let slug = name.slug().unwrap_or_default().to_string();
            let commit = name.commit();
            let rec = release::load(&ctx.root, &name);
            PreviewReleaseRow {
                state: release::effective_state(&ctx.root, &name),
                served: ctx.root.preview_pointed(&slug).as_ref() == Some(&name),
                branch: metas
                    .iter()
                    .find(|m| m.slug == slug)
                    .map(|m| m.branch.clone()),
                subject: rec.as_ref().map(|r| r.subject.clone()).unwrap_or_default(),
                size: crate::sys::fs::tree_size(&ctx.root.release(&name)),
                created: rec.map(|r| r.created),
                name,
                slug,
                commit,
            }
        })
        .collect();
    out.sort_by(|a, b| a.slug.cmp(&b.slug).then(b.created.cmp(&a.created)));
    Ok(out)
}

/// All releases, newest first.
pub(crate) fn rows(ctx: &Ctx) -> Result<Vec<ReleaseRow>> {
    let production = ctx.root.production();
    let warmup = ctx.root.warmup();
    let previous = crate::deploy::pointers::previous_production(ctx);
    let mut rows: Vec<(crate::housekeeping::retention::MadeAt, ReleaseRow)> = ctx
        .root
        .release_dirs()?
        .into_iter()
        .map(|c| {
            let rec = release::load(&ctx.root, &c.into());
            let mut markers = Vec::new();
            for (name, p) in [
                ("production", production),
                ("warmup", warmup),
                ("previous", previous),
            ] {
                if p == Some(c) {
                    markers.push(name.to_string());
                }
            }
            let made = crate::housekeeping::retention::made_at(&ctx.root, &c.into());
            let schema = crate::state::schema::describe(ctx, c);
            let row = ReleaseRow {
                reachable: schema.as_ref().map(|s| s.1),
                schema: schema.map(|s| s.0),
                state: release::effective_state(&ctx.root, &c.into()),
                subject: rec.as_ref().map(|r| r.subject.clone()).unwrap_or_default(),
                size: crate::sys::fs::tree_size(&ctx.root.main_release(c)),
                created: rec.as_ref().map(|r| r.created.clone()),
                by: rec.as_ref().map(|r| r.user.clone()),
                error: rec.and_then(|r| r.error),
                markers,
                commit: c,
            };
            (made, row)
        })
        .collect();
    // Newest first, the order cleanup counts in.
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

/// `symdeploy releases`.
pub(crate) fn run(ctx: &Ctx, json: bool) -> Result<()> {
    let rows = rows(ctx)?;
    if json {
        // An array of the main releases, as always (the ansible module reads
        // it): `preview list --json` and `status --json` have the previews.
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(());
    }
    let previews = preview_rows(ctx)?;
    if rows.is_empty() {
        println!(
            "no releases yet: push the deploy branch ({})",
            ctx.config.branch
        );
    }
    for r in rows {
        let mut markers = if r.markers.is_empty() {
            String::new()
        } else {
            format!("  [{}]", r.markers.join(", "))
        };
        if let Some(s) = &r.schema {
            markers.push_str(&format!("  {s}"));
            if r.reachable == Some(false) {
                markers.push_str(", rollback needs undo");
            }
        }
        if let Some(by) = &r.by {
            markers.push_str(&format!("  by {}", crate::sys::output::escape(by)));
        }
        print_line(
            r.commit,
            r.state,
            r.size,
            r.created.as_ref(),
            &r.subject,
            &markers,
        );
    }
    for p in previews {
        let tail = format!(
            "  [preview {}{}{}]",
            p.slug,
            p.branch
                .as_deref()
                .map(|b| format!(" of {}", crate::sys::output::escape(b)))
                .unwrap_or_default(),
            if p.served { ", served" } else { "" }
        );
        print_line(
            p.commit,
            p.state,
            p.size,
            p.created.as_ref(),
            &p.subject,
            &tail,
        );
    }
    Ok(())
}

/// One line of `symdeploy releases`: the columns every release has, then
/// `tail` (its markers, or what preview it belongs to).
fn print_line(
    commit: Commit,
    state: release::Effective,
    size: u64,
    created: Option<&crate::sys::time::Time>,
    subject: &str,
    tail: &str,
) {
    println!(
        "{} {:<10} {:>10} {:>8}  {}{tail}",
        commit.short(),
        state,
        crate::sys::fs::human_bytes(size),
        created.map(crate::sys::time::Time::age).unwrap_or_default(),
        crate::sys::output::escape(subject),
    );
}
