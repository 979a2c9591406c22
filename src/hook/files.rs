//! The hook files symdeploy installs in the repository (strict mode's
//! reference-transaction hook), and quoting for them.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::state::root::Root;

const REFERENCE_TRANSACTION: &str = include_str!("../../hooks/reference-transaction");
const ACCESS: &str = include_str!("../../hooks/access");

/// What [`install_hook`] found or did.
#[derive(Debug)]
pub(crate) enum HookInstall {
    /// symdeploy's hook, calling this binary, was already there.
    Kept(PathBuf),
    /// It was missing and is now installed.
    Installed(PathBuf),
    /// Another hook of that name is there; it is left alone.
    Foreign(PathBuf),
}

/// Install strict mode's reference-transaction hook in `hooks` (calling
/// `binary`) unless a hook of that name exists already.
pub(crate) fn install_hook(hooks: &Path, binary: &Path) -> Result<HookInstall> {
    install(
        hooks,
        "reference-transaction",
        REFERENCE_TRANSACTION,
        binary,
    )
}

/// Install post-receive mode's pre-receive hook, the access check that runs
/// before git moves any ref, unless a hook of that name exists already.
pub(crate) fn install_access_hook(hooks: &Path, binary: &Path) -> Result<HookInstall> {
    install(hooks, "pre-receive", ACCESS, binary)
}

/// Is this hook text post-receive mode's access check?
pub(crate) fn is_access_hook(text: &str) -> bool {
    text.contains(" hook access")
}

/// The pre-receive hook of `root`'s repository checks access (either the
/// access hook of post-receive mode or strict mode's pre-receive, which
/// checks before it builds).
pub(crate) fn access_checked(root: &Root) -> bool {
    std::fs::read_to_string(root.repository().join("hooks/pre-receive"))
        .is_ok_and(|t| is_access_hook(&t) || t.contains(" hook pre-receive"))
}

fn install(hooks: &Path, name: &str, template: &str, binary: &Path) -> Result<HookInstall> {
    use std::os::unix::fs::PermissionsExt;
    let path = hooks.join(name);
    let wanted = template.replace(
        "@SYMDEPLOY@",
        &crate::hook::files::shell_quote(&binary.display().to_string()),
    );
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == wanted => Ok(HookInstall::Kept(path)),
        Ok(_) => Ok(HookInstall::Foreign(path)),
        Err(_) => {
            // Written aside and renamed: git may look for the hook at any moment.
            let tmp = hooks.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, wanted).at("write", &tmp)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
                .at("make executable", &tmp)?;
            std::fs::rename(&tmp, &path).at("install", &path)?;
            Ok(HookInstall::Installed(path))
        }
    }
}

/// The reference-transaction hook of `root`'s repository, if it is symdeploy's.
pub(crate) fn hook_installed(root: &Root) -> bool {
    std::fs::read_to_string(root.repository().join("hooks/reference-transaction"))
        .is_ok_and(|t| t.contains(" hook reference-transaction"))
}

/// `s` as one word for `sh`.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
