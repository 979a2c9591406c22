//! What can make an export fail, each told for the operator.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// An export that did not complete.
#[derive(Debug)]
pub enum Error {
    /// A filesystem operation on `path` failed.
    Io {
        /// What was being done, phrased like "create directory".
        action: String,
        /// The path it was done to.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The tree cannot be exported (unsafe, corrupt, unreadable objects).
    Other {
        /// What failed, naming the path in the tree.
        message: String,
        /// What to do next, when there is something useful to say.
        help: Option<String>,
    },
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        Error::Other {
            message: message.into(),
            help: None,
        }
    }

    pub(crate) fn with_help(message: impl Into<String>, help: impl Into<String>) -> Self {
        Error::Other {
            message: message.into(),
            help: Some(help.into()),
        }
    }

    pub(crate) fn io(action: impl Into<String>, path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io {
            action: action.into(),
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            Error::Other { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Other { .. } => None,
        }
    }
}

/// `.at("create directory", path)` on a failed filesystem call.
pub(crate) trait IoContext<T> {
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
