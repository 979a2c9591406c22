//! commit → directory, with gix and no `git` subprocess.
//!
//! One walker thread reads trees depth-first, validates every path component,
//! applies `export-ignore` like `git archive`, and creates directories once;
//! worker threads (one per core) inflate blobs and write files. Work travels in
//! small batches over a bounded channel, so memory stays flat however large the
//! tree is.
//!
//! Nothing is ever written through a symlink: every file and directory is
//! created relative to an open directory descriptor with `O_NOFOLLOW` and
//! `O_EXCL`, so a hostile tree that puts a symlink and a directory under the
//! same name fails instead of writing outside the release.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gix::bstr::{BStr, BString, ByteSlice, ByteVec};
use gix::objs::FindExt;
use gix::ObjectId;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode};

use crate::error::{Error, IoContext, Result};

/// How many file jobs travel together; big enough to make channel traffic
/// negligible, small enough to keep both workers busy on small trees.
const BATCH: usize = 64;
/// Batches in flight; bounds memory and open directory descriptors.
const QUEUE: usize = 16;
/// Deeper trees are refused: no real project nests this deep, hostile ones do.
const MAX_DEPTH: usize = 256;

/// What an export produced, for the pusher and the benchmark.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Regular files written.
    pub files: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Directories created (the top one not counted).
    pub dirs: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Entries skipped by `export-ignore`.
    pub ignored: u64,
    /// Submodule paths exported as empty directories.
    pub submodules: Vec<String>,
}

#[derive(Clone, Copy)]
enum Kind {
    File,
    Executable,
    Symlink,
}

struct Job {
    dir: Arc<OwnedFd>,
    /// Path relative to the export root; the last component is the name.
    path: BString,
    name_at: usize,
    id: ObjectId,
    kind: Kind,
}

/// The bytes an export of `tree` writes (blob sizes from object headers,
/// nothing inflated; export-ignore not applied), for a full-disk message.
pub fn tree_bytes(repo: &gix::Repository, tree: ObjectId) -> Result<u64> {
    fn walk(
        repo: &gix::Repository,
        tree: ObjectId,
        depth: usize,
        buf: &mut Vec<u8>,
    ) -> Result<u64> {
        if depth > MAX_DEPTH {
            return Ok(0);
        }
        let entries: Vec<(bool, ObjectId)> = repo
            .objects
            .find_tree(&tree, buf)
            .map_err(|e| Error::msg(format!("cannot read tree {tree}: {e}")))?
            .entries
            .iter()
            .filter(|e| !e.mode.is_commit())
            .map(|e| (e.mode.is_tree(), e.oid.to_owned()))
            .collect();
        let mut total = 0;
        for (is_tree, id) in entries {
            total += if is_tree {
                walk(repo, id, depth + 1, buf)?
            } else {
                repo.find_header(id)
                    .map_err(|e| Error::msg(format!("cannot read object {id}: {e}")))?
                    .size()
            };
        }
        Ok(total)
    }
    walk(repo, tree, 0, &mut Vec::new())
}

/// One regular file as the export wrote it, for a caller that must vouch
/// for the release's content later (a manifest) without reading every file
/// back: the id of the blob it wrote (the bytes are the blob's, unchanged:
/// the export applies no filter), and what `fstat` said of the open file
/// once they were all written.
///
/// The stamp is taken after the last write, on the descriptor the bytes went
/// through, so it names that inode as its content stands at the end of the
/// export; closing changes no time. A later change of content, owner, mode
/// or link count moves the ctime (which no user can set) and so the stamp;
/// only one made within the same tick of the filesystem's clock as the
/// `fstat` could leave it equal, which is the caller's to rule out (by
/// trusting only stamps older than the moment anything else could write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Path relative to the export's top, `/`-separated, as bytes.
    pub path: Vec<u8>,
    /// The git blob id of the content (the blob the tree names).
    pub blob: ObjectId,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits as created (`mode & 0o7777`, after the umask).
    pub mode: u32,
    /// Inode number.
    pub ino: u64,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i128,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

/// How far an export has come, for a caller that shows it as it goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Regular files written so far.
    pub files: u64,
    /// Bytes written so far.
    pub bytes: u64,
}

/// Export a tree into `dest` (created here, must not exist).
pub fn export_tree(repo: &gix::Repository, tree: ObjectId, dest: &Path) -> Result<Stats> {
    export_tree_reporting(repo, tree, dest, None)
}

/// [`export_tree`], telling `report` how far it has come every `every` while
/// it runs (from a thread of its own), so that a long export is not silent.
pub fn export_tree_reporting(
    repo: &gix::Repository,
    tree: ObjectId,
    dest: &Path,
    report: Option<(Duration, &(dyn Fn(Progress) + Sync))>,
) -> Result<Stats> {
    export(repo, tree, dest, report, false).map(|(stats, _)| stats)
}

/// [`export_tree_reporting`], also returning every regular file it wrote,
/// sorted by path, with its blob id and the stamp it had once written
/// ([`Written`]). Symlinks are not in the list. Costs an `fstat` per file;
/// nothing is hashed (the tree names each file's blob).
pub fn export_tree_recording(
    repo: &gix::Repository,
    tree: ObjectId,
    dest: &Path,
    report: Option<(Duration, &(dyn Fn(Progress) + Sync))>,
) -> Result<(Stats, Vec<Written>)> {
    export(repo, tree, dest, report, true)
}

fn export(
    repo: &gix::Repository,
    tree: ObjectId,
    dest: &Path,
    report: Option<(Duration, &(dyn Fn(Progress) + Sync))>,
    record: bool,
) -> Result<(Stats, Vec<Written>)> {
    raise_fd_limit();
    reserve_descriptors();
    std::fs::create_dir(dest).at("create directory", dest)?;
    let top = open_dir_path(dest)?;

    let threads = writer_threads();
    let (tx, rx) = crossbeam_channel::bounded::<Vec<Job>>(QUEUE);
    let shared = Shared {
        gate: std::sync::RwLock::new(()),
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        files: AtomicU64::new(0),
        symlinks: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        stream_threshold: crate::blobstream::threshold(),
        touched: AtomicU64::new(0),
        dest: dest.to_path_buf(),
        record,
    };
    let sync_repo = repo.clone().into_sync();

    let mut walker = Walker::new(repo, tx, &shared)?;
    let mut written = Vec::new();
    std::thread::scope(|scope| {
        // Closed once every worker is done: that ends the reporter.
        let (done, finished) = crossbeam_channel::bounded::<()>(0);
        if let Some((every, report)) = report {
            let shared = &shared;
            scope.spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    finished.recv_timeout(every)
                {
                    report(Progress {
                        files: shared.files.load(Ordering::Relaxed),
                        bytes: shared.bytes.load(Ordering::Relaxed),
                    });
                }
            });
        }
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                let shared = &shared;
                let repo = sync_repo.to_thread_local();
                scope.spawn(move || worker(repo, rx, shared))
            })
            .collect();
        drop(rx);
        let mut prefix = BString::default();
        if let Err(e) = walker.walk(tree, Arc::new(top), &mut prefix, 0) {
            shared.fail(e);
        }
        walker.flush();
        // Dropping the sender lets the workers finish the queue and exit.
        walker.tx = None;
        for w in workers {
            // A worker's panic stays a panic (unwinding drops `done` too).
            match w.join() {
                Ok(mut files) => written.append(&mut files),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        drop(done);
    });

    if let Some(e) = shared
        .error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        return Err(e);
    }
    written.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    let stats = Stats {
        files: shared.files.load(Ordering::Relaxed),
        symlinks: shared.symlinks.load(Ordering::Relaxed),
        bytes: shared.bytes.load(Ordering::Relaxed),
        dirs: walker.dirs,
        ignored: walker.ignored,
        submodules: std::mem::take(&mut walker.submodules),
    };
    Ok((stats, written))
}

struct Shared {
    /// Held for reading around every object lookup, for writing while pack
    /// pages are released, so that no mapping can change under the release.
    gate: std::sync::RwLock<()>,
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    files: AtomicU64,
    symlinks: AtomicU64,
    bytes: AtomicU64,
    /// Blobs this big are streamed, not read whole.
    stream_threshold: u64,
    /// Drives release_pack_pages.
    touched: AtomicU64,
    dest: PathBuf,
    /// Hash and stamp every file written ([`Written`]).
    record: bool,
}

impl Shared {
    /// Run an object lookup inside the gate.
    fn reading<T>(&self, f: impl FnOnce() -> T) -> T {
        let _reading = self.gate.read().unwrap_or_else(|p| p.into_inner());
        f()
    }

    fn fail(&self, e: Error) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        self.failed.store(true, Ordering::Relaxed);
    }

    fn path(&self, rel: &BStr) -> PathBuf {
        self.dest.join(OsStr::from_bytes(rel))
    }
}

struct Walker<'a> {
    repo: &'a gix::Repository,
    tx: Option<crossbeam_channel::Sender<Vec<Job>>>,
    batch: Vec<Job>,
    shared: &'a Shared,
    attrs: Attributes,
    dirs: u64,
    ignored: u64,
    submodules: Vec<String>,
    buf: Vec<u8>,
}

impl<'a> Walker<'a> {
    fn new(
        repo: &'a gix::Repository,
        tx: crossbeam_channel::Sender<Vec<Job>>,
        shared: &'a Shared,
    ) -> Result<Self> {
        Ok(Walker {
            repo,
            tx: Some(tx),
            batch: Vec::with_capacity(BATCH),
            shared,
            attrs: Attributes::new(repo)?,
            dirs: 0,
            ignored: 0,
            submodules: Vec::new(),
            buf: Vec::new(),
        })
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        if let Some(tx) = &self.tx {
            // Workers only hang up after a failure, which is already recorded.
            let _ = tx.send(batch);
        }
    }

    fn walk(
        &mut self,
        tree: ObjectId,
        dir: Arc<OwnedFd>,
        prefix: &mut BString,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(bad_tree(
                prefix.as_ref(),
                "is nested more than 256 directories deep",
            ));
        }
        let (repo, buf) = (self.repo, &mut self.buf);
        let entries: Vec<(gix::objs::tree::EntryKind, BString, ObjectId)> =
            self.shared.reading(|| {
                let t = repo.objects.find_tree(&tree, buf).map_err(|e| {
                    let at = display_dir(prefix.as_ref());
                    Error::with_help(
                        format!("cannot read tree {tree} at `{at}`: {e}"),
                        "the repository is missing objects or is corrupt; run `git fsck` in it",
                    )
                })?;
                Ok::<_, Error>(
                    t.entries
                        .iter()
                        .map(|e| (e.mode.kind(), e.filename.to_owned(), e.oid.to_owned()))
                        .collect(),
                )
            })?;

        let pushed = match entries.iter().find(|(k, n, _)| {
            n == ".gitattributes"
                && matches!(
                    k,
                    gix::objs::tree::EntryKind::Blob | gix::objs::tree::EntryKind::BlobExecutable
                )
        }) {
            Some((_, _, id)) => {
                let (repo, buf) = (self.repo, &mut self.buf);
                let data = self.shared.reading(|| {
                    repo.objects
                        .find_blob(id, buf)
                        .map(|b| b.data.to_vec())
                        .map_err(|e| {
                            let at = prefix_slash(prefix.as_ref());
                            Error::msg(format!("cannot read {at}.gitattributes: {e}"))
                        })
                })?;
                self.attrs.push(&data, prefix.as_ref())?;
                true
            }
            None => false,
        };

        let base_len = prefix.len();
        let mut result = Ok(());
        for (kind, name, id) in entries {
            if self.shared.failed.load(Ordering::Relaxed) {
                break;
            }
            if base_len > 0 {
                prefix.push_byte(b'/');
            }
            let name_at = prefix.len();
            prefix.push_str(&name);
            result = self.entry(kind, name_at, id, &dir, prefix, depth);
            prefix.truncate(base_len);
            if result.is_err() {
                break;
            }
        }
        if pushed {
            self.attrs.pop();
        }
        result
    }

    fn entry(
        &mut self,
        kind: gix::objs::tree::EntryKind,
        name_at: usize,
        id: ObjectId,
        dir: &Arc<OwnedFd>,
        path: &mut BString,
        depth: usize,
    ) -> Result<()> {
        use gix::objs::tree::EntryKind as K;
        let name: &BStr = path[name_at..].as_bstr();
        let opts = gix::validate::path::component::Options {
            protect_windows: false,
            protect_hfs: true,
            protect_ntfs: true,
        };
        if let Err(e) = gix::validate::path::component(name, None, opts) {
            return Err(bad_tree(
                path.as_ref(),
                &format!("is not a safe path ({e})"),
            ));
        }
        let is_dir = matches!(kind, K::Tree | K::Commit);
        if self.attrs.export_ignored(path.as_ref(), is_dir) {
            self.ignored += 1;
            return Ok(());
        }
        match kind {
            K::Tree => {
                let child = make_dir(dir, path.as_ref(), &self.shared.dest)?;
                self.dirs += 1;
                self.walk(id, Arc::new(child), path, depth + 1)
            }
            K::Commit => {
                make_dir(dir, path.as_ref(), &self.shared.dest)?;
                self.dirs += 1;
                self.submodules.push(path.to_str_lossy().into_owned());
                Ok(())
            }
            K::Blob | K::BlobExecutable | K::Link => {
                let kind = match kind {
                    K::Link => Kind::Symlink,
                    K::BlobExecutable => Kind::Executable,
                    _ => Kind::File,
                };
                self.batch.push(Job {
                    dir: Arc::clone(dir),
                    path: path.clone(),
                    name_at,
                    id,
                    kind,
                });
                if self.batch.len() >= BATCH {
                    self.flush();
                }
                Ok(())
            }
        }
    }
}

fn worker(
    repo: gix::Repository,
    rx: crossbeam_channel::Receiver<Vec<Job>>,
    shared: &Shared,
) -> Vec<Written> {
    let mut buf = Vec::new();
    let mut written = Vec::new();
    for batch in rx {
        if shared.failed.load(Ordering::Relaxed) {
            continue; // drain so the walker never blocks on a full queue
        }
        for job in batch {
            if let Err(e) = write_job(&repo, &job, &mut buf, shared, &mut written) {
                shared.fail(e);
                break;
            }
        }
    }
    written
}

/// The [`Written`] of a file just written through `file`: its blob and
/// what fstat says of it now that every byte is in.
fn written(job: &Job, file: &std::fs::File, shared: &Shared) -> Result<Written> {
    use std::os::unix::fs::MetadataExt;
    let meta = file
        .metadata()
        .map_err(|e| Error::io("examine", shared.path(job.path.as_ref()), e))?;
    Ok(Written {
        path: job.path.to_vec(),
        blob: job.id,
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        ino: meta.ino(),
        ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    })
}

fn write_job(
    repo: &gix::Repository,
    job: &Job,
    buf: &mut Vec<u8>,
    shared: &Shared,
    written_files: &mut Vec<Written>,
) -> Result<()> {
    if !matches!(job.kind, Kind::Symlink) {
        let size = shared
            .reading(|| repo.find_header(job.id))
            .map(|h| h.size())
            .unwrap_or(0);
        if size >= shared.stream_threshold
            && write_streamed(repo, job, size, shared, written_files)?
        {
            return Ok(());
        }
    }
    let blob = shared
        .reading(|| repo.objects.find_blob(&job.id, buf))
        .map_err(|e| {
            Error::with_help(
                format!("cannot read blob {} for `{}`: {e}", job.id, job.path),
                "the repository is missing objects or is corrupt; run `git fsck` in it",
            )
        })?;
    let name = OsStr::from_bytes(&job.path[job.name_at..]);
    match job.kind {
        Kind::Symlink => {
            if blob.data.contains(&0) || blob.data.is_empty() {
                return Err(bad_tree(
                    job.path.as_ref(),
                    "is a symlink with an empty or NUL-containing target",
                ));
            }
            nix::unistd::symlinkat(OsStr::from_bytes(blob.data), job.dir.as_fd(), name)
                .map_err(|e| create_error(e, job, shared))?;
            shared.symlinks.fetch_add(1, Ordering::Relaxed);
        }
        Kind::File | Kind::Executable => {
            let mut file = std::fs::File::from(create_file(job, shared)?);
            file.write_all(blob.data)
                .map_err(|e| Error::io("write", shared.path(job.path.as_ref()), e))?;
            if shared.record {
                written_files.push(written(job, &file, shared)?);
            }
            shared.files.fetch_add(1, Ordering::Relaxed);
            let len = blob.data.len() as u64;
            shared.bytes.fetch_add(len, Ordering::Relaxed);
            // Each file also costs a pack-index lookup, which touches index pages.
            let weight = len + PER_FILE_WEIGHT;
            let before = shared.touched.fetch_add(weight, Ordering::Relaxed);
            if before / TRIM_EVERY != (before + weight) / TRIM_EVERY {
                // No thread may be inside gix (which could unmap a pack)
                // while the pages are released: see release_pack_pages.
                let _alone = shared.gate.write().unwrap_or_else(|p| p.into_inner());
                release_pack_pages();
            }
        }
    }
    Ok(())
}

/// Write a big blob straight from the object store (see blobstream); false
/// when it is not streamable, with nothing created.
fn write_streamed(
    repo: &gix::Repository,
    job: &Job,
    size: u64,
    shared: &Shared,
    written_files: &mut Vec<Written>,
) -> Result<bool> {
    let objects = repo.common_dir().join("objects");
    let name = OsStr::from_bytes(&job.path[job.name_at..]);
    let mut file = std::fs::File::from(create_file(job, shared)?);
    let path = shared.path(job.path.as_ref());
    let streamed = shared
        .reading(|| crate::blobstream::stream(&objects, &job.id, size, &mut file))
        .map_err(|e| Error::io("write", &path, e))?;
    if !streamed {
        // Not streamable (a delta): the ordinary path creates it again.
        let _ = nix::unistd::unlinkat(
            job.dir.as_fd(),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        return Ok(false);
    }
    tracing::info!(path = %job.path, size, "streamed from the object store");
    if shared.record {
        written_files.push(written(job, &file, shared)?);
    }
    shared.files.fetch_add(1, Ordering::Relaxed);
    shared.bytes.fetch_add(size, Ordering::Relaxed);
    Ok(true)
}

/// Create the job's file, never following or replacing anything there.
fn create_file(job: &Job, shared: &Shared) -> Result<OwnedFd> {
    let mode = if matches!(job.kind, Kind::Executable) {
        0o777
    } else {
        0o666
    };
    openat(
        job.dir.as_fd(),
        OsStr::from_bytes(&job.path[job.name_at..]),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
    .map_err(|e| create_error(e, job, shared))
}

fn create_error(e: nix::errno::Errno, job: &Job, shared: &Shared) -> Error {
    if e == nix::errno::Errno::EEXIST {
        bad_tree(
            job.path.as_ref(),
            "appears twice in the tree (a duplicate entry)",
        )
    } else {
        Error::io("create", shared.path(job.path.as_ref()), e.into())
    }
}

fn make_dir(parent: &OwnedFd, path: &BStr, dest: &Path) -> Result<OwnedFd> {
    let name = OsStr::from_bytes(path.rsplit_str("/").next().unwrap_or(path));
    let full = dest.join(OsStr::from_bytes(path));
    match mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o777)) {
        Ok(()) => {}
        Err(nix::errno::Errno::EEXIST) => {
            return Err(bad_tree(
                path,
                "appears twice in the tree (a duplicate entry)",
            ));
        }
        Err(e) => return Err(Error::io("create directory", &full, e.into())),
    }
    openat(
        parent.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .at("open directory", &full)
}

/// Open a directory we just created, refusing a symlink in its place.
fn open_dir_path(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .at("open directory", path)
}

fn bad_tree(path: &BStr, why: &str) -> Error {
    Error::with_help(
        format!("refusing to export: `{}` {why}", path.to_str_lossy().escape_debug()),
        "the pushed tree is unsafe or corrupt; fix the commit (git fsck shows such entries) and push again; nothing was deployed",
    )
}

fn prefix_slash(prefix: &BStr) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", prefix.to_str_lossy())
    }
}

fn display_dir(prefix: &BStr) -> String {
    if prefix.is_empty() {
        "/".to_string()
    } else {
        prefix.to_str_lossy().into_owned()
    }
}

/// Writer threads: one per core, or SYMDEPLOY_EXPORT_THREADS (for tuning and
/// benchmarks; file creation can profit from more threads than cores when the
/// filesystem's journal makes writers wait).
fn writer_threads() -> usize {
    std::env::var("SYMDEPLOY_EXPORT_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .clamp(1, 64)
}

/// Weighted bytes (blob bytes plus PER_FILE_WEIGHT a file) between two
/// releases of the pack's resident pages.
const TRIM_EVERY: u64 = 8 << 20;
/// What one object lookup counts for in TRIM_EVERY: a few pack-index pages.
const PER_FILE_WEIGHT: u64 = 16 << 10;

/// Keep memory flat however big the repository is.
///
/// gix reads packs through read-only private mappings, and every page of the
/// pack an export touches stays resident in our address space until exit:
/// a 110 MiB pack makes a 120 MiB process though the heap is under 8 MiB.
/// Dropping those pages from our page tables (MADV_DONTNEED) costs nothing
/// of value: they stay in the page cache, and a later access is a minor
/// fault that maps the same page again. The mapping is never written, so no
/// data can be lost.
fn release_pack_pages() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms), Some(path)) = (fields.next(), fields.next(), fields.nth(3))
        else {
            continue;
        };
        if perms != "r--p" || !(path.ends_with(".pack") || path.ends_with(".idx")) {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        let Some(addr) = std::ptr::NonNull::new(start as *mut std::ffi::c_void) else {
            continue;
        };
        // SAFETY: the range is a read-only private file mapping of a pack or
        // index (r--p, never written by gix), taken from the kernel's own map
        // of this process. The caller holds the gate for writing, so no
        // thread is inside gix, the only code that maps or unmaps packs: the
        // range cannot have been unmapped and reused since the map was read.
        // MADV_DONTNEED only drops its resident pages, which the next access
        // faults in again from the unchanged file.
        let _ = unsafe {
            nix::sys::mman::madvise(
                addr,
                end.saturating_sub(start),
                nix::sys::mman::MmapAdvise::MADV_DONTNEED,
            )
        };
    }
}

/// Descriptors an export may hold at once without the kernel growing the
/// table under it: the 20,000-file benchmark tree peaks near 530.
const FD_TABLE: i32 = 4096;

/// Grow the process's descriptor table to [`FD_TABLE`] entries in one step,
/// leaving the limit on open files as it was. Cheapest while the process
/// still has one thread: call it first thing in `main` (every export calls
/// it again, which then costs a handful of system calls).
///
/// Why: the kernel grows a table by doubling it, and a process with several
/// threads waits for an RCU grace period (milliseconds) at every doubling.
/// The benchmark's export, holding hundreds of directory descriptors from its
/// writer threads, waited four times: 0.026 s of its 0.29 s. Asking for a
/// descriptor numbered `FD_TABLE - 1` grows the table once to its final
/// size (tables never shrink); closing it again frees only the number.
pub fn reserve_descriptors() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let need = FD_TABLE as u64;
    if hard < need {
        return;
    }
    if soft < need && setrlimit(Resource::RLIMIT_NOFILE, need, hard).is_err() {
        return;
    }
    // Any open descriptor serves as the one to duplicate; F_DUPFD takes the
    // lowest free number from FD_TABLE - 1 up, so nothing open is replaced.
    if let Ok(here) = std::fs::File::open("/") {
        if let Ok(high) = nix::fcntl::fcntl(
            here.as_fd(),
            nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(FD_TABLE - 1),
        ) {
            let _ = nix::unistd::close(high);
        }
    }
    if soft < need {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, soft, hard);
    }
}

/// A tree with many small directories keeps many directory descriptors open
/// for a moment; the soft limit of 1024 is too low for that, the hard one is not.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = hard.min(65536);
        if soft < want {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want, hard);
        }
    }
}

/// `export-ignore` as `git archive` sees it: the tree's own `.gitattributes`
/// files (deeper ones win) and the repository's `info/attributes` (wins over all).
struct Attributes {
    tree: gix::attrs::Search,
    info: Option<gix::attrs::Search>,
    collection: gix::attrs::search::MetadataCollection,
    outcome: gix::attrs::search::Outcome,
    /// Per pushed list: does this list or one below it mention export-ignore?
    active: Vec<bool>,
}

impl Attributes {
    fn new(repo: &gix::Repository) -> Result<Self> {
        let mut collection = gix::attrs::search::MetadataCollection::default();
        let mut info = None;
        let info_path = repo.git_dir().join("info").join("attributes");
        if let Ok(bytes) = std::fs::read(&info_path) {
            if bytes.find(b"export-ignore").is_some() {
                let mut s = gix::attrs::Search::default();
                s.add_patterns_buffer(&bytes, info_path.clone(), None, &mut collection, true)
                    .at("read", &info_path)?;
                info = Some(s);
            }
        }
        let mut a = Attributes {
            tree: gix::attrs::Search::default(),
            info,
            collection,
            outcome: Default::default(),
            active: Vec::new(),
        };
        a.reinit();
        Ok(a)
    }

    fn reinit(&mut self) {
        self.outcome
            .initialize_with_selection(&self.collection, ["export-ignore"]);
    }

    fn push(&mut self, bytes: &[u8], dir: &BStr) -> Result<()> {
        let source = PathBuf::from(OsStr::from_bytes(dir)).join(".gitattributes");
        let is_top = dir.is_empty();
        self.tree
            .add_patterns_buffer(
                bytes,
                source,
                Some(Path::new("")),
                &mut self.collection,
                is_top,
            )
            .map_err(|e| {
                Error::msg(format!(
                    "cannot parse {}.gitattributes: {e}",
                    prefix_slash(dir)
                ))
            })?;
        let parent_active = self.active.last().copied().unwrap_or(false);
        self.active
            .push(parent_active || bytes.find(b"export-ignore").is_some());
        self.reinit();
        Ok(())
    }

    fn pop(&mut self) {
        self.tree.pop_pattern_list();
        self.active.pop();
    }

    fn export_ignored(&mut self, path: &BStr, is_dir: bool) -> bool {
        let tree_active = self.active.last().copied().unwrap_or(false);
        if self.info.is_none() && !tree_active {
            return false;
        }
        let case = gix::glob::pattern::Case::Sensitive;
        for search in [self.info.as_ref(), tree_active.then_some(&self.tree)]
            .into_iter()
            .flatten()
        {
            self.outcome.reset();
            search.pattern_matching_relative_path(path, case, Some(is_dir), &mut self.outcome);
            if let Some(m) = self.outcome.iter_selected().next() {
                match m.assignment.state {
                    gix::attrs::StateRef::Set => return true,
                    gix::attrs::StateRef::Unset | gix::attrs::StateRef::Value(_) => return false,
                    gix::attrs::StateRef::Unspecified => {}
                }
            }
        }
        false
    }
}
