//! What crashed runs leave behind, swept with the lock held before any
//! operation starts ([`crate::session`]). Each owner sweeps its own
//! temporary names (all spelled in `crate::state::root`); this module only calls
//! them all, so a new kind of temporary file has one place to be added.

use crate::ctx::Ctx;

/// Remove what crashed runs left behind. Only ever called with the lock held.
pub(crate) fn sweep(ctx: &Ctx) {
    let root = &ctx.root;
    // Temporary links beside warmup, production and the web links.
    crate::sys::symlink::remove_leftovers(&root.dir);
    // Releases moved aside, half-exported or half-removed.
    crate::housekeeping::trash::sweep(ctx);
    // Half-written release records.
    crate::state::release::sweep_temp_records(root);
    // Half-written manifests.
    crate::state::manifest::sweep_temp(root);
    // The repository views of pre-receive hooks that died.
    crate::hook::quarantine::sweep(&root.state_dir());
    // Strict mode's pending files of receive-packs that are gone.
    crate::hook::pending::remove_stale(root);
    // Previews' temporary links, seeds and records.
    crate::deploy::preview::tidy(ctx);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::root::{
        Root, QUARANTINE_VIEW_PREFIX, RECORD_TMP_PREFIX, TMP_LINK_PREFIX, TMP_PREFIX,
    };

    const C: &str = "3333333333333333333333333333333333333333";

    #[test]
    fn each_owner_sweeps_its_temporary_names_and_nothing_else() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        root.ensure_state_dirs().unwrap();
        let name = crate::state::release_name::ReleaseName::parse(C).unwrap();
        let mk_dir = |p: std::path::PathBuf| {
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("f"), "x").unwrap();
            p
        };
        // What a crash leaves: an export cut short, a removal cut short, a
        // trash entry, a half-written record, a temporary link, the view of
        // a hook that died (a child that has exited and been reaped).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let leftovers = [
            mk_dir(root.releases().join(format!("{TMP_PREFIX}{C}-4242"))),
            mk_dir(root.doomed_release(&name)),
            mk_dir(root.trash().join(format!("{C}-x"))),
            root.states().join(format!("{RECORD_TMP_PREFIX}abc")),
            root.dir.join(format!("{TMP_LINK_PREFIX}warmup-4242")),
            mk_dir(
                root.state_dir()
                    .join(format!("{QUARANTINE_VIEW_PREFIX}{dead}-abc")),
            ),
        ];
        std::fs::write(&leftovers[3], "{").unwrap();
        std::os::unix::fs::symlink("releases/x", &leftovers[4]).unwrap();
        // What must stay: a release, shared data (even named like a
        // temporary), and the view of a hook still running (this process).
        let kept = [
            mk_dir(root.release(&name)),
            mk_dir(root.common().join(format!("{TMP_PREFIX}uploads"))),
            mk_dir(root.state_dir().join(format!(
                "{QUARANTINE_VIEW_PREFIX}{}-abc",
                std::process::id()
            ))),
        ];
        let ctx = Ctx::load(root).unwrap();
        sweep(&ctx);
        for p in &leftovers {
            assert!(
                std::fs::symlink_metadata(p).is_err(),
                "left behind: {}",
                p.display()
            );
        }
        for p in &kept {
            assert!(p.join("f").is_file(), "swept away: {}", p.display());
        }
    }
}
