//! What crashed runs leave behind, swept with the lock held before any
//! operation starts ([`crate::session`]). Each owner sweeps its own
//! temporary names (all spelled in `crate::root`); this module only calls
//! them all, so a new kind of temporary file has one place to be added.

use crate::ctx::Ctx;

/// Remove what crashed runs left behind. Only ever called with the lock held.
pub fn sweep(ctx: &Ctx) {
    let root = &ctx.root;
    // Temporary links beside warmup, production and the web links.
    crate::link::remove_leftovers(&root.dir);
    // Releases moved aside, half-exported or half-removed.
    crate::trash::sweep(ctx);
    // Half-written release records.
    crate::release::sweep_temp_records(root);
    // The repository views of pre-receive hooks that died.
    crate::quarantine::sweep(&root.state_dir());
    // Strict mode's pending files of receive-packs that are gone.
    crate::txn::remove_stale(root);
    // Previews' temporary links, seeds and records.
    crate::preview::tidy(ctx);
}
