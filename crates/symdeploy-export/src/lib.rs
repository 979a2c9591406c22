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
pub use tree::{export_tree, export_tree_reporting, tree_bytes, Progress, Stats};

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
    use std::process::Command;
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
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
                .args(args)
                .current_dir(&work)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        git(&["init", "-q"]);
        git(&["add", "-A"]);
        git(&["commit", "-qm", "many"]);
        let tree = gix::ObjectId::from_hex(git(&["rev-parse", "HEAD^{tree}"]).as_bytes()).unwrap();
        let repo = gix::open(&work).unwrap();
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
