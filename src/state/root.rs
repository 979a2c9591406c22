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
use crate::state::commit::Commit;
use crate::state::release_name::ReleaseName;

/// The name of the warm-up symlink.
pub(crate) const WARMUP: &str = "warmup";
/// The stage (SYMDEPLOY_STAGE) of the watch's checks after a promote.
pub(crate) const WATCH_STAGE: &str = "watch";
/// The name of the production symlink.
pub(crate) const PRODUCTION: &str = "production";
/// The directory of the preview links.
pub(crate) const PREVIEWS: &str = "previews";
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
    /// ROOT/releases/<commit>, or for a preview's release
    /// `previews/<slug>/releases/<commit>`.
    pub(crate) fn release(&self, name: &ReleaseName) -> PathBuf {
        match name {
            ReleaseName::Preview { slug, commit } => {
                let new = self
                    .preview_dir(slug)
                    .join("releases")
                    .join(commit.as_str());
                // A preview older versions left, not moved over yet (the next
                // preview operation under the lock moves it): read it where it is.
                let legacy = self.releases().join(name.to_string());
                if std::fs::symlink_metadata(&new).is_err()
                    && std::fs::symlink_metadata(&legacy).is_ok()
                {
                    return legacy;
                }
                new
            }
            ReleaseName::Main(commit) => self.releases().join(commit.as_str()),
        }
    }

    /// ROOT/releases/<commit>: a main release's directory.
    pub(crate) fn main_release(&self, commit: Commit) -> PathBuf {
        self.releases().join(commit.as_str())
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
    pub(crate) fn watch_dir(&self) -> PathBuf {
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
    pub(crate) fn doomed_release(&self, name: &ReleaseName) -> PathBuf {
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
    /// The target text of `previews/<slug>/production` for the release `name`.
    pub(crate) fn preview_target(&self, name: &ReleaseName) -> String {
        format!("releases/{}", name.commit())
    }
    /// The release `previews/<slug>/production` points at, if any.
    pub(crate) fn preview_pointed(&self, slug: &str) -> Option<ReleaseName> {
        let Ok(target) = std::fs::read_link(self.preview_link(slug)) else {
            // Older versions: previews/<slug> -> ../releases/preview-<slug>-<commit>.
            let old = std::fs::read_link(self.preview_dir(slug)).ok()?;
            let name = old
                .to_str()?
                .strip_prefix("../releases/")?
                .trim_end_matches('/');
            return ReleaseName::parse(name).filter(|n| n.slug() == Some(slug));
        };
        let commit = target.to_str()?.strip_prefix("releases/")?;
        let commit = Commit::parse_stored(commit.trim_end_matches('/'))?;
        ReleaseName::preview(slug, commit)
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
    /// Preview release directories present.
    pub(crate) fn preview_release_dirs(&self) -> Result<Vec<ReleaseName>> {
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
                let commit = entry.file_name().to_str().and_then(Commit::parse_stored);
                if let Some(name) = commit.and_then(|c| ReleaseName::preview(&slug, c)) {
                    out.push(name);
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
    pub(crate) fn pointed_release(&self, name: &str) -> Option<Commit> {
        let target = std::fs::read_link(self.link(name)).ok()?;
        let target = target.to_str()?;
        Commit::parse_stored(target.strip_prefix("releases/")?.trim_end_matches('/'))
    }

    /// The release production points at.
    pub(crate) fn production(&self) -> Option<Commit> {
        self.pointed_release(PRODUCTION)
    }

    /// The release warmup points at.
    pub(crate) fn warmup(&self) -> Option<Commit> {
        self.pointed_release(WARMUP)
    }

    /// Main release directories present (complete exports; temporaries
    /// and anything not named by a commit excluded).
    pub(crate) fn release_dirs(&self) -> Result<Vec<Commit>> {
        let dir = self.releases();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).at("read directory", &dir)? {
            let entry = entry.at("read directory", &dir)?;
            if let Some(c) = entry.file_name().to_str().and_then(Commit::parse_stored) {
                out.push(c);
            }
        }
        Ok(out)
    }
}

/// The short form of an object id used in messages (a commit's is
/// [`Commit::short`]; this is for ids as git hands them to hooks).
pub(crate) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn a_preview_release_lives_in_its_own_root() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        let name = ReleaseName::preview("feature-a-b", Commit::parse(C).unwrap()).unwrap();
        assert_eq!(
            root.release(&name),
            t.path().join(format!("previews/feature-a-b/releases/{C}"))
        );
        assert_eq!(root.preview_target(&name), format!("releases/{C}"));
        let main = ReleaseName::Main(Commit::parse(C).unwrap());
        assert_eq!(root.release(&main), t.path().join(format!("releases/{C}")));
    }

    #[test]
    fn pointed_release_reads_relative_links() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        std::os::unix::fs::symlink(format!("releases/{C}"), root.link(WARMUP)).unwrap();
        assert_eq!(root.warmup().map(|c| c.to_string()).as_deref(), Some(C));
        assert_eq!(root.production(), None);
        let upper = C.to_uppercase();
        std::os::unix::fs::symlink(format!("releases/{upper}"), root.link(PRODUCTION)).unwrap();
        assert_eq!(root.production(), None, "only the stored spelling counts");
    }
}
