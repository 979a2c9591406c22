//! `symdeploy status [--json|--check|--prometheus]`: production, warmup and
//! previous, each with its commit, subject, when and by whom; the deploy
//! branch's tip and whether it is warmed up; the lock holder; interrupted
//! runs. A broken deploy.toml is reported first, then everything else that
//! can be read without it: status is what an operator runs when things are
//! wrong.

use std::fmt::Write as _;

use serde::Serialize;

use crate::ctx::Ctx;
use crate::error::Result;
use crate::state::commit::Commit;
use crate::state::config::Config;
use crate::state::journal::{self, Event, LineKind, Outcome};
use crate::state::release;
use crate::state::release_name::Recorded;
use crate::sys::output;
use crate::sys::time::Time;

/// One pointed-at release, as status shows it.
#[derive(Debug, Serialize)]
pub(crate) struct Slot {
    /// The commit.
    pub(crate) commit: Commit,
    /// Release directory, relative to the root.
    pub(crate) release: String,
    /// Its state (ready, bad, ...).
    pub(crate) state: release::Effective,
    /// Commit subject.
    pub(crate) subject: String,
    /// When it took this role, if the journal knows.
    pub(crate) since: Option<Time>,
    /// Who put it there, if the journal knows.
    pub(crate) by: Option<String>,
    /// The schema it knows, when migrations are tracked (`schema N (newest)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) schema: Option<String>,
    /// Can a rollback reach it without undoing migrations (tracked only)?
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reachable: Option<bool>,
}

/// Everything status reports.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    /// The deploy root.
    pub(crate) root: String,
    /// What production points at.
    pub(crate) production: Option<Slot>,
    /// What warmup points at.
    pub(crate) warmup: Option<Slot>,
    /// The production release before the current one (rollback's target).
    pub(crate) previous: Option<Slot>,
    /// Who holds the deploy lock, if anyone.
    pub(crate) lock: Option<String>,
    /// Runs that started and never finished.
    pub(crate) interrupted: Vec<journal::Entry>,
    /// Preview environments, most recently pushed first.
    pub(crate) previews: Vec<crate::deploy::preview::PreviewRow>,
    /// deploy.toml's error, when it cannot be read (the defaults stand in).
    pub(crate) config_error: Option<String>,
    /// The deploy branch's tip and whether it is warmed up.
    pub(crate) tip: Option<Tip>,
    /// The newest finished warm-up.
    pub(crate) last_warmup: Option<journal::Entry>,
    /// The newest finished promote or rollback.
    pub(crate) last_promote: Option<journal::Entry>,
    /// Seconds the deploy lock has been held, if it is.
    pub(crate) lock_held_seconds: Option<u64>,
    /// Free bytes on the root's filesystem.
    pub(crate) free_bytes: Option<u64>,
    /// What min_free keeps free there (0 when off).
    pub(crate) min_free_bytes: u64,
    /// Release directories by state.
    pub(crate) releases: std::collections::BTreeMap<String, u64>,
    /// Production and warmup checked against their manifests (only for
    /// --check and --prometheus: hashing a release is not free).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) drift: Vec<DriftRow>,
    /// git ref lock files left behind (a killed push), each with what to run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) ref_locks: Vec<String>,
    /// Releases a cleanup could not remove, each with what is in the way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) stuck_releases: Vec<String>,
    /// The watch of production under way after a promote, if any.
    pub(crate) watch: Option<Watch>,
}

/// The watch of production after a promote, as status shows it.
#[derive(Debug, Serialize)]
pub(crate) struct Watch {
    /// The watched release's commit.
    pub(crate) commit: Option<Commit>,
    /// When the window ends.
    pub(crate) until: Time,
    /// Checks run so far.
    pub(crate) checks: u64,
    /// Of those, how many passed.
    pub(crate) checks_ok: u64,
    /// Checks the window holds.
    pub(crate) checks_total: u64,
    /// Is the watcher process alive? (Not: it died; `recover` ends it.)
    pub(crate) alive: bool,
    /// The watcher's pid.
    pub(crate) pid: u32,
}

/// A pointed-at release checked against its manifest.
#[derive(Debug, Serialize)]
pub(crate) struct DriftRow {
    /// `production`, `warmup` (or both, comma-separated).
    pub(crate) role: String,
    /// The release's commit.
    pub(crate) release: Commit,
    /// Does it have a manifest at all?
    pub(crate) manifest: bool,
    /// Differences by kind (every kind, zeros included).
    pub(crate) counts: std::collections::BTreeMap<&'static str, usize>,
    /// The first few differences, `kind: path`.
    pub(crate) first: Vec<String>,
}

impl DriftRow {
    fn total(&self) -> usize {
        self.counts.values().sum()
    }
}

/// Check production and warmup against their manifests.
pub(crate) fn drift_rows(ctx: &Ctx) -> Vec<DriftRow> {
    let depth = match ctx.config.promote.verify {
        crate::state::config::VerifyMode::Metadata => crate::state::manifest::Depth::Metadata,
        _ => crate::state::manifest::Depth::Full,
    };
    let mut rows: Vec<DriftRow> = Vec::new();
    for (role, commit) in [
        ("production", ctx.root.production()),
        ("warmup", ctx.root.warmup()),
    ] {
        let Some(commit) = commit else { continue };
        if let Some(row) = rows.iter_mut().find(|r| r.release == commit) {
            row.role.push_str(&format!(",{role}"));
            continue;
        }
        if !ctx.root.main_release(commit).is_dir() {
            continue;
        }
        let checked = match crate::deploy::verify::check(ctx, &commit.into(), depth) {
            Ok(c) => c,
            Err(e) => {
                output::warning(&format!("cannot verify releases/{}: {e}", commit.short()));
                continue;
            }
        };
        let drift = checked.drift();
        rows.push(DriftRow {
            role: role.to_string(),
            manifest: !matches!(checked.finding, crate::deploy::verify::Finding::NoManifest),
            counts: crate::deploy::verify::counts(drift)
                .into_iter()
                .map(|(k, n)| (k.into(), n))
                .collect(),
            first: drift
                .iter()
                .take(3)
                .map(|d| format!("{}: {}", d.kind, crate::deploy::verify::shown(&d.path)))
                .collect(),
            release: commit,
        });
    }
    rows
}

/// The deploy branch's newest commit and how far it got.
#[derive(Debug, Serialize)]
pub(crate) struct Tip {
    /// The branch name.
    pub(crate) branch: String,
    /// Its commit.
    pub(crate) commit: Commit,
    /// Does warmup point at it?
    pub(crate) warmed_up: bool,
    /// Its release's state (ready, failed, incomplete, ...); `None`, shown
    /// as "none", when it has neither a release directory nor a record.
    #[serde(serialize_with = "state_or_none")]
    pub(crate) state: Option<release::Effective>,
    /// Why it is not warmed up, when a warm-up of it failed.
    pub(crate) error: Option<String>,
    /// The run log of its last warm-up.
    pub(crate) log: Option<String>,
    /// Did its last warm-up fail (or was it refused by a broken deploy.toml)?
    pub(crate) failed: bool,
}

/// `"none"` for a tip without a release, else its state's word.
fn state_or_none<S: serde::Serializer>(
    state: &Option<release::Effective>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(state.as_ref().map_or("none", AsRef::as_ref))
}

/// Which pointer a [`Slot`] shows, i.e. where its `since` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    /// production or previous: when it took production (production.json).
    Production,
    /// warmup: when its warm-up ended (the release record).
    Warmup,
}

fn slot(
    ctx: &Ctx,
    commit: Option<Commit>,
    kind: SlotKind,
    stack: &[journal::ProductionChange],
) -> Option<Slot> {
    let commit = commit?;
    let record = release::load(&ctx.root, &commit.into());
    // Production: when and by whom it took production (production.json).
    // Warmup: the record's ready time and pusher, which is when its warm-up
    // ended; no history is read either way.
    let last: Option<(Time, String)> = if kind == SlotKind::Warmup {
        None
    } else {
        stack
            .iter()
            .rev()
            .find(|c| c.commit == commit)
            .map(|c| (c.time.clone(), c.user.clone()))
    };
    let schema = crate::state::schema::describe(ctx, commit);
    Some(Slot {
        reachable: schema.as_ref().map(|s| s.1),
        schema: schema.map(|s| s.0),
        release: format!("releases/{commit}"),
        state: release::effective_state(&ctx.root, &commit.into()),
        subject: record
            .as_ref()
            .map(|r| r.subject.clone())
            .unwrap_or_default(),
        since: last
            .as_ref()
            .map(|l| l.0.clone())
            .or_else(|| record.as_ref().and_then(|r| r.ready_at.clone())),
        by: last
            .map(|l| l.1)
            .or_else(|| record.as_ref().map(|r| r.user.clone())),
        commit,
    })
}

/// How far back the journal is read for the last runs (a bound, so status
/// stays fast on a long history).
const SCAN_LIMIT: usize = 5000;

/// The newest finished warm-up, the newest finished promote or rollback, and
/// the newest finished warm-up of `tip`.
fn last_runs(
    ctx: &Ctx,
    tip: Option<Commit>,
) -> (
    Option<journal::Entry>,
    Option<journal::Entry>,
    Option<journal::Entry>,
) {
    let (mut warm, mut promote, mut of_tip) = (None, None, None);
    let mut seen = 0;
    journal::for_each_rev(&ctx.root, |e| {
        seen += 1;
        if e.phase == LineKind::End {
            if e.event == Event::Warmup {
                if of_tip.is_none()
                    && tip.is_some()
                    && e.commit.as_ref().and_then(Recorded::main) == tip
                {
                    of_tip = Some(e.clone());
                }
                if warm.is_none() {
                    warm = Some(e);
                }
            } else if (e.event.switches()
                || (e.event == Event::Watch && e.result == Some(Outcome::RolledBack)))
                && promote.is_none()
            {
                promote = Some(e);
            }
        }
        let done = warm.is_some() && promote.is_some() && (tip.is_none() || of_tip.is_some());
        if done || seen >= SCAN_LIMIT {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    (warm, promote, of_tip)
}

fn branch_tip(ctx: &Ctx) -> Option<Commit> {
    let repo = crate::state::repo::open(&ctx.root.repository()).ok()?;
    let id = repo
        .find_reference(ctx.config.branch_ref().as_str())
        .ok()?
        .peel_to_id()
        .ok()?;
    crate::state::repo::peel_to_commit(&repo, id.detach(), &ctx.config.branch_ref()).ok()
}

/// Seconds since the lock holder's `since <time>`.
fn held_seconds(holder: &str) -> Option<u64> {
    let since = holder.rsplit_once("since ")?.1.trim();
    let t = Time::parse(since).timestamp()?;
    let secs = jiff::Timestamp::now().as_second() - t.as_second();
    Some(secs.max(0) as u64)
}

/// Gather the status.
pub(crate) fn gather(ctx: &Ctx) -> Status {
    let stack = journal::production_stack(&ctx.root);
    let lock = crate::session::lock::holder(&ctx.root);
    // While a run holds the lock, its own start entry is not an interruption.
    let interrupted = journal::open_runs(&ctx.root)
        .into_iter()
        .filter(|e| {
            lock.as_ref()
                .is_none_or(|l| !l.starts_with(&format!("pid {} ", e.pid)))
        })
        // A watch under way is open for its whole window, not interrupted.
        .filter(|e| !crate::state::watch::watching(&ctx.root, e))
        .collect();
    let tip_commit = branch_tip(ctx);
    let (last_warmup, last_promote, tip_run) = last_runs(ctx, tip_commit);
    let tip = tip_commit.map(|commit| {
        let warmed_up = ctx.root.warmup() == Some(commit);
        let name = commit.into();
        let state = (ctx.root.release(&name).exists() || release::load(&ctx.root, &name).is_some())
            .then(|| release::effective_state(&ctx.root, &name));
        let failed = !warmed_up
            && tip_run
                .as_ref()
                .is_some_and(|r| matches!(r.result, Some(Outcome::Failed | Outcome::Interrupted)));
        Tip {
            branch: ctx.config.branch.clone(),
            warmed_up,
            state,
            error: tip_run
                .as_ref()
                .filter(|_| failed)
                .and_then(|r| r.error.clone()),
            log: tip_run.as_ref().and_then(|r| r.log.clone()),
            failed,
            commit,
        }
    });
    let mut releases = std::collections::BTreeMap::new();
    for c in ctx.root.release_dirs().unwrap_or_default() {
        *releases
            .entry(release::effective_state(&ctx.root, &c.into()).to_string())
            .or_insert(0) += 1;
    }
    let total = nix::sys::statvfs::statvfs(&ctx.root.dir)
        .map(|st| st.blocks() * st.fragment_size())
        .unwrap_or(0);
    let min_free_bytes = if ctx.config.min_free == crate::state::config::MinFree::Off {
        0
    } else {
        ctx.config.min_free.bytes(total)
    };
    let watch = crate::state::watch::current(&ctx.root).map(|c| {
        let p = crate::state::watch::progress(&ctx.root, &c.entry.run);
        Watch {
            commit: c.commit(),
            until: jiff::Timestamp::from_second(c.until)
                .map(Time::at)
                .unwrap_or_default(),
            checks: p.done,
            checks_ok: p.ok,
            checks_total: c.total,
            alive: c.alive(),
            pid: c.pid,
        }
    });
    Status {
        watch,
        config_error: None,
        tip,
        last_warmup,
        last_promote,
        lock_held_seconds: lock.as_deref().and_then(held_seconds),
        free_bytes: crate::sys::fs::free_space(&ctx.root.dir),
        min_free_bytes,
        releases,
        root: ctx.root.dir.display().to_string(),
        production: slot(ctx, ctx.root.production(), SlotKind::Production, &stack),
        warmup: slot(ctx, ctx.root.warmup(), SlotKind::Warmup, &stack),
        previous: slot(
            ctx,
            crate::deploy::pointers::previous_production(ctx),
            SlotKind::Production,
            &stack,
        ),
        lock,
        interrupted,
        previews: crate::deploy::preview::rows(ctx),
        drift: Vec::new(),
        ref_locks: crate::hook::pending::ref_lock_problems(&ctx.root),
        stuck_releases: crate::housekeeping::trash::stuck_releases(&ctx.root),
    }
}

/// The problems `status --check` reports, one line each.
pub(crate) fn problems(s: &Status, lock_timeout: std::time::Duration) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = &s.config_error {
        out.push(format!("deploy.toml cannot be read: {e}"));
    }
    if let Some(t) = &s.tip {
        if t.failed {
            out.push(format!(
                "the tip of {} ({}) is not warmed up: its warm-up failed{}{}",
                t.branch,
                t.commit.short(),
                t.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default(),
                t.log
                    .as_deref()
                    .map(|l| format!(" (log: {l})"))
                    .unwrap_or_default()
            ));
        }
    }
    if let Some(p) = &s.last_promote {
        if p.result == Some(Outcome::RolledBack) {
            out.push(format!(
                "the last {} ({}, {}) was rolled back{}",
                p.event,
                p.commit
                    .as_ref()
                    .map_or_else(|| "?".to_string(), Recorded::label),
                p.time,
                p.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
    }
    if let Some(p) = &s.production {
        if p.state != release::Effective::Ready {
            out.push(format!(
                "production is on releases/{}, which is {}",
                p.commit.short(),
                p.state
            ));
        }
    }
    for e in &s.interrupted {
        out.push(format!(
            "an interrupted {} of {} (started {} by {}, pid {}); `symdeploy recover` repairs it",
            e.event,
            e.commit
                .as_ref()
                .map_or_else(|| "?".to_string(), Recorded::label),
            e.time,
            e.who(),
            e.pid
        ));
    }
    out.extend(s.ref_locks.iter().cloned());
    out.extend(s.stuck_releases.iter().cloned());
    if let (Some(held), Some(who)) = (s.lock_held_seconds, &s.lock) {
        if held > lock_timeout.as_secs() {
            out.push(format!(
                "the deploy lock has been held for {held}s, longer than lock_timeout ({}s): {who}",
                lock_timeout.as_secs()
            ));
        }
    }
    for d in &s.drift {
        let n = d.total();
        if n > 0 {
            out.push(format!(
                "{} (releases/{}) has changed since its warm-up: {}: {}{}; `symdeploy verify {}` lists every change",
                d.role.replace(',', " and "),
                d.release.short(),
                output::count(n as u64, "difference", "differences"),
                d.first.join(", "),
                if n > d.first.len() { ", ..." } else { "" },
                d.release.short()
            ));
        }
    }
    if let Some(free) = s.free_bytes {
        if free < s.min_free_bytes {
            out.push(format!(
                "only {} free on the filesystem of {}, under min_free ({})",
                crate::sys::fs::human_bytes(free),
                s.root,
                crate::sys::fs::human_bytes(s.min_free_bytes)
            ));
        }
    }
    out
}

/// Escape a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The status in the Prometheus text exposition format.
pub(crate) fn prometheus(s: &Status, lock_timeout: std::time::Duration) -> String {
    let mut m = Exposition {
        out: String::new(),
        root: label(&s.root),
    };
    m.config_ok(s);
    m.pointer_info(s);
    m.branch_tip_warmed_up(s);
    m.last_runs(s);
    m.releases(s);
    m.free_bytes(s);
    m.lock_held_seconds(s);
    m.interrupted_runs(s);
    m.watch(s);
    m.drift_files(s);
    m.problems(s, lock_timeout);
    m.out
}

/// Prometheus text being written, one metric family at a time; every
/// sample carries the deploy root as its `root` label.
struct Exposition {
    out: String,
    /// The root, escaped as a label value.
    root: String,
}

impl Exposition {
    /// One family: its HELP and TYPE lines, then its samples (labels, value).
    fn gauge(&mut self, name: &str, help: &str, samples: Vec<(String, f64)>) {
        let o = &mut self.out;
        let _ = writeln!(o, "# HELP symdeploy_{name} {help}");
        let _ = writeln!(o, "# TYPE symdeploy_{name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(o, "symdeploy_{name}{labels} {value}");
        }
    }

    /// The label set of a sample with no label but the root.
    fn root_only(&self) -> String {
        format!("{{root=\"{}\"}}", self.root)
    }

    /// `config_ok`: can deploy.toml be read.
    fn config_ok(&mut self, s: &Status) {
        let labels = self.root_only();
        self.gauge(
            "config_ok",
            "1 if deploy.toml can be read, 0 if not.",
            vec![(labels, f64::from(u8::from(s.config_error.is_none())))],
        );
    }

    /// `production_info` and `warmup_info`: the release each points at.
    fn pointer_info(&mut self, s: &Status) {
        let root = self.root.clone();
        for (name, slot, help) in [
            (
                "production_info",
                &s.production,
                "The release production points at (value 1).",
            ),
            (
                "warmup_info",
                &s.warmup,
                "The release warmup points at (value 1).",
            ),
        ] {
            self.gauge(
                name,
                help,
                slot.iter()
                    .map(|sl| {
                        (
                            // Who put it there: an info metric's labels change
                            // with each deploy anyway.
                            format!(
                                "{{root=\"{root}\",commit=\"{}\",short=\"{}\",state=\"{}\",by=\"{}\"}}",
                                label(sl.commit.as_str()),
                                sl.commit.short(),
                                label(sl.state.as_ref()),
                                label(sl.by.as_deref().unwrap_or_default())
                            ),
                            1.0,
                        )
                    })
                    .collect(),
            );
        }
    }

    /// `branch_tip_warmed_up`: is the deploy branch's tip what warmup serves.
    fn branch_tip_warmed_up(&mut self, s: &Status) {
        let root = &self.root;
        let samples = s
            .tip
            .iter()
            .map(|t| {
                (
                    format!(
                        "{{root=\"{root}\",branch=\"{}\",commit=\"{}\"}}",
                        label(&t.branch),
                        t.commit
                    ),
                    f64::from(u8::from(t.warmed_up)),
                )
            })
            .collect();
        self.gauge(
            "branch_tip_warmed_up",
            "1 if warmup points at the deploy branch's tip, 0 if not.",
            samples,
        );
    }

    /// `last_{warmup,promote}_timestamp_seconds` and `..._success`: when the
    /// newest finished run of each ended and how.
    fn last_runs(&mut self, s: &Status) {
        let root = self.root.clone();
        for (event, run) in [("warmup", &s.last_warmup), ("promote", &s.last_promote)] {
            self.gauge(
                &format!("last_{event}_timestamp_seconds"),
                &format!("When the last {event} ended (Unix time)."),
                run.iter()
                    .filter_map(|r| r.time.unix_seconds())
                    .map(|t| (format!("{{root=\"{root}\"}}"), t))
                    .collect(),
            );
            self.gauge(
                &format!("last_{event}_success"),
                &format!("1 if the last {event} ended ok (or unchanged), 0 if not."),
                run.iter()
                    .map(|r| {
                        let ok = r.result.as_ref().is_some_and(Outcome::succeeded);
                        (
                            format!(
                                "{{root=\"{root}\",result=\"{}\"}}",
                                label(r.result.as_ref().map_or("unknown", Outcome::as_ref))
                            ),
                            f64::from(u8::from(ok)),
                        )
                    })
                    .collect(),
            );
        }
    }

    /// `releases`: release directories by state, the usual states always
    /// present (at 0) so alerts on them never see a missing series.
    fn releases(&mut self, s: &Status) {
        let mut states: std::collections::BTreeMap<String, u64> =
            ["ready", "failed", "bad", "building", "incomplete"]
                .iter()
                .map(|s| (s.to_string(), 0))
                .collect();
        for (k, v) in &s.releases {
            states.insert(k.clone(), *v);
        }
        let root = &self.root;
        let samples = states
            .iter()
            .map(|(k, v)| {
                (
                    format!("{{root=\"{root}\",state=\"{}\"}}", label(k)),
                    *v as f64,
                )
            })
            .collect();
        self.gauge("releases", "Release directories by state.", samples);
    }

    /// `free_bytes`: free space where releases are written (none if unknown).
    fn free_bytes(&mut self, s: &Status) {
        let labels = self.root_only();
        self.gauge(
            "free_bytes",
            "Free bytes on the filesystem of the deploy root.",
            s.free_bytes
                .iter()
                .map(|b| (labels.clone(), *b as f64))
                .collect(),
        );
    }

    /// `lock_held_seconds`: how long the deploy lock has been held.
    fn lock_held_seconds(&mut self, s: &Status) {
        let labels = self.root_only();
        self.gauge(
            "lock_held_seconds",
            "How long the deploy lock has been held (0 when free).",
            vec![(labels, s.lock_held_seconds.unwrap_or(0) as f64)],
        );
    }

    /// `interrupted_runs`: runs that started and never finished.
    fn interrupted_runs(&mut self, s: &Status) {
        let labels = self.root_only();
        self.gauge(
            "interrupted_runs",
            "Runs that started and never finished.",
            vec![(labels, s.interrupted.len() as f64)],
        );
    }

    /// `watch_active`, `watch_checks`, `watch_checks_ok`,
    /// `watch_checks_total` and `watch_until_seconds`: the watch of
    /// production under way after a promote (a dead watcher counts as none).
    fn watch(&mut self, s: &Status) {
        let watching: Vec<&Watch> = s.watch.iter().filter(|w| w.alive).collect();
        let labels = self.root_only();
        self.gauge(
            "watch_active",
            "1 while production is watched after a promote, 0 if not.",
            vec![(labels, f64::from(u8::from(!watching.is_empty())))],
        );
        let root = self.root.clone();
        let labels = |w: &Watch| {
            format!(
                "{{root=\"{root}\",commit=\"{}\"}}",
                label(w.commit.as_ref().map_or("", Commit::as_str))
            )
        };
        for (name, help, value) in [
            (
                "watch_checks",
                "Checks the watch under way has run.",
                (|w: &Watch| w.checks) as fn(&Watch) -> u64,
            ),
            (
                "watch_checks_ok",
                "Checks of the watch under way that passed.",
                |w: &Watch| w.checks_ok,
            ),
            (
                "watch_checks_total",
                "Checks the window of the watch under way holds.",
                |w: &Watch| w.checks_total,
            ),
        ] {
            self.gauge(
                name,
                help,
                watching
                    .iter()
                    .map(|w| (labels(w), value(w) as f64))
                    .collect(),
            );
        }
        self.gauge(
            "watch_until_seconds",
            "When the window of the watch under way ends (Unix seconds).",
            watching
                .iter()
                .map(|w| (labels(w), w.until.unix_seconds().unwrap_or(0.0)))
                .collect(),
        );
    }

    /// `drift_files`: differences from the manifest of production's and
    /// warmup's releases, by kind.
    fn drift_files(&mut self, s: &Status) {
        let root = &self.root;
        let samples = s
            .drift
            .iter()
            .filter(|d| d.manifest)
            .flat_map(|d| {
                d.counts.iter().map(move |(kind, n)| {
                    (
                        format!(
                            "{{root=\"{root}\",release=\"{}\",role=\"{}\",kind=\"{kind}\"}}",
                            label(d.release.as_str()),
                            label(&d.role)
                        ),
                        *n as f64,
                    )
                })
            })
            .collect();
        self.gauge(
            "drift_files",
            "Paths of the release production or warmup points at that differ from its manifest, by kind (none for a release without a manifest).",
            samples,
        );
    }

    /// `problems`: how many problems `status --check` reports.
    fn problems(&mut self, s: &Status, lock_timeout: std::time::Duration) {
        let labels = self.root_only();
        self.gauge(
            "problems",
            "Problems `symdeploy status --check` reports.",
            vec![(labels, problems(s, lock_timeout).len() as f64)],
        );
    }
}

/// `symdeploy status [--json|--check|--prometheus]`.
pub(crate) fn run(
    root: crate::state::root::Root,
    json: bool,
    check: bool,
    prom: bool,
) -> Result<std::process::ExitCode> {
    let (config, config_error) = match Config::load(&root.config_file()) {
        Ok(c) => (c, None),
        Err(e) => (Config::default(), Some(e)),
    };
    let ctx = Ctx { root, config };
    if let (Some(e), false) = (&config_error, json || prom || check) {
        // First, before anything read with the defaults standing in; the
        // exit code below says it again for scripts, without a second line.
        output::report(e);
        output::warning("what follows is read with the default settings");
    }
    let mut s = gather(&ctx);
    if check || prom {
        s.drift = drift_rows(&ctx);
    }
    s.config_error = config_error.as_ref().map(|e| e.to_string());
    // Everything readable is shown, yet a broken deploy.toml is still an
    // error for scripts (exit 5), except to --prometheus (its cron job must
    // write the metrics, config_ok 0 among them) and --check (exit 1).
    let config_failed = || match &config_error {
        Some(e) => Ok(crate::error::exit(e.exit_code())),
        None => Ok(std::process::ExitCode::SUCCESS),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
        return config_failed();
    }
    if prom {
        print!("{}", prometheus(&s, ctx.config.lock_timeout));
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if check {
        let found = problems(&s, ctx.config.lock_timeout);
        if found.is_empty() {
            println!("OK: symdeploy at {}: no problems", s.root);
            return Ok(std::process::ExitCode::SUCCESS);
        }
        println!(
            "PROBLEM: symdeploy at {}: {}",
            s.root,
            output::count(found.len() as u64, "problem", "problems")
        );
        for p in &found {
            println!("- {}", output::escape(p));
        }
        return Ok(std::process::ExitCode::FAILURE);
    }
    print_human(&s);
    config_failed()
}

/// "watching releases/X until HH:MM:SS (3/60 checks ok)".
pub(crate) fn watch_line(w: &Watch) -> String {
    let clock = w
        .until
        .timestamp()
        .map(|t| t.strftime("%H:%M:%S").to_string())
        .unwrap_or_else(|| w.until.to_string());
    let failed = w.checks - w.checks_ok.min(w.checks);
    format!(
        "watch       watching releases/{} until {clock} UTC ({}/{} checks ok{})",
        w.commit.as_ref().map_or("?", Commit::short),
        w.checks_ok,
        w.checks_total,
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    )
}

fn print_human(s: &Status) {
    println!("deploy root {}", s.root);
    for (name, slot) in [
        ("production", &s.production),
        ("warmup", &s.warmup),
        ("previous", &s.previous),
    ] {
        match slot {
            Some(sl) => println!(
                "{name:<11} {} {:<8} {}{}{}",
                sl.commit.short(),
                sl.state,
                crate::sys::output::escape(&sl.subject),
                match (&sl.since, &sl.by) {
                    (Some(t), Some(u)) => format!("  ({} by {u})", t.age()),
                    (Some(t), None) => format!("  ({})", t.age()),
                    _ => String::new(),
                },
                match (&sl.schema, sl.reachable) {
                    (Some(sc), Some(false)) => format!("  {sc}, rollback needs undo"),
                    (Some(sc), _) => format!("  {sc}"),
                    _ => String::new(),
                }
            ),
            None => println!("{name:<11} (none)"),
        }
    }
    match &s.tip {
        Some(t) => println!(
            "{:<11} {} {}",
            output::escape(&t.branch),
            t.commit.short(),
            if t.warmed_up {
                "warmed up (warmup points at it)".to_string()
            } else if t.failed {
                format!(
                    "NOT warmed up: its warm-up failed{}{}",
                    t.error
                        .as_deref()
                        .map(|e| format!(": {}", output::escape(e)))
                        .unwrap_or_default(),
                    t.log
                        .as_deref()
                        .map(|l| format!(" (log: {l})"))
                        .unwrap_or_default()
                )
            } else if let Some(state) = t.state {
                format!("not warmed up (its release is {state}; warmup points elsewhere)")
            } else {
                "not warmed up (no warm-up of it has run)".to_string()
            }
        ),
        None => println!("branch      (not pushed yet)"),
    }
    crate::deploy::preview::print_rows(&s.previews);
    if let Some(w) = s.watch.as_ref().filter(|w| w.alive) {
        println!("{}", watch_line(w));
    }
    match &s.lock {
        Some(h) => println!("lock        held by {h}"),
        None => println!("lock        free"),
    }
    for l in s.ref_locks.iter().chain(&s.stuck_releases) {
        output::warning(l);
    }
    for e in &s.interrupted {
        output::warning(&format!(
            "interrupted {} of {} started {} by {} (pid {}); the next deploy or `symdeploy recover` repairs it",
            e.event,
            e.commit.as_ref().map_or_else(|| "?".to_string(), Recorded::label),
            e.time,
            e.who(),
            e.pid
        ));
    }
}
