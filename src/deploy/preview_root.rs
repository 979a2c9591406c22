//! A preview's own root: `ROOT/previews/<slug>/` mirrors the deploy root
//! (`releases/<commit>`, `common/`, `production -> releases/<commit>`, and the
//! `[links]` that go through production, such as `www -> production/www`).
//!
//! A release's steps reach shared data by relative paths from the release
//! (`cp ../../common/app/config/local.neon ...`,
//! `ln -sfn ../../../../../common/www/exports ...`). Because a preview's
//! release sits as deep below its preview root as a main release sits below
//! ROOT, every such path lands in the preview's `common/`, never in
//! production's.
//!
//! Older versions kept a preview in `releases/preview-<slug>-<commit>` (with
//! `previews/<slug>` a symlink to it) and its data in
//! `common-previews/<slug>/`. [`adopt`] moves such a preview over, data
//! first, on the preview's next push, on any preview removal or cleanup, and
//! on `symdeploy recover`. Every step of the move can be repeated, so a move
//! cut short by a crash finishes on the next try; no data is ever deleted.

use std::path::{Path, PathBuf};

use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::state::commit::Commit;
use crate::state::release_name::{is_slug, ReleaseName};
use crate::state::root::{Root, PRODUCTION};
use crate::sys::{output, symlink as link};

/// Name of the directory a preview's new root is built in before it takes
/// the place of an old-layout `previews/<slug>` symlink. Not a temporary
/// name: it may hold the preview's data, so nothing sweeps it; [`adopt`]
/// finishes it.
fn staging(root: &Root, slug: &str) -> PathBuf {
    root.previews().join(format!(".layout-{slug}"))
}

/// The `[links]` a preview root gets: those that go through `production`
/// (a preview has no warm-up of its own).
pub(crate) fn preview_links(links: &[(String, String)]) -> Vec<(String, String)> {
    links
        .iter()
        .filter(|(_, t)| t.split('/').next() == Some(PRODUCTION))
        .cloned()
        .collect()
}

/// Make `previews/<slug>/releases/` ready for a build, moving an old-layout
/// preview over first. Lock held.
pub(crate) fn ensure(ctx: &Ctx, slug: &str) -> Result<()> {
    adopt(ctx, slug)?;
    let dir = ctx.root.preview_dir(slug).join("releases");
    std::fs::create_dir_all(&dir).at("create directory", &dir)
}

/// Make or repair the preview root's static links. Lock held.
pub(crate) fn ensure_links(ctx: &Ctx, slug: &str) -> Result<()> {
    link::ensure_static(
        &ctx.root.preview_dir(slug),
        &preview_links(&ctx.config.links),
    )?;
    Ok(())
}

/// Remove what a preview root holds besides its data: its static links and
/// its empty `releases/`; the root itself when nothing is left in it.
/// Lock held; the releases are gone already.
pub(crate) fn remove_shell(ctx: &Ctx, slug: &str) {
    let dir = ctx.root.preview_dir(slug);
    for (name, _) in preview_links(&ctx.config.links) {
        let p = dir.join(&name);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(&p);
        }
    }
    let _ = std::fs::remove_dir(dir.join("releases"));
    // Fails, as it should, while common/ (kept data) is still there.
    let _ = std::fs::remove_dir(&dir);
    link::sync_dir(&ctx.root.previews());
}

/// Remove what a crashed preview run left in the preview roots: temporary
/// links and half-copied seeds (named with the flip's temporary prefix or
/// `.tmp-`). Lock held.
pub(crate) fn tidy(root: &Root) {
    let Ok(entries) = std::fs::read_dir(root.previews()) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = e.path();
        link::remove_leftovers(&dir);
        let Ok(inner) = std::fs::read_dir(&dir) else {
            continue;
        };
        for x in inner.flatten() {
            if x.file_name().to_string_lossy().starts_with(".tmp-") {
                let p = x.path();
                let _ = match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
                    _ => std::fs::remove_file(&p),
                };
            }
        }
    }
}

/// Move every old-layout preview over (`symdeploy recover`, cleanup).
/// Returns the slugs moved. Lock held.
pub(crate) fn adopt_all(ctx: &Ctx) -> Result<Vec<String>> {
    let root = &ctx.root;
    let mut slugs = std::collections::BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(root.previews()) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if let Some(s) = n.strip_prefix(".layout-") {
                slugs.insert(s.to_string());
            } else if !n.starts_with('.') && e.file_type().is_ok_and(|t| t.is_symlink()) {
                slugs.insert(n);
            }
        }
    }
    for dir in [root.common_previews(), root.releases()] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n.starts_with('.') {
                    continue;
                }
                if dir == root.releases() {
                    if let Some(s) = ReleaseName::parse(&n).as_ref().and_then(ReleaseName::slug) {
                        slugs.insert(s.to_string());
                    }
                } else if is_slug(&n) {
                    slugs.insert(n);
                }
            }
        }
    }
    let mut moved = Vec::new();
    for slug in slugs {
        if adopt(ctx, &slug)? {
            moved.push(slug);
        }
    }
    Ok(moved)
}

/// The releases older versions kept for `slug` in releases/: (dir, commit).
fn legacy_releases(root: &Root, slug: &str) -> Vec<(PathBuf, Commit)> {
    let Ok(entries) = std::fs::read_dir(root.releases()) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Commit)> = entries
        .flatten()
        .filter_map(|e| {
            let name = ReleaseName::parse(e.file_name().to_str()?)?;
            (name.slug() == Some(slug)).then(|| (e.path(), name.commit()))
        })
        .collect();
    out.sort();
    out
}

/// Move the old-layout preview `slug` (if there is anything of one) into
/// `previews/<slug>/`: its data, its releases (their shared links rewritten
/// to the new place), then the served pointer; the new root takes the old
/// symlink's place with one exchange (renameat2), so the web server finds
/// either the old preview or the new one. Returns whether anything moved.
/// Lock held; safe to repeat after a crash at any point.
pub(crate) fn adopt(ctx: &Ctx, slug: &str) -> Result<bool> {
    let root = &ctx.root;
    let dir = root.preview_dir(slug);
    let stage = staging(root, slug);
    let legacy_common = root.common_previews().join(slug);
    let olds = legacy_releases(root, slug);
    let dir_meta = std::fs::symlink_metadata(&dir).ok();
    let old_link = dir_meta
        .as_ref()
        .is_some_and(|m| m.file_type().is_symlink());
    let stage_meta = std::fs::symlink_metadata(&stage).ok();
    let legacy_data = std::fs::symlink_metadata(&legacy_common).is_ok();
    if !old_link && stage_meta.is_none() && !legacy_data && olds.is_empty() {
        return Ok(false);
    }
    // Cut short after the exchange: the staging name holds the old symlink.
    if stage_meta
        .as_ref()
        .is_some_and(|m| m.file_type().is_symlink())
        && !old_link
    {
        std::fs::remove_file(&stage).at("remove", &stage)?;
        if !legacy_data && olds.is_empty() {
            return Ok(true);
        }
    }
    // What the old symlink served (it may dangle: its release moved already).
    let served = old_link
        .then(|| std::fs::read_link(&dir).ok())
        .flatten()
        .and_then(|t| {
            let t = t.to_str()?.trim_end_matches('/').to_string();
            let name = ReleaseName::parse(t.strip_prefix("../releases/")?)?;
            (name.slug() == Some(slug)).then(|| name.commit())
        });
    // Build in the staging directory while the old symlink still serves;
    // an existing new-layout root (or none at all) is built in place.
    let target = if old_link {
        stage.clone()
    } else {
        if dir_meta.is_none() && stage_meta.as_ref().is_some_and(|m| m.is_dir()) {
            std::fs::rename(&stage, &dir).at("rename into place", &dir)?;
        }
        dir.clone()
    };
    std::fs::create_dir_all(target.join("releases")).at("create directory", &target)?;
    output::header(&format!(
        "moving preview {slug} to its own root previews/{slug}/"
    ));
    if legacy_data {
        adopt_data(root, slug, &target, &legacy_common)?;
    }
    adopt_releases(root, slug, &target, &olds)?;
    link::sync_dir(&root.releases());
    // Also a release moved by a run cut short before its links were rewritten.
    if let Ok(entries) = std::fs::read_dir(target.join("releases")) {
        for e in entries.flatten() {
            relink_shared(&e.path(), slug, &ctx.config.shared)?;
        }
    }
    if let Some(c) = served {
        if target.join("releases").join(c.as_str()).is_dir() {
            link::flip(&target, PRODUCTION, &format!("releases/{c}"))?;
            link::ensure_static(&target, &preview_links(&ctx.config.links))?;
        }
    }
    if old_link {
        exchange(&stage, &dir)?;
        link::sync_dir(&root.previews());
        std::fs::remove_file(&stage).at("remove", &stage)?;
    }
    if served.is_some() {
        output::warning(&format!(
            "preview {slug}'s release was built in the old layout: a file its steps copied from ../../common came from production's common/; push the branch again to rebuild it in its own root"
        ));
    }
    output::success(&format!("preview {slug} now lives in previews/{slug}/"));
    Ok(true)
}

/// Move an old-layout preview's data, common-previews/<slug>/, into the
/// preview root being built at `target` (beside an existing common/, never
/// over it: data is never deleted).
fn adopt_data(root: &Root, slug: &str, target: &Path, legacy_common: &Path) -> Result<()> {
    let common = target.join("common");
    let to = if std::fs::symlink_metadata(&common).is_err() {
        common
    } else {
        // Both exist: keep both, side by side, and say so.
        let aside = target.join(format!(
            "common.from-common-previews-{}",
            crate::sys::fs::unique_token()
        ));
        output::warning(&format!(
            "previews/{slug}/common/ exists already; common-previews/{slug}/ is kept beside it as {}",
            aside.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
        ));
        aside
    };
    std::fs::rename(legacy_common, &to).at("move the preview's data to", &to)?;
    link::sync_dir(target);
    output::detail(&format!(
        "common-previews/{slug}/ -> previews/{slug}/{}/",
        to.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    ));
    // The old parent, once empty, has no further use.
    let _ = std::fs::remove_dir(root.common_previews());
    Ok(())
}

/// Move the releases older versions kept for the preview in releases/ into
/// `target`/releases/; one already there wins and the old copy is
/// swept like any half-removed release.
fn adopt_releases(
    root: &Root,
    slug: &str,
    target: &Path,
    olds: &[(PathBuf, Commit)],
) -> Result<()> {
    for (old, commit) in olds {
        let new = target.join("releases").join(commit.as_str());
        let name = ReleaseName::Preview {
            slug: slug.to_string(),
            commit: *commit,
        };
        if std::fs::symlink_metadata(&new).is_ok() {
            // A build, not data: the one in the preview root wins; the old
            // copy goes the way of every half-removed release (swept).
            let doomed = root.doomed_release(&name);
            std::fs::rename(old, &doomed).at("move away", old)?;
            output::detail(&format!(
                "releases/{name} is in previews/{slug}/releases/ already; the old copy is removed"
            ));
            continue;
        }
        std::fs::rename(old, &new).at("move the preview release to", &new)?;
        output::detail(&format!(
            "releases/{name} -> previews/{slug}/releases/{}",
            commit.short()
        ));
    }
    Ok(())
}

/// Swap two names with one renameat2(RENAME_EXCHANGE): a directory takes a
/// symlink's place with no instant in which neither exists.
fn exchange(a: &Path, b: &Path) -> Result<()> {
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        a,
        nix::fcntl::AT_FDCWD,
        b,
        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
    )
    .map_err(|e| Error::io("exchange with", b, std::io::Error::from(e)))
}

/// Rewrite the shared links an old-layout build made (into
/// `common-previews/<slug>/`) to point into the preview root's `common/`.
fn relink_shared(release: &Path, slug: &str, shared: &[String]) -> Result<()> {
    let old_rel = Path::new("common-previews").join(slug);
    for path in shared {
        let p = release.join(path);
        let Ok(target) = std::fs::read_link(&p) else {
            continue;
        };
        if target == crate::deploy::shared::relative_target(&old_rel, path) {
            let new = crate::deploy::shared::relative_target(Path::new("common"), path);
            let dir = p.parent().unwrap_or(release);
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            link::flip(dir, &name, &new.to_string_lossy())?;
        }
    }
    Ok(())
}
