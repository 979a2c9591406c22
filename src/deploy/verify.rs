//! A release checked against its manifest: what `symdeploy verify`, `status
//! --check`/`--prometheus`, promote and rollback share.

use std::time::{Duration, Instant};

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::state::commit::Commit;
use crate::state::manifest::{self, Depth, Drift, DriftKind};
use crate::state::release_name::ReleaseName;
use crate::sys::output;

/// What checking one release found.
#[derive(Debug)]
pub(crate) enum Finding {
    /// Every entry matches.
    Clean {
        /// Entries checked.
        entries: usize,
    },
    /// Differences, sorted by path.
    Drifted {
        /// Entries in the manifest.
        entries: usize,
        /// What differs.
        drift: Vec<Drift>,
    },
    /// The release has no manifest (made before symdeploy kept them).
    NoManifest,
}

/// One release checked, and how long it took.
#[derive(Debug)]
pub(crate) struct Checked {
    /// The release checked.
    pub(crate) name: ReleaseName,
    /// What was found.
    pub(crate) finding: Finding,
    /// How long the check took.
    pub(crate) took: Duration,
}

impl Checked {
    /// The differences (none when clean or unchecked).
    pub(crate) fn drift(&self) -> &[Drift] {
        match &self.finding {
            Finding::Drifted { drift, .. } => drift,
            _ => &[],
        }
    }
}

/// Check the release `name` against its manifest.
pub(crate) fn check(ctx: &Ctx, name: &ReleaseName, depth: Depth) -> Result<Checked> {
    let started = Instant::now();
    let Some(m) = manifest::load(&ctx.root, name)? else {
        return Ok(Checked {
            name: name.clone(),
            finding: Finding::NoManifest,
            took: started.elapsed(),
        });
    };
    // What was left out when it was made stays out, and so does what is
    // left out now (a path added to verify_ignore since).
    let mut excluded = m.excluded.clone();
    excluded.extend(manifest::excluded_paths(&ctx.config));
    excluded.sort();
    excluded.dedup();
    let dir = ctx.root.release(name);
    let actual = manifest::scan(&dir, &excluded, depth, Some(&m))?;
    let mut drift = manifest::diff(&m.entries, &actual, &excluded);
    if m.from_commit.is_some() {
        // It knows the exported files only: what else is there may be the build's.
        drift.retain(|d| d.kind != DriftKind::Added);
    }
    let entries = m.entries.len();
    let finding = if drift.is_empty() {
        Finding::Clean { entries }
    } else {
        Finding::Drifted { entries, drift }
    };
    Ok(Checked {
        name: name.clone(),
        finding,
        took: started.elapsed(),
    })
}

/// Write a manifest for the release `name`, which has none, from its
/// commit: the commit exported beside it (a temporary directory in
/// releases/, removed after), scanned with the shared paths left out as
/// well. Returns how many entries it has.
pub(crate) fn manifest_from_commit(ctx: &Ctx, name: &ReleaseName) -> Result<usize> {
    let root = &ctx.root;
    let commit = name.commit();
    let repo = crate::state::repo::open(&root.repository())?;
    let tmp = root.releases().join(format!(
        "{}verify-{name}-{}",
        crate::state::root::TMP_PREFIX,
        std::process::id()
    ));
    let built = (|| {
        crate::deploy::export::Source::of(&repo, commit)?.export(&repo, &tmp)?;
        crate::deploy::export::write_revision(&tmp, commit)?;
        // The shared paths are links into common/ in the release; what the
        // commit has there was replaced by them.
        let mut excluded = manifest::excluded_paths(&ctx.config);
        excluded.extend(ctx.config.shared.iter().cloned());
        excluded.sort();
        excluded.dedup();
        let mut entries = manifest::scan(&tmp, &excluded, Depth::Full, None)?;
        // The stamps are the temporary copy's: never let them vouch for the release.
        for e in &mut entries {
            e.stamp = manifest::Stamp::default();
        }
        let m = manifest::Manifest {
            excluded,
            from_commit: Some(commit),
            entries,
        };
        manifest::write(root, name, &m, true)?;
        Ok(m.entries.len())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    built
}

/// A path as people see it: UTF-8 (lossy), control characters escaped.
pub(crate) fn shown(path: &[u8]) -> String {
    output::escape(&String::from_utf8_lossy(path)).into_owned()
}

/// Counts per kind, every kind present (zeros included).
pub(crate) fn counts(drift: &[Drift]) -> Vec<(DriftKind, usize)> {
    <DriftKind as strum::IntoEnumIterator>::iter()
        .map(|k| (k, drift.iter().filter(|d| d.kind == k).count()))
        .collect()
}

/// `modified: www/index.php, added: www/x.php (and 3 more)`.
pub(crate) fn first_few(drift: &[Drift], n: usize) -> String {
    let mut s: Vec<String> = drift
        .iter()
        .take(n)
        .map(|d| format!("{}: {}", d.kind, shown(&d.path)))
        .collect();
    if drift.len() > n {
        s.push(format!("and {} more", drift.len() - n));
    }
    s.join(", ")
}

/// Why a switch checks its target: the wording of its refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Before {
    /// A promote (CLI, tag, `-o promote`, strict mode's).
    Promote,
    /// A rollback; `force`: go ahead all the same, with a warning.
    Rollback {
        /// `--force` was given.
        force: bool,
    },
}

/// Check `commit`'s release before a switch stops anything, as
/// `promote.verify` says; a release that changed since its warm-up is
/// refused (or, for a forced rollback, warned about). A release without a
/// manifest gets a warning and goes ahead: it predates manifests.
pub(crate) fn before_switch(ctx: &Ctx, commit: Commit, why: Before) -> Result<()> {
    let depth = match ctx.config.promote.verify {
        crate::state::config::VerifyMode::Off => return Ok(()),
        crate::state::config::VerifyMode::Full => Depth::Full,
        crate::state::config::VerifyMode::Metadata => Depth::Metadata,
    };
    let checked = check(ctx, &commit.into(), depth)?;
    tracing::info!(
        release = commit.as_str(),
        seconds = checked.took.as_secs_f64(),
        "verified before the switch"
    );
    let drift = match &checked.finding {
        Finding::Clean { .. } => return Ok(()),
        Finding::NoManifest => {
            output::warning(&format!(
                "releases/{} has no manifest (it was warmed up before symdeploy kept them), so it is not checked; `symdeploy verify {}` says more",
                commit.short(),
                commit.short()
            ));
            return Ok(());
        }
        Finding::Drifted { drift, .. } => drift,
    };
    let what = format!(
        "releases/{} has changed since its warm-up ({}): {}",
        commit.short(),
        output::count(drift.len() as u64, "difference", "differences"),
        first_few(drift, 5)
    );
    let list = format!("`symdeploy verify {}` lists every change", commit.short());
    match why {
        Before::Rollback { force: true } => {
            output::warning(&format!("{what}; rolling back to it anyway (--force)"));
            Ok(())
        }
        Before::Rollback { force: false } => Err(Error::with_help(
            format!("{what}; not rolling back to it: production and the daemons are untouched"),
            format!("{list}; `symdeploy rollback --force {}` rolls back to it all the same, or roll back to another release (`symdeploy releases`)", commit.short()),
        )),
        Before::Promote => Err(Error::with_help(
            format!("{what}; not promoting it: production and the daemons are untouched"),
            format!("{list}; build it again from its commit with `symdeploy warmup --rebuild {}` and promote that (a change meant to stay belongs in a commit)", commit.short()),
        )),
    }
}

/// The releases `--all` checks: every ready main release and every live
/// preview's, as (name in releases/, what points at it).
pub(crate) fn all_releases(ctx: &Ctx) -> Result<Vec<(ReleaseName, Vec<String>)>> {
    let root = &ctx.root;
    let mut out: Vec<(ReleaseName, Vec<String>)> = Vec::new();
    let mut names = root.release_dirs()?;
    names.sort();
    for c in names {
        if crate::state::release::is_ready(root, &c.into()) {
            out.push((c.into(), roles(ctx, c)));
        }
    }
    let mut slugs: Vec<String> = std::fs::read_dir(root.previews())
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    slugs.sort();
    for slug in slugs {
        if let Some(name) = root.preview_pointed(&slug) {
            if root.release(&name).is_dir() && !out.iter().any(|(n, _)| *n == name) {
                out.push((name, vec![format!("previews/{slug}")]));
            }
        }
    }
    Ok(out)
}

/// `production`, `warmup`: what points at the main release `name`.
pub(crate) fn roles(ctx: &Ctx, name: Commit) -> Vec<String> {
    let mut r = Vec::new();
    if ctx.root.production() == Some(name) {
        r.push("production".to_string());
    }
    if ctx.root.warmup() == Some(name) {
        r.push("warmup".to_string());
    }
    r
}
