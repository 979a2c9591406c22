//! The journal: one JSON object a line, appended, never rewritten.
//!
//! Every operation writes a `start` entry before it changes anything and an
//! `end` entry when it is done. A start without its end is an interrupted run,
//! which `status` shows and `recover` repairs.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};
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
    pub txn: Option<crate::strict::GitTxn>,
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

/// Append one entry (one write(2) with O_APPEND, then fsync).
pub fn append(root: &Root, entry: &Entry) -> Result<()> {
    let path = root.journal();
    let mut line = serde_json::to_vec(entry)
        .map_err(|e| crate::error::Error::msg(format!("cannot encode a journal entry: {e}")))?;
    line.push(b'\n');
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

/// Every readable entry, oldest first. A torn last line (a crash mid-write)
/// is skipped, not fatal.
pub fn read(root: &Root) -> Vec<Entry> {
    let Ok(text) = std::fs::read_to_string(root.journal()) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(e) => Some(e),
            Err(err) => {
                tracing::warn!("skipping an unreadable journal line: {err}");
                None
            }
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        std::fs::create_dir_all(root.state_dir()).unwrap();
        let e = Entry::start("warmup", Some("c1"), Some("refs/heads/main"));
        append(&root, &e).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.journal())
            .unwrap();
        f.write_all(b"{\"time\":\"20").unwrap();
        assert_eq!(read(&root), vec![e]);
    }
}
