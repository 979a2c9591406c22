//! What the export wrote, as the manifest's head start.
//!
//! The export writes every file from a blob the tree names, unchanged, so it
//! knows each file's git blob id without hashing a byte
//! (`symdeploy_export::export_tree_recording`), and it notes the stamp each
//! file had once written (inode, size, ctime, mtime, from fstat on the
//! descriptor the bytes went through). At the end of the warm-up the
//! manifest walks the release as before but records the blob id for every
//! file whose stamp is still the one the export saw, and hashes only what
//! the build made or touched: the warm-up reads none of the release back.
//!
//! Why an equal stamp means equal content. Every change of a file's content
//! (and of its mode, owner, links) sets its ctime from the kernel's clock,
//! and no system call lets a user set a ctime; a file replaced by another is
//! another inode, or the same number reused with a fresh ctime. The kernel
//! takes that time from its coarse clock (CLOCK_REALTIME_COARSE, which moves
//! once a tick, 1 to 10 ms; or a finer reading, never behind it), truncated
//! to the filesystem's granularity (1 ns on ext4, xfs, btrfs, tmpfs; whole
//! seconds on some). So a change made at or after a moment T gets a ctime no
//! earlier than the coarse clock at T, less the granularity. The export is
//! the only writer until [`Seed::new`] reads that clock (carry, shared
//! links, steps and ACLs all come after it), so a stamp whose ctime is older
//! than that reading by more than the granularity cannot be the stamp of any
//! later change: if the file's stamp is still that one, its content is still
//! what the export wrote. A file written by the export within that margin
//! of the end could share its tick with a change by the build, so it is
//! hashed again, as is everything whose inode, size, ctime or mtime moved.
//!
//! The argument needs the wall clock not to go back while the build runs
//! (ctimes come from it). A step back of the clock (NTP's first sync, an
//! operator's `date -s`) shows as the wall clock advancing less than the
//! monotonic one; then nothing recorded is trusted and everything is hashed.

use std::time::{Duration, Instant, SystemTime};

use nix::time::{clock_getres, clock_gettime, ClockId};

use crate::state::manifest::{Digest, FileEntry, Kind, Manifest, Stamp};

const SECOND_NS: i128 = 1_000_000_000;

/// The files of one export with their blob ids and stamps as written, and the clocks
/// when the export was done (nothing else had written to the release yet).
pub(crate) struct Seed {
    files: Vec<symdeploy_export::Written>,
    /// CLOCK_REALTIME_COARSE then, in ns since the epoch.
    coarse_ns: i128,
    /// One tick of that clock, in ns.
    tick_ns: i128,
    wall: SystemTime,
    mono: Instant,
}

impl Seed {
    /// `files` as the export returned them; call once the release is in
    /// place, before anything but the export may write to it.
    pub(crate) fn new(files: Vec<symdeploy_export::Written>) -> Seed {
        let ns = |t: nix::sys::time::TimeSpec| {
            i128::from(t.tv_sec()) * SECOND_NS + i128::from(t.tv_nsec())
        };
        let coarse_ns = clock_gettime(ClockId::CLOCK_REALTIME_COARSE)
            .map(ns)
            .unwrap_or(0); // nothing is trusted
                           // Never less than 1 ms, never more than 100 ms whatever it says.
        let tick_ns = clock_getres(ClockId::CLOCK_REALTIME_COARSE)
            .map(ns)
            .unwrap_or(10_000_000)
            .clamp(1_000_000, 100_000_000);
        Seed {
            files,
            coarse_ns,
            tick_ns,
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }

    /// The files whose recorded hash may stand in for reading them again,
    /// as manifest entries for a `Depth::Metadata` scan (which takes a hash
    /// only where inode, size, ctime and mtime all still match); `None` when
    /// the clock went back since [`Seed::new`], so everything is hashed.
    pub(crate) fn known(&self) -> Option<Manifest> {
        if clock_went_back(self.wall, self.mono, SystemTime::now(), Instant::now()) {
            tracing::warn!(
                "the clock went back during the warm-up: the manifest hashes every file"
            );
            return None;
        }
        let trusted_before = self.coarse_ns - self.margin_ns();
        let entries = self
            .files
            .iter()
            .filter(|w| w.ctime_ns < trusted_before)
            .filter_map(|w| {
                // A SHA-256 repository's ids are not blob ids of this format:
                // such a file is hashed (BLAKE3) like one the build made.
                let blob: [u8; 20] = w.blob.as_slice().try_into().ok()?;
                Some((w, blob))
            })
            .map(|(w, blob)| FileEntry {
                path: w.path.clone(),
                kind: Kind::File,
                mode: w.mode,
                size: w.size,
                hash: Some(Digest::GitBlob(blob)),
                target: None,
                stamp: Stamp {
                    ino: w.ino,
                    ctime_ns: w.ctime_ns,
                    mtime_ns: w.mtime_ns,
                },
            })
            .collect();
        Some(Manifest {
            excluded: Vec::new(),
            from_commit: None,
            entries,
        })
    }

    /// How much older than the coarse clock at [`Seed::new`] a stamp must
    /// be: the filesystem's granularity, plus a tick to spare. Stamps that
    /// are all whole seconds mean a filesystem that keeps no fractions
    /// (FAT's are even 2 s); otherwise the granularity is taken as a tick.
    fn margin_ns(&self) -> i128 {
        let whole_seconds = self.files.iter().all(|w| w.ctime_ns % SECOND_NS == 0);
        let granularity = if whole_seconds {
            2 * SECOND_NS
        } else {
            self.tick_ns
        };
        granularity + self.tick_ns
    }
}

/// Did the wall clock go back (by more than a few ms) between the two
/// readings? It then advanced less than the monotonic clock.
fn clock_went_back(wall0: SystemTime, mono0: Instant, wall1: SystemTime, mono1: Instant) -> bool {
    let mono = mono1.saturating_duration_since(mono0);
    match wall1.duration_since(wall0) {
        Ok(wall) => wall + Duration::from_millis(5) < mono,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::manifest::{diff, scan, Depth};
    use std::os::unix::fs::MetadataExt;

    fn stamped(dir: &std::path::Path, path: &str) -> symdeploy_export::Written {
        let p = dir.join(path);
        let m = std::fs::symlink_metadata(&p).unwrap();
        symdeploy_export::Written {
            path: path.as_bytes().to_vec(),
            blob: gix::objs::compute_hash(
                gix::hash::Kind::Sha1,
                gix::objs::Kind::Blob,
                &std::fs::read(&p).unwrap(),
            )
            .unwrap(),
            size: m.len(),
            mode: m.mode() & 0o7777,
            ino: m.ino(),
            ctime_ns: i128::from(m.ctime()) * SECOND_NS + i128::from(m.ctime_nsec()),
            mtime_ns: i128::from(m.mtime()) * SECOND_NS + i128::from(m.mtime_nsec()),
        }
    }

    /// As a warm-up goes: files written and stamped, time passes, the seed
    /// is taken, a build rewrites one file in place (same size, mtime put
    /// back) and replaces another by a rename (same size and mtime), and
    /// writes one more. The scan takes the recorded hash for the untouched
    /// file only, and its result equals a full hash of the tree.
    #[test]
    fn only_files_the_build_touched_are_hashed_again_and_the_result_is_exact() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        for (name, text) in [
            ("same", "same\n"),
            ("inplace", "aaaa\n"),
            ("renamed", "bbbb\n"),
        ] {
            std::fs::write(p.join(name), text).unwrap();
        }
        let files = vec![
            stamped(p, "inplace"),
            stamped(p, "renamed"),
            stamped(p, "same"),
        ];
        // Well past any tick, as in a warm-up whose export took a while.
        std::thread::sleep(Duration::from_millis(250));
        let seed = Seed::new(files);
        let keep_mtime = |path: &std::path::Path, f: &dyn Fn()| {
            let m = std::fs::metadata(path).unwrap().modified().unwrap();
            f();
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(m)
                .unwrap();
        };
        keep_mtime(&p.join("inplace"), &|| {
            std::fs::write(p.join("inplace"), "AAAA\n").unwrap()
        });
        std::fs::write(p.join("tmp"), "BBBB\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(p.join("tmp"))
            .unwrap()
            .set_modified(
                std::fs::metadata(p.join("renamed"))
                    .unwrap()
                    .modified()
                    .unwrap(),
            )
            .unwrap();
        std::fs::rename(p.join("tmp"), p.join("renamed")).unwrap();
        std::fs::write(p.join("new"), "bbbb\n").unwrap();

        let known = seed.known().unwrap();
        assert_eq!(known.entries.len(), 3, "all three were written long before");
        let quick = scan(p, &[], Depth::Metadata, Some(&known)).unwrap();
        // Every file read again, each in the hash it is recorded with (the
        // export's blob ids; BLAKE3 for the one the build added).
        let full = scan(p, &[], Depth::Full, Some(&known)).unwrap();
        assert_eq!(quick, full);
        let hashes: Vec<bool> = full
            .iter()
            .map(|e| matches!(e.hash, Some(Digest::GitBlob(_))))
            .collect();
        assert_eq!(
            hashes,
            vec![true, false, true, true],
            "inplace, new, renamed, same"
        );
        assert!(diff(&full, &quick, &[]).is_empty());
        // And the recorded hash was taken where nothing changed: a seed
        // with a wrong hash for `same` shows through, one for the others
        // does not.
        let mut forged = known.clone();
        for e in &mut forged.entries {
            e.hash = Some(Digest::GitBlob([0; 20]));
        }
        let seeded = scan(p, &[], Depth::Metadata, Some(&forged)).unwrap();
        let d: Vec<Vec<u8>> = diff(&full, &seeded, &[])
            .into_iter()
            .map(|d| d.path)
            .collect();
        assert_eq!(d, vec![b"same".to_vec()]);
    }

    #[test]
    fn stamps_within_the_margin_of_the_seed_are_not_trusted() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("late"), "x").unwrap();
        let seed = Seed::new(vec![stamped(t.path(), "late")]);
        assert!(seed.known().unwrap().entries.is_empty());
        let whole = Seed {
            files: vec![symdeploy_export::Written {
                ctime_ns: seed.coarse_ns / SECOND_NS * SECOND_NS - SECOND_NS,
                ..stamped(t.path(), "late")
            }],
            ..seed
        };
        assert!(
            whole.known().unwrap().entries.is_empty(),
            "whole-second stamps need two seconds"
        );
    }

    #[test]
    fn a_clock_that_went_back_trusts_nothing() {
        let (w, m) = (SystemTime::now(), Instant::now());
        let later = m + Duration::from_secs(5);
        assert!(!clock_went_back(w, m, w + Duration::from_secs(5), later));
        assert!(clock_went_back(w, m, w + Duration::from_secs(4), later));
        assert!(clock_went_back(w, m, w - Duration::from_secs(1), later));
    }
}
