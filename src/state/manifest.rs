//! A release's manifest: every file, directory and symlink of the release as
//! it was when the release was recorded ready (type, permission bits, size,
//! BLAKE3 of the content, symlink target as text), so that `verify`, `status
//! --check` and promote can tell what changed since.
//!
//! Two hashes, one per entry. A file the export wrote and nothing changed
//! since is recorded by its git blob id (SHA-1 of `blob <size>\0` and the
//! content, with git's collision detection): the tree names it, so the
//! warm-up records it without reading a byte, and it says the file is
//! exactly what the commit holds. A file the build made or rewrote is hashed
//! with BLAKE3 (2.4 times SHA-1's speed on this code's 4 KiB files, more on
//! big ones: composer's vendor/ is thousands of them). `verify` hashes each
//! file with the hash its entry was recorded with. Until the export gave its
//! blob ids (manifests of format 1), every file was BLAKE3: the export hashed
//! 80 MiB for the benchmark's warm-up, half of what the manifest cost a push.
//!
//! Stored gzip-compressed in `.symdeploy/manifests/<release>.gz`, written to
//! a temporary name, synced and renamed into place before the release is
//! recorded ready, so a crash never leaves a ready release whose manifest is
//! half written. Not covered, on purpose: what the `shared` links point at
//! (data in `common/`: the links themselves are covered), the `writable`
//! directories (the web user's) and `verify_ignore`; and owners, times and
//! ACLs (an `ls -l` of the same content is the same release).
//!
//! Each entry also keeps the inode, ctime and mtime it had, so that a
//! `metadata` check (promote's default on big trees) hashes only what the
//! kernel says was touched since: content cannot change without the ctime
//! changing, short of changing the clock or writing the raw disk.

use std::io::{BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, IoContext, Result};
use crate::state::release_name::ReleaseName;
use crate::state::root::Root;

/// The first line of every manifest: format version and hashes.
const HEADER: &str = "symdeploy-manifest 2 blake3 git-blob";
/// The first line of a manifest written before blob ids (BLAKE3 only), still read.
const HEADER_1: &str = "symdeploy-manifest 1 blake3";
/// Deeper trees are refused, as by the export.
const MAX_DEPTH: usize = 256;

/// What an entry is; shown in messages as `file`, `directory`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
pub(crate) enum Kind {
    /// A regular file.
    #[strum(to_string = "file")]
    File,
    /// A directory.
    #[strum(to_string = "directory")]
    Dir,
    /// A symbolic link (never followed).
    #[strum(to_string = "symlink")]
    Symlink,
    /// A FIFO, socket or device: never made by a deploy.
    #[strum(to_string = "special file")]
    Other,
}

impl Kind {
    fn letter(self) -> u8 {
        match self {
            Kind::File => b'f',
            Kind::Dir => b'd',
            Kind::Symlink => b'l',
            Kind::Other => b'o',
        }
    }

    fn from_letter(l: &[u8]) -> Option<Kind> {
        Some(match l {
            b"f" => Kind::File,
            b"d" => Kind::Dir,
            b"l" => Kind::Symlink,
            b"o" => Kind::Other,
            _ => return None,
        })
    }
}

/// What the kernel says of an entry, for the `metadata` shortcut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Stamp {
    /// Inode number.
    pub(crate) ino: u64,
    /// Status change time, nanoseconds since the epoch.
    pub(crate) ctime_ns: i128,
    /// Modification time, nanoseconds since the epoch.
    pub(crate) mtime_ns: i128,
}

/// What a file's content hashes to, in one of the two hashes a manifest
/// records (see the module's comment); compared only with the same hash of
/// the same path's content, as [`scan`] makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digest {
    /// BLAKE3 of the content: what the build made or touched.
    Blake3([u8; 32]),
    /// The git blob id (SHA-1) of the content: a file as the export wrote it.
    GitBlob([u8; 20]),
}

/// Which of the two hashes a file is hashed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashKind {
    /// BLAKE3 ([`Digest::Blake3`]).
    Blake3,
    /// git's blob id ([`Digest::GitBlob`]).
    GitBlob,
}

impl HashKind {
    /// The digest of `content` (`size` bytes, as its metadata says) in this hash.
    fn of(self, content: &mut dyn Read, size: u64, buf: &mut [u8]) -> Option<Digest> {
        match self {
            HashKind::Blake3 => {
                let mut h = blake3::Hasher::new();
                read_all(content, buf, |b| {
                    h.update(b);
                })?;
                Some(Digest::Blake3(*h.finalize().as_bytes()))
            }
            HashKind::GitBlob => {
                let mut h = gix::hash::hasher(gix::hash::Kind::Sha1);
                h.update(&gix::objs::encode::loose_header(
                    gix::objs::Kind::Blob,
                    size,
                ));
                read_all(content, buf, |b| h.update(b))?;
                // A collision attack detected is no match for anything.
                let id = h.try_finalize().ok()?;
                Some(Digest::GitBlob(id.as_slice().try_into().ok()?))
            }
        }
    }
}

impl Digest {
    /// The hash this digest was made with.
    fn hash(&self) -> HashKind {
        match self {
            Digest::Blake3(_) => HashKind::Blake3,
            Digest::GitBlob(_) => HashKind::GitBlob,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Digest::Blake3(b) => b,
            Digest::GitBlob(b) => b,
        }
    }
}

/// Feed everything `content` yields to `each`, through `buf`; `None` on a read error.
fn read_all(content: &mut dyn Read, buf: &mut [u8], mut each: impl FnMut(&[u8])) -> Option<()> {
    loop {
        match content.read(buf) {
            Ok(0) => return Some(()),
            Ok(n) => each(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// One file, directory or symlink of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileEntry {
    /// Path relative to the release, `/`-separated, as bytes (git allows any).
    pub(crate) path: Vec<u8>,
    /// What it is.
    pub(crate) kind: Kind,
    /// Permission bits (`mode & 0o7777`).
    pub(crate) mode: u32,
    /// Size in bytes (files), target length (symlinks), 0 otherwise.
    pub(crate) size: u64,
    /// A file's content hash (see [`Digest`]); `None` for everything else,
    /// or for a file that could not be read during a check.
    pub(crate) hash: Option<Digest>,
    /// A symlink's target, as text.
    pub(crate) target: Option<Vec<u8>>,
    /// Inode and times when scanned.
    pub(crate) stamp: Stamp,
}

/// A release's manifest as stored.
#[derive(Debug, Clone, Default)]
pub(crate) struct Manifest {
    /// Paths (and everything below them) left out when it was made.
    pub(crate) excluded: Vec<String>,
    /// Made afterwards from this commit's tree (`verify --from-commit`), not
    /// by the warm-up: it knows the exported files only, so a path it lacks
    /// may be one the build made and is not reported as added.
    pub(crate) from_commit: Option<crate::state::commit::Commit>,
    /// Sorted by path.
    pub(crate) entries: Vec<FileEntry>,
}

/// How much a scan trusts the kernel's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Depth {
    /// Hash every file.
    Full,
    /// Hash only files whose inode, size, ctime or mtime differ from the
    /// manifest's; take the recorded hash for the others.
    Metadata,
}

/// The paths a manifest leaves out under `config`: the `writable`
/// directories and `verify_ignore`.
pub(crate) fn excluded_paths(config: &crate::state::config::Config) -> Vec<String> {
    let mut out: Vec<String> = config.writable.clone();
    out.extend(config.verify_ignore.iter().cloned());
    out.sort();
    out.dedup();
    out
}

/// Is `path` one of `excluded` or below one?
pub(crate) fn is_excluded(path: &[u8], excluded: &[String]) -> bool {
    excluded.iter().any(|e| {
        let e = e.as_bytes();
        path == e || (path.len() > e.len() && path.starts_with(e) && path[e.len()] == b'/')
    })
}

/// ROOT/.symdeploy/manifests/<name>.gz
pub(crate) fn path_of(root: &Root, name: &ReleaseName) -> PathBuf {
    root.manifests().join(format!("{name}.gz"))
}

/// Scan the release directory `dir` and store its manifest as `name`
/// (atomically; not synced: the caller syncs it before `ready`, see
/// [`write`] and [`make_durable`]). Returns how many entries it has.
/// `known`: files hashed already whose hash stands while their stamp does
/// (what the export wrote, see `crate::deploy::manifest_seed`); every other
/// file is read and hashed.
pub(crate) fn record(
    root: &Root,
    name: &ReleaseName,
    dir: &Path,
    excluded: &[String],
    known: Option<&Manifest>,
) -> Result<usize> {
    let depth = if known.is_some() {
        Depth::Metadata
    } else {
        Depth::Full
    };
    let entries = scan(dir, excluded, depth, known)?;
    if let Some(unread) = entries
        .iter()
        .find(|e| e.kind == Kind::File && e.hash.is_none())
    {
        let p = dir.join(std::ffi::OsStr::from_bytes(&unread.path));
        return Err(Error::with_help(
            format!(
                "cannot read {} to record it in the release's manifest",
                p.display()
            ),
            "a build step made a file the deploy user cannot read; make it readable in the step (or add its directory to `writable` or `verify_ignore` in deploy.toml)",
        ));
    }
    let m = Manifest {
        excluded: excluded.to_vec(),
        from_commit: None,
        entries,
    };
    write(root, name, &m, false)?;
    Ok(m.entries.len())
}

/// Write `m` as the manifest of `name`: a temporary file renamed into place
/// (a kill leaves the old name absent or complete, never half written).
/// `durable`: fsync it and its directory too. A warm-up passes false: on
/// ext4 an fsync commits the journal, which first writes out every dirty
/// page of the filesystem, i.e. the whole fresh export, so it would pay
/// the release's sync here; it writes the manifest while the release is
/// synced and calls [`make_durable`] once that sync is done.
pub(crate) fn write(root: &Root, name: &ReleaseName, m: &Manifest, durable: bool) -> Result<()> {
    let dir = root.manifests();
    std::fs::create_dir_all(&dir).at("create directory", &dir)?;
    let path = path_of(root, name);
    let tmp = tempfile::Builder::new()
        .prefix(crate::state::root::MANIFEST_TMP_PREFIX)
        .tempfile_in(&dir)
        .at("create a temporary file in", &dir)?;
    {
        // Encoded whole first, then compressed in one call: the deflater
        // fed one short field at a time spends more than it compresses.
        let started = std::time::Instant::now();
        let mut text = Vec::with_capacity(m.entries.len() * 160 + 4096);
        encode(m, &mut text).at("write", tmp.path())?;
        let encoded = started.elapsed();
        let file = std::io::BufWriter::with_capacity(256 << 10, tmp.as_file());
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        gz.write_all(&text).at("write", tmp.path())?;
        let mut file = gz.finish().at("write", tmp.path())?;
        file.flush().at("write", tmp.path())?;
        tracing::info!(
            bytes = text.len(),
            encode_seconds = encoded.as_secs_f64(),
            compress_seconds = (started.elapsed() - encoded).as_secs_f64(),
            "manifest encoded"
        );
    }
    crate::sys::faults::point("manifest-written");
    if durable {
        tmp.as_file().sync_data().at("sync", tmp.path())?;
    }
    tmp.persist(&path)
        .map_err(|e| Error::io("write", &path, e.error))?;
    if durable {
        crate::sys::symlink::sync_dir(&dir);
    }
    Ok(())
}

/// fsync the stored manifest of `name` and its directory: for a manifest
/// written with `durable` false while (or after) its filesystem was synced,
/// before anything that vouches for it is recorded. After the release's
/// sync this commits little more than the manifest itself.
pub(crate) fn make_durable(root: &Root, name: &ReleaseName) -> Result<()> {
    let path = path_of(root, name);
    let file = std::fs::File::open(&path).at("open", &path)?;
    file.sync_all().at("sync", &path)?;
    crate::sys::symlink::sync_dir(&root.manifests());
    Ok(())
}

/// Read the manifest of `name`; `Ok(None)` when there is none.
pub(crate) fn load(root: &Root, name: &ReleaseName) -> Result<Option<Manifest>> {
    let path = path_of(root, name);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::with_capacity(256 << 10, file));
    decode(std::io::BufReader::with_capacity(256 << 10, gz))
        .map(Some)
        .map_err(|why| {
            Error::with_help(
                format!("the manifest {} is damaged: {why}", path.display()),
                "nothing can be checked against it; rebuild the release (`symdeploy warmup --rebuild COMMIT`) to get a new one",
            )
        })
}

/// Remove the manifest of `name` (with its release).
pub(crate) fn forget(root: &Root, name: &ReleaseName) {
    let _ = std::fs::remove_file(path_of(root, name));
}

/// Remove half-written manifests (lock held: only lock holders write them).
pub(crate) fn sweep_temp(root: &Root) {
    let Ok(entries) = std::fs::read_dir(root.manifests()) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with(crate::state::root::MANIFEST_TMP_PREFIX)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn encode(m: &Manifest, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "{HEADER}")?;
    if let Some(c) = &m.from_commit {
        writeln!(out, "c\t{c}")?;
    }
    for e in &m.excluded {
        out.write_all(b"x\t")?;
        out.write_all(&escape(e.as_bytes()))?;
        out.write_all(b"\n")?;
    }
    let mut hex = [0u8; 64];
    for e in &m.entries {
        out.write_all(&[e.kind.letter(), b'\t'])?;
        write!(out, "{:o}\t{}\t", e.mode, e.size)?;
        match (&e.hash, &e.target) {
            (Some(h), _) => out.write_all(hex_into(h.bytes(), &mut hex))?,
            (None, Some(t)) => out.write_all(&escape(t))?,
            (None, None) => out.write_all(b"-")?,
        }
        write!(
            out,
            "\t{}\t{}\t{}\t",
            e.stamp.ino, e.stamp.ctime_ns, e.stamp.mtime_ns
        )?;
        out.write_all(&escape(&e.path))?;
        out.write_all(b"\n")?;
    }
    writeln!(out, "end\t{}", m.entries.len())
}

fn decode(mut input: impl BufRead) -> std::result::Result<Manifest, String> {
    let mut line = Vec::new();
    let mut m = Manifest::default();
    let mut first = true;
    let mut blob_ids = true;
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("it ends early (no end line)".into());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if first {
            if line == HEADER_1.as_bytes() {
                blob_ids = false;
            } else if line != HEADER.as_bytes() {
                return Err(format!(
                    "its first line is not `{HEADER}` (a newer symdeploy's?)"
                ));
            }
            first = false;
            continue;
        }
        let fields: Vec<&[u8]> = line.split(|b| *b == b'\t').collect();
        match fields.as_slice() {
            [b"c", c] => {
                let c = std::str::from_utf8(c).ok();
                let c = c.and_then(crate::state::commit::Commit::parse_stored);
                m.from_commit = Some(c.ok_or("its commit line names no commit")?);
            }
            [b"x", p] => m
                .excluded
                .push(String::from_utf8_lossy(&unescape(p)?).into_owned()),
            [b"end", n] => {
                let n: usize = std::str::from_utf8(n)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or("a bad end line")?;
                if n != m.entries.len() {
                    return Err(format!("it says {n} entries and has {}", m.entries.len()));
                }
                return Ok(m);
            }
            [k, mode, size, what, ino, ctime, mtime, path] => {
                let kind = Kind::from_letter(k).ok_or("an unknown kind of entry")?;
                let num = |f: &[u8]| std::str::from_utf8(f).ok().map(str::to_owned);
                let bad = || format!("a bad line: {}", String::from_utf8_lossy(&line));
                let mode = num(mode)
                    .and_then(|s| u32::from_str_radix(&s, 8).ok())
                    .ok_or_else(bad)?;
                let size = num(size).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let stamp = Stamp {
                    ino: num(ino).and_then(|s| s.parse().ok()).ok_or_else(bad)?,
                    ctime_ns: num(ctime).and_then(|s| s.parse().ok()).ok_or_else(bad)?,
                    mtime_ns: num(mtime).and_then(|s| s.parse().ok()).ok_or_else(bad)?,
                };
                let (hash, target) = match kind {
                    Kind::File => (Some(parse_hex(what, blob_ids).ok_or_else(bad)?), None),
                    Kind::Symlink => (None, Some(unescape(what)?)),
                    _ => (None, None),
                };
                m.entries.push(FileEntry {
                    path: unescape(path)?,
                    kind,
                    mode,
                    size,
                    hash,
                    target,
                    stamp,
                });
            }
            _ => return Err(format!("a bad line: {}", String::from_utf8_lossy(&line))),
        }
    }
}

/// `%`, controls and DEL as `%XX`: tabs and newlines separate fields.
fn escape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    for &c in b {
        if c == b'%' || c < 0x20 || c == 0x7f {
            out.extend_from_slice(format!("%{c:02X}").as_bytes());
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(b: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a bad %-escape")?;
            out.push(h);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// `h` in lower-case hex, in the first `2 * h.len()` bytes of `buf`.
fn hex_into<'a>(h: &[u8], buf: &'a mut [u8; 64]) -> &'a [u8] {
    const D: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in h.iter().enumerate() {
        buf[2 * i] = D[usize::from(b >> 4)];
        buf[2 * i + 1] = D[usize::from(b & 15)];
    }
    &buf[..2 * h.len()]
}

/// A hash as written: 64 hex digits are BLAKE3, 40 a git blob id (only in
/// format 2; `blob_ids` false for a format 1 manifest).
fn parse_hex(s: &[u8], blob_ids: bool) -> Option<Digest> {
    fn bytes<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        for (i, pair) in s.chunks(2).enumerate() {
            out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(out)
    }
    match s.len() {
        64 => bytes(s).map(Digest::Blake3),
        40 if blob_ids => bytes(s).map(Digest::GitBlob),
        _ => None,
    }
}

/// Every entry under `dir` (not `dir` itself), sorted by path, never
/// following a symlink; `excluded` paths and what is below them are left
/// out. Files are hashed in parallel, each in the hash of `known`'s entry
/// for its path (BLAKE3 where it has none); with [`Depth::Metadata`], a
/// file whose stamp and size equal `known`'s entry takes its recorded hash.
/// A file that cannot be read gets no hash (the caller decides).
pub(crate) fn scan(
    dir: &Path,
    excluded: &[String],
    depth: Depth,
    known: Option<&Manifest>,
) -> Result<Vec<FileEntry>> {
    let started = std::time::Instant::now();
    let mut entries = walk(dir, excluded)?;
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    let walked = started.elapsed();
    let mut todo: Vec<(usize, HashKind)> = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        if e.kind != Kind::File {
            continue;
        }
        let before = known
            .and_then(|m| {
                m.entries
                    .binary_search_by(|k| k.path.as_slice().cmp(&e.path))
                    .ok()
                    .map(|at| &m.entries[at])
            })
            .filter(|k| k.kind == Kind::File);
        let unchanged = depth == Depth::Metadata
            && before.is_some_and(|k| k.size == e.size && k.stamp == e.stamp);
        match before.and_then(|k| k.hash) {
            Some(h) if unchanged => e.hash = Some(h),
            // Hashed as it was recorded, so the two compare.
            Some(h) => todo.push((i, h.hash())),
            None => todo.push((i, HashKind::Blake3)),
        }
    }
    hash_files(dir, &mut entries, &todo);
    tracing::info!(
        entries = entries.len(),
        walk_seconds = walked.as_secs_f64(),
        hashed = todo.len(),
        hash_seconds = (started.elapsed() - walked).as_secs_f64(),
        "scanned {}",
        dir.display()
    );
    Ok(entries)
}

/// Every entry below `top`, in no particular order: directories are read by
/// one thread per core taking the next from a shared list (a release is
/// thousands of small directories; reading them is a statx per entry, which
/// two cores do in about half the time of one).
fn walk(top: &Path, excluded: &[String]) -> Result<Vec<FileEntry>> {
    struct Todo {
        /// Directories to read: path relative to `top`, depth.
        dirs: Vec<(Vec<u8>, usize)>,
        /// Directories being read now; none left and none being read is the end.
        busy: usize,
        error: Option<Error>,
    }
    let todo = std::sync::Mutex::new(Todo {
        dirs: vec![(Vec::new(), 0)],
        busy: 0,
        error: None,
    });
    let wake = std::sync::Condvar::new();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let work = || {
        let mut out = Vec::new();
        let mut found = Vec::new();
        loop {
            let (rel, depth) = {
                let mut t = todo.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if t.error.is_some() {
                        return out;
                    }
                    if let Some(d) = t.dirs.pop() {
                        t.busy += 1;
                        break d;
                    }
                    if t.busy == 0 {
                        return out;
                    }
                    t = wake.wait(t).unwrap_or_else(|p| p.into_inner());
                }
            };
            let read = read_dir_entries(top, rel, depth, excluded, &mut out, &mut found);
            let mut t = todo.lock().unwrap_or_else(|p| p.into_inner());
            t.busy -= 1;
            match read {
                Ok(()) => t.dirs.append(&mut found),
                Err(e) => {
                    t.error.get_or_insert(e);
                }
            }
            drop(t);
            wake.notify_all();
        }
    };
    let parts: Vec<Vec<FileEntry>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let t = todo.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = t.error {
        return Err(e);
    }
    Ok(parts.into_iter().flatten().collect())
}

/// The entries of one directory (`rel` below `top`) into `out`, and its
/// subdirectories (to be read in turn) into `dirs`. One statx per entry
/// (relative to the open directory), a readlink per symlink.
fn read_dir_entries(
    top: &Path,
    mut rel: Vec<u8>,
    depth: usize,
    excluded: &[String],
    out: &mut Vec<FileEntry>,
    dirs: &mut Vec<(Vec<u8>, usize)>,
) -> Result<()> {
    let here = if rel.is_empty() {
        top.to_path_buf()
    } else {
        top.join(std::ffi::OsStr::from_bytes(&rel))
    };
    if depth > MAX_DEPTH {
        return Err(Error::msg(format!(
            "{} is nested more than {MAX_DEPTH} directories deep",
            here.display()
        )));
    }
    let reader = std::fs::read_dir(&here).at("read directory", &here)?;
    for item in reader {
        let item = item.at("read directory", &here)?;
        let base = rel.len();
        if base > 0 {
            rel.push(b'/');
        }
        rel.extend_from_slice(item.file_name().as_bytes());
        if !is_excluded(&rel, excluded) {
            // DirEntry::metadata does not follow symlinks.
            let meta = match item.metadata() {
                Ok(m) => m,
                Err(e) => return Err(Error::io("examine", item.path(), e)),
            };
            let ft = meta.file_type();
            let kind = if ft.is_symlink() {
                Kind::Symlink
            } else if ft.is_dir() {
                Kind::Dir
            } else if ft.is_file() {
                Kind::File
            } else {
                Kind::Other
            };
            let target = if kind == Kind::Symlink {
                let t = std::fs::read_link(item.path()).at("read the symlink", item.path())?;
                Some(t.as_os_str().as_bytes().to_vec())
            } else {
                None
            };
            out.push(FileEntry {
                path: rel.clone(),
                kind,
                mode: meta.permissions().mode() & 0o7777,
                size: if kind == Kind::Dir { 0 } else { meta.len() },
                hash: None,
                target,
                stamp: Stamp {
                    ino: meta.ino(),
                    ctime_ns: i128::from(meta.ctime()) * 1_000_000_000
                        + i128::from(meta.ctime_nsec()),
                    mtime_ns: i128::from(meta.mtime()) * 1_000_000_000
                        + i128::from(meta.mtime_nsec()),
                },
            });
            if kind == Kind::Dir {
                dirs.push((rel.clone(), depth + 1));
            }
        }
        rel.truncate(base);
    }
    Ok(())
}

/// Hash `entries[i]` for every i in `todo`, one thread per core taking the
/// next file from a shared counter (files differ in size by orders of
/// magnitude, so fixed shares would leave a thread idle).
fn hash_files(dir: &Path, entries: &mut [FileEntry], todo: &[(usize, HashKind)]) {
    if todo.is_empty() {
        return;
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 16)
        .min(todo.len());
    let next = AtomicUsize::new(0);
    let results: Vec<Vec<(usize, Option<Digest>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let entries = &*entries;
                let next = &next;
                s.spawn(move || {
                    let mut buf = vec![0u8; 256 << 10];
                    let mut got = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(i, hash)) = todo.get(k) else { break };
                        let p = dir.join(std::ffi::OsStr::from_bytes(&entries[i].path));
                        got.push((i, hash_file(&p, hash, &mut buf)));
                    }
                    got
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for (i, h) in results.into_iter().flatten() {
        entries[i].hash = h;
    }
}

/// A regular file's content in `hash`, never following a
/// symlink nor blocking on a FIFO swapped in since the walk; `None` if it
/// cannot be read as one. A file that grows or shrinks while read gets a
/// blob id of a header that does not fit it: a mismatch, as it should be.
fn hash_file(path: &Path, hash: HashKind, buf: &mut [u8]) -> Option<Digest> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.file_type().is_file() {
        return None;
    }
    hash.of(&mut f, meta.len(), buf)
}

/// A difference between a release and its manifest: `modified`, `added`,
/// ..., the word printed before the path. Listed in the order they are
/// counted and shown.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::Display,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[strum(serialize_all = "lowercase")]
pub(crate) enum DriftKind {
    /// Same type, different content (or symlink target).
    Modified,
    /// On disk, not in the manifest.
    Added,
    /// In the manifest, not on disk.
    Removed,
    /// Same content, different permission bits.
    Mode,
    /// A different type (a file that became a symlink or a directory).
    Type,
}

/// One difference: what and where (path relative to the release).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Drift {
    /// What kind of difference.
    pub(crate) kind: DriftKind,
    /// The path, as bytes.
    pub(crate) path: Vec<u8>,
    /// Details for people: `0644 -> 0755`, `file -> symlink to /etc/passwd`.
    pub(crate) detail: String,
}

/// The differences between `expected` (a manifest's entries) and `actual`
/// (a scan), both sorted by path; `excluded` paths are left out of both.
pub(crate) fn diff(
    expected: &[FileEntry],
    actual: &[FileEntry],
    excluded: &[String],
) -> Vec<Drift> {
    let keep = |e: &&FileEntry| !is_excluded(&e.path, excluded);
    let mut a = expected.iter().filter(keep).peekable();
    let mut b = actual.iter().filter(keep).peekable();
    let mut out = Vec::new();
    let drift = |kind, e: &FileEntry, detail: String| Drift {
        kind,
        path: e.path.clone(),
        detail,
    };
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(x), None) => {
                out.push(drift(DriftKind::Removed, x, x.kind.to_string()));
                a.next();
            }
            (None, Some(y)) => {
                out.push(drift(DriftKind::Added, y, describe(y)));
                b.next();
            }
            (Some(x), Some(y)) => match x.path.cmp(&y.path) {
                std::cmp::Ordering::Less => {
                    out.push(drift(DriftKind::Removed, x, x.kind.to_string()));
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push(drift(DriftKind::Added, y, describe(y)));
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    compare(x, y, &mut out);
                    a.next();
                    b.next();
                }
            },
        }
    }
    out
}

fn describe(e: &FileEntry) -> String {
    match (&e.kind, &e.target) {
        (Kind::Symlink, Some(t)) => format!("symlink to {}", String::from_utf8_lossy(t)),
        (Kind::File, _) => format!("file, {} bytes", e.size),
        (k, _) => k.to_string(),
    }
}

fn compare(x: &FileEntry, y: &FileEntry, out: &mut Vec<Drift>) {
    let at = |kind, detail| Drift {
        kind,
        path: x.path.clone(),
        detail,
    };
    if x.kind != y.kind {
        out.push(at(
            DriftKind::Type,
            format!("{} -> {}", x.kind, describe(y)),
        ));
        return;
    }
    match x.kind {
        Kind::File if x.size != y.size || x.hash != y.hash => out.push(at(
            DriftKind::Modified,
            if y.hash.is_none() {
                "cannot be read".to_string()
            } else if x.size != y.size {
                format!("{} -> {} bytes", x.size, y.size)
            } else {
                "content differs".to_string()
            },
        )),
        Kind::Symlink if x.target != y.target => out.push(at(
            DriftKind::Modified,
            format!(
                "-> {} now -> {}",
                String::from_utf8_lossy(x.target.as_deref().unwrap_or_default()),
                String::from_utf8_lossy(y.target.as_deref().unwrap_or_default())
            ),
        )),
        _ => {}
    }
    // A symlink's own bits mean nothing on Linux.
    if x.kind != Kind::Symlink && x.mode != y.mode {
        out.push(at(
            DriftKind::Mode,
            format!("{:04o} -> {:04o}", x.mode, y.mode),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        std::fs::create_dir_all(p.join("www/data")).unwrap();
        std::fs::create_dir_all(p.join("temp/cache")).unwrap();
        std::fs::write(p.join("www/index.php"), "<?php echo 1;\n").unwrap();
        std::fs::write(p.join("temp/cache/x"), "cache").unwrap();
        std::fs::write(p.join("odd\tname%\n"), "odd").unwrap();
        std::os::unix::fs::symlink("../common/log", p.join("log")).unwrap();
        t
    }

    fn excluded() -> Vec<String> {
        vec!["temp".to_string()]
    }

    /// A release name for each letter the tests use.
    fn name(which: &str) -> ReleaseName {
        let digit = if which == "r" { "1" } else { "2" };
        ReleaseName::parse(&digit.repeat(40)).unwrap()
    }

    #[test]
    fn a_manifest_round_trips_through_its_file_with_odd_names() {
        let t = tree();
        let root_dir = tempfile::tempdir().unwrap();
        let root = Root::new(root_dir.path()).unwrap();
        let n = record(&root, &name("r"), t.path(), &excluded(), None).unwrap();
        assert_eq!(n, 5, "www, www/data, www/index.php, log, the odd file");
        let m = load(&root, &name("r")).unwrap().unwrap();
        assert_eq!(m.excluded, excluded());
        let again = scan(t.path(), &excluded(), Depth::Full, None).unwrap();
        assert_eq!(m.entries, again);
        assert!(diff(&m.entries, &again, &m.excluded).is_empty());
        assert!(load(&root, &name("missing")).unwrap().is_none());
    }

    #[test]
    fn each_kind_of_change_is_named() {
        let t = tree();
        let p = t.path();
        let before = scan(p, &excluded(), Depth::Full, None).unwrap();
        std::fs::write(p.join("www/index.php"), "<?php echo 2;\n").unwrap();
        std::fs::write(p.join("www/x.php"), "<?php system($_GET[1]);").unwrap();
        std::fs::remove_file(p.join("odd\tname%\n")).unwrap();
        std::fs::set_permissions(p.join("www/data"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        std::fs::remove_file(p.join("log")).unwrap();
        std::fs::write(p.join("log"), "not a link").unwrap();
        std::fs::write(p.join("temp/new"), "ignored").unwrap();
        let after = scan(p, &excluded(), Depth::Full, None).unwrap();
        let seen: Vec<(DriftKind, String)> = diff(&before, &after, &excluded())
            .into_iter()
            .map(|d| (d.kind, String::from_utf8_lossy(&d.path).into_owned()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (DriftKind::Type, "log".into()),
                (DriftKind::Removed, "odd\tname%\n".into()),
                (DriftKind::Mode, "www/data".into()),
                (DriftKind::Modified, "www/index.php".into()),
                (DriftKind::Added, "www/x.php".into()),
            ]
        );
    }

    #[test]
    fn the_metadata_check_rehashes_what_was_touched_only() {
        let t = tree();
        let p = t.path();
        let m = Manifest {
            excluded: excluded(),
            from_commit: None,
            entries: scan(p, &excluded(), Depth::Full, None).unwrap(),
        };
        // Same size, same content length: only the ctime tells.
        std::fs::write(p.join("www/index.php"), "<?php echo 9;\n").unwrap();
        let quick = scan(p, &excluded(), Depth::Metadata, Some(&m)).unwrap();
        let d = diff(&m.entries, &quick, &m.excluded);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].kind, DriftKind::Modified);
        // A recorded hash is trusted only while the stamp matches: a forged
        // manifest hash on an untouched file is taken as is (the manifest
        // is symdeploy's own), a touched file is hashed.
        let mut forged = m.clone();
        for e in &mut forged.entries {
            e.hash = e.hash.map(|_| Digest::Blake3([0u8; 32]));
        }
        let quick = scan(p, &excluded(), Depth::Metadata, Some(&forged)).unwrap();
        let d = diff(&forged.entries, &quick, &forged.excluded);
        assert_eq!(d.len(), 1, "only the touched file is hashed again: {d:?}");
    }

    #[test]
    fn a_truncated_or_foreign_manifest_is_refused() {
        let t = tree();
        let root_dir = tempfile::tempdir().unwrap();
        let root = Root::new(root_dir.path()).unwrap();
        record(&root, &name("r"), t.path(), &[], None).unwrap();
        let path = path_of(&root, &name("r"));
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_end(&mut text)
            .unwrap();
        let cut = &text[..text.len() - 8];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(cut).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let e = load(&root, &name("r")).unwrap_err().to_string();
        assert!(e.contains("damaged"), "{e}");
        std::fs::write(&path, b"not gzip").unwrap();
        assert!(load(&root, &name("r")).is_err());
    }

    /// An entry recorded by blob id (as the export gives them) is checked by
    /// blob id: git's own id of the file matches, a change of one byte does
    /// not, and the file the build added beside it is BLAKE3. Both kinds
    /// survive the file, and a manifest of format 1 (BLAKE3 only) still reads.
    #[test]
    fn entries_recorded_by_blob_id_are_checked_by_blob_id() {
        let t = tree();
        let p = t.path();
        let git_id = |path: &str| {
            let out = std::process::Command::new("git")
                .args(["hash-object", "--no-filters"])
                .arg(p.join(path))
                .output()
                .unwrap();
            assert!(out.status.success());
            let hex = String::from_utf8(out.stdout).unwrap();
            let id = gix::ObjectId::from_hex(hex.trim().as_bytes()).unwrap();
            Digest::GitBlob(id.as_slice().try_into().unwrap())
        };
        let mut m = Manifest {
            excluded: excluded(),
            from_commit: None,
            entries: scan(p, &excluded(), Depth::Full, None).unwrap(),
        };
        for e in &mut m.entries {
            if e.path == b"www/index.php" {
                e.hash = Some(git_id("www/index.php"));
            }
        }
        let full = scan(p, &excluded(), Depth::Full, Some(&m)).unwrap();
        assert_eq!(
            full, m.entries,
            "blob id and BLAKE3 each computed as recorded"
        );
        let root_dir = tempfile::tempdir().unwrap();
        let root = Root::new(root_dir.path()).unwrap();
        write(&root, &name("r"), &m, true).unwrap();
        assert_eq!(load(&root, &name("r")).unwrap().unwrap().entries, m.entries);

        std::fs::write(p.join("www/index.php"), "<?php echo 2;\n").unwrap();
        let full = scan(p, &excluded(), Depth::Full, Some(&m)).unwrap();
        let d = diff(&m.entries, &full, &m.excluded);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (d[0].kind, d[0].path.as_slice()),
            (DriftKind::Modified, b"www/index.php".as_slice())
        );
        let now = full.iter().find(|e| e.path == b"www/index.php").unwrap();
        assert_eq!(
            now.hash,
            Some(git_id("www/index.php")),
            "hashed as git would"
        );

        // Format 1: BLAKE3 only, under its own first line.
        let mut v1 = m.clone();
        v1.entries = scan(p, &excluded(), Depth::Full, None).unwrap();
        let mut text = Vec::new();
        encode(&v1, &mut text).unwrap();
        let text = String::from_utf8(text)
            .unwrap()
            .replacen(HEADER, HEADER_1, 1);
        assert_eq!(decode(text.as_bytes()).unwrap().entries, v1.entries);
        // ... where a 40-digit hash has no place.
        let mut with_blob = Vec::new();
        encode(&m, &mut with_blob).unwrap();
        let with_blob = String::from_utf8(with_blob)
            .unwrap()
            .replacen(HEADER, HEADER_1, 1);
        assert!(decode(with_blob.as_bytes()).is_err());
    }

    #[test]
    fn exclusions_cover_the_path_and_below_only() {
        let ex = vec!["var/log".to_string()];
        assert!(is_excluded(b"var/log", &ex));
        assert!(is_excluded(b"var/log/a", &ex));
        assert!(!is_excluded(b"var/logs", &ex));
        assert!(!is_excluded(b"var", &ex));
    }
}
