//! Facts about the machine that error messages quote: free space, sizes for
//! people, the user we run as.
//!
//! A leaf on purpose: it uses nothing from the crate, so `error` can render
//! "the disk is full (1.2 GiB free)" or "the deploy runs as user x" without
//! reaching a module that itself returns `Error` (that was a circle with
//! `fsutil`).

use std::path::Path;

/// Free bytes available to us on the filesystem holding `path` (or its nearest
/// existing ancestor), for error messages about a full disk.
pub(crate) fn free_space(path: &Path) -> Option<u64> {
    let mut p = Some(path);
    while let Some(candidate) = p {
        if let Ok(st) = nix::sys::statvfs::statvfs(candidate) {
            return Some(st.blocks_available() * st.fragment_size());
        }
        p = candidate.parent();
    }
    None
}

/// `1.5 GiB`, `320 KiB`: sizes for people.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The name of the user we run as: the pusher, when run from a hook over SSH.
pub(crate) fn current_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => std::env::var("USER").unwrap_or_else(|_| format!("uid {uid}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_rendered_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
