//! The disk preflight of a warm-up: before anything is written into
//! releases/, compare what the release needs (its tree, plus the `carry`
//! paths copied from the previous release) with what the filesystem has free
//! beyond the `min_free` reserve, in bytes and in inodes. Short of it, remove
//! failed, incomplete and surplus releases first; still short, refuse with
//! the figures. A deploy must not be what fills the disk the database and
//! the logs live on.

use gix::objs::FindExt;
use gix::ObjectId;

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::state::commit::Commit;
use crate::state::release;
use crate::sys::fs::human_bytes;
use crate::sys::output;

/// What a release will take: bytes (rounded up to whole blocks) and inodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Need {
    /// Bytes on disk.
    pub(crate) bytes: u64,
    /// Files, directories and symlinks.
    pub(crate) inodes: u64,
}

/// What the filesystem holding releases/ has.
#[derive(Debug, Clone, Copy)]
struct Fs {
    free: u64,
    total: u64,
    free_inodes: u64,
    total_inodes: u64,
}

fn stat(path: &std::path::Path) -> Result<Fs> {
    let st = nix::sys::statvfs::statvfs(path)
        .map_err(|e| Error::io("read the free space of", path, e.into()))?;
    Ok(Fs {
        free: st.blocks_available() * st.fragment_size(),
        total: st.blocks() * st.fragment_size(),
        free_inodes: st.files_available(),
        total_inodes: st.files(),
    })
}

fn round_up(bytes: u64, block: u64) -> u64 {
    bytes.div_ceil(block.max(1)) * block.max(1)
}

/// A tree's need: blob sizes from object headers (nothing inflated), one
/// inode per entry.
pub(crate) fn tree_need(repo: &gix::Repository, tree: ObjectId, block: u64) -> Result<Need> {
    let mut need = Need {
        bytes: block,
        inodes: 1,
    };
    let mut stack = vec![(tree, 0usize)];
    let mut buf = Vec::new();
    while let Some((tree, depth)) = stack.pop() {
        if depth > 256 {
            continue;
        }
        let entries: Vec<(bool, bool, ObjectId)> = repo
            .objects
            .find_tree(&tree, &mut buf)
            .map_err(|e| Error::msg(format!("cannot read tree {tree}: {e}")))?
            .entries
            .iter()
            .map(|e| (e.mode.is_tree(), e.mode.is_commit(), e.oid.to_owned()))
            .collect();
        for (is_tree, is_commit, id) in entries {
            need.inodes += 1;
            if is_tree {
                need.bytes += block;
                stack.push((id, depth + 1));
            } else if is_commit {
                need.bytes += block; // an empty directory
            } else {
                let size = repo
                    .find_header(id)
                    .map_err(|e| Error::msg(format!("cannot read object {id}: {e}")))?
                    .size();
                need.bytes += round_up(size, block);
            }
        }
    }
    Ok(need)
}

/// Bytes and inodes below `path` (symlinks not followed).
fn path_need(path: &std::path::Path, block: u64) -> Need {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Need::default();
    };
    let mut need = Need {
        bytes: round_up(meta.len(), block),
        inodes: 1,
    };
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                let n = path_need(&e.path(), block);
                need.bytes += n.bytes;
                need.inodes += n.inodes;
            }
        }
    }
    need
}

/// The preflight; call with the lock held, before the export. `previous` is
/// the release `carry` copies from.
pub(crate) fn preflight(
    ctx: &Ctx,
    repo: &gix::Repository,
    source: crate::deploy::export::Source,
    previous: Option<Commit>,
) -> Result<()> {
    let commit = source.commit;
    if ctx.config.min_free == crate::state::config::MinFree::Off {
        return Ok(());
    }
    let releases = ctx.root.releases();
    let block = nix::sys::statvfs::statvfs(&releases)
        .map(|s| s.fragment_size())
        .unwrap_or(4096)
        .max(512);
    let mut need = tree_need(repo, source.tree, block)?;
    if let Some(prev) = previous {
        for c in &ctx.config.carry {
            let n = path_need(&ctx.root.main_release(prev).join(c), block);
            need.bytes += n.bytes;
            need.inodes += n.inodes;
        }
    }
    let fs = stat(&releases)?;
    if fits(ctx, &fs, need) {
        return Ok(());
    }
    output::header(&format!(
        "disk: {} needs {} and {} inodes; {} free, keeping {} (min_free): removing failed and surplus releases first",
        commit.short(),
        human_bytes(need.bytes),
        need.inodes,
        human_bytes(fs.free),
        human_bytes(ctx.config.min_free.bytes(fs.total)),
    ));
    for d in crate::housekeeping::retention::plan(ctx, ctx.config.keep_releases)? {
        // Under pressure, failed and incomplete releases kept for
        // inspection go too; protected ones (production, warmup, previous)
        // never do.
        let doomed = !d.keep || (d.state != release::Effective::Ready && !d.protected);
        if doomed {
            output::detail(&format!("remove {} ({})", d.commit.short(), d.why));
            crate::housekeeping::trash::remove_release(ctx, &d.commit.into())?;
        }
    }
    crate::sys::fs::sync_filesystem(&releases)?;
    let fs = stat(&releases)?;
    if fits(ctx, &fs, need) {
        output::detail(&format!("enough space now: {} free", human_bytes(fs.free)));
        return Ok(());
    }
    Err(refusal(ctx, commit, &fs, need))
}

fn reserve_inodes(ctx: &Ctx, fs: &Fs) -> u64 {
    if fs.total == 0 {
        return 0;
    }
    let share = ctx.config.min_free.bytes(fs.total) as f64 / fs.total as f64;
    (fs.total_inodes as f64 * share) as u64
}

fn fits(ctx: &Ctx, fs: &Fs, need: Need) -> bool {
    let reserve = ctx.config.min_free.bytes(fs.total);
    let bytes_ok = fs.free >= need.bytes.saturating_add(reserve);
    // Some filesystems (btrfs) report no inode limit at all.
    let inodes_ok = fs.total_inodes == 0
        || fs.free_inodes >= need.inodes.saturating_add(reserve_inodes(ctx, fs));
    bytes_ok && inodes_ok
}

fn refusal(ctx: &Ctx, commit: Commit, fs: &Fs, need: Need) -> Error {
    let reserve = ctx.config.min_free.bytes(fs.total);
    let root = &ctx.root;
    let pinned = [
        root.production(),
        root.warmup(),
        crate::deploy::pointers::previous_production(ctx),
    ];
    let mut candidates: Vec<(Commit, u64)> = root
        .release_dirs()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !pinned.contains(&Some(*c)))
        .map(|c| {
            let size = crate::sys::fs::tree_size(&root.main_release(c));
            (c, size)
        })
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.1));
    let what = if candidates.is_empty() {
        "no release can go (only production, warmup and the previous production release are left); free space outside releases/ or grow the filesystem".to_string()
    } else {
        format!(
            "releases that could go: {}; `symdeploy cleanup --keep 1` removes all but the newest",
            candidates
                .iter()
                .take(5)
                .map(|(c, s)| format!(
                    "{} ({}, {})",
                    c.short(),
                    release::effective_state(root, &(*c).into()),
                    human_bytes(*s)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let inodes = if fs.total_inodes > 0 {
        format!(
            "; inodes: {} free, {} needed, {} kept free",
            fs.free_inodes,
            need.inodes,
            reserve_inodes(ctx, fs)
        )
    } else {
        String::new()
    };
    Error::with_help(
        format!(
            "not enough disk space to warm up {}: {} free on the filesystem of {}, it needs {} and min_free keeps {} free{inodes}; nothing was written",
            commit.short(),
            human_bytes(fs.free),
            root.releases().display(),
            human_bytes(need.bytes),
            human_bytes(reserve),
        ),
        format!(
            "{what}; or lower `min_free` in {} (it protects the database and logs sharing this disk)",
            root.config_file().display()
        ),
    )
}
