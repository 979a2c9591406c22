//! Fault injection for the fault-tolerance suite.
//!
//! When SYMDEPLOY_FAULT names a point (e.g. `export`, `before-rename-production`),
//! the process SIGKILLs itself there: the most abrupt death there is, with no
//! destructor or cleanup running, exactly like `kill -9` or a power cut of the
//! process. Unset (always, in production) this costs one cached env lookup.

use std::sync::OnceLock;

static FAULT: OnceLock<Option<String>> = OnceLock::new();

/// Die here if SYMDEPLOY_FAULT names this point.
pub fn point(name: &str) {
    let wanted = FAULT.get_or_init(|| {
        std::env::var("SYMDEPLOY_FAULT")
            .ok()
            .filter(|s| !s.is_empty())
    });
    if wanted.as_deref() == Some(name) {
        tracing::warn!(point = name, "SYMDEPLOY_FAULT: killing myself");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    }
}
