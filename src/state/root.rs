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
//! ROOT/previews/<slug> -> ../releases/preview-<slug>-<commit>   one per branch preview
//! ROOT/common-previews/<slug>/  a preview's own shared data (never common/)
//! ROOT/.symdeploy/previews/<slug>.json   which branch a slug belongs to, last push
//! ```
//!
//! A preview's release lives in releases/ like every export (same filesystem,
//! same temporary-export cleanup) but under a name that is never a bare
//! commit hash, so it never shares a directory with a main release of the
//! same commit, and everything that lists main releases skips it.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The name of the warm-up symlink.
pub(crate) const WARMUP: &str = "warmup";
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
    /// ROOT/releases/<commit>
    pub(crate) fn release(&self, commit: &str) -> PathBuf {
        self.releases().join(commit)
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
    /// ROOT/common-previews: every preview's shared data.
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
    /// ROOT/previews/<slug>
    pub(crate) fn preview_link(&self, slug: &str) -> PathBuf {
        self.previews().join(slug)
    }
    /// The name (in releases/) of a preview's release of `commit`.
    pub(crate) fn preview_release_name(&self, slug: &str, commit: &str) -> String {
        format!("{PREVIEW_RELEASE_PREFIX}{slug}-{commit}")
    }
    /// The target text of `previews/<slug>` for the release `name`.
    pub(crate) fn preview_target(&self, name: &str) -> String {
        format!("../releases/{name}")
    }
    /// The release name `previews/<slug>` points at, if any.
    pub(crate) fn preview_pointed(&self, slug: &str) -> Option<String> {
        let target = std::fs::read_link(self.preview_link(slug)).ok()?;
        let name = target.to_str()?.strip_prefix("../releases/")?;
        name.starts_with(PREVIEW_RELEASE_PREFIX)
            .then(|| name.trim_end_matches('/').to_string())
    }
    /// ROOT/common-previews/<slug>: the shared data of one preview.
    pub(crate) fn common_preview(&self, slug: &str) -> PathBuf {
        self.common_previews().join(slug)
    }
    /// The shared-data directory of a preview, relative to the root (link targets).
    pub(crate) fn common_preview_rel(&self, slug: &str) -> PathBuf {
        Path::new("common-previews").join(slug)
    }
    /// .symdeploy/previews: one record per preview (branch, slug, last push).
    pub(crate) fn preview_records(&self) -> PathBuf {
        self.state_dir().join("previews")
    }
    /// Preview release directories present: (name, slug, commit).
    pub(crate) fn preview_release_dirs(&self) -> Result<Vec<(String, String, String)>> {
        let dir = self.releases();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).at("read directory", &dir)? {
            let entry = entry.at("read directory", &dir)?;
            if let Some(name) = entry.file_name().to_str() {
                if let Some((slug, commit)) = parse_preview_release(name) {
                    out.push((name.to_string(), slug.to_string(), commit.to_string()));
                }
            }
        }
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
    (is_commit_hash(commit) && !slug.is_empty()).then_some((slug, commit))
}

/// The short form used in messages.
pub(crate) fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
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
