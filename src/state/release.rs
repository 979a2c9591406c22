//! What state each release is in, recorded next to (never inside) the release.
//!
//! A release directory is complete once its export was renamed into place, but
//! it is only `ready` once every warm-up step succeeded. Only ready releases are
//! ever pointed at by warmup or production. The record lives in
//! `.symdeploy/releases/<commit>.json`, written atomically, because a release
//! directory is never modified after it is complete.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::state::commit::Commit;
use crate::state::release_name::ReleaseName;
use crate::state::root::Root;
use crate::sys::time::Time;

/// The life of a release.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::AsRefStr,
    strum::Display,
    strum::EnumString,
    strum::VariantNames,
)]
#[strum(serialize_all = "lowercase")]
pub(crate) enum State {
    /// Being exported or warmed up (or interrupted while it was).
    Building,
    /// Warmed up; may be pointed at.
    Ready,
    /// A warm-up step failed.
    Failed,
    /// Was promoted and failed in production (rolled back).
    Bad,
}

/// The stored record of one release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Current state.
    pub(crate) state: State,
    /// The commit (a main release's directory is named by it).
    pub(crate) commit: Commit,
    /// The ref it was built from.
    #[serde(rename = "ref")]
    pub(crate) git_ref: String,
    /// First line of the commit message.
    #[serde(default)]
    pub(crate) subject: String,
    /// Who pushed or ran it.
    #[serde(default)]
    pub(crate) user: String,
    /// When the build started.
    pub(crate) created: Time,
    /// When it became ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ready_at: Option<Time>,
    /// Why it failed or went bad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Why a cleanup could not remove it, and what to run (it stays until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cleanup_blocked: Option<String>,
}

impl Record {
    /// The record of a build starting now, by the user running symdeploy.
    pub(crate) fn building(commit: Commit, git_ref: &str, subject: String) -> Record {
        Record {
            state: State::Building,
            commit,
            git_ref: git_ref.to_string(),
            subject,
            user: crate::sys::deployer::by(),
            created: Time::now(),
            ready_at: None,
            error: None,
            cleanup_blocked: None,
        }
    }
}

/// Read a release's record, if there is one.
pub(crate) fn load(root: &Root, name: &ReleaseName) -> Option<Record> {
    let text = std::fs::read_to_string(root.states().join(format!("{name}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

/// Write a release's record atomically and durably (the warm-up names the
/// release itself, with [`save_as`]).
#[cfg(test)]
pub(crate) fn save(root: &Root, record: &Record) -> Result<()> {
    save_as(root, &record.commit.into(), record)
}

/// Write the record of the release `name` (a preview's release is recorded
/// under its own name, not its commit's).
pub(crate) fn save_as(root: &Root, name: &ReleaseName, record: &Record) -> Result<()> {
    let dir = root.states();
    let path = dir.join(format!("{name}.json"));
    let json = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::msg(format!("cannot encode release record: {e}")))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(crate::state::root::RECORD_TMP_PREFIX)
        .tempfile_in(&dir)
        .at("create a temporary file in", &dir)?;
    tmp.write_all(&json).at("write", tmp.path())?;
    tmp.as_file().sync_data().at("sync", tmp.path())?;
    tmp.persist(&path)
        .map_err(|e| Error::io("write", &path, e.error))?;
    crate::sys::symlink::sync_dir(&dir);
    Ok(())
}

/// Remove half-written records (lock held: only lock holders write them).
/// `.tmp*` also covers what versions before the explicit prefix left.
pub(crate) fn sweep_temp_records(root: &Root) {
    let Ok(entries) = std::fs::read_dir(root.states()) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Change the state of an existing record.
pub(crate) fn set_state(
    root: &Root,
    name: &ReleaseName,
    state: State,
    error: Option<String>,
) -> Result<()> {
    if let Some(mut r) = load(root, name) {
        r.state = state;
        if state == State::Ready {
            r.ready_at = Some(Time::now());
            r.error = None;
        }
        if error.is_some() {
            r.error = error;
        }
        save_as(root, name, &r)?;
    }
    Ok(())
}

/// Remove a release's record (with its directory, by cleanup or rebuild).
pub(crate) fn forget(root: &Root, name: &ReleaseName) {
    let _ = std::fs::remove_file(root.states().join(format!("{name}.json")));
    crate::state::manifest::forget(root, name);
}

/// What a release directory amounts to, as `status`, `releases` and cleanup
/// see it: its recorded [`State`], except that a build with no record or one
/// still marked building (nothing builds without the lock, so it was cut
/// short) is `Incomplete`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::AsRefStr,
    strum::Display,
    strum::EnumString,
    strum::VariantNames,
)]
#[strum(serialize_all = "lowercase")]
pub(crate) enum Effective {
    /// Warmed up; may be pointed at.
    Ready,
    /// A warm-up step failed.
    Failed,
    /// Was promoted and failed in production (rolled back).
    Bad,
    /// No record, or interrupted while building.
    Incomplete,
}

crate::sys::word::serde_as_word!(State, Effective);

/// What a release directory amounts to: its recorded state, or `incomplete`
/// when it has no record or was interrupted while building.
pub(crate) fn effective_state(root: &Root, name: &ReleaseName) -> Effective {
    match load(root, name).map(|r| r.state) {
        Some(State::Ready) => Effective::Ready,
        Some(State::Failed) => Effective::Failed,
        Some(State::Bad) => Effective::Bad,
        Some(State::Building) | None => Effective::Incomplete,
    }
}

/// Is this release ready to be pointed at?
pub(crate) fn is_ready(root: &Root, name: &ReleaseName) -> bool {
    root.release(name).is_dir() && load(root, name).is_some_and(|r| r.state == State::Ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_states_are_spelled_as_before() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        std::fs::create_dir_all(root.states()).unwrap();
        let c = Commit::parse("0123456789abcdef0123456789abcdef01234567").unwrap();
        let name = ReleaseName::Main(c);
        assert_eq!(effective_state(&root, &name).as_ref(), "incomplete");
        let mut r = Record::building(c, "refs/heads/main", String::new());
        for (state, shown) in [
            (State::Building, "incomplete"),
            (State::Ready, "ready"),
            (State::Failed, "failed"),
            (State::Bad, "bad"),
        ] {
            r.state = state;
            save(&root, &r).unwrap();
            let e = effective_state(&root, &name);
            assert_eq!(e.to_string(), shown);
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{shown}\""));
        }
        assert_eq!(format!("[{:<6}]", Effective::Bad), "[bad   ]");
    }
}
