//! The release written back to disk while the export is still writing it.
//!
//! `ready` vouches that a release is on disk, so the warm-up syncs its
//! filesystem before recording it. Started only once the export was done,
//! that sync waited for all of it: 0.22 s of a 0.54 s push on the benchmark
//! tree (80 MiB in 18,000 files), with the disk idle while the export
//! inflated blobs and the export idle while the disk wrote. A `syncfs` each
//! time the export has written another [`FLUSH_EVERY`] bytes starts the
//! disk's work while the export still runs, and the sync at the end finds
//! little left: the benchmark's push measured 0.508 s → 0.434 s (export
//! 0.25 → 0.29 s, sync 0.22 → 0.10 s).
//!
//! `syncfs` from a thread of its own, not `sync_file_range` on each file as
//! it is written: that ran the block allocation and the I/O submission in
//! the writer threads, one file at a time, and made the export twice as
//! slow; `syncfs` leaves them to the kernel's flusher, in big batches. Each
//! call is a journal commit of the whole filesystem (other writers' data
//! too, as the sync before `ready` always was), so the calls are spaced by
//! bytes written, not by time: a 1 GiB tree makes 32 of them, a small one
//! none but the last. None of them vouches for anything: the sync before
//! `ready` still does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Bytes the export writes between two syncs. A trade-off, measured on the
/// benchmark tree (`scripts/bench --parts push`, 9 rounds; push -> ready,
/// and what the manifest adds to it): 16 MiB 0.439 s, +14.5%; 32 MiB
/// 0.434 s, +7.6%; 48 MiB 0.476 s, +9.6%; none but the last 0.508 s, +5.6%.
/// The smaller, the less the sync before `ready` has left to do, and the
/// less of the manifest's walk (which runs beside that sync) it hides.
pub(crate) const FLUSH_EVERY: u64 = 32 << 20;

/// A thread syncing the filesystem of the releases while an export fills it.
pub(crate) struct Writeback {
    /// One message: "another FLUSH_EVERY bytes are written". Dropped at the end.
    more: mpsc::Sender<()>,
    /// The count of exported bytes at which the next sync is asked for.
    next: AtomicU64,
    thread: JoinHandle<bool>,
}

impl Writeback {
    /// Start the thread for the filesystem holding `dir`.
    pub(crate) fn start(dir: PathBuf) -> Writeback {
        let (more, asked) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            while asked.recv().is_ok() {
                // Asks that came while the last sync ran are one sync now.
                while asked.try_recv().is_ok() {}
                let _ = crate::sys::fs::sync_filesystem(&dir);
            }
            crate::sys::fs::sync_filesystem(&dir).is_ok()
        });
        Writeback {
            more,
            next: AtomicU64::new(FLUSH_EVERY),
            thread,
        }
    }

    /// The export has written `bytes` so far (from its progress reports).
    pub(crate) fn written(&self, bytes: u64) {
        let next = self.next.load(Ordering::Relaxed);
        if bytes >= next
            && self
                .next
                .compare_exchange(
                    next,
                    bytes + FLUSH_EVERY,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            let _ = self.more.send(());
        }
    }

    /// The export is done: one last sync of everything, in the background;
    /// the handle says whether it succeeded (the sync before `ready`, which
    /// vouches, waits for it first so that it has only the rest to do).
    pub(crate) fn finish(self) -> JoinHandle<bool> {
        drop(self.more);
        self.thread
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sync is asked for once per FLUSH_EVERY bytes, however the reports
    /// fall, and the thread ends with its last sync once the export is done.
    #[test]
    fn a_sync_is_asked_for_each_flush_every_bytes_and_the_last_at_the_end() {
        let t = tempfile::tempdir().unwrap();
        let (more, asked) = mpsc::channel::<()>();
        let w = Writeback {
            more,
            next: AtomicU64::new(FLUSH_EVERY),
            thread: std::thread::spawn(|| true),
        };
        for bytes in [
            0,
            FLUSH_EVERY - 1,
            FLUSH_EVERY,
            FLUSH_EVERY + 5,
            3 * FLUSH_EVERY,
        ] {
            w.written(bytes);
        }
        assert_eq!(
            asked.try_iter().count(),
            2,
            "at 1 and at 3 times FLUSH_EVERY"
        );
        w.written(4 * FLUSH_EVERY - 1);
        assert_eq!(
            asked.try_iter().count(),
            0,
            "not before 3 + 1 times FLUSH_EVERY"
        );
        w.written(4 * FLUSH_EVERY);
        assert_eq!(asked.try_iter().count(), 1);
        assert!(w.finish().join().unwrap());

        let real = Writeback::start(t.path().to_path_buf());
        real.written(FLUSH_EVERY);
        assert!(real.finish().join().unwrap(), "the last sync succeeded");
    }
}
