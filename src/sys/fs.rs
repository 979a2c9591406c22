//! Small filesystem and process facts shared by several rooms.
//!
//! The facts an error message needs (free space, sizes, who we run as) live in
//! `facts`, which depends on nothing in the crate: this module returns our
//! `Error`, and error rendering must not reach back here. They are re-exported
//! so that callers keep one place to look.

use std::path::Path;

pub(crate) use crate::sys::machine::{current_user, free_space, human_bytes};

/// syncfs(2) the filesystem holding `dir`: everything written there so far
/// (an export, what the build steps wrote) is on disk when this returns.
pub(crate) fn sync_filesystem(dir: &Path) -> crate::error::Result<()> {
    use crate::error::Error;
    let f = std::fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    nix::unistd::syncfs(&f).map_err(|e| Error::io("sync the filesystem of", dir, e.into()))?;
    tracing::info!(dir = %dir.display(), "syncfs");
    Ok(())
}

/// A token unique to this moment and process (journal runs, step marks).
pub(crate) fn unique_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}-{}", std::process::id())
}

/// This machine's host name, recorded in the journal and the lock so that an
/// operator with several hosts knows which one spoke.
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Seconds as people read them: `0.42s`, `12.3s`, `2m05s`.
pub(crate) fn human_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.2}s")
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// The current time as symdeploy records it (see [`Time`]): RFC 3339 in
/// UTC with exactly three fractional digits.
///
/// [`Time`]: crate::sys::time::Time
pub(crate) fn now_rfc3339() -> String {
    crate::sys::time::Time::now().to_string()
}

/// How long ago a recorded time was, for `releases` and previews; `?` for
/// text that is not a time symdeploy wrote.
pub(crate) fn age(rfc3339: &str) -> String {
    crate::sys::time::Time::parse(rfc3339).age()
}

/// Total size in bytes of the files below `path`, not following symlinks.
pub(crate) fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries.flatten().map(|e| tree_size(&e.path())).sum()
}

/// A live process's start time (clock ticks after boot), so a reused pid is
/// never mistaken for the process that had it. `None` once it has exited,
/// also while it is a zombie no one has reaped yet (state `Z` or `X`): a
/// process that exited decides nothing more, whoever reaps it and when.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        // Exited, not reaped yet: no longer a live process.
        let zombie = stat.replacen(") S ", ") Z ", 1);
        assert_eq!(parse_start_time(&zombie), None);
        assert_eq!(parse_start_time("garbage"), None);
        let me = start_time(std::process::id());
        assert!(me.is_some());
        assert_eq!(me, start_time(std::process::id()));
    }

    #[test]
    fn durations_are_rendered_for_people() {
        use std::time::Duration;
        assert_eq!(human_duration(Duration::from_millis(420)), "0.42s");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m05s");
    }
}
