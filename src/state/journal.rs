//! The journal: one JSON object a line, appended, never rewritten.
//!
//! Every operation writes a `start` entry before it changes anything and an
//! `end` entry when it is done. A start without its end is an interrupted run,
//! which `status` shows and `recover` repairs.
//!
//! A root lives for years, so nothing here may cost in proportion to its
//! history:
//!
//! - the runs still open are kept as one small file each in
//!   `.symdeploy/open/` (written before the start line, removed after the end
//!   line), so recovery and `status` never read history;
//! - the stack of production releases (what rollback goes back to) is kept in
//!   `.symdeploy/production.json`, updated with every promote or rollback;
//! - `journal.jsonl` is only the current segment: once it is bigger than
//!   `journal_segment_kib`, the next locked command moves it into
//!   `.symdeploy/journal/` as gzip-compressed segments, which `log --all`
//!   still reads, oldest first;
//! - `log -n N` reads backwards from the end.
//!
//! A root written by an older symdeploy (one `journal.jsonl`, no `journal/`)
//! is read as it is and carried forward by the first locked command: one
//! scan finds its open runs and its production history, then the file is
//! rotated into segments like any other.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::state::release_name::{Recorded, ReleaseName};
use crate::state::root::Root;
use crate::sys::time::Time;

/// What a run does: the `event` of its journal lines.
///
/// Spelled in the file exactly as before these were types (kebab-case).
/// A value this build does not know (a newer symdeploy's, a hand edit) is
/// kept as `Other` with its text rather than making the line unreadable: a
/// journal is history, and one odd line must not hide the runs around it
/// from `log`, `status` or recovery. Nothing matches on `Other`, so such a
/// run is shown but never repaired as if it were one of ours.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    strum::AsRefStr,
    strum::Display,
    strum::EnumString,
    strum::VariantNames,
)]
#[strum(serialize_all = "kebab-case")]
pub(crate) enum Event {
    /// A push exported and warmed up a release (`warmup` then points at it).
    Warmup,
    /// `production` moved forward to a release.
    Promote,
    /// `production` moved back to an earlier release.
    Rollback,
    /// Old releases were removed.
    Cleanup,
    /// Interrupted runs were repaired.
    Recover,
    /// A branch's preview was built.
    Preview,
    /// A branch's preview was removed.
    PreviewRemove,
    /// Production was watched for a window after a promote.
    Watch,
    /// Any other text, kept as it was read.
    #[strum(default, transparent)]
    Other(String),
}

impl Event {
    /// Does a finished run of this event move `production`?
    pub(crate) fn switches(&self) -> bool {
        matches!(self, Event::Promote | Event::Rollback)
    }
}

/// Only a placeholder for `..Default::default()` (an entry is always given
/// its real event): an empty `Other`, which nothing acts on.
impl Default for Event {
    fn default() -> Event {
        Event::Other(String::new())
    }
}

/// Which line of a run: its `phase`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    Default,
    strum::AsRefStr,
    strum::Display,
    strum::EnumString,
    strum::VariantNames,
)]
#[strum(serialize_all = "kebab-case")]
pub(crate) enum LineKind {
    /// Written before the run changes anything.
    #[default]
    Start,
    /// Written when the run is done (with its `result`).
    End,
    /// A switch is rolling back: written before it starts, so recovery
    /// finishes the rollback (see `crate::deploy::switch::roll_back`).
    Undo,
    /// A strict-mode flip is prepared while git holds the ref (see `strict`).
    Prepared,
    /// Any other text, kept as it was read (see [`Event`]).
    #[strum(default, transparent)]
    Other(String),
}

/// How a run ended: the `result` of its `end` line (and, on an `undo`
/// line, the state the release is being marked with).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    strum::AsRefStr,
    strum::Display,
    strum::EnumString,
    strum::VariantNames,
)]
#[strum(serialize_all = "kebab-case")]
pub(crate) enum Outcome {
    /// Done as asked.
    Ok,
    /// A step failed; production was not moved (or was moved back).
    Failed,
    /// Production was moved, failed there, and was moved back.
    RolledBack,
    /// Nothing to do (already built, already in production).
    Unchanged,
    /// Ended by a signal, or found unfinished by recovery.
    Interrupted,
    /// Built while git held the ref (strict mode); stands once git accepts it.
    Built,
    /// Git refused the push after the build (strict mode).
    Rejected,
    /// An `undo` line: the release is being marked bad (failed in production).
    Bad,
    /// A watch ended early: production moved, or `symdeploy watch stop`.
    Ended,
    /// Any other text, kept as it was read (see [`Event`]).
    #[strum(default, transparent)]
    Other(String),
}

crate::sys::word::serde_as_word!(Event, LineKind, Outcome);

impl Outcome {
    /// Did the run leave things as asked (done now, or already so)?
    pub(crate) fn succeeded(&self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Unchanged)
    }
}

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub(crate) struct Entry {
    /// When the line was written.
    pub(crate) time: Time,
    /// Identifies one run: its start and end share it.
    pub(crate) run: String,
    /// What the run does.
    pub(crate) event: Event,
    /// Which line of the run this is.
    pub(crate) phase: LineKind,
    /// The release: its commit, or a preview's release name (the field
    /// keeps its old name, `commit`, in the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) commit: Option<Recorded>,
    /// The ref pushed or given.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub(crate) git_ref: Option<String>,
    /// The Unix user it ran as (the deploy user, over SSH).
    pub(crate) user: String,
    /// Who deployed: the name `symdeploy shell NAME` was given (its SSH
    /// key's), else the Unix user. Absent in entries written before names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) by: Option<String>,
    /// The principal and key fingerprint of the release tag's signature
    /// (`promote.signers`), as git verified it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signer: Option<String>,
    /// Promoted without a signed release tag on purpose (`--unsigned`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) unsigned: bool,
    /// Which host.
    #[serde(default)]
    pub(crate) host: String,
    /// The process.
    #[serde(default)]
    pub(crate) pid: u32,
    /// How the run ended (end entries; undo entries: the state marked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<Outcome>,
    /// The production release before this run (promote, rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) previous: Option<Recorded>,
    /// Seconds per stage.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) durations: BTreeMap<String, f64>,
    /// What went wrong, for failed runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// The per-deploy log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) log: Option<String>,
    /// A strict-mode flip made while git held the ref locked: whether it
    /// stands depends on what git does with the ref (see `crate::hook::strict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) txn: Option<crate::state::journal::GitTxn>,
    /// The step commands a promote/rollback runs, as configured when it
    /// started: a recovery runs these, not what deploy.toml says later.
    /// Absent in entries written before symdeploy recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) commands: Option<Commands>,
    /// What a switch did about the database schema when it matters: the
    /// migrations it undid, or that it left the schema ahead of the code
    /// (`--keep-schema`, or an automatic rollback that had to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) schema: Option<String>,
}

/// The promote steps a switch runs, recorded in its start entry.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub(crate) struct Commands {
    /// promote.stop
    #[serde(default)]
    pub(crate) stop: Vec<String>,
    /// promote.after_switch
    #[serde(default)]
    pub(crate) after_switch: Vec<String>,
    /// promote.start
    #[serde(default)]
    pub(crate) start: Vec<String>,
    /// promote.check
    #[serde(default)]
    pub(crate) check: Vec<String>,
    /// promote.notify
    #[serde(default)]
    pub(crate) notify: Vec<String>,
}

impl Commands {
    /// The commands of `promote` as configured now.
    pub(crate) fn of(promote: &crate::state::config::Promote) -> Commands {
        Commands {
            stop: promote.stop.clone(),
            after_switch: promote.after_switch.clone(),
            start: promote.start.clone(),
            check: promote.check.clone(),
            notify: promote.notify.clone(),
        }
    }

    /// `promote` with these commands in place of its own (timeouts and
    /// the tag glob stay as configured).
    pub(crate) fn apply(
        &self,
        promote: &crate::state::config::Promote,
    ) -> crate::state::config::Promote {
        crate::state::config::Promote {
            stop: self.stop.clone(),
            after_switch: self.after_switch.clone(),
            start: self.start.clone(),
            check: self.check.clone(),
            notify: self.notify.clone(),
            ..promote.clone()
        }
    }
}

impl Entry {
    /// Who deployed, for people: the name, else the Unix user (old entries).
    pub(crate) fn who(&self) -> &str {
        self.by.as_deref().unwrap_or(&self.user)
    }

    /// `lead (deploy@host)` for a named deployer, `deploy@host` as before names.
    pub(crate) fn who_where(&self) -> String {
        match &self.by {
            Some(by) if *by != self.user => format!("{by} ({}@{})", self.user, self.host),
            _ => format!("{}@{}", self.user, self.host),
        }
    }

    /// A start entry for a new run.
    pub(crate) fn start(
        event: Event,
        release: Option<&ReleaseName>,
        git_ref: Option<&str>,
    ) -> Entry {
        // Only a promote is authorized by a signature.
        let authority = matches!(event, Event::Promote)
            .then(crate::sys::deployer::authority)
            .flatten();
        Entry {
            time: Time::now(),
            run: crate::sys::fs::unique_token(),
            event,
            phase: LineKind::Start,
            commit: release.cloned().map(Recorded::Release),
            git_ref: git_ref.map(str::to_string),
            user: crate::sys::fs::current_user(),
            by: Some(crate::sys::deployer::by()),
            signer: authority
                .as_ref()
                .and_then(|a| a.signer.as_ref().map(|s| s.to_string())),
            unsigned: authority.as_ref().is_some_and(|a| a.unsigned),
            host: crate::sys::fs::hostname(),
            pid: std::process::id(),
            log: crate::sys::output::log_path().map(|p| p.display().to_string()),
            ..Default::default()
        }
    }

    /// The matching end entry.
    pub(crate) fn end(&self, result: Outcome) -> Entry {
        Entry {
            time: Time::now(),
            phase: LineKind::End,
            result: Some(result),
            // Recorded once, in the start entry, which is what recovery reads.
            commands: None,
            ..self.clone()
        }
    }

    /// The end of a strict run git did not keep (`rejected`), written by
    /// this process, saying which ref and why.
    pub(crate) fn rejected(&self, git_ref: &str, why: &str) -> Entry {
        let mut end = self.end(Outcome::Rejected);
        end.pid = std::process::id();
        end.error = Some(format!("{git_ref}: {why}"));
        end
    }
}

/// ROOT/.symdeploy/open: one file per run that started and has not ended.
pub(crate) fn open_dir(root: &Root) -> PathBuf {
    root.journal_open()
}

/// ROOT/.symdeploy/journal: the older, compressed segments. Its presence also
/// says the root's state was carried forward from the single-file format.
pub(crate) fn segments_dir(root: &Root) -> PathBuf {
    root.journal_segments()
}

/// ROOT/.symdeploy/production.json: the stack of production releases.
pub(crate) fn production_file(root: &Root) -> PathBuf {
    root.production_history()
}

/// How many production changes `production.json` remembers: rollback goes
/// back to the newest one still ready on disk, and cleanup always keeps the
/// previous production release, so the newest few are what matter; an
/// older one can still be named (`symdeploy rollback RELEASE`).
const PRODUCTION_KEPT: usize = 100;

fn open_file(root: &Root, run: &str) -> PathBuf {
    open_dir(root).join(format!("{}.json", file_stem(run)))
}

/// A run id as part of a file name. Run ids are ours (hex time, pid), but
/// one read back from a file never gets to name another path.
pub(crate) fn file_stem(run: &str) -> String {
    run.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Write `bytes` to `path` atomically and durably.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).at("create directory", dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).at("create a temporary file in", dir)?;
    tmp.write_all(bytes).at("write", tmp.path())?;
    tmp.as_file().sync_data().at("sync", tmp.path())?;
    tmp.persist(path)
        .map_err(|e| Error::io("write", path, e.error))?;
    crate::sys::symlink::sync_dir(dir);
    Ok(())
}

/// Append one entry (one write(2) with O_APPEND, then fsync). A start is
/// first recorded as open, an end afterwards clears it: whatever moment a run
/// dies at, recovery finds it among the open runs.
pub(crate) fn append(root: &Root, entry: &Entry) -> Result<()> {
    let mut line = serde_json::to_vec(entry)
        .map_err(|e| Error::msg(format!("cannot encode a journal entry: {e}")))?;
    if entry.phase == LineKind::Start {
        write_atomic(&open_file(root, &entry.run), &line)?;
    }
    line.push(b'\n');
    append_line(root, &line)?;
    if entry.phase == LineKind::End {
        if (entry.event.switches() && entry.result == Some(Outcome::Ok)) || watch_rolled_back(entry)
        {
            let mut stack = production_stack(root);
            push_production(&mut stack, entry);
            save_production(root, &stack)?;
        }
        let open = open_file(root, &entry.run);
        match std::fs::remove_file(&open) {
            Ok(()) => crate::sys::symlink::sync_dir(&open_dir(root)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &open, e)),
        }
    }
    Ok(())
}

fn append_line(root: &Root, line: &[u8]) -> Result<()> {
    let path = root.journal();
    let mut line = line.to_vec();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)
        .at("open the journal", &path)?;
    // A line torn by a crash or a full disk must not swallow this one: glued
    // to the fragment, it would be unreadable and its run never recovered.
    let len = f.metadata().at("read the journal", &path)?.len();
    if len > 0 {
        use std::os::unix::fs::FileExt;
        let mut last = [0u8];
        f.read_exact_at(&mut last, len - 1)
            .at("read the journal", &path)?;
        if last[0] != b'\n' {
            line.insert(0, b'\n');
        }
    }
    f.write_all(&line).at("append to the journal", &path)?;
    f.sync_data().at("sync the journal", &path)?;
    Ok(())
}

fn parse_line(l: &[u8]) -> Option<Entry> {
    let l = l.trim_ascii();
    if l.is_empty() {
        return None;
    }
    match serde_json::from_slice(l) {
        Ok(e) => Some(e),
        Err(err) => {
            tracing::warn!("skipping an unreadable journal line: {err}");
            None
        }
    }
}

/// One production change, as `production.json` keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ProductionChange {
    /// The release production went to.
    pub(crate) commit: Recorded,
    /// When.
    pub(crate) time: Time,
    /// Who did it.
    pub(crate) user: String,
}

/// Apply one finished run to the production stack: promotes push, rollbacks
/// pop back to their target.
pub(crate) fn push_production(stack: &mut Vec<ProductionChange>, e: &Entry) {
    let watch_back = watch_rolled_back(e);
    if e.phase != LineKind::End || (e.result != Some(Outcome::Ok) && !watch_back) {
        return;
    }
    // A watch that rolled back moved production back to its `previous`.
    let target = if watch_back {
        e.previous.clone()
    } else {
        e.commit.clone()
    };
    let Some(c) = target else { return };
    let change = ProductionChange {
        commit: c.clone(),
        time: e.time.clone(),
        user: e.who().to_string(),
    };
    match e.event {
        Event::Promote if stack.last().map(|s| &s.commit) != Some(&c) => stack.push(change),
        Event::Promote => {}
        Event::Rollback | Event::Watch => {
            if let Some(pos) = stack.iter().rposition(|s| s.commit == c) {
                stack.truncate(pos + 1);
                stack[pos] = change;
            } else {
                stack.push(change);
            }
        }
        _ => {}
    }
    if stack.len() > PRODUCTION_KEPT {
        stack.drain(..stack.len() - PRODUCTION_KEPT);
    }
}

/// A watch run that ended by rolling production back: a production change.
fn watch_rolled_back(e: &Entry) -> bool {
    e.event == Event::Watch && e.phase == LineKind::End && e.result == Some(Outcome::RolledBack)
}

/// The stack of production releases, oldest first, with when and by whom
/// each took production. Read from `production.json`; a root from before it
/// existed is read from its whole journal once.
pub(crate) fn production_stack(root: &Root) -> Vec<ProductionChange> {
    if let Ok(text) = std::fs::read(production_file(root)) {
        if let Ok(stack) = serde_json::from_slice(&text) {
            return stack;
        }
        tracing::warn!("production.json is unreadable; rebuilding it from the journal");
    }
    let mut stack = Vec::new();
    let _ = for_each(root, |e| {
        push_production(&mut stack, &e);
        ControlFlow::Continue(())
    });
    stack
}

fn save_production(root: &Root, stack: &[ProductionChange]) -> Result<()> {
    let json = serde_json::to_vec_pretty(stack)
        .map_err(|e| Error::msg(format!("cannot encode production.json: {e}")))?;
    write_atomic(&production_file(root), &json)
}

/// Has the root been carried forward from the single-file journal?
fn migrated(root: &Root) -> bool {
    segments_dir(root).is_dir()
}

/// Runs that started and never ended, oldest first. Reads only the open-run
/// files (and, for each, the end of the current segment, in case its end was
/// written but the process died before clearing it); on a root not yet
/// carried forward, scans the old single-file journal.
pub(crate) fn open_runs(root: &Root) -> Vec<Entry> {
    if !migrated(root) {
        return scan_open(root);
    }
    let Ok(dir) = std::fs::read_dir(open_dir(root)) else {
        return Vec::new();
    };
    let mut open: Vec<Entry> = dir
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|d| std::fs::read(d.path()).ok())
        .filter_map(|b| serde_json::from_slice::<Entry>(&b).ok())
        .filter(|e| !ended_in_current_segment(root, &e.run))
        .collect();
    open.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.run.cmp(&b.run)));
    open
}

/// Does the current segment hold the end of `run`? Reads backwards from the
/// end, up to the run's start (an end always follows its start, and no
/// rotation runs between an end and the removal of its open-run file).
fn ended_in_current_segment(root: &Root, run: &str) -> bool {
    let mut ended = false;
    let _ = rev_file(&root.journal(), &mut |e: Entry| {
        if e.run == run {
            ended = e.phase == LineKind::End;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    ended
}

/// Every run that started and never ended, by one pass over all history
/// (keeping only the open ones in memory).
fn scan_open(root: &Root) -> Vec<Entry> {
    let mut open: HashMap<String, Entry> = HashMap::new();
    let mut order = Vec::new();
    let _ = for_each(root, |e| {
        match e.phase {
            LineKind::Start => {
                order.push(e.run.clone());
                open.insert(e.run.clone(), e);
            }
            LineKind::End => {
                open.remove(&e.run);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    });
    order.into_iter().filter_map(|r| open.remove(&r)).collect()
}

/// Carry a root written by an older symdeploy forward (with the lock held):
/// one pass finds its open runs and production history, then `journal/`
/// marks it done. Safe to repeat if interrupted.
pub(crate) fn migrate(root: &Root) -> Result<()> {
    if migrated(root) {
        return Ok(());
    }
    let open = scan_open(root);
    for e in &open {
        let json = serde_json::to_vec(e)
            .map_err(|err| Error::msg(format!("cannot encode a journal entry: {err}")))?;
        write_atomic(&open_file(root, &e.run), &json)?;
    }
    if !production_file(root).exists() {
        let mut stack = Vec::new();
        for_each(root, |e| {
            push_production(&mut stack, &e);
            ControlFlow::Continue(())
        })?;
        save_production(root, &stack)?;
    }
    let dir = segments_dir(root);
    std::fs::create_dir_all(&dir).at("create directory", &dir)?;
    crate::sys::symlink::sync_dir(&root.state_dir());
    Ok(())
}

/// A finished segment in `journal/`: `<rotation>-<part>.jsonl.gz`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Segment {
    rotation: u64,
    part: u64,
    path: PathBuf,
}

/// The compressed segments, oldest first, and the file of a rotation that
/// was interrupted (if any; its parts are then ignored, it is redone).
fn segments(root: &Root) -> (Vec<Segment>, Option<(u64, PathBuf)>) {
    let mut out = Vec::new();
    let mut rotating = None;
    let Ok(dir) = std::fs::read_dir(segments_dir(root)) else {
        return (out, None);
    };
    for d in dir.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("rotating-")
            .and_then(|r| r.strip_suffix(".jsonl"))
            .and_then(|r| r.parse().ok())
        {
            rotating = Some((n, d.path()));
            continue;
        }
        let Some((r, p)) = name
            .strip_suffix(".jsonl.gz")
            .and_then(|s| s.split_once('-'))
        else {
            continue;
        };
        if let (Ok(rotation), Ok(part)) = (r.parse(), p.parse()) {
            out.push(Segment {
                rotation,
                part,
                path: d.path(),
            });
        }
    }
    if let Some((n, _)) = &rotating {
        out.retain(|s| s.rotation != *n);
    }
    out.sort();
    (out, rotating)
}

/// Move the current segment into compressed segments of about `max_bytes`
/// (uncompressed) each once it is bigger than that; with the lock held.
/// Also finishes a rotation a crash interrupted.
pub(crate) fn rotate(root: &Root, max_bytes: u64) -> Result<()> {
    if !migrated(root) {
        return Ok(());
    }
    let (segs, rotating) = segments(root);
    let (rotation, source) = match rotating {
        Some(r) => r,
        None => {
            let size = std::fs::metadata(root.journal()).map_or(0, |m| m.len());
            if size < max_bytes.max(1) {
                return Ok(());
            }
            let n = segs.last().map_or(1, |s| s.rotation + 1);
            let source = segments_dir(root).join(format!("rotating-{n:06}.jsonl"));
            std::fs::rename(root.journal(), &source).at("move the journal to", &source)?;
            crate::sys::symlink::sync_dir(&root.state_dir());
            crate::sys::symlink::sync_dir(&segments_dir(root));
            (n, source)
        }
    };
    split_into_segments(root, rotation, &source, max_bytes.max(1))?;
    std::fs::remove_file(&source).at("remove", &source)?;
    crate::sys::symlink::sync_dir(&segments_dir(root));
    Ok(())
}

/// Bytes of the newest entries that a rotation puts in a part of their own.
const TAIL_PART: u64 = 16 * 1024;

fn split_into_segments(root: &Root, rotation: u64, source: &Path, max: u64) -> Result<()> {
    let dir = segments_dir(root);
    // Parts of an interrupted attempt are redone from the source.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let prefix = format!("{rotation:06}-");
        for d in entries.flatten() {
            if d.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(d.path());
            }
        }
    }
    let input = std::fs::File::open(source).at("read", source)?;
    let size = input.metadata().at("read", source)?.len();
    // The newest entries get a small part of their own: right after a
    // rotation, `log -n` inflates that, not a whole segment.
    let tail_start = size.saturating_sub(TAIL_PART);
    let mut input = std::io::BufReader::with_capacity(256 * 1024, input);
    let mut part = 0u64;
    let mut line = Vec::new();
    let mut pos = 0u64;
    let mut in_tail = false;
    loop {
        part += 1;
        let path = dir.join(format!("{rotation:06}-{part:04}.jsonl.gz"));
        let tmp = dir.join(format!(".tmp-{rotation:06}-{part:04}.jsonl.gz"));
        let file = std::fs::File::create(&tmp).at("create", &tmp)?;
        // Fast level: the first rotation of an old root's journal runs
        // under the lock, and JSON compresses well at any level.
        let mut gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(file),
            flate2::Compression::fast(),
        );
        let mut written = 0u64;
        let mut eof = false;
        while written < max {
            if !in_tail && pos >= tail_start {
                in_tail = true;
                if written > 0 {
                    break;
                }
            }
            line.clear();
            let n = input.read_until(b'\n', &mut line).at("read", source)?;
            if n == 0 {
                eof = true;
                break;
            }
            pos += n as u64;
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            gz.write_all(&line).at("write", &tmp)?;
            written += line.len() as u64;
        }
        let file = gz
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .at("write", &tmp)?;
        file.sync_all().at("sync", &tmp)?;
        if written == 0 {
            let _ = std::fs::remove_file(&tmp);
            break;
        }
        std::fs::rename(&tmp, &path).at("rename into place", &path)?;
        if eof {
            break;
        }
    }
    Ok(())
}

/// Read backwards through one plain file, newest entry first, in chunks:
/// memory and time follow what is read, not the file's size.
fn rev_file(path: &Path, f: &mut dyn FnMut(Entry) -> ControlFlow<()>) -> ControlFlow<()> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return ControlFlow::Continue(());
    };
    let Ok(mut pos) = file.seek(SeekFrom::End(0)) else {
        return ControlFlow::Continue(());
    };
    const CHUNK: u64 = 64 * 1024;
    // Bytes after the last line break seen, i.e. the start of a later line.
    let mut tail: Vec<u8> = Vec::new();
    while pos > 0 {
        let take = CHUNK.min(pos);
        pos -= take;
        let mut buf = vec![0u8; take as usize];
        if file.seek(SeekFrom::Start(pos)).is_err() || file.read_exact(&mut buf).is_err() {
            return ControlFlow::Continue(());
        }
        buf.extend_from_slice(&tail);
        let mut end = buf.len();
        while let Some(nl) = buf[..end].iter().rposition(|&b| b == b'\n') {
            if let Some(e) = parse_line(&buf[nl + 1..end]) {
                f(e)?;
            }
            end = nl;
        }
        buf.truncate(end);
        tail = buf;
    }
    if let Some(e) = parse_line(&tail) {
        f(e)?;
    }
    ControlFlow::Continue(())
}

fn gz_text(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(f)).read_to_end(&mut out);
    }
    out
}

/// Visit every entry, newest first, across all segments, until `f` breaks.
pub(crate) fn for_each_rev(root: &Root, mut f: impl FnMut(Entry) -> ControlFlow<()>) {
    if rev_file(&root.journal(), &mut f).is_break() {
        return;
    }
    let (segs, rotating) = segments(root);
    if let Some((_, path)) = rotating {
        if rev_file(&path, &mut f).is_break() {
            return;
        }
    }
    for s in segs.iter().rev() {
        // A segment is at most journal_segment_kib uncompressed.
        let text = gz_text(&s.path);
        for l in text.split(|&b| b == b'\n').rev() {
            if let Some(e) = parse_line(l) {
                if f(e).is_break() {
                    return;
                }
            }
        }
    }
}

/// Visit every entry, oldest first, across all segments (streamed: memory
/// does not grow with history), until `f` breaks.
pub(crate) fn for_each(root: &Root, mut f: impl FnMut(Entry) -> ControlFlow<()>) -> Result<()> {
    let (segs, rotating) = segments(root);
    let mut visit = |reader: &mut dyn BufRead, path: &Path| -> Result<ControlFlow<()>> {
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).at("read", path)? == 0 {
                return Ok(ControlFlow::Continue(()));
            }
            if let Some(e) = parse_line(&line) {
                if f(e).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
    };
    for s in &segs {
        let file = std::fs::File::open(&s.path).at("read", &s.path)?;
        let mut r = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
            std::io::BufReader::new(file),
        ));
        if visit(&mut r, &s.path)?.is_break() {
            return Ok(());
        }
    }
    for path in rotating.map(|r| r.1).into_iter().chain([root.journal()]) {
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        if visit(&mut std::io::BufReader::new(file), &path)?.is_break() {
            return Ok(());
        }
    }
    Ok(())
}

/// Every readable entry, oldest first, across all segments. A torn line (a
/// crash mid-write) is skipped, not fatal. Memory grows with history: for
/// tests; commands use `for_each`/`for_each_rev`.
#[cfg(test)]
pub(crate) fn read(root: &Root) -> Vec<Entry> {
    let mut out = Vec::new();
    let _ = for_each(root, |e| {
        out.push(e);
        ControlFlow::Continue(())
    });
    out
}

/// Runs that started and never ended, oldest first.
#[cfg(test)]
pub(crate) fn interrupted(entries: &[Entry]) -> Vec<&Entry> {
    let ended: std::collections::HashSet<&str> = entries
        .iter()
        .filter(|e| e.phase == LineKind::End)
        .map(|e| e.run.as_str())
        .collect();
    entries
        .iter()
        .filter(|e| e.phase == LineKind::Start && !ended.contains(e.run.as_str()))
        .collect()
}

/// Which git ref transaction a strict run belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct GitTxn {
    /// The receive-pack process that runs the transaction.
    pub(crate) receive_pack: u32,
    /// Its start time (clock ticks after boot, /proc/PID/stat), so a reused
    /// pid is never mistaken for it.
    pub(crate) started: u64,
    /// The value pushed for the ref (a tag object for annotated tags).
    pub(crate) new: String,
    /// Where warmup pointed before this run: where an undo puts it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) warmup_before: Option<Recorded>,
    /// For a preview: the release `previews/<slug>` pointed at before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) preview_before: Option<Recorded>,
}

impl GitTxn {
    /// Is its receive-pack still running, i.e. has git not decided yet?
    pub(crate) fn undecided(&self) -> bool {
        crate::sys::fs::start_time(self.receive_pack) == Some(self.started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A start entry naming `commit` as written (a name the tests make up,
    /// kept as the text it is, as an old journal's odd value would be).
    fn start(event: Event, commit: Option<&str>, git_ref: Option<&str>) -> Entry {
        Entry {
            commit: commit.map(Recorded::from),
            ..Entry::start(event, None, git_ref)
        }
    }

    fn root() -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        std::fs::create_dir_all(root.state_dir()).unwrap();
        (t, root)
    }

    #[test]
    fn start_without_end_is_interrupted() {
        let a = start(Event::Warmup, Some("c1"), Some("refs/heads/main"));
        let b = Entry {
            run: "other".into(),
            ..start(Event::Promote, Some("c2"), None)
        };
        let entries = vec![a.clone(), b.clone(), a.end(Outcome::Ok)];
        let open = interrupted(&entries);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].event, Event::Promote);
    }

    /// Every variant against the exact text the string-typed journal wrote.
    #[test]
    fn every_variant_is_spelled_as_before() {
        fn check<T>(cases: &[(T, &str)])
        where
            T: Serialize
                + serde::de::DeserializeOwned
                + PartialEq
                + std::fmt::Debug
                + std::fmt::Display
                + AsRef<str>,
        {
            for (v, text) in cases {
                let json = format!("\"{text}\"");
                assert_eq!(serde_json::to_string(v).unwrap(), json, "{v:?}");
                assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), v, "{text}");
                assert_eq!(v.as_ref(), *text);
                assert_eq!(v.to_string(), *text);
                // People's columns are padded as before.
                assert_eq!(format!("{v:<16}|"), format!("{text:<16}|"));
            }
        }
        check(&[
            (Event::Warmup, "warmup"),
            (Event::Promote, "promote"),
            (Event::Rollback, "rollback"),
            (Event::Cleanup, "cleanup"),
            (Event::Recover, "recover"),
            (Event::Preview, "preview"),
            (Event::PreviewRemove, "preview-remove"),
            (Event::Other("deploy".into()), "deploy"),
        ]);
        check(&[
            (LineKind::Start, "start"),
            (LineKind::End, "end"),
            (LineKind::Undo, "undo"),
            (LineKind::Prepared, "prepared"),
            (LineKind::Other("paused".into()), "paused"),
        ]);
        check(&[
            (Outcome::Ok, "ok"),
            (Outcome::Failed, "failed"),
            (Outcome::RolledBack, "rolled-back"),
            (Outcome::Unchanged, "unchanged"),
            (Outcome::Interrupted, "interrupted"),
            (Outcome::Built, "built"),
            (Outcome::Rejected, "rejected"),
            (Outcome::Bad, "bad"),
            // A typo is not silently one of ours.
            (Outcome::Other("rolled_back".into()), "rolled_back"),
        ]);
    }

    /// Lines as the string-typed symdeploy wrote them (copied from test
    /// runs' `.symdeploy/journal.jsonl`), plus a hand-edited one with values
    /// this build does not know: all are read, and written back unchanged.
    #[test]
    fn journals_written_before_the_types_still_read() {
        let lines = [
            r#"{"time":"2026-11-26T13:40:41Z","run":"18eb9c095f5a2069-26473","event":"warmup","phase":"end","commit":"6e107279ca12e55a1e073f188e7cdddc83514d58","ref":"refs/heads/main","user":"root","host":"vm","pid":26473,"result":"built","durations":{"build":0.006287911,"export":0.002165447,"sync":0.000382351},"log":"/tmp/sd14t/root/.symdeploy/logs/20261126T134040Z-warmup-6e107279ca12-26473.log"}"#,
            r#"{"time":"2026-11-26T13:40:41Z","run":"18eb9c09608672e4-26487","event":"warmup","phase":"prepared","commit":"6e107279ca12e55a1e073f188e7cdddc83514d58","ref":"refs/heads/main","user":"root","host":"vm","pid":26487,"log":"/tmp/sd14t/root/.symdeploy/logs/20261126T134040Z-prepared-6e107279ca12-26487.log","txn":{"receive_pack":26457,"started":76814,"new":"6e107279ca12e55a1e073f188e7cdddc83514d58"}}"#,
            r#"{"time":"2026-11-26T14:30:16.807Z","run":"18eb9ebe1cb7b7bd-29112","event":"promote","phase":"undo","commit":"28e39315124123e4641cbfb9b4a960d356d3d611","ref":"refs/heads/main","user":"root","host":"vm","pid":29112,"result":"bad","previous":"bbda089dd1f9e81fbcc2ff3449fbf07e09dc0f56","durations":{"flip":0.001721944},"error":"check: check step `echo unhealthy; exit 1` failed: exit status 1","log":"/tmp/sd10t/root/.symdeploy/logs/20261126T143015Z-warmup-28e393151241-29112.log","commands":{"stop":[],"after_switch":[],"start":[],"check":["echo unhealthy; exit 1"],"notify":["echo notify $SYMDEPLOY_RESULT"]}}"#,
            r#"{"time":"2026-11-26T14:30:16.814Z","run":"18eb9ebe1cb7b7bd-29112","event":"promote","phase":"end","commit":"28e39315124123e4641cbfb9b4a960d356d3d611","ref":"refs/heads/main","user":"root","host":"vm","pid":29112,"result":"rolled-back","previous":"bbda089dd1f9e81fbcc2ff3449fbf07e09dc0f56","durations":{"flip":0.001721944,"total":1.013220986},"error":"check: check step `echo unhealthy; exit 1` failed: exit status 1","log":"/tmp/sd10t/root/.symdeploy/logs/20261126T143015Z-warmup-28e393151241-29112.log"}"#,
            r#"{"time":"2026-11-26T14:30:08.275Z","run":"18eb9ebc5b3c2e67-28053","event":"promote","phase":"end","commit":"bbda089dd1f9e81fbcc2ff3449fbf07e09dc0f56","ref":"refs/heads/main","user":"root","host":"vm","pid":28053,"result":"ok","durations":{"flip":0.008114902,"total":0.00814223},"log":"/tmp/sd10t/root/.symdeploy/logs/20261126T143008Z-warmup-bbda089dd1f9-28053.log"}"#,
            r#"{"time":"2026-11-26T15:00:00Z","run":"r9","event":"migrate","phase":"end","user":"root","result":"half-done"}"#,
        ];
        let read: Vec<Entry> = lines
            .iter()
            .map(|l| parse_line(l.as_bytes()).expect(l))
            .collect();
        let got: Vec<(&Event, &LineKind, Option<&Outcome>)> = read
            .iter()
            .map(|e| (&e.event, &e.phase, e.result.as_ref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (&Event::Warmup, &LineKind::End, Some(&Outcome::Built)),
                (&Event::Warmup, &LineKind::Prepared, None),
                (&Event::Promote, &LineKind::Undo, Some(&Outcome::Bad)),
                (&Event::Promote, &LineKind::End, Some(&Outcome::RolledBack)),
                (&Event::Promote, &LineKind::End, Some(&Outcome::Ok)),
                (
                    &Event::Other("migrate".into()),
                    &LineKind::End,
                    Some(&Outcome::Other("half-done".into()))
                ),
            ]
        );
        for (line, e) in lines.iter().zip(&read) {
            let back: serde_json::Value = serde_json::to_value(e).unwrap();
            let want: serde_json::Value = serde_json::from_str(line).unwrap();
            for key in ["time", "event", "phase", "result"] {
                assert_eq!(back.get(key), want.get(key), "{key} of {line}");
            }
        }
        // The production stack reads these as it did: only `promote ok` counts.
        let mut stack = Vec::new();
        for e in &read {
            push_production(&mut stack, e);
        }
        let commits: Vec<String> = stack.iter().map(|c| c.commit.to_string()).collect();
        assert_eq!(commits, vec!["bbda089dd1f9e81fbcc2ff3449fbf07e09dc0f56"]);
    }

    /// Times as older builds wrote them (whole seconds) and as no build
    /// wrote them (hand edits): every line is still read, carried forward
    /// byte for byte, and only real times are ordered as times.
    #[test]
    fn old_and_odd_times_are_read_and_written_back_as_they_were() {
        let (_t, root) = root();
        let line = |time: &str, run: &str, phase: &str, event: &str, result: &str| {
            let result = if result.is_empty() {
                String::new()
            } else {
                format!(r#","result":"{result}""#)
            };
            format!(
                r#"{{"time":"{time}","run":"{run}","event":"{event}","phase":"{phase}","commit":"c-{run}","user":"u","host":"h","pid":1{result}}}"#
            )
        };
        let lines = [
            line("2026-11-26T13:40:41Z", "old", "start", "warmup", ""),
            line("yesterday", "odd", "start", "warmup", ""),
            line("2026-11-26T13:40:40.500Z", "new", "start", "warmup", ""),
            line("", "empty", "start", "promote", ""),
            line("2026-11-26 13:40:41", "p1", "end", "promote", "ok"),
            line("2026-11-26T13:40:41+01:00", "p2", "end", "promote", "ok"),
        ];
        std::fs::write(root.journal(), lines.join("\n") + "\n").unwrap();
        let read_back = read(&root);
        assert_eq!(read_back.len(), lines.len(), "every line is read");
        let times: Vec<String> = read_back.iter().map(|e| e.time.to_string()).collect();
        assert_eq!(
            times,
            [
                "2026-11-26T13:40:41Z",
                "yesterday",
                "2026-11-26T13:40:40.500Z",
                "",
                "2026-11-26 13:40:41",
                "2026-11-26T13:40:41+01:00"
            ]
        );
        for (l, e) in lines.iter().zip(&read_back) {
            assert_eq!(
                &serde_json::to_string(e).unwrap(),
                l,
                "written back as read"
            );
        }
        assert!(matches!(read_back[0].time, Time::Seconds(_)));
        for odd in [1, 3, 4, 5] {
            assert_eq!(
                read_back[odd].time.timestamp(),
                None,
                "{:?}",
                read_back[odd].time
            );
        }

        // Carried forward: the open runs keep their time text, and the
        // production stack its changes' (odd times included: they are
        // still production changes, only not dated).
        migrate(&root).unwrap();
        let open = open_runs(&root);
        let runs: Vec<&str> = open.iter().map(|e| e.run.as_str()).collect();
        assert_eq!(
            runs,
            ["empty", "odd", "new", "old"],
            "unreadable first, then by instant"
        );
        let odd_file = std::fs::read_to_string(open_file(&root, "odd")).unwrap();
        assert_eq!(odd_file, lines[1]);
        let stack = production_stack(&root);
        let kept: Vec<(String, String)> = stack
            .iter()
            .map(|c| (c.commit.label(), c.time.to_string()))
            .collect();
        assert_eq!(
            kept,
            [
                ("c-p1".to_string(), "2026-11-26 13:40:41".to_string()),
                ("c-p2".to_string(), "2026-11-26T13:40:41+01:00".to_string())
            ]
        );
        let saved = std::fs::read_to_string(production_file(&root)).unwrap();
        assert!(
            saved.contains(r#""time": "2026-11-26 13:40:41""#),
            "{saved}"
        );
    }

    #[test]
    fn old_entries_without_commands_still_read_and_new_ones_round_trip() {
        let old = r#"{"time":"2026-01-01T00:00:00Z","run":"r1","event":"promote","phase":"start","commit":"c1","user":"u","host":"h","pid":1}"#;
        let e: Entry = serde_json::from_str(old).unwrap();
        assert_eq!(e.commands, None);
        let mut new = start(Event::Promote, Some("c2"), None);
        new.commands = Some(Commands {
            start: vec!["systemctl start app".into()],
            ..Default::default()
        });
        let text = serde_json::to_string(&new).unwrap();
        let back: Entry = serde_json::from_str(&text).unwrap();
        assert_eq!(back.commands.unwrap().start, vec!["systemctl start app"]);
    }

    #[test]
    fn entries_round_trip_and_torn_lines_are_skipped() {
        let (_t, root) = root();
        let e = start(Event::Warmup, Some("c1"), Some("refs/heads/main"));
        append(&root, &e).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.journal())
            .unwrap();
        f.write_all(b"{\"time\":\"20").unwrap();
        assert_eq!(read(&root), vec![e]);
    }

    fn entry(i: usize, phase: LineKind) -> Entry {
        Entry {
            time: Time::parse(&format!("2020-01-01T00:00:{:02}Z", i % 60)),
            run: format!("run{i}"),
            event: Event::Warmup,
            phase,
            user: "u".into(),
            ..Default::default()
        }
    }

    #[test]
    fn open_runs_survive_migration_and_rotation_and_order_is_kept() {
        let (_t, root) = root();
        // An old single-file journal: 300 runs, run 7 never ended.
        let mut text = String::new();
        for i in 0..300 {
            text.push_str(&serde_json::to_string(&entry(i, LineKind::Start)).unwrap());
            text.push('\n');
            if i != 7 {
                text.push_str(&serde_json::to_string(&entry(i, LineKind::End)).unwrap());
                text.push('\n');
            }
        }
        std::fs::write(root.journal(), &text).unwrap();
        assert_eq!(open_runs(&root).len(), 1, "read before migration");
        migrate(&root).unwrap();
        rotate(&root, 4096).unwrap();
        assert!(!root.journal().exists());
        let (segs, rotating) = segments(&root);
        assert!(segs.len() > 5 && rotating.is_none(), "{segs:?}");
        let newest = segs.last().unwrap();
        assert!(gz_text(&newest.path).len() as u64 <= TAIL_PART.min(4096) + 512);
        let open = open_runs(&root);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].run, "run7");
        append(&root, &open[0].end(Outcome::Interrupted)).unwrap();
        assert!(open_runs(&root).is_empty());
        let all = read(&root);
        assert_eq!(all.len(), 600);
        assert_eq!(all[0], entry(0, LineKind::Start));
        let mut newest = Vec::new();
        for_each_rev(&root, |e| {
            newest.push(e);
            if newest.len() == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(newest[0].run, "run7");
        assert_eq!(newest[1], entry(299, LineKind::End));
        assert_eq!(newest[2], entry(299, LineKind::Start));
    }

    #[test]
    fn an_end_written_before_a_crash_closes_its_run() {
        let (_t, root) = root();
        std::fs::create_dir_all(segments_dir(&root)).unwrap();
        let e = start(Event::Promote, Some("c"), None);
        append(&root, &e).unwrap();
        assert_eq!(open_runs(&root).len(), 1);
        // The end line landed, the open file was not removed yet.
        append_line(
            &root,
            format!("{}\n", serde_json::to_string(&e.end(Outcome::Ok)).unwrap()).as_bytes(),
        )
        .unwrap();
        assert!(open_file(&root, &e.run).exists());
        assert!(open_runs(&root).is_empty());
    }

    #[test]
    fn production_is_a_stack() {
        let ended = |event: Event, commit: &str, result: Outcome| {
            start(event, Some(commit), None).end(result)
        };
        let mut s = Vec::new();
        for e in [
            ended(Event::Promote, "a", Outcome::Ok),
            ended(Event::Promote, "b", Outcome::Ok),
            ended(Event::Promote, "c", Outcome::RolledBack),
            ended(Event::Promote, "d", Outcome::Ok),
            ended(Event::Rollback, "b", Outcome::Ok),
        ] {
            push_production(&mut s, &e);
        }
        let commits: Vec<String> = s.iter().map(|c| c.commit.to_string()).collect();
        assert_eq!(commits, vec!["a", "b"]);
    }

    #[test]
    fn a_watch_that_rolled_back_moves_production_back_and_others_do_not() {
        let watch = |commit: &str, previous: &str, result: Outcome| {
            let mut e = start(Event::Watch, Some(commit), None);
            e.previous = Some(Recorded::from(previous));
            e.end(result)
        };
        let mut s = Vec::new();
        for e in [
            start(Event::Promote, Some("a"), None).end(Outcome::Ok),
            start(Event::Promote, Some("b"), None).end(Outcome::Ok),
            watch("b", "a", Outcome::Ok),
            watch("b", "a", Outcome::Ended),
            watch("b", "a", Outcome::Interrupted),
        ] {
            push_production(&mut s, &e);
        }
        let commits: Vec<String> = s.iter().map(|c| c.commit.to_string()).collect();
        assert_eq!(commits, vec!["a", "b"], "only a rollback moves production");
        push_production(&mut s, &watch("b", "a", Outcome::RolledBack));
        let commits: Vec<String> = s.iter().map(|c| c.commit.to_string()).collect();
        assert_eq!(commits, vec!["a"]);
        // Old journals: a watch line reads as it was written.
        let e: Entry = serde_json::from_str(
            r#"{"time":"t","run":"r","event":"watch","phase":"end","user":"u","result":"ended"}"#,
        )
        .unwrap();
        assert_eq!((e.event, e.result), (Event::Watch, Some(Outcome::Ended)));
    }

    #[test]
    fn an_interrupted_rotation_is_redone_without_duplicates() {
        let (_t, root) = root();
        std::fs::create_dir_all(segments_dir(&root)).unwrap();
        for i in 0..50 {
            append(&root, &entry(i, LineKind::Start)).unwrap();
            append(&root, &entry(i, LineKind::End)).unwrap();
        }
        // As if a rotation died after moving the file and writing one part.
        let source = segments_dir(&root).join("rotating-000001.jsonl");
        std::fs::rename(root.journal(), &source).unwrap();
        std::fs::write(segments_dir(&root).join("000001-0001.jsonl.gz"), b"junk").unwrap();
        assert_eq!(read(&root).len(), 100);
        rotate(&root, 1 << 20).unwrap();
        assert!(!source.exists());
        assert_eq!(read(&root).len(), 100);
    }
}
