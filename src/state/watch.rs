//! What is known about the watch after a promote, on disk: which run watches
//! which release until when (`.symdeploy/watch/current.json`, written with
//! the lock held), how its checks went (`<run>.progress`, written by the
//! watcher alone), and ending it from outside (a newer switch, `watch
//! stop`, recovery). Kept below the switch and recovery, which end watches,
//! and below the watcher itself, which only reads this.
//!
//! Whoever ends a watch holds the deploy lock, writes its journal end,
//! removes `current.json`, then stops the watcher; the watcher takes the
//! lock before it rolls back and looks again, so a watch that was ended
//! never rolls back.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::state::commit::Commit;
use crate::state::journal::{self, Entry, Outcome};
use crate::state::release_name::Recorded;
use crate::state::root::Root;
use crate::sys::output;

/// The watch under way, as `current.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Current {
    /// The journal start entry of the watch run.
    pub(crate) entry: Entry,
    /// The watcher's pid (0 until it is spawned).
    pub(crate) pid: u32,
    /// Its start time (`/proc/<pid>/stat`), so a reused pid is not it.
    #[serde(default)]
    pub(crate) pid_start: Option<u64>,
    /// Unix seconds at which the window ends.
    pub(crate) until: i64,
    /// Seconds between checks.
    pub(crate) interval: u64,
    /// How many checks the window holds.
    pub(crate) total: u64,
}

impl Current {
    /// The watched release.
    pub(crate) fn commit(&self) -> Option<Commit> {
        self.entry.commit.as_ref().and_then(Recorded::main)
    }

    /// Is the watcher process alive (and really it, not a reused pid)?
    pub(crate) fn alive(&self) -> bool {
        // A zombie is dead: its parent died and no init reaps it (containers).
        let running = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| {
                let state = s[s.rfind(')')? + 1..]
                    .split_whitespace()
                    .next()?
                    .to_string();
                Some(state != "Z" && state != "X")
            })
            .unwrap_or(false);
        self.pid != 0 && running && crate::sys::fs::start_time(self.pid) == self.pid_start
    }

    /// The end of the window, as people read it (UTC, HH:MM:SS).
    pub(crate) fn until_clock(&self) -> String {
        jiff::Timestamp::from_second(self.until)
            .map(|t| t.strftime("%H:%M:%S").to_string())
            .unwrap_or_else(|_| self.until.to_string())
    }
}

/// The watcher's count of checks so far.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Checks run.
    pub(crate) done: u64,
    /// Checks that passed.
    pub(crate) ok: u64,
}

fn current_path(root: &Root) -> PathBuf {
    root.watch_dir().join("current.json")
}

fn progress_path(root: &Root, run: &str) -> PathBuf {
    root.watch_dir()
        .join(format!("{}.progress", journal::file_stem(run)))
}

/// The watch under way, if any.
pub(crate) fn current(root: &Root) -> Option<Current> {
    let text = std::fs::read(current_path(root)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Is `run` the watch under way?
pub(crate) fn is_current(root: &Root, run: &str) -> bool {
    current(root).is_some_and(|c| c.entry.run == run)
}

fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).at("create directory", dir)?;
    let tmp = dir.join(format!(".tmp-{}", crate::sys::fs::unique_token()));
    std::fs::write(&tmp, bytes).at("write", &tmp)?;
    std::fs::rename(&tmp, path).at("rename into place", path)?;
    Ok(())
}

/// Record `c` as the watch under way (lock held).
pub(crate) fn save(root: &Root, c: &Current) -> Result<()> {
    let json = serde_json::to_vec_pretty(c)
        .map_err(|e| Error::msg(format!("cannot encode the watch: {e}")))?;
    write_atomic(&current_path(root), &json)
}

/// The progress of `run`.
pub(crate) fn progress(root: &Root, run: &str) -> Progress {
    std::fs::read(progress_path(root, run))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Record the progress of `run` (by its watcher).
pub(crate) fn save_progress(root: &Root, run: &str, p: Progress) -> Result<()> {
    let json = serde_json::to_vec(&p)
        .map_err(|e| Error::msg(format!("cannot encode the watch's progress: {e}")))?;
    write_atomic(&progress_path(root, run), &json)
}

/// Forget the watch `run` (its record and its progress).
pub(crate) fn clear(root: &Root, run: &str) {
    if is_current(root, run) {
        let _ = std::fs::remove_file(current_path(root));
    }
    let _ = std::fs::remove_file(progress_path(root, run));
}

/// End the watch under way, if any, from outside it (lock held): its journal
/// run ends `result` with `why`, its record goes, and its watcher is told to
/// stop (SIGTERM) and waited for. Returns the watched release. Never fails:
/// a problem is a warning.
pub(crate) fn end_current(root: &Root, result: Outcome, why: &str) -> Option<Commit> {
    let c = current(root)?;
    let mut end = c.entry.end(result);
    end.pid = std::process::id();
    end.error = Some(why.to_string());
    let progress = progress(root, &c.entry.run);
    end.durations.insert("checks".into(), progress.done as f64);
    end.durations.insert("checks_ok".into(), progress.ok as f64);
    if let Err(e) = journal::append(root, &end) {
        output::warning(&format!("could not end the watch in the journal: {e}"));
    }
    clear(root, &c.entry.run);
    if c.alive() {
        let pid = nix::unistd::Pid::from_raw(c.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        // It holds no lock and changes nothing once its record is gone; the
        // wait only keeps `status` from showing it for a moment longer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while c.alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    output::detail(&format!(
        "the watch of releases/{} ended: {why}",
        c.commit()
            .map_or_else(|| "?".to_string(), |c| c.short().to_string())
    ));
    c.commit()
}

/// Is the open journal run `e` a watch whose watcher is alive? Recovery
/// leaves such a run alone: it is not interrupted, only long.
pub(crate) fn watching(root: &Root, e: &Entry) -> bool {
    e.event == journal::Event::Watch
        && current(root).is_some_and(|c| c.entry.run == e.run && c.alive())
}
