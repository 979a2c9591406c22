//! `symdeploy verify [RELEASE] [--all] [--json]`: a release (default:
//! production) against the manifest its warm-up wrote. Every difference is a
//! line on stdout (`modified: PATH`, `added:`, `removed:`, `mode:`, `type:`);
//! exit 0 when clean, 1 on any difference, 2 when a release has no manifest
//! to check against (and none differs).

use std::process::ExitCode;

use serde::Serialize;

use crate::ctx::Ctx;
use crate::deploy::verify::{self, Checked, Finding};
use crate::error::{Error, Result};
use crate::state::commit::Commit;
use crate::state::manifest::Depth;
use crate::state::release_name::ReleaseName;
use crate::sys::output;

/// Exit status when a release has no manifest to check against.
pub(crate) const NO_MANIFEST: u8 = 2;

#[derive(Serialize)]
struct JsonDrift {
    kind: &'static str,
    path: String,
    detail: String,
}

#[derive(Serialize)]
struct JsonRelease {
    release: String,
    /// production, warmup, previews/<slug>.
    roles: Vec<String>,
    /// clean, drifted, no-manifest.
    result: &'static str,
    entries: Option<usize>,
    seconds: f64,
    counts: std::collections::BTreeMap<&'static str, usize>,
    drift: Vec<JsonDrift>,
}

/// The flags of `symdeploy verify`.
pub(crate) struct Asked {
    /// Every ready release and live preview.
    pub(crate) all: bool,
    /// Hash only what the kernel says changed.
    pub(crate) metadata: bool,
    /// Write a missing manifest from the commit first.
    pub(crate) from_commit: bool,
    /// Machine-readable output.
    pub(crate) json: bool,
}

/// `symdeploy verify`.
pub(crate) fn run(ctx: &Ctx, release: Option<&str>, asked: Asked) -> Result<ExitCode> {
    let Asked {
        all,
        metadata,
        from_commit,
        json,
    } = asked;
    let depth = if metadata {
        Depth::Metadata
    } else {
        Depth::Full
    };
    let targets: Vec<(ReleaseName, Vec<String>)> = if all {
        verify::all_releases(ctx)?
    } else {
        let name = resolve(ctx, release)?;
        let roles = name
            .main()
            .map(|c| verify::roles(ctx, c))
            .unwrap_or_default();
        if from_commit {
            if crate::state::manifest::load(&ctx.root, &name)?.is_some() {
                return Err(Error::with_help(
                    format!("releases/{name} has a manifest already; it is not replaced"),
                    "`symdeploy verify` checks against it; `symdeploy warmup --rebuild COMMIT` builds the release and its manifest anew",
                ));
            }
            let n = verify::manifest_from_commit(ctx, &name)?;
            output::success(&format!(
                "wrote a manifest of releases/{name} from its commit ({}: the exported files only; what its build made is not covered)",
                output::count(n as u64, "entry", "entries")
            ));
        }
        vec![(name, roles)]
    };
    if targets.is_empty() {
        output::warning("no ready release to verify");
    }
    let mut results = Vec::new();
    for (name, roles) in targets {
        let checked = verify::check(ctx, &name, depth)?;
        results.push((checked, roles));
    }
    if json {
        let out: Vec<JsonRelease> = results.iter().map(|(c, r)| to_json(c, r)).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "releases": out }))
                .unwrap_or_default()
        );
    } else {
        for (c, roles) in &results {
            print_one(c, roles, all);
        }
    }
    let drifted = results.iter().any(|(c, _)| !c.drift().is_empty());
    let missing = results
        .iter()
        .any(|(c, _)| matches!(c.finding, Finding::NoManifest));
    if drifted {
        Ok(ExitCode::FAILURE)
    } else if missing {
        Ok(ExitCode::from(NO_MANIFEST))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// The release directory `arg` names: nothing (production), `production`,
/// `warmup`, a unique prefix of a release's commit, or a preview's release
/// name (`preview-<slug>-<commit>`, as `releases/` lists it).
fn resolve(ctx: &Ctx, arg: Option<&str>) -> Result<ReleaseName> {
    let root = &ctx.root;
    let pointed = |which: &str, c: Option<Commit>| {
        c.map(ReleaseName::Main).ok_or_else(|| {
            Error::with_help(
                format!("{which} points at no release"),
                "name a release: `symdeploy verify COMMIT` (`symdeploy releases` lists them)",
            )
        })
    };
    let arg = match arg {
        None | Some("production") => return pointed("production", root.production()),
        Some("warmup") => return pointed("warmup", root.warmup()),
        Some(a) => a.trim_start_matches("releases/").trim_end_matches('/'),
    };
    if let Some(slug) = arg.strip_prefix("previews/") {
        return root.preview_pointed(slug).ok_or_else(|| {
            Error::with_help(
                format!("no preview `{}` is live", output::escape(slug)),
                "`symdeploy preview list` lists them",
            )
        });
    }
    if let Some(name) = ReleaseName::parse(arg).filter(|n| n.slug().is_some()) {
        if root.release(&name).is_dir() {
            return Ok(name);
        }
        return Err(Error::with_help(
            format!("no release directory releases/{}", output::escape(arg)),
            "`symdeploy preview list` lists the live previews",
        ));
    }
    let matches: Vec<Commit> = root
        .release_dirs()?
        .into_iter()
        .filter(|c| !arg.is_empty() && c.as_str().starts_with(arg))
        .collect();
    match matches.as_slice() {
        [one] => Ok(ReleaseName::Main(*one)),
        [] => Err(Error::with_help(
            format!("no release matches `{}`", output::escape(arg)),
            "`symdeploy releases` lists the releases on this host",
        )),
        many => Err(Error::with_help(
            format!("`{}` matches {} releases", output::escape(arg), many.len()),
            "give more characters of the commit",
        )),
    }
}

fn label(c: &Checked, roles: &[String]) -> String {
    let shown = c.name.label();
    if roles.is_empty() {
        format!("releases/{shown}")
    } else {
        format!("releases/{shown} ({})", roles.join(", "))
    }
}

fn print_one(c: &Checked, roles: &[String], all: bool) {
    let took = crate::sys::fs::human_duration(c.took);
    match &c.finding {
        Finding::Clean { entries } => output::success(&format!(
            "{} matches its manifest ({} checked in {took})",
            label(c, roles),
            output::count(*entries as u64, "entry", "entries"),
        )),
        Finding::NoManifest => {
            output::warning(&format!(
                "{} has no manifest: it was warmed up before symdeploy kept them, so nothing can be checked",
                label(c, roles)
            ));
            output::help(&format!(
                "`symdeploy verify --from-commit {}` writes one from its commit (the exported files only), or `symdeploy warmup --rebuild {}` builds the release again with a full one",
                c.name.label(),
                c.name.label()
            ));
        }
        Finding::Drifted { drift, .. } => {
            // stdout: one line per difference, for scripts and people alike.
            for d in drift {
                let path = verify::shown(&d.path);
                if all {
                    println!("{}: releases/{}/{path}", d.kind, c.name);
                } else {
                    println!("{}: {path}", d.kind);
                }
            }
            let by_kind: Vec<String> = verify::counts(drift)
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            output::error(&format!(
                "{} has changed since its warm-up: {} ({})",
                label(c, roles),
                output::count(drift.len() as u64, "difference", "differences"),
                by_kind.join(", ")
            ));
        }
    }
}

fn to_json(c: &Checked, roles: &[String]) -> JsonRelease {
    let (result, entries) = match &c.finding {
        Finding::Clean { entries } => ("clean", Some(*entries)),
        Finding::Drifted { entries, .. } => ("drifted", Some(*entries)),
        Finding::NoManifest => ("no-manifest", None),
    };
    JsonRelease {
        release: format!("releases/{}", c.name),
        roles: roles.to_vec(),
        result,
        entries,
        seconds: c.took.as_secs_f64(),
        counts: verify::counts(c.drift())
            .into_iter()
            .map(|(k, n)| (k.into(), n))
            .collect(),
        drift: c
            .drift()
            .iter()
            .map(|d| JsonDrift {
                kind: d.kind.into(),
                path: String::from_utf8_lossy(&d.path).into_owned(),
                detail: d.detail.clone(),
            })
            .collect(),
    }
}
