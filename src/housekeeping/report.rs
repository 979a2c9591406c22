//! The HTML report: one self-contained static page of a root's deploys.
//!
//! Where production, warmup and each preview point; the last runs as a table
//! (when, who, commit and subject, outcome, duration); an inline SVG chart of
//! each run's stage durations; the run logs of failures copied next to the
//! page. No script and nothing fetched from elsewhere, and a Content Security
//! Policy that forbids both, so the page stays inert even if a string slipped
//! through. Every string that came from a repository or a step (subjects,
//! refs, errors, log lines) goes through [`esc`].

use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::state::journal::{self, Entry, LineKind};
use crate::state::release_name::{Recorded, ReleaseName};

/// How many runs the page shows.
pub(crate) const RUNS: usize = 30;

/// HTML-escape text for an element or a quoted attribute.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters have no business in a page (a subject
            // with ESC or BEL): shown, not passed on.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "&#x{:x};", 0x2400 + (c as u32 & 0x1f));
            }
            c => out.push(c),
        }
    }
    out
}

/// One run as the page shows it.
struct PageRun {
    entry: Entry,
    /// Still open (running, or interrupted and not yet recovered).
    open: bool,
    subject: String,
    /// The page-relative link to the copied run log (failures only).
    log_link: Option<String>,
}

/// Write the page into `dir` (made if missing): `index.html` replaced with
/// one rename, so a reader never sees half a page; failure logs in `logs/`.
pub(crate) fn write(ctx: &Ctx, dir: &Path, runs: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(dir.join("logs")).at("create directory", dir)?;
    let open: std::collections::HashSet<String> = journal::open_runs(&ctx.root)
        .into_iter()
        .map(|e| e.run)
        .collect();
    let mut newest: Vec<Entry> = Vec::new();
    journal::for_each_rev(&ctx.root, |e| {
        if e.phase == LineKind::End || (e.phase == LineKind::Start && open.contains(&e.run)) {
            newest.push(e);
        }
        if newest.len() >= runs {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    let repo = crate::state::repo::open(&ctx.root.repository()).ok();
    let mut shown = Vec::new();
    for entry in newest {
        let subject = entry
            .commit
            .as_ref()
            .and_then(Recorded::release)
            .map(|c| subject_of(ctx, repo.as_ref(), c))
            .unwrap_or_default();
        let failed =
            entry.phase == LineKind::End && !entry.result.as_ref().is_some_and(|r| r.succeeded());
        let log_link = if failed {
            entry
                .log
                .as_deref()
                .and_then(|log| copy_log(dir, Path::new(log)))
        } else {
            None
        };
        let open = entry.phase == LineKind::Start;
        shown.push(PageRun {
            entry,
            open,
            subject,
            log_link,
        });
    }
    let page = render(ctx, &shown);
    let index = dir.join("index.html");
    let tmp = dir.join(format!(".index.html.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(page.as_bytes()).and_then(|()| f.sync_data()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("write", tmp.display().to_string(), e));
    }
    std::fs::rename(&tmp, &index).at("rename into place", &index)?;
    Ok(index)
}

/// After a run: refresh the page `report` in deploy.toml names, if any. A
/// failure is a warning; the run's outcome stands.
pub(crate) fn refresh(ctx: &Ctx) {
    let Some(dir) = &ctx.config.report else {
        return;
    };
    let dir = ctx.root.dir.join(dir);
    if let Err(e) = write(ctx, &dir, RUNS) {
        crate::sys::output::warning(&format!(
            "the report in {} was not refreshed: {e}",
            dir.display()
        ));
    }
}

fn subject_of(ctx: &Ctx, repo: Option<&gix::Repository>, name: &ReleaseName) -> String {
    if let Some(r) = crate::state::release::load(&ctx.root, name) {
        if !r.subject.is_empty() {
            return r.subject;
        }
    }
    repo.and_then(|repo| crate::state::repo::subject(repo, name.commit().id()))
        .unwrap_or_default()
}

/// Copy a run log next to the page as an escaped HTML page of its own;
/// returns its page-relative link. Logs are named by symdeploy
/// (`<time>-<event>-<commit>-<pid>.log`), never by a pusher, but only plain
/// names are accepted anyway.
fn copy_log(dir: &Path, log: &Path) -> Option<String> {
    let name = log.file_name()?.to_str()?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return None;
    }
    let text = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(&text);
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{CSP}<title>{}</title>\
         <style>body{{font:13px/1.4 monospace;margin:1em}}pre{{white-space:pre-wrap}}</style></head>\
         <body><p><a href=\"../index.html\">back to the report</a></p><pre>{}</pre></body></html>\n",
        esc(name),
        esc(&text)
    );
    let link = format!("logs/{name}.html");
    let path = dir.join(&link);
    let tmp = dir.join(format!("logs/.{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, page).ok()?;
    std::fs::rename(&tmp, &path).ok()?;
    Some(link)
}

/// Nothing but inline styles: no script, no fetch, no frames, no forms.
const CSP: &str = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">";

const STAGE_COLOURS: &[(&str, &str)] = &[
    ("export", "#4e79a7"),
    ("carry", "#76b7b2"),
    ("shared", "#59a14f"),
    ("build", "#f28e2b"),
    ("links", "#edc948"),
    ("migrate", "#b07aa1"),
    ("writable", "#bab0ac"),
    ("sync", "#9c755f"),
    ("stop", "#e15759"),
    ("after_switch", "#ff9da7"),
    ("start", "#8cd17d"),
    ("check", "#86bcb6"),
    ("notify", "#d4a6c8"),
];

fn colour(stage: &str) -> &'static str {
    STAGE_COLOURS
        .iter()
        .find(|(s, _)| *s == stage)
        .map(|(_, c)| *c)
        .unwrap_or("#999999")
}

fn outcome(run: &PageRun) -> &str {
    if run.open {
        return "running or interrupted";
    }
    run.entry.result.as_ref().map_or("?", AsRef::as_ref)
}

fn render(ctx: &Ctx, runs: &[PageRun]) -> String {
    let root = &ctx.root;
    let mut h = String::new();
    let host = runs
        .first()
        .map(|r| r.entry.host.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this host".into());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n{CSP}\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>symdeploy: {}</title>\n<style>\n\
         body{{font:14px/1.45 system-ui,sans-serif;margin:1.5em;color:#222}}\n\
         table{{border-collapse:collapse;margin:.5em 0 1.5em}}\n\
         th,td{{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}}\n\
         th{{background:#f4f4f4}} code{{font-size:13px}}\n\
         .ok{{color:#1a7f37}} .bad{{color:#cf222e;font-weight:bold}} .muted{{color:#777}}\n\
         .legend span{{display:inline-block;margin-right:1em}}\n\
         .legend i{{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-1px}}\n\
         </style>\n</head>\n<body>\n<h1>symdeploy: {}</h1>\n\
         <p class=\"muted\">deploy root <code>{}</code> on {}; written {}</p>\n",
        esc(&root.dir.display().to_string()),
        esc(&root.dir.display().to_string()),
        esc(&root.dir.display().to_string()),
        esc(&host),
        esc(&jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string()),
    );

    // Where things point now.
    h.push_str("<h2>Now</h2>\n<table id=\"pointers\">\n<tr><th>link</th><th>release</th><th>state</th><th>subject</th></tr>\n");
    for name in [crate::state::root::PRODUCTION, crate::state::root::WARMUP] {
        match root.pointed_release(name) {
            Some(c) => {
                let rec = crate::state::release::load(root, &c.into());
                let state = crate::state::release::effective_state(root, &c.into()).to_string();
                let _ = writeln!(
                    h,
                    "<tr><td>{name}</td><td><code>releases/{}</code></td><td>{}</td><td>{}</td></tr>",
                    esc(c.short()),
                    esc(&state),
                    esc(&rec.map(|r| r.subject).unwrap_or_default())
                );
            }
            None => {
                let _ = writeln!(
                    h,
                    "<tr><td>{name}</td><td class=\"muted\">nothing</td><td></td><td></td></tr>"
                );
            }
        }
    }
    for p in crate::deploy::preview::rows(ctx) {
        let _ = writeln!(
            h,
            "<tr><td>previews/{}<br><span class=\"muted\">{}</span></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&p.slug),
            esc(&p.branch),
            esc(p.release.as_deref().unwrap_or("nothing")),
            esc(p.state.as_deref().unwrap_or("")),
            esc(&p.subject)
        );
    }
    h.push_str("</table>\n");

    // The runs, newest first.
    let _ = writeln!(
        h,
        "<h2>Last {} runs</h2>\n<table id=\"runs\">\n<tr><th>when (UTC)</th><th>who</th><th>what</th><th>commit</th><th>outcome</th><th>took</th></tr>",
        runs.len()
    );
    if runs.is_empty() {
        h.push_str(
            "<tr><td colspan=\"6\" class=\"muted\">nothing was deployed here yet</td></tr>\n",
        );
    }
    for run in runs {
        let e = &run.entry;
        let took = e
            .durations
            .get("total")
            .map(|s| format!("{s:.1} s"))
            .unwrap_or_default();
        let out = outcome(run);
        let class = if e.result.as_ref().is_some_and(|r| r.succeeded()) {
            "ok"
        } else {
            "bad"
        };
        let mut outcome_cell = format!("<span class=\"{class}\">{}</span>", esc(out));
        if let Some(err) = &e.error {
            let _ = write!(
                outcome_cell,
                "<br><span class=\"muted\">{}</span>",
                esc(err)
            );
        }
        if let Some(link) = &run.log_link {
            let _ = write!(outcome_cell, "<br><a href=\"{}\">run log</a>", esc(link));
        }
        let _ = writeln!(
            h,
            "<tr class=\"run\" data-run=\"{}\"><td>{}</td><td>{}</td><td>{}<br><span class=\"muted\">{}</span></td><td><code>{}</code> <span class=\"subject\">{}</span></td><td>{}</td><td>{}</td></tr>",
            esc(&e.run),
            esc(&e.time.to_string().replace('T', " ")),
            esc(&e.who_where()),
            esc(e.event.as_ref()),
            esc(e.git_ref.as_deref().unwrap_or("")),
            esc(&e.commit.as_ref().map(Recorded::label).unwrap_or_default()),
            esc(&run.subject),
            outcome_cell,
            esc(&took),
        );
    }
    h.push_str("</table>\n");
    h.push_str(&chart(runs));
    h.push_str("</body>\n</html>\n");
    h
}

/// One horizontal bar per run (newest on top), split into its stages.
fn chart(runs: &[PageRun]) -> String {
    let row = 22.0;
    let label = 230.0;
    let width = 560.0;
    let longest = runs
        .iter()
        .map(|r| stages(&r.entry).iter().map(|(_, s)| s).sum::<f64>())
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let height = row * runs.len() as f64 + 30.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<h2>Stage durations</h2>\n<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"stage durations per run\">",
        label + width + 70.0
    );
    for (i, run) in runs.iter().enumerate() {
        let e = &run.entry;
        let y = i as f64 * row;
        let _ = writeln!(
            s,
            "<g class=\"deploy\" data-run=\"{}\"><text x=\"0\" y=\"{}\" font-size=\"12\">{}</text>",
            esc(&e.run),
            y + 15.0,
            esc(&format!(
                "{} {} {}",
                {
                    let time = e.time.to_string();
                    time.get(5..16).unwrap_or(&time).replace('T', " ")
                },
                e.event,
                e.commit.as_ref().map(Recorded::label).unwrap_or_default()
            ))
        );
        let mut x = label;
        let mut total = 0.0;
        for (stage, secs) in stages(e) {
            let w = (secs / longest * width).max(1.0);
            let _ = writeln!(
                s,
                "<rect class=\"stage\" x=\"{x:.1}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\"><title>{}: {secs:.2} s</title></rect>",
                y + 3.0,
                row - 6.0,
                colour(&stage),
                esc(&stage)
            );
            x += w;
            total += secs;
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" fill=\"#555\">{total:.1} s</text></g>",
            x + 4.0,
            y + 15.0
        );
    }
    s.push_str("</svg>\n<p class=\"legend\">");
    for (stage, c) in STAGE_COLOURS {
        let _ = write!(s, "<span><i style=\"background:{c}\"></i>{stage}</span>");
    }
    s.push_str("</p>\n");
    s
}

/// A run's stages in the order they ran (the journal keeps them by name).
fn stages(e: &Entry) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = STAGE_COLOURS
        .iter()
        .filter_map(|(s, _)| e.durations.get(*s).map(|d| (s.to_string(), *d)))
        .collect();
    for (k, v) in &e.durations {
        // `total` is the sum; `flip` is a time since the start, not a stage.
        if !STAGE_COLOURS.iter().any(|(s, _)| s == k) && k != "total" {
            out.push((k.clone(), *v));
        }
    }
    out.retain(|(s, _)| s != "flip");
    // A promote records only its total: one bar.
    if out.is_empty() {
        if let Some(total) = e.durations.get("total") {
            out.push(("total".into(), *total));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn hostile_text_is_escaped() {
        assert_eq!(
            esc("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(
            esc("\"><img src=x onerror=alert(1)>"),
            "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(esc("a'b&c"), "a&#39;b&amp;c");
        assert_eq!(esc("bell\u{7}"), "bell&#x2407;");
    }
}
