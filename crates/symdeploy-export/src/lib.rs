//! A git tree → a new directory, with gix and no `git` subprocess.
//!
//! Context-free: it knows nothing of deploy roots, releases or the journal.
//! The caller resolves the commit to its tree and decides what an error
//! means to its operator; this crate says what failed, where, and what would
//! fix it.

#![deny(missing_docs)]

mod blobstream;
mod error;
mod tree;

pub use error::{Error, Result};
pub use tree::{
    export_tree, export_tree_recording, export_tree_reporting, reserve_descriptors, tree_bytes,
    Progress, Stats, Written,
};

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Commit everything in `work` (a new repository) and open it: the
    /// repository and the commit's tree, for the export tests.
    pub(super) fn commit_all(work: &Path) -> (gix::Repository, gix::ObjectId) {
        git(work, &["init", "-q"]);
        git(work, &["add", "-A"]);
        git(work, &["commit", "-qm", "files"]);
        let tree = git(work, &["rev-parse", "HEAD^{tree}"]);
        let tree = gix::ObjectId::from_hex(tree.as_bytes()).expect("a tree id");
        (gix::open(work).expect("the repository opens"), tree)
    }

    /// A tree of files, an executable, a symlink and an export-ignored
    /// path lands as git archive would write it; the directory must be new.
    #[test]
    fn a_tree_lands_whole_and_export_ignore_applies() {
        let t = tempfile::tempdir().unwrap();
        let work = t.path().join("work");
        std::fs::create_dir_all(work.join("www/deep")).unwrap();
        std::fs::write(work.join("www/index.php"), "<?php echo 1;\n").unwrap();
        std::fs::write(work.join("www/deep/a.txt"), "a").unwrap();
        std::fs::write(work.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(work.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("www/index.php", work.join("link")).unwrap();
        std::fs::write(work.join("notes.md"), "private").unwrap();
        std::fs::write(work.join(".gitattributes"), "notes.md export-ignore\n").unwrap();
        git(t.path(), &["init", "-q", "-b", "main", "work"]);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-qm", "one"]);
        let head = git(&work, &["rev-parse", "HEAD^{tree}"]);

        let repo = gix::open(&work).unwrap();
        let tree = gix::ObjectId::from_hex(head.as_bytes()).unwrap();
        let dest = t.path().join("out");
        let stats = crate::export_tree(&repo, tree, &dest).unwrap();
        assert_eq!(stats.symlinks, 1);
        assert_eq!(stats.ignored, 1);
        assert_eq!(
            std::fs::read_to_string(dest.join("www/deep/a.txt")).unwrap(),
            "a"
        );
        assert!(!dest.join("notes.md").exists());
        assert_eq!(
            std::fs::read_link(dest.join("link")).unwrap(),
            Path::new("www/index.php")
        );
        let mode = std::fs::metadata(dest.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{mode:o}");
        assert_eq!(
            crate::tree_bytes(&repo, tree).unwrap(),
            stats.bytes + "private".len() as u64 + "www/index.php".len() as u64,
            "tree_bytes counts every blob: export-ignored files and symlink targets too"
        );
        // Into an existing directory: refused, nothing written through it.
        let e = crate::export_tree(&repo, tree, &dest).unwrap_err();
        assert!(e.to_string().contains("create directory"), "{e}");
    }
}

#[cfg(test)]
mod progress_tests {
    use std::path::Path;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A long export tells how far it has come as it goes, never past the
    /// end, and the export itself is unchanged.
    #[test]
    fn a_long_export_reports_its_counts_as_it_goes() {
        let t = tempfile::tempdir().unwrap();
        let work = t.path().join("work");
        std::fs::create_dir_all(work.join("d")).unwrap();
        for i in 0..10000 {
            std::fs::write(work.join("d").join(format!("f{i}")), format!("{i}\n")).unwrap();
        }
        let (repo, tree) = crate::tests::commit_all(&work);
        let seen = Mutex::new(Vec::new());
        let report = |p: crate::Progress| seen.lock().unwrap().push(p);
        let stats = crate::export_tree_reporting(
            &repo,
            tree,
            &t.path().join("out"),
            Some((Duration::from_micros(200), &report)),
        )
        .unwrap();
        assert_eq!(stats.files, 10000);
        let seen = seen.into_inner().unwrap();
        assert!(!seen.is_empty(), "no progress was reported");
        assert!(
            seen.windows(2).all(|w| w[0].files <= w[1].files),
            "{seen:?}"
        );
        assert!(seen.iter().all(|p| p.files <= stats.files), "{seen:?}");
        assert!(Path::new(&t.path().join("out/d/f9999")).is_file());
    }
}

#[cfg(test)]
mod recording_tests {
    use std::os::unix::fs::MetadataExt;

    /// What the export records is what lands on disk: every regular file
    /// once, none of the symlinks, the git blob id of the bytes read back
    /// and the stamp `lstat` gives afterwards, big blobs streamed from the
    /// object store too.
    #[test]
    fn the_recorded_blobs_and_stamps_are_those_of_the_files_written() {
        let t = tempfile::tempdir().unwrap();
        let work = t.path().join("work");
        std::fs::create_dir_all(work.join("a/b")).unwrap();
        std::fs::write(work.join("a/b/small.txt"), "small\n").unwrap();
        std::fs::write(work.join("empty"), "").unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(work.join("a/big.bin"), &big).unwrap();
        std::os::unix::fs::symlink("a/b/small.txt", work.join("link")).unwrap();
        let (repo, tree) = crate::tests::commit_all(&work);
        // Loose objects: the 300 kB blob is streamed above this threshold
        // (other tests in this process only stream more of their files).
        std::env::set_var("SYMDEPLOY_STREAM_THRESHOLD", "100000");
        let out = t.path().join("out");
        let (stats, written) = crate::export_tree_recording(&repo, tree, &out, None).unwrap();
        std::env::remove_var("SYMDEPLOY_STREAM_THRESHOLD");
        assert_eq!(stats.files, 3);
        let paths: Vec<&[u8]> = written.iter().map(|w| w.path.as_slice()).collect();
        assert_eq!(
            paths,
            vec![b"a/b/small.txt".as_slice(), b"a/big.bin", b"empty"],
            "sorted by path, symlinks left out"
        );
        for w in &written {
            let p = out.join(std::str::from_utf8(&w.path).unwrap());
            let bytes = std::fs::read(&p).unwrap();
            let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, &bytes)
                .unwrap();
            assert_eq!(w.blob, id, "{p:?}");
            let m = std::fs::symlink_metadata(&p).unwrap();
            assert_eq!(w.size, m.len());
            assert_eq!(w.mode, m.mode() & 0o7777);
            assert_eq!(w.ino, m.ino());
            assert_eq!(
                w.ctime_ns,
                i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec())
            );
            assert_eq!(
                w.mtime_ns,
                i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
            );
        }
        // The plain export records nothing and writes the same files.
        let again = t.path().join("again");
        let plain = crate::export_tree(&repo, tree, &again).unwrap();
        assert_eq!(plain.files, 3);
        assert_eq!(std::fs::read(again.join("a/big.bin")).unwrap(), big);
    }
}

#[cfg(test)]
mod descriptor_tests {
    use nix::sys::resource::{getrlimit, Resource};

    /// The kernel's own figure for this process's descriptor table.
    fn table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    /// The table is grown to its final size in one step and the limit on
    /// open files is left as it was.
    #[test]
    fn reserving_grows_the_table_and_leaves_the_limit() {
        let before = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        crate::reserve_descriptors();
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), before);
        if before.1 >= 4096 {
            assert!(table_size() >= 4096, "FDSize {}", table_size());
        }
    }
}
