//! The repository as a pre-receive hook must read it: the pushed objects
//! are still in git's quarantine, which gix does not read from the
//! environment. A throwaway view (a git directory whose alternates name both
//! object stores) sees everything; it is named by the hook's pid, so the
//! view of a killed hook is swept by the next locked run ([`sweep`]).

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::state::root::{Root, QUARANTINE_VIEW_PREFIX};

/// The repository as a hook must read it. In pre-receive the pushed objects
/// are still in quarantine (GIT_QUARANTINE_PATH), which gix does not read from
/// the environment; a throwaway git directory whose alternates name both the
/// quarantine and the real object store sees everything, and changes nothing.
pub(crate) struct HookObjects {
    /// The repository, seeing the quarantined objects too.
    pub(crate) repo: gix::Repository,
    _view: Option<tempfile::TempDir>,
}

impl HookObjects {
    /// Open `root`'s repository as this hook must read it.
    pub(crate) fn open(root: &Root) -> Result<HookObjects> {
        let real = root.repository();
        let Some(quarantine) = std::env::var_os("GIT_QUARANTINE_PATH").map(PathBuf::from) else {
            return Ok(HookObjects {
                repo: crate::state::repo::open(&real)?,
                _view: None,
            });
        };
        let view = tempfile::Builder::new()
            // The pid lets a later deploy remove the view of a hook that was killed.
            .prefix(&format!("{QUARANTINE_VIEW_PREFIX}{}-", std::process::id()))
            .tempdir_in(root.state_dir())
            .at("create a temporary directory in", root.state_dir())?;
        let dir = view.path();
        let quarantine = std::path::absolute(&quarantine).unwrap_or(quarantine);
        write_view(
            dir,
            &quarantine,
            &std::fs::canonicalize(real.join("objects")).unwrap_or(real.join("objects")),
        )?;
        Ok(HookObjects {
            repo: crate::state::repo::open(dir)?,
            _view: Some(view),
        })
    }
}

fn write_view(dir: &Path, quarantine: &Path, objects: &Path) -> Result<()> {
    for sub in ["objects/info", "objects/pack", "refs/heads", "refs/tags"] {
        std::fs::create_dir_all(dir.join(sub)).at("create directory", dir.join(sub))?;
    }
    std::fs::write(dir.join("HEAD"), "ref: refs/heads/main\n").at("write", dir.join("HEAD"))?;
    std::fs::write(
        dir.join("config"),
        "[core]\n\trepositoryformatversion = 0\n\tbare = true\n",
    )
    .at("write", dir.join("config"))?;
    let alternates = format!("{}\n{}\n", quarantine.display(), objects.display());
    std::fs::write(dir.join("objects/info/alternates"), alternates)
        .at("write", dir.join("objects/info/alternates"))
}

/// Remove the quarantine views of pre-receive hooks that died (a live hook
/// may be waiting for the lock with its view in use: its pid is alive).
pub(crate) fn sweep(state_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(QUARANTINE_VIEW_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
