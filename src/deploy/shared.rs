//! Link `shared` paths of a release to common/.
//!
//! `releases/<commit>/www/data/images` becomes a relative symlink to
//! `../../../../common/www/data/images`. The first time, common/ is seeded
//! from the release's own copy (moved, not copied, when on one filesystem);
//! otherwise an empty directory is made. Nothing in common/ is ever removed.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::sys::output;

/// Link every shared path of `release` (a directory in releases/) into `common`.
#[cfg(test)]
pub(crate) fn link_all(release: &Path, common: &Path, paths: &[String]) -> Result<()> {
    link_all_into(release, common, Path::new("common"), paths)
}

/// Link every shared path of `release` into `common`, which is `common_rel`
/// relative to the root the release is in (`common`; a preview's release
/// sits in its own root, `previews/<slug>/`).
pub(crate) fn link_all_into(
    release: &Path,
    common: &Path,
    common_rel: &Path,
    paths: &[String],
) -> Result<()> {
    for path in paths {
        link_one(release, common, common_rel, path)?;
    }
    Ok(())
}

fn link_one(release: &Path, common: &Path, common_rel: &Path, path: &str) -> Result<()> {
    let parts: Vec<&str> = path.split('/').collect();
    // Parents inside the release must be real directories: a symlink there
    // (say `www -> /etc`) would make us write outside the release.
    let mut cur = release.to_path_buf();
    for part in &parts[..parts.len() - 1] {
        cur.push(part);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::with_help(
                    format!(
                        "shared path \"{path}\" goes through a symlink in the release: {} -> {}",
                        cur.display(),
                        std::fs::read_link(&cur).map(|t| t.display().to_string()).unwrap_or_default()
                    ),
                    "make that path a real directory in the repository, or change `shared` in deploy.toml",
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::with_help(
                    format!("shared path \"{path}\" needs {} to be a directory, but it is a file in the release", cur.display()),
                    "change `shared` in deploy.toml or the file in the repository",
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur).at("create directory", &cur)?;
            }
            Err(e) => return Err(Error::io("inspect", &cur, e)),
        }
    }

    let in_release = release.join(path);
    let in_common = common.join(path);
    let release_copy = std::fs::symlink_metadata(&in_release).ok();
    let common_exists = std::fs::symlink_metadata(&in_common).is_ok();
    let note;
    if common_exists {
        if let Some(meta) = &release_copy {
            remove_release_copy(&in_release, meta)?;
        }
        note = String::new();
    } else {
        if let Some(parent) = in_common.parent() {
            std::fs::create_dir_all(parent).at("create directory", parent)?;
        }
        match &release_copy {
            Some(meta) if !meta.file_type().is_symlink() => {
                seed(&in_release, &in_common)?;
                note = " (created from the release's copy)".to_string();
            }
            Some(meta) => {
                remove_release_copy(&in_release, meta)?;
                std::fs::create_dir(&in_common).at("create directory", &in_common)?;
                note = " (created empty; the release had a symlink there)".to_string();
            }
            None => {
                std::fs::create_dir(&in_common).at("create directory", &in_common)?;
                note = " (created empty)".to_string();
            }
        }
    }
    let target = relative_target(common_rel, path);
    std::os::unix::fs::symlink(&target, &in_release).at("create symlink", &in_release)?;
    output::detail(&format!("{path} -> {}/{path}{note}", common_rel.display()));
    Ok(())
}

/// From `releases/<name>/a/b/c` back up to the root and into `common_rel`.
pub(crate) fn relative_target(common_rel: &Path, path: &str) -> PathBuf {
    let depth = path.split('/').count() - 1 + 2;
    let mut t = PathBuf::new();
    for _ in 0..depth {
        t.push("..");
    }
    t.push(common_rel);
    t.push(path);
    t
}

/// Remove a file, symlink or whole directory at `path` (described by its
/// `symlink_metadata`), never following a symlink. Only ever used inside a
/// release being built.
pub(crate) fn remove_release_copy(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    // Only ever inside the release being built; remove_dir_all does not follow symlinks.
    if meta.is_dir() {
        std::fs::remove_dir_all(path).at("remove the release's copy of", path)
    } else {
        std::fs::remove_file(path).at("remove the release's copy of", path)
    }
}

/// Move the release's copy into common/, copying when they are on different
/// filesystems (common/ may be a mount).
fn seed(from: &Path, to: &Path) -> Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
            crate::deploy::carry::copy_tree(from, to)?;
            let meta = std::fs::symlink_metadata(from).at("inspect", from)?;
            remove_release_copy(from, &meta)
        }
        Err(e) => Err(Error::io("move into common/", from, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_climb_back_to_the_root() {
        let common = Path::new("common");
        assert_eq!(
            relative_target(common, "log"),
            Path::new("../../common/log")
        );
        assert_eq!(
            relative_target(common, "www/data/images"),
            Path::new("../../../../common/www/data/images")
        );
        assert_eq!(
            relative_target(Path::new("common-previews/feature-x"), "log"),
            Path::new("../../common-previews/feature-x/log")
        );
    }

    #[test]
    fn seeds_common_then_links_without_losing_data() {
        let t = tempfile::tempdir().unwrap();
        let releases = t.path().join("releases");
        let common = t.path().join("common");
        std::fs::create_dir_all(&common).unwrap();
        let r1 = releases.join("r1");
        std::fs::create_dir_all(r1.join("www/data/images")).unwrap();
        std::fs::write(r1.join("www/data/images/logo.png"), "logo").unwrap();
        link_all(&r1, &common, &["www/data/images".into(), "log".into()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(common.join("www/data/images/logo.png")).unwrap(),
            "logo"
        );
        assert_eq!(
            std::fs::read_to_string(r1.join("www/data/images/logo.png")).unwrap(),
            "logo"
        );
        assert!(common.join("log").is_dir());

        // A second release with its own copy: common/ wins and keeps its data.
        let r2 = releases.join("r2");
        std::fs::create_dir_all(r2.join("www/data/images")).unwrap();
        std::fs::write(r2.join("www/data/images/logo.png"), "new").unwrap();
        link_all(&r2, &common, &["www/data/images".into()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(r2.join("www/data/images/logo.png")).unwrap(),
            "logo"
        );
    }

    #[test]
    fn refuses_a_symlinked_parent() {
        let t = tempfile::tempdir().unwrap();
        let release = t.path().join("r");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&release).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, release.join("www")).unwrap();
        let e = link_all(&release, &t.path().join("common"), &["www/data".into()]).unwrap_err();
        assert!(e.to_string().contains("goes through a symlink"), "{e}");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    }
}
