//! The deploy root's layout: the one place that knows the seed's paths and names.
//!
//! ```text
//! ROOT/repository/              bare repository, the push target
//! ROOT/releases/<commit>/       one exported commit each
//! ROOT/common/                  persistent data, never deleted by symdeploy
//! ROOT/deploy.toml              configuration
//! ROOT/.symdeploy/              lock, journal, release states, logs
//! ROOT/warmup -> releases/<commit>     ROOT/production -> releases/<commit>
//! ROOT/www_warmup, www, app     static links through warmup/production
//! ROOT/previews/<slug>/         a preview's own root, mirroring this one:
//!   releases/<commit>/  common/  production -> releases/<commit>  www -> production/www
//! ROOT/.symdeploy/previews/<slug>.json   which branch a slug belongs to, last push
//! ```
//!
//! A preview's release is known by the name `preview-<slug>-<commit>` (its
//! record, the journal, the trash), which is never a bare commit hash, so
//! everything that lists main releases skips it; [`Root::release`] maps that
//! name to `previews/<slug>/releases/<commit>`, where every relative path a
//! release's steps use (`../../common/...`) lands in the preview's own root.
//! Older versions kept it in `releases/preview-<slug>-<commit>` with data in
//! `common-previews/<slug>/`; [`crate::deploy::preview_root`] moves those over.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The name of the warm-up symlink.
pub(crate) const WARMUP: &str = "warmup";
/// The stage (SYMDEPLOY_STAGE) of the watch's checks after a promote.
pub(crate) const WATCH_STAGE: &str = "watch";
/// The name of the production symlink.
pub(crate) const PRODUCTION: &str = "production";
/// The directory of the preview links.
pub(crate) const PREVIEWS: &str = "previews";
/// Prefix of preview release directories inside releases/.
pub(crate) const PREVIEW_RELEASE_PREFIX: &str = "preview-";
/// Prefix of temporary export directories inside releases/.
pub(crate) const TMP_PREFIX: &str = ".tmp-";
/// Prefix of temporary link names in the root (cleaned up by the next deploy).
pub(crate) const TMP_LINK_PREFIX: &str = ".symdeploy-link-";
/// Prefix of a release record being written in `.symdeploy/releases/`.
pub(crate) const RECORD_TMP_PREFIX: &str = ".tmp-record-";
/// Prefix of a manifest being written in `.symdeploy/manifests/`.
pub(crate) const MANIFEST_TMP_PREFIX: &str = ".tmp-manifest-";
/// Prefix of a pre-receive hook's repository view in `.symdeploy/`,
/// followed by the pid of the hook that made it.
pub(crate) const QUARANTINE_VIEW_PREFIX: &str = "quarantine-view-";

/// Paths of one deploy root.
#[derive(Debug, Clone)]
pub(crate) struct Root {
    /// The deploy root itself (absolute).
    pub(crate) dir: PathBuf,
}

impl Root {
    /// A root at `dir`, made absolute (not canonicalized: the root may be a
    /// symlink or a bind mount and links inside it are relative anyway).
    pub(crate) fn new(dir: &Path) -> Result<Root> {
        let dir = std::path::absolute(dir).at("resolve", dir)?;
        Ok(Root { dir })
    }

    /// Find the root for a command: `--root`, else SYMDEPLOY_ROOT, else the
    /// current directory; it must look like a deploy root.
    pub(crate) fn locate(explicit: Option<&Path>) -> Result<Root> {
        let dir = match explicit {
            Some(d) => d.to_path_buf(),
            None => std::env::current_dir().at("read", "the current directory")?,
        };
        let root = Root::new(&dir)?;
        root.ensure_exists()?;
        Ok(root)
    }

    /// Fail with advice unless this looks like a deploy root.
    pub(crate) fn ensure_exists(&self) -> Result<()> {
        if self.repository().join("HEAD").is_file() && self.releases().is_dir() {
            Ok(())
        } else {
            Err(Error::with_help(
                format!("{} is not a symdeploy deploy root (no repository/ and releases/ there)", self.dir.display()),
                format!(
                    "create one with `symdeploy init {}`, or point at an existing one with --root or SYMDEPLOY_ROOT",
                    self.dir.display()
                ),
            ))
        }
    }

    /// The root that contains the bare repository `git_dir` (hooks run there).
    pub(crate) fn from_repository(git_dir: &Path) -> Result<Root> {
        let git_dir = std::path::absolute(git_dir).at("resolve", git_dir)?;
        let git_dir = std::fs::canonicalize(&git_dir).unwrap_or(git_dir);
        match git_dir.parent() {
            Some(parent) if git_dir.file_name().is_some_and(|n| n == "repository") => {
                let root = Root::new(parent)?;
                root.ensure_exists()?;
                Ok(root)
            }
            _ => Err(Error::with_help(
                format!("the hook runs in {}, which is not a deploy root's `repository`", git_dir.display()),
                "symdeploy hooks belong in ROOT/repository/hooks; create the root with `symdeploy init ROOT`",
            )),
        }
    }

    /// ROOT/repository
    pub(crate) fn repository(&self) -> PathBuf {
        self.dir.join("repository")
    }
    /// ROOT/releases
    pub(crate) fn releases(&self) -> PathBuf {
        self.dir.join("releases")
    }
    /// ROOT/releases/<commit>, or for a preview's release name
    /// `previews/<slug>/releases/<commit>`.
    pub(crate) fn release(&self, commit: &str) -> PathBuf {
        match parse_preview_release(commit) {
            Some((slug, c)) => {
                let new = self.preview_dir(slug).join("releases").join(c);
                // A preview older versions left, not moved over yet (the next
                // preview operation under the lock moves it): read it where it is.
                let legacy = self.releases().join(commit);
                if std::fs::symlink_metadata(&new).is_err()
                    && std::fs::symlink_metadata(&legacy).is_ok()
                {
                    return legacy;
                }
                new
            }
            None => self.releases().join(commit),
        }
    }
    /// ROOT/common
    pub(crate) fn common(&self) -> PathBuf {
        self.dir.join("common")
    }
    /// ROOT/deploy.toml
    pub(crate) fn config_file(&self) -> PathBuf {
        self.dir.join("deploy.toml")
    }
    /// ROOT/.symdeploy: symdeploy's own state.
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.join(".symdeploy")
    }
    /// The lock file.
    pub(crate) fn lock_file(&self) -> PathBuf {
        self.state_dir().join("lock")
    }
    /// The journal: one JSON object a line.
    pub(crate) fn journal(&self) -> PathBuf {
        self.state_dir().join("journal.jsonl")
    }
    /// The step running now (token, process group, what), for recovery.
    pub(crate) fn running_step(&self) -> PathBuf {
        self.state_dir().join("step")
    }
    /// `.symdeploy/watch/`: the watch after a promote (`current.json`) and
    /// its progress.
    pub fn watch_dir(&self) -> PathBuf {
        self.state_dir().join("watch")
    }
    /// Per-deploy logs.
    pub(crate) fn logs(&self) -> PathBuf {
        self.state_dir().join("logs")
    }
    /// Per-release state records.
    pub(crate) fn states(&self) -> PathBuf {
        self.state_dir().join("releases")
    }
    /// `.symdeploy/manifests`: one compressed manifest per release.
    pub(crate) fn manifests(&self) -> PathBuf {
        self.state_dir().join("manifests")
    }
    /// `.symdeploy/trash`: releases moved aside, waiting for deletion.
    pub(crate) fn trash(&self) -> PathBuf {
        self.state_dir().join("trash")
    }
    /// A release being removed: renamed to this first (one rename), so a
    /// half-removed release never shows under its own name.
    pub(crate) fn doomed_release(&self, name: &str) -> PathBuf {
        self.releases().join(format!("{TMP_PREFIX}delete-{name}"))
    }
    /// `.symdeploy/strict`: strict mode's pending files, one per receive-pack.
    pub(crate) fn strict_pending(&self) -> PathBuf {
        self.state_dir().join("strict")
    }
    /// `.symdeploy/open`: one small file per journal run not yet ended.
    pub(crate) fn journal_open(&self) -> PathBuf {
        self.state_dir().join("open")
    }
    /// `.symdeploy/journal`: the journal's older, compressed segments.
    pub(crate) fn journal_segments(&self) -> PathBuf {
        self.state_dir().join("journal")
    }
    /// `.symdeploy/production.json`: the stack of production releases.
    pub(crate) fn production_history(&self) -> PathBuf {
        self.state_dir().join("production.json")
    }
    /// ROOT/common-previews: where older versions kept previews' shared data.
    pub(crate) fn common_previews(&self) -> PathBuf {
        self.dir.join("common-previews")
    }
    /// A symlink in the root (warmup, production, www, ...).
    pub(crate) fn link(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// ROOT/previews: one symlink per preview.
    pub(crate) fn previews(&self) -> PathBuf {
        self.dir.join(PREVIEWS)
    }
    /// ROOT/previews/<slug>: a preview's own root.
    pub(crate) fn preview_dir(&self, slug: &str) -> PathBuf {
        self.previews().join(slug)
    }
    /// ROOT/previews/<slug>/production: the link that says what a preview serves.
    pub(crate) fn preview_link(&self, slug: &str) -> PathBuf {
        self.preview_dir(slug).join(PRODUCTION)
    }
    /// The name of a preview's release of `commit` (records, journal, trash).
    pub(crate) fn preview_release_name(&self, slug: &str, commit: &str) -> String {
        format!("{PREVIEW_RELEASE_PREFIX}{slug}-{commit}")
    }
    /// The target text of `previews/<slug>/production` for the release `name`.
    pub(crate) fn preview_target(&self, name: &str) -> String {
        let commit = parse_preview_release(name).map_or(name, |(_, c)| c);
        format!("releases/{commit}")
    }
    /// The release name `previews/<slug>/production` points at, if any.
    pub(crate) fn preview_pointed(&self, slug: &str) -> Option<String> {
        let Ok(target) = std::fs::read_link(self.preview_link(slug)) else {
            // Older versions: previews/<slug> -> ../releases/preview-<slug>-<commit>.
            let old = std::fs::read_link(self.preview_dir(slug)).ok()?;
            let name = old
                .to_str()?
                .strip_prefix("../releases/")?
                .trim_end_matches('/');
            return parse_preview_release(name)
                .filter(|(s, _)| *s == slug)
                .map(|_| name.to_string());
        };
        let commit = target.to_str()?.strip_prefix("releases/")?;
        let commit = commit.trim_end_matches('/');
        is_commit_hash(commit).then(|| self.preview_release_name(slug, commit))
    }
    /// ROOT/previews/<slug>/common: the shared data of one preview.
    pub(crate) fn common_preview(&self, slug: &str) -> PathBuf {
        self.preview_dir(slug).join("common")
    }
    /// The shared-data directory of a preview, relative to the preview's own
    /// root (link targets climb from the release to that root).
    pub(crate) fn common_preview_rel(&self, _slug: &str) -> PathBuf {
        PathBuf::from("common")
    }
    /// .symdeploy/previews: one record per preview (branch, slug, last push).
    pub(crate) fn preview_records(&self) -> PathBuf {
        self.state_dir().join("previews")
    }
    /// Preview release directories present: (name, slug, commit).
    pub(crate) fn preview_release_dirs(&self) -> Result<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        let Ok(previews) = std::fs::read_dir(self.previews()) else {
            return Ok(out);
        };
        for p in previews.flatten() {
            let Some(slug) = p.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if slug.starts_with('.') || !p.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let dir = p.path().join("releases");
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let entry = entry.at("read directory", &dir)?;
                if let Some(commit) = entry.file_name().to_str() {
                    if is_commit_hash(commit) {
                        let name = self.preview_release_name(&slug, commit);
                        out.push((name, slug.clone(), commit.to_string()));
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Create the state directories if missing (cheap; done by every deploy so
    /// that a root made by hand, or an older version, just works).
    pub(crate) fn ensure_state_dirs(&self) -> Result<()> {
        for d in [self.state_dir(), self.logs(), self.states(), self.common()] {
            std::fs::create_dir_all(&d).at("create directory", &d)?;
        }
        Ok(())
    }

    /// The commit a root symlink (`warmup`, `production`) points at, if it
    /// points at a release directory.
    pub(crate) fn pointed_release(&self, name: &str) -> Option<String> {
        let target = std::fs::read_link(self.link(name)).ok()?;
        let target = target.to_str()?;
        let commit = target.strip_prefix("releases/")?.trim_end_matches('/');
        is_commit_hash(commit).then(|| commit.to_string())
    }

    /// The release production points at.
    pub(crate) fn production(&self) -> Option<String> {
        self.pointed_release(PRODUCTION)
    }

    /// The release warmup points at.
    pub(crate) fn warmup(&self) -> Option<String> {
        self.pointed_release(WARMUP)
    }

    /// Release directories present (complete exports; temporaries excluded).
    pub(crate) fn release_dirs(&self) -> Result<Vec<String>> {
        let dir = self.releases();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).at("read directory", &dir)? {
            let entry = entry.at("read directory", &dir)?;
            if let Some(name) = entry.file_name().to_str() {
                if is_commit_hash(name) {
                    out.push(name.to_string());
                }
            }
        }
        Ok(out)
    }
}

/// A full hexadecimal object id (SHA-1 or SHA-256).
pub(crate) fn is_commit_hash(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Split a preview release name `preview-<slug>-<commit>` into slug and commit.
pub(crate) fn parse_preview_release(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(PREVIEW_RELEASE_PREFIX)?;
    let (slug, commit) = rest.rsplit_once('-')?;
    // A slug is a DNS label: nothing in it can climb out of previews/.
    let label = !slug.is_empty()
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (is_commit_hash(commit) && label).then_some((slug, commit))
}

/// The short form used in messages.
pub(crate) fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Where a release is, as people read it: `releases/<short>`, or for a
/// preview's release `previews/<slug>/releases/<short>`.
pub(crate) fn release_place(name: &str) -> String {
    match parse_preview_release(name) {
        Some((slug, c)) => format!("previews/{slug}/releases/{}", short(c)),
        None => format!("releases/{}", release_label(name)),
    }
}

/// A release directory's name as people read it: a commit hash shortened,
/// any other name (a preview's release) whole, since its first 12
/// characters say nothing.
pub(crate) fn release_label(name: &str) -> &str {
    if name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        short(name)
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_hashes_are_recognised() {
        assert!(is_commit_hash(&"a".repeat(40)));
        assert!(!is_commit_hash(&"A".repeat(40)));
        assert!(!is_commit_hash("../../etc"));
        assert!(!is_commit_hash(".tmp-abc"));
    }

    #[test]
    fn preview_release_names_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        let c = "0123456789abcdef0123456789abcdef01234567";
        let name = root.preview_release_name("feature-a-b", c);
        assert_eq!(parse_preview_release(&name), Some(("feature-a-b", c)));
        assert!(!is_commit_hash(&name), "never taken for a main release");
        assert_eq!(parse_preview_release(c), None);
        assert_eq!(parse_preview_release("preview--x"), None);
        let climb = format!("preview-../../etc-{c}");
        assert_eq!(
            parse_preview_release(&climb),
            None,
            "never leaves previews/"
        );
        assert_eq!(
            root.release(&name),
            t.path().join(format!("previews/feature-a-b/releases/{c}"))
        );
        assert_eq!(root.preview_target(&name), format!("releases/{c}"));
    }

    #[test]
    fn pointed_release_reads_relative_links() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        let c = "0123456789abcdef0123456789abcdef01234567";
        std::os::unix::fs::symlink(format!("releases/{c}"), root.link(WARMUP)).unwrap();
        assert_eq!(root.warmup().as_deref(), Some(c));
        assert_eq!(root.production(), None);
    }
}
