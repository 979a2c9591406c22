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
use crate::root::Root;

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Entry {
    /// RFC 3339 UTC.
    pub time: String,
    /// Identifies one run: its start and end share it.
    pub run: String,
    /// warmup, promote, rollback, cleanup, recover.
    pub event: String,
    /// start or end.
    pub phase: String,
    /// The release's commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The ref pushed or given.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// Who ran it (the pusher, over SSH).
    pub user: String,
    /// Which host.
    #[serde(default)]
    pub host: String,
    /// The process.
    #[serde(default)]
    pub pid: u32,
    /// ok, failed, rolled-back, unchanged, interrupted (end entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The production release before this run (promote, rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Seconds per stage.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub durations: BTreeMap<String, f64>,
    /// What went wrong, for failed runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The per-deploy log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// A strict-mode flip made while git held the ref locked: whether it
    /// stands depends on what git does with the ref (see `crate::strict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<crate::journal::GitTxn>,
    /// The step commands a promote/rollback runs, as configured when it
    /// started: a recovery runs these, not what deploy.toml says later.
    /// Absent in entries written before symdeploy recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Commands>,
}

/// The promote steps a switch runs, recorded in its start entry.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct Commands {
    /// promote.stop
    #[serde(default)]
    pub stop: Vec<String>,
    /// promote.after_switch
    #[serde(default)]
    pub after_switch: Vec<String>,
    /// promote.start
    #[serde(default)]
    pub start: Vec<String>,
    /// promote.check
    #[serde(default)]
    pub check: Vec<String>,
    /// promote.notify
    #[serde(default)]
    pub notify: Vec<String>,
}

impl Commands {
    /// The commands of `promote` as configured now.
    pub fn of(promote: &crate::config::Promote) -> Commands {
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
    pub fn apply(&self, promote: &crate::config::Promote) -> crate::config::Promote {
        crate::config::Promote {
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
    /// A start entry for a new run.
    pub fn start(event: &str, commit: Option<&str>, git_ref: Option<&str>) -> Entry {
        Entry {
            time: crate::fsutil::now_rfc3339(),
            run: crate::fsutil::unique_token(),
            event: event.to_string(),
            phase: "start".to_string(),
            commit: commit.map(str::to_string),
            git_ref: git_ref.map(str::to_string),
            user: crate::fsutil::current_user(),
            host: crate::fsutil::hostname(),
            pid: std::process::id(),
            log: crate::output::log_path().map(|p| p.display().to_string()),
            ..Default::default()
        }
    }

    /// The matching end entry.
    pub fn end(&self, result: &str) -> Entry {
        Entry {
            time: crate::fsutil::now_rfc3339(),
            phase: "end".to_string(),
            result: Some(result.to_string()),
            // Recorded once, in the start entry, which is what recovery reads.
            commands: None,
            ..self.clone()
        }
    }
}

/// ROOT/.symdeploy/open: one file per run that started and has not ended.
pub fn open_dir(root: &Root) -> PathBuf {
    root.journal_open()
}

/// ROOT/.symdeploy/journal: the older, compressed segments. Its presence also
/// says the root's state was carried forward from the single-file format.
pub fn segments_dir(root: &Root) -> PathBuf {
    root.journal_segments()
}

/// ROOT/.symdeploy/production.json: the stack of production releases.
pub fn production_file(root: &Root) -> PathBuf {
    root.production_history()
}

/// How many production changes `production.json` remembers: rollback goes
/// back to the newest one still ready on disk, and cleanup always keeps the
/// previous production release, so the newest few are what matter; an
/// older one can still be named (`symdeploy rollback RELEASE`).
const PRODUCTION_KEPT: usize = 100;

fn open_file(root: &Root, run: &str) -> PathBuf {
    // Run ids are ours (hex time, pid); never let one name another path.
    let safe: String = run
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    open_dir(root).join(format!("{safe}.json"))
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
    crate::link::sync_dir(dir);
    Ok(())
}

/// Append one entry (one write(2) with O_APPEND, then fsync). A start is
/// first recorded as open, an end afterwards clears it: whatever moment a run
/// dies at, recovery finds it among the open runs.
pub fn append(root: &Root, entry: &Entry) -> Result<()> {
    let mut line = serde_json::to_vec(entry)
        .map_err(|e| Error::msg(format!("cannot encode a journal entry: {e}")))?;
    if entry.phase == "start" {
        write_atomic(&open_file(root, &entry.run), &line)?;
    }
    line.push(b'\n');
    append_line(root, &line)?;
    if entry.phase == "end" {
        if matches!(entry.event.as_str(), "promote" | "rollback")
            && entry.result.as_deref() == Some("ok")
        {
            let mut stack = production_stack(root);
            push_production(&mut stack, entry);
            save_production(root, &stack)?;
        }
        let open = open_file(root, &entry.run);
        match std::fs::remove_file(&open) {
            Ok(()) => crate::link::sync_dir(&open_dir(root)),
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
pub struct ProductionChange {
    /// The release production went to.
    pub commit: String,
    /// When (RFC 3339).
    pub time: String,
    /// Who did it.
    pub user: String,
}

/// Apply one finished run to the production stack: promotes push, rollbacks
/// pop back to their target.
pub fn push_production(stack: &mut Vec<ProductionChange>, e: &Entry) {
    if e.phase != "end" || e.result.as_deref() != Some("ok") {
        return;
    }
    let Some(c) = e.commit.clone() else { return };
    let change = ProductionChange {
        commit: c.clone(),
        time: e.time.clone(),
        user: e.user.clone(),
    };
    match e.event.as_str() {
        "promote" if stack.last().map(|s| &s.commit) != Some(&c) => stack.push(change),
        "promote" => {}
        "rollback" => {
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

/// The stack of production releases, oldest first, with when and by whom
/// each took production. Read from `production.json`; a root from before it
/// existed is read from its whole journal once.
pub fn production_stack(root: &Root) -> Vec<ProductionChange> {
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
pub fn open_runs(root: &Root) -> Vec<Entry> {
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
            ended = e.phase == "end";
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
        match e.phase.as_str() {
            "start" => {
                order.push(e.run.clone());
                open.insert(e.run.clone(), e);
            }
            "end" => {
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
pub fn migrate(root: &Root) -> Result<()> {
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
    crate::link::sync_dir(&root.state_dir());
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
pub fn rotate(root: &Root, max_bytes: u64) -> Result<()> {
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
            crate::link::sync_dir(&root.state_dir());
            crate::link::sync_dir(&segments_dir(root));
            (n, source)
        }
    };
    split_into_segments(root, rotation, &source, max_bytes.max(1))?;
    std::fs::remove_file(&source).at("remove", &source)?;
    crate::link::sync_dir(&segments_dir(root));
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
pub fn for_each_rev(root: &Root, mut f: impl FnMut(Entry) -> ControlFlow<()>) {
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
pub fn for_each(root: &Root, mut f: impl FnMut(Entry) -> ControlFlow<()>) -> Result<()> {
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
/// tests and small roots; commands use `for_each`/`for_each_rev`.
pub fn read(root: &Root) -> Vec<Entry> {
    let mut out = Vec::new();
    let _ = for_each(root, |e| {
        out.push(e);
        ControlFlow::Continue(())
    });
    out
}

/// Runs that started and never ended, oldest first.
pub fn interrupted(entries: &[Entry]) -> Vec<&Entry> {
    let ended: std::collections::HashSet<&str> = entries
        .iter()
        .filter(|e| e.phase == "end")
        .map(|e| e.run.as_str())
        .collect();
    entries
        .iter()
        .filter(|e| e.phase == "start" && !ended.contains(e.run.as_str()))
        .collect()
}

/// Which git ref transaction a strict run belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitTxn {
    /// The receive-pack process that runs the transaction.
    pub receive_pack: u32,
    /// Its start time (clock ticks after boot, /proc/PID/stat), so a reused
    /// pid is never mistaken for it.
    pub started: u64,
    /// The value pushed for the ref (a tag object for annotated tags).
    pub new: String,
    /// Where warmup pointed before this run: where an undo puts it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_before: Option<String>,
    /// For a preview: the release `previews/<slug>` pointed at before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_before: Option<String>,
}

impl GitTxn {
    /// Is its receive-pack still running, i.e. has git not decided yet?
    pub fn undecided(&self) -> bool {
        crate::fsutil::start_time(self.receive_pack) == Some(self.started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        std::fs::create_dir_all(root.state_dir()).unwrap();
        (t, root)
    }

    #[test]
    fn start_without_end_is_interrupted() {
        let a = Entry::start("warmup", Some("c1"), Some("refs/heads/main"));
        let b = Entry {
            run: "other".into(),
            ..Entry::start("promote", Some("c2"), None)
        };
        let entries = vec![a.clone(), b.clone(), a.end("ok")];
        let open = interrupted(&entries);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].event, "promote");
    }

    #[test]
    fn old_entries_without_commands_still_read_and_new_ones_round_trip() {
        let old = r#"{"time":"2026-01-01T00:00:00Z","run":"r1","event":"promote","phase":"start","commit":"c1","user":"u","host":"h","pid":1}"#;
        let e: Entry = serde_json::from_str(old).unwrap();
        assert_eq!(e.commands, None);
        let mut new = Entry::start("promote", Some("c2"), None);
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
        let e = Entry::start("warmup", Some("c1"), Some("refs/heads/main"));
        append(&root, &e).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.journal())
            .unwrap();
        f.write_all(b"{\"time\":\"20").unwrap();
        assert_eq!(read(&root), vec![e]);
    }

    fn entry(i: usize, phase: &str) -> Entry {
        Entry {
            time: format!("2020-01-01T00:00:{:02}Z", i % 60),
            run: format!("run{i}"),
            event: "warmup".into(),
            phase: phase.into(),
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
            text.push_str(&serde_json::to_string(&entry(i, "start")).unwrap());
            text.push('\n');
            if i != 7 {
                text.push_str(&serde_json::to_string(&entry(i, "end")).unwrap());
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
        append(&root, &open[0].end("interrupted")).unwrap();
        assert!(open_runs(&root).is_empty());
        let all = read(&root);
        assert_eq!(all.len(), 600);
        assert_eq!(all[0], entry(0, "start"));
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
        assert_eq!(newest[1], entry(299, "end"));
        assert_eq!(newest[2], entry(299, "start"));
    }

    #[test]
    fn an_end_written_before_a_crash_closes_its_run() {
        let (_t, root) = root();
        std::fs::create_dir_all(segments_dir(&root)).unwrap();
        let e = Entry::start("promote", Some("c"), None);
        append(&root, &e).unwrap();
        assert_eq!(open_runs(&root).len(), 1);
        // The end line landed, the open file was not removed yet.
        append_line(
            &root,
            format!("{}\n", serde_json::to_string(&e.end("ok")).unwrap()).as_bytes(),
        )
        .unwrap();
        assert!(open_file(&root, &e.run).exists());
        assert!(open_runs(&root).is_empty());
    }

    #[test]
    fn production_is_a_stack() {
        let ended = |event: &str, commit: &str, result: &str| {
            Entry::start(event, Some(commit), None).end(result)
        };
        let mut s = Vec::new();
        for e in [
            ended("promote", "a", "ok"),
            ended("promote", "b", "ok"),
            ended("promote", "c", "rolled-back"),
            ended("promote", "d", "ok"),
            ended("rollback", "b", "ok"),
        ] {
            push_production(&mut s, &e);
        }
        let commits: Vec<&str> = s.iter().map(|c| c.commit.as_str()).collect();
        assert_eq!(commits, vec!["a", "b"]);
    }

    #[test]
    fn an_interrupted_rotation_is_redone_without_duplicates() {
        let (_t, root) = root();
        std::fs::create_dir_all(segments_dir(&root)).unwrap();
        for i in 0..50 {
            append(&root, &entry(i, "start")).unwrap();
            append(&root, &entry(i, "end")).unwrap();
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
