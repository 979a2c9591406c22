//! The one error type of symdeploy.
//!
//! Every variant renders for the operator: what failed, where (file, ref, step,
//! path), and a `help:` line saying what to do next. Nothing here is meant for a
//! developer reading a backtrace; that is what the tracing log is for.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can make a symdeploy command fail.
#[derive(Debug)]
pub(crate) enum Error {
    /// A filesystem operation on `path` failed.
    Io {
        /// What we were doing, phrased as "create directory".
        action: String,
        /// The path it was done to.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// deploy.toml is malformed or holds a bad value.
    Config {
        /// The configuration file.
        file: PathBuf,
        /// 1-based line of the offending key, when known.
        line: Option<usize>,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A deploy step (a configured shell command) failed.
    Step {
        /// The stage the step belongs to (build, links, migrate, ...).
        stage: String,
        /// The command as configured.
        command: String,
        /// How it ended.
        status: symdeploy_steps::StepEnd,
        /// The per-deploy log with the whole output.
        log: Option<PathBuf>,
    },
    /// The deploy lock could not be taken in time.
    LockTimeout {
        /// Seconds waited.
        waited: u64,
        /// Who holds it, as recorded by the holder.
        holder: String,
    },
    /// SIGINT or SIGTERM stopped the run; it was unwound (daemons started,
    /// production back where it was) before this is returned.
    Interrupted {
        /// The signal number; the exit status is 128 + it.
        signal: i32,
        /// What was interrupted and where production is now.
        message: String,
    },
    /// An operation that failed after it had started changing things (a
    /// warm-up, a switch, a preview), told whole: the renderer
    /// ([`crate::sys::output::report`], called once by `main` or at the end of a
    /// hook's run, [`crate::session::close_run`]) prints
    /// one `error:` line, where things point now, and one `help:`. Kept as
    /// text for machine reports too (`promote --json`).
    Failed {
        /// The exit code.
        code: i32,
        /// The `error:` line's text.
        message: String,
        /// Where production and warmup (or the preview) point after the
        /// failure was unwound, one line each.
        now: Vec<String>,
        /// The `help:` line's text.
        help: Option<String>,
        /// What made it fail (a step, an export, a lock), kept whole so
        /// callers decide on it, not on the message's text.
        source: Option<Box<Error>>,
    },
    /// Several independent parts of one operation failed (cleanup removing
    /// releases, a preview's releases): one `error:` line, each part's
    /// failure below it, the first part's `help:`.
    Several {
        /// The `error:` line's text.
        message: String,
        /// Each part's failure, in the order they happened.
        parts: Vec<Error>,
    },
    /// Anything else: a message and what to do about it.
    Other {
        /// What failed.
        message: String,
        /// What to do next, if there is something useful to say.
        help: Option<String>,
    },
}

/// Shorthand used across the crate.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// The exit code `code` (an error's [`Error::exit_code`]) as the process ends with it.
pub(crate) fn exit(code: i32) -> std::process::ExitCode {
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

impl Error {
    /// A failure with a message and no specific advice.
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        Error::Other {
            message: message.into(),
            help: None,
        }
    }

    /// A failure with a message and a `help:` line.
    pub(crate) fn with_help(message: impl Into<String>, help: impl Into<String>) -> Self {
        Error::Other {
            message: message.into(),
            help: Some(help.into()),
        }
    }

    /// The failures of one operation's independent parts as one error: none
    /// is no error, one is itself, more are gathered under `message(count)`.
    pub(crate) fn gather(parts: Vec<Error>, message: impl FnOnce(usize) -> String) -> Option<Self> {
        // Flat: a part that gathered parts of its own lists them here.
        let mut parts: Vec<Error> = parts
            .into_iter()
            .flat_map(|e| match e {
                Error::Several { parts, .. } => parts,
                e => vec![e],
            })
            .collect();
        match parts.len() {
            0 => None,
            1 => parts.pop(),
            n => Some(Error::Several {
                message: message(n),
                parts,
            }),
        }
    }

    /// A filesystem failure: `action` is phrased like "create directory".
    pub(crate) fn io(action: impl Into<String>, path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io {
            action: action.into(),
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// The process exit code for this error: distinct codes let scripts react
    /// (a lock timeout is worth retrying, a failed step is not).
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Error::Step { .. } => 3,
            Error::LockTimeout { .. } => 4,
            Error::Config { .. } => 5,
            Error::Failed { code, .. } => *code,
            Error::Several { parts, .. } => parts.first().map_or(1, Error::exit_code),
            // The shell's convention for "killed by that signal": 130, 143.
            Error::Interrupted { signal, .. } => 128 + signal,
            _ => 1,
        }
    }

    /// The advice line shown after the error, if any.
    pub(crate) fn help(&self) -> Option<String> {
        match self {
            Error::Io { source, path, .. } => io_help(source, path),
            Error::Config { file, .. } => Some(format!(
                "fix {} and run `symdeploy check` to validate it",
                file.display()
            )),
            Error::Step { log, .. } => Some(match log {
                Some(log) => format!(
                    "the whole output is in {}; fix the step or the commit and push again (or run `symdeploy warmup`)",
                    log.display()
                ),
                None => "fix the step or the commit and try again".to_string(),
            }),
            Error::LockTimeout { .. } => Some(
                "another deploy is running; wait for it to finish and try again (`symdeploy status` shows who holds the lock), or raise lock_timeout in deploy.toml"
                    .to_string(),
            ),
            Error::Other { help, .. } => help.clone(),
            Error::Interrupted { .. } => Some(
                "the run was undone as far as it needs to be (see above); run the command again when ready; `symdeploy status` shows where production and warmup point"
                    .to_string(),
            ),
            Error::Failed { help, .. } => help.clone(),
            Error::Several { parts, .. } => parts.iter().find_map(Error::help),
        }
    }
}

fn io_help(source: &io::Error, path: &Path) -> Option<String> {
    match source.raw_os_error() {
        Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT => {
            let free = crate::sys::machine::free_space(path)
                .map(|b| format!(" ({} free there now)", crate::sys::machine::human_bytes(b)))
                .unwrap_or_default();
            Some(format!(
                "the filesystem holding {} is full{free}; free some space (`symdeploy cleanup` removes old releases) and deploy again",
                path.display()
            ))
        }
        Some(code)
            if code == nix::libc::EACCES
                || code == nix::libc::EPERM
                || code == nix::libc::EROFS =>
        {
            Some(format!(
                "check the owner and permissions of {} (the deploy runs as user {})",
                path.display(),
                crate::sys::machine::current_user()
            ))
        }
        _ => None,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                action,
                path,
                source,
            } => write!(f, "could not {action} {}: {source}", path.display()),
            Error::Config {
                file,
                line,
                message,
            } => match line {
                Some(line) => write!(f, "{}:{line}: {message}", file.display()),
                None => write!(f, "{}: {message}", file.display()),
            },
            Error::Step {
                stage,
                command,
                status,
                ..
            } => write!(f, "{stage} step `{command}` failed: {status}"),
            Error::LockTimeout { waited, holder } => write!(
                f,
                "gave up waiting for the deploy lock after {waited}s; it is held by {holder}"
            ),
            Error::Other { message, .. } => f.write_str(message),
            Error::Interrupted { message, .. } => f.write_str(message),
            Error::Failed { message, .. } => f.write_str(message),
            Error::Several { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Failed {
                source: Some(source),
                ..
            } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Attach a path and an action to an `io::Result`, turning it into our error.
pub(crate) trait IoContext<T> {
    /// `action` is phrased like "create directory".
    fn at(self, action: &str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn at(self, action: &str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(action, path, io::Error::from(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The help lines quote facts (free space, the user we run as) gathered
    // by `crate::sys::machine`; these pin the wording, which no transcript reaches.
    #[test]
    fn io_help_names_the_full_disk_and_the_user() {
        let dir = tempfile::tempdir().expect("temp dir");
        let full = Error::io(
            "write",
            dir.path().join("file"),
            io::Error::from_raw_os_error(nix::libc::ENOSPC),
        );
        let help = full.help().expect("a full disk has advice");
        let head = format!(
            "the filesystem holding {} is full (",
            dir.path().join("file").display()
        );
        assert!(help.starts_with(&head), "{help}");
        assert!(
            help.ends_with(" free there now); free some space (`symdeploy cleanup` removes old releases) and deploy again"),
            "{help}"
        );

        let denied = Error::io(
            "create directory",
            "/srv/app/releases",
            io::Error::from_raw_os_error(nix::libc::EACCES),
        );
        assert_eq!(
            denied.help().expect("permission has advice"),
            format!(
                "check the owner and permissions of /srv/app/releases (the deploy runs as user {})",
                crate::sys::machine::current_user()
            )
        );

        let missing = Error::io(
            "open",
            "/nowhere",
            io::Error::from_raw_os_error(nix::libc::ENOENT),
        );
        assert_eq!(missing.help(), None);
    }
}
