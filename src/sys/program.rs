//! Where a step's program is, found the way `sh -c` in the release will
//! find it: for `init` (leave out steps whose program is missing) and
//! `check` (say so before the first push).

use std::path::{Path, PathBuf};

/// Does `program` (the first word of a command) exist on PATH? For `check`.
pub(crate) fn program_on_path(command: &str) -> Option<bool> {
    step_program(command, None).map(|found| found.is_ok())
}

/// Where the first word of a step's command resolves, the way `sh -c` run
/// in the release resolves it, wherever `check` itself runs: a path with a
/// `/` against `release` (the directory steps run in), a bare name on PATH
/// (executable files only, in PATH order). `Some(Err(why))`: the step would
/// fail with "not found" or "permission denied". `None`: nothing to look up
/// (shell syntax, an assignment), or a relative path and no release to look in.
pub(crate) fn step_program(
    command: &str,
    release: Option<&Path>,
) -> Option<std::result::Result<(), String>> {
    use std::os::unix::fs::PermissionsExt;
    let first = command.split_whitespace().next()?;
    // Assignments and shell syntax are not programs to look for.
    if first.contains('=') || first.starts_with(['(', '{', '$', '"', '\'']) {
        return None;
    }
    if first.contains('/') {
        let path = if Path::new(first).is_absolute() {
            PathBuf::from(first)
        } else {
            release?.join(first)
        };
        return Some(match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
            Ok(m) if m.is_file() => Err(format!(
                "`{first}` is not executable ({}); mark it in the repository: git update-index --chmod=+x {first}",
                path.display()
            )),
            Ok(_) => Err(format!("`{first}` is not a file ({})", path.display())),
            Err(_) => Err(format!("`{first}` does not exist ({})", path.display())),
        });
    }
    const BUILTINS: &[&str] = &[
        "cd", "echo", "test", "[", "true", "false", "exit", "export", "set", ":", ".", "exec",
        "printf", "if", "for", "while",
    ];
    if BUILTINS.contains(&first) {
        return Some(Ok(()));
    }
    Some(
        which::which(first)
            .map(|_| ())
            .map_err(|_| format!("`{first}` is not on PATH; install it or change the command")),
    )
}
