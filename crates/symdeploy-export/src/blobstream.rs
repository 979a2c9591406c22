//! Large blobs straight from the object store to a file, in bounded memory.
//!
//! gix hands out whole objects: a 1 GiB file costs 1 GiB of memory in each
//! writer that meets one. Git stores big files whole (never as deltas above
//! core.bigFileThreshold), either loose or as a base entry in a pack, so they
//! can be inflated chunk by chunk from the file on disk. Anything else (a
//! delta, an object we cannot find this way) is left to gix: `stream` then
//! answers `Ok(false)` and the caller falls back to an ordinary read.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use gix::ObjectId;

/// Blobs at least this big are streamed (SYMDEPLOY_STREAM_THRESHOLD
/// overrides it, for tests).
pub(crate) fn threshold() -> u64 {
    std::env::var("SYMDEPLOY_STREAM_THRESHOLD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64 << 20)
}

const CHUNK: usize = 1 << 20;

/// Write blob `id` of `size` bytes into `out`, inflating it from its loose
/// file or its pack entry. `Ok(false)`: not streamable, nothing was written.
pub(crate) fn stream(
    objects: &Path,
    id: &ObjectId,
    size: u64,
    out: &mut File,
) -> std::io::Result<bool> {
    for dir in object_dirs(objects) {
        let hex = id.to_string();
        let loose = dir.join(&hex[..2]).join(&hex[2..]);
        if let Ok(file) = File::open(&loose) {
            let mut z = Inflater::new(BufReader::with_capacity(CHUNK, file));
            // A loose object is deflate("blob <size>\0" + data).
            let mut header = Vec::new();
            loop {
                let mut byte = [0u8; 1];
                if z.read(&mut byte)? == 0 || header.len() > 64 {
                    return Ok(false);
                }
                if byte[0] == 0 {
                    break;
                }
                header.push(byte[0]);
            }
            if header != format!("blob {size}").as_bytes() {
                return Ok(false);
            }
            copy_exact(&mut z, out, size)?;
            return Ok(true);
        }
        let Ok(packs) = std::fs::read_dir(dir.join("pack")) else {
            continue;
        };
        for entry in packs.flatten() {
            let idx_path = entry.path();
            if idx_path.extension().is_none_or(|e| e != "idx") {
                continue;
            }
            let Ok(index) = gix::odb::pack::index::File::at(&idx_path, id.kind()) else {
                continue;
            };
            let Some(i) = index.lookup(id) else { continue };
            let offset = index.pack_offset_at_index(i);
            let mut pack =
                BufReader::with_capacity(CHUNK, File::open(idx_path.with_extension("pack"))?);
            pack.seek(SeekFrom::Start(offset))?;
            // Entry header: type in bits 4-6 of the first byte, then the size
            // in little-endian groups of 7 bits.
            let mut byte = [0u8; 1];
            pack.read_exact(&mut byte)?;
            let kind = (byte[0] >> 4) & 0b111;
            let mut entry_size = u64::from(byte[0] & 0x0f);
            let mut shift = 4;
            while byte[0] & 0x80 != 0 && shift < 64 {
                pack.read_exact(&mut byte)?;
                entry_size |= u64::from(byte[0] & 0x7f) << shift;
                shift += 7;
            }
            const BLOB: u8 = 3;
            if kind != BLOB || entry_size != size {
                return Ok(false); // a delta: gix resolves those
            }
            let mut z = Inflater::new(pack);
            copy_exact(&mut z, out, size)?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// The object directory and its alternates (the quarantine view of a
/// pre-receive hook is exactly that), depth-first, each once.
fn object_dirs(objects: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut todo = vec![objects.to_path_buf()];
    while let Some(dir) = todo.pop() {
        if out.contains(&dir) || out.len() > 16 {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("info").join("alternates")) {
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                todo.push(dir.join(line));
            }
        }
        out.push(dir);
    }
    out
}

fn copy_exact(from: &mut impl Read, to: &mut File, size: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = from.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("object data ended {left} bytes early"),
            ));
        }
        to.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// `Read` over a zlib stream, inflating from a buffered file.
struct Inflater<R> {
    input: R,
    state: gix::zlib::Decompress,
}

impl<R: BufRead> Inflater<R> {
    fn new(input: R) -> Self {
        Inflater {
            input,
            state: gix::zlib::Decompress::new(),
        }
    }
}

impl<R: BufRead> Read for Inflater<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        gix::zlib::stream::inflate::read(&mut self.input, &mut self.state, buf)
    }
}
