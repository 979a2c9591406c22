//! The symdeploy command lines that `help:` lines advise running.
//!
//! In a git hook what symdeploy prints reaches the pusher as `remote:` lines,
//! on another machine: the command they are told to run goes over SSH, where
//! nothing says which deploy root is meant, so there it names the root.

use std::path::PathBuf;
use std::sync::OnceLock;

static HOOK_ROOT: OnceLock<PathBuf> = OnceLock::new();

/// This process is a git hook of the deploy root `root`: advice names it.
pub(crate) fn in_hook_of(root: PathBuf) {
    let _ = HOOK_ROOT.set(root);
}

/// `symdeploy ARGS`, with `--root ROOT` when the reader is a pusher.
pub(crate) fn command(args: &str) -> String {
    match HOOK_ROOT.get() {
        Some(root) => format!("symdeploy --root {} {args}", root.display()),
        None => format!("symdeploy {args}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn outside_a_hook_the_command_is_plain() {
        // Unit tests never call in_hook_of.
        assert_eq!(super::command("warmup abc"), "symdeploy warmup abc");
    }
}
