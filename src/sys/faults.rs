//! Fault injection for the fault-tolerance suite.
//!
//! When SYMDEPLOY_FAULT names a point (e.g. `export`, `before-rename-production`),
//! the process SIGKILLs itself there: the most abrupt death there is, with no
//! destructor or cleanup running, exactly like `kill -9` or a power cut of the
//! process. Unset (always, in production) this costs one cached env lookup.
//!
//! Points of the rollback and of strict mode: `after-mark-bad`
//! (a rollback killed between marking the release bad and moving warmup off
//! it) and `strict-before-flip-warmup` (the reference-transaction hook killed
//! with git holding the ref, before warmup moves). The promote's own points
//! (`stop`, `after-flip-production`, ...) also fire inside that hook.
//!
//! Points of a preview: `preview-build`, `preview-links`,
//! `preview-migrate`, `before-flip-preview`, `after-flip-preview`,
//! `before-rename-production` (the flip's own, of `previews/<slug>/production`),
//! `preview-remove` (after the link went, before the releases), and
//! `strict-before-flip-preview`.
//!
//! The rollback rule's undo: `rollback-migrate` (after `stop`, before the
//! `rollback.migrate` steps and the flip).

use std::sync::OnceLock;

static FAULT: OnceLock<Option<String>> = OnceLock::new();

/// Die here if SYMDEPLOY_FAULT names this point.
pub(crate) fn point(name: &str) {
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
