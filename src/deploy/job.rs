//! One warm-up job: a commit of a ref, to become a release or a preview
//! ([`Target`]), and all that differs between the two: the release's name,
//! the pointer that flips to it, its steps and their environment, its
//! notify, its journal event and its messages. The pipeline that runs a job
//! is [`crate::deploy::warmup`]; it asks the job wherever the two differ.

use std::path::PathBuf;
use std::time::Duration;

use crate::ctx::Ctx;
use crate::deploy::pointers::point_warmup;
use crate::deploy::preview;
use crate::error::{Error, Result};
use crate::state::commit::Commit;
use crate::state::journal::{Event, Outcome};
use crate::state::release_name::ReleaseName;
use crate::sys::advice;
use crate::sys::output::{self, Stage};
use crate::sys::steps::{self, StepEnv};

/// What a warm-up builds, and with it all that differs between the two
/// kinds: the release's name, the pointer that flips to it, its steps and
/// their environment, its journal event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A release of the deployed branch, `releases/<commit>`; `warmup`
    /// flips to it.
    Release {
        /// Build it again even if it has a ready release (`--rebuild`).
        rebuild: bool,
        /// A promote follows (a tag, `-o promote`, a strict push): the hint
        /// to promote is left out, a failure's advice names `symdeploy
        /// promote`, and promote.notify hears of the failure too.
        promote_follows: bool,
    },
    /// The preview of a branch matching `previews.branches`, in its own
    /// root: `previews/<slug>/releases/<commit>`, known by the name
    /// `preview-<slug>-<commit>`. `previews/<slug>/production` flips to it;
    /// `warmup` and `production` never move. Its shared paths point into
    /// `previews/<slug>/common/`, and it runs `[previews]`' steps.
    Preview {
        /// previews/<slug>.
        slug: String,
    },
}

/// One warm-up: a commit of a ref, built as its [`Target`].
/// Made by [`Job::new`], which names the release.
pub(crate) struct Job<'a> {
    /// The root and configuration it works in.
    pub(crate) ctx: &'a Ctx,
    /// A release or a preview.
    pub(crate) target: Target,
    /// The commit it builds.
    pub(crate) commit: Commit,
    /// The ref that was pushed (or given by hand).
    pub(crate) git_ref: &'a str,
    /// The release: the commit's, or the preview's.
    pub(crate) name: ReleaseName,
}

impl<'a> Job<'a> {
    /// `commit` of `git_ref`, to be built (or flipped to) as `target`.
    pub(crate) fn new(ctx: &'a Ctx, target: Target, commit: Commit, git_ref: &'a str) -> Job<'a> {
        // A preview's slug was checked when it was claimed.
        let name = match &target {
            Target::Release { .. } => ReleaseName::Main(commit),
            Target::Preview { slug } => ReleaseName::Preview {
                slug: slug.clone(),
                commit,
            },
        };
        Job {
            ctx,
            target,
            commit,
            git_ref,
            name,
        }
    }

    /// The header of its run.
    pub(crate) fn header(&self, subject: &str) -> String {
        let (short, git_ref) = (self.commit.short(), self.git_ref);
        match &self.target {
            Target::Release { .. } => format!("warming up {short} ({git_ref}): {subject}"),
            Target::Preview { slug } => format!("preview {slug} of {short} ({git_ref}): {subject}"),
        }
    }

    /// Is a ready release of the commit built again (`--rebuild`)?
    pub(crate) fn rebuild(&self) -> bool {
        matches!(self.target, Target::Release { rebuild: true, .. })
    }

    /// "the warm-up", "the preview": what an interrupt stopped.
    pub(crate) fn what(&self) -> &'static str {
        match self.target {
            Target::Release { .. } => "the warm-up",
            Target::Preview { .. } => "the preview",
        }
    }

    /// Its build, links and migrate steps, and the prefix of their fault
    /// points (`preview-build`).
    pub(crate) fn stages(&self) -> ([(WarmStage, &'a Vec<String>); 3], &'static str) {
        let (steps, prefix) = match self.target {
            Target::Release { .. } => {
                let w = &self.ctx.config.warmup;
                ([&w.build, &w.links, &w.migrate], "")
            }
            Target::Preview { .. } => {
                let p = &self.ctx.config.previews;
                ([&p.build, &p.links, &p.migrate], "preview-")
            }
        };
        let [build, links, migrate] = steps;
        (
            [
                (WarmStage::Build, build),
                (WarmStage::Links, links),
                (WarmStage::Migrate, migrate),
            ],
            prefix,
        )
    }

    /// Its journal event.
    pub(crate) fn event(&self) -> Event {
        match self.target {
            Target::Release { .. } => Event::Warmup,
            Target::Preview { .. } => preview::EVENT,
        }
    }

    /// The pointer that flips to it, as people read it.
    pub(crate) fn pointer(&self) -> String {
        match &self.target {
            Target::Release { .. } => "warmup".into(),
            Target::Preview { slug } => format!("previews/{slug}/production"),
        }
    }

    /// What the fault points around its flip end with.
    pub(crate) fn flip_fault(&self) -> &'static str {
        match self.target {
            Target::Release { .. } => "warmup",
            Target::Preview { .. } => "preview",
        }
    }

    /// Is it checked (`warmup.check`) before it is ready? A preview is not.
    pub(crate) fn has_check(&self) -> bool {
        matches!(self.target, Target::Release { .. }) && !self.ctx.config.warmup.check.is_empty()
    }

    /// Where its shared paths point, and that place relative to the root
    /// the release is in (link targets climb from the release to it).
    pub(crate) fn common(&self) -> (PathBuf, PathBuf) {
        let root = &self.ctx.root;
        match &self.target {
            Target::Release { .. } => (root.common(), PathBuf::from("common")),
            Target::Preview { slug } => (root.common_preview(slug), root.common_preview_rel(slug)),
        }
    }

    /// Point its pointer at it: one rename.
    pub(crate) fn point(&self) -> Result<()> {
        match &self.target {
            Target::Release { .. } => point_warmup(self.ctx, self.commit),
            Target::Preview { slug } => preview::point(self.ctx, slug, &self.name),
        }
    }

    /// The environment its steps get. SYMDEPLOY_ROOT is the deploy root
    /// either way (scripts find `.symdeploy/` and the repository through
    /// it); a preview's SYMDEPLOY_SHARED is its own data, and relative paths
    /// from its release resolve in its own root.
    pub(crate) fn step_env(&self) -> StepEnv {
        let root = &self.ctx.root;
        let (previous, extra) = match &self.target {
            Target::Release { .. } => (root.production().map(ReleaseName::Main), Vec::new()),
            Target::Preview { slug } => (
                root.preview_pointed(slug),
                vec![
                    ("SYMDEPLOY_PREVIEW".into(), slug.to_string()),
                    (
                        "SYMDEPLOY_SHARED".into(),
                        root.common_preview(slug).display().to_string(),
                    ),
                ],
            ),
        };
        StepEnv {
            root: root.dir.clone(),
            release: root.release(&self.name),
            commit: self.commit,
            git_ref: self.git_ref.to_string(),
            previous: previous.map(|n| root.release(&n)),
            extra,
            timeout: self.ctx.config.step_timeout,
        }
    }

    /// Run its notify steps: a release's `warmup.notify` with
    /// `SYMDEPLOY_RESULT` (ok or failed) and, after a failure,
    /// `SYMDEPLOY_ERROR` (one line); a preview's `previews.notify` (after its
    /// flip only) with SYMDEPLOY_STAGE=preview. Their own failure is a
    /// warning. Returns how long they took, if there were any and they
    /// passed.
    pub(crate) fn notify(&self, result: Outcome, error: Option<&Error>) -> Option<Duration> {
        let commands = match self.target {
            Target::Release { .. } => &self.ctx.config.warmup.notify,
            Target::Preview { .. } => &self.ctx.config.previews.notify,
        };
        if commands.is_empty() {
            return None; // no stage on screen for a step list that is empty
        }
        let stage = Stage::start("notify");
        let mut env = self.step_env();
        let stands = match self.target {
            Target::Release { .. } => {
                env.extra
                    .push(("SYMDEPLOY_RESULT".into(), result.as_ref().into()));
                if let Some(e) = error {
                    env.extra
                        .push(("SYMDEPLOY_ERROR".into(), output::one_line(&e.to_string())));
                }
                if result == Outcome::Ok {
                    "the release is warmed up all the same"
                } else {
                    "the failure above stands as reported"
                }
            }
            Target::Preview { .. } => {
                env.extra.push(("SYMDEPLOY_STAGE".into(), "preview".into()));
                "the preview is up all the same"
            }
        };
        if let Err(e) = steps::run_stage("notify", commands, &env) {
            output::warning(&format!("{e} ({stands})"));
            return None;
        }
        Some(stage.done())
    }

    /// The last word of a warm-up that flipped.
    pub(crate) fn finish_message(&self, took: Duration) {
        let short = self.commit.short();
        match &self.target {
            Target::Release {
                promote_follows, ..
            } => {
                output::success(&format!(
                    "warmup -> releases/{short} (warm-up took {})",
                    crate::sys::fs::human_duration(took)
                ));
                output::log_only(&format!("       warmup -> releases/{}", self.commit));
                if *promote_follows {
                    return;
                }
                // A tag name the configured glob accepts: `release-*` becomes `release-N`.
                let tag = self.ctx.config.promote.tags.replace(['*', '?'], "N");
                output::detail(&format!(
                    "promote it: `{}` on the server, or git tag {tag} {short} && git push deploy {tag}",
                    advice::command(&format!("promote {short}")),
                ));
            }
            Target::Preview { slug } => {
                output::success(&format!("previews/{slug}/production -> releases/{short}"));
                output::log_only(&format!(
                    "       (release: {})",
                    self.ctx.root.release(&self.name).display()
                ));
                output::line(&format!(
                    "       serve it as {slug}.<your preview domain> (docs/src/previews.md); production and warmup are unchanged",
                ));
            }
        }
    }
}

/// A warm-up stage that runs the project's steps, spelled as its steps'
/// stage (`build`, `links`, `migrate`: the stage header, the durations key,
/// the fault point and `Error::Step`'s stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub(crate) enum WarmStage {
    /// warmup.build / previews.build
    Build,
    /// warmup.links / previews.links
    Links,
    /// warmup.migrate / previews.migrate
    Migrate,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::config::Config;
    use crate::state::root::Root;

    const HEX: &str = "0123456789abcdef0123456789abcdef01234567";

    fn ctx(dir: &std::path::Path) -> Ctx {
        Ctx {
            root: Root::new(dir).unwrap(),
            config: Config::default(),
        }
    }

    fn release() -> Target {
        Target::Release {
            rebuild: false,
            promote_follows: false,
        }
    }

    fn preview(slug: &str) -> Target {
        Target::Preview { slug: slug.into() }
    }

    #[test]
    fn a_release_is_named_by_its_commit_and_a_preview_by_slug_and_commit() {
        let t = tempfile::tempdir().unwrap();
        let ctx = ctx(t.path());
        let commit = Commit::parse(HEX).unwrap();
        let r = Job::new(&ctx, release(), commit, "refs/heads/main");
        assert_eq!(r.name.to_string(), HEX);
        assert_eq!(r.event(), Event::Warmup);
        assert_eq!(r.pointer(), "warmup");
        assert_eq!(r.flip_fault(), "warmup");
        let p = Job::new(&ctx, preview("feat-a"), commit, "refs/heads/feat/a");
        assert_eq!(p.name.to_string(), format!("preview-feat-a-{HEX}"));
        assert_eq!(p.event(), Event::Preview);
        assert_eq!(p.pointer(), "previews/feat-a/production");
        assert_eq!(p.flip_fault(), "preview");
        assert_eq!(
            ReleaseName::parse(&p.name.to_string()),
            Some(p.name.clone())
        );
        assert_eq!(p.name.slug(), Some("feat-a"));
    }

    #[test]
    fn a_preview_s_steps_run_in_its_own_root_with_its_own_data() {
        let t = tempfile::tempdir().unwrap();
        let ctx = ctx(t.path());
        let commit = Commit::parse(HEX).unwrap();
        let env = Job::new(&ctx, preview("feat-a"), commit, "refs/heads/feat/a").step_env();
        assert_eq!(
            env.root, ctx.root.dir,
            "SYMDEPLOY_ROOT stays the deploy root"
        );
        assert!(
            env.release.starts_with(ctx.root.preview_dir("feat-a")),
            "{}",
            env.release.display()
        );
        assert_eq!(env.commit, HEX);
        assert_eq!(env.previous, None, "nothing served yet");
        let shared = ctx.root.common_preview("feat-a").display().to_string();
        assert_eq!(
            env.extra,
            vec![
                ("SYMDEPLOY_PREVIEW".to_string(), "feat-a".to_string()),
                ("SYMDEPLOY_SHARED".to_string(), shared),
            ]
        );
        let (common, rel) = Job::new(&ctx, preview("feat-a"), commit, "x").common();
        assert_eq!(common, ctx.root.common_preview("feat-a"));
        assert_eq!(rel, PathBuf::from("common"));

        let env = Job::new(&ctx, release(), commit, "refs/heads/main").step_env();
        assert_eq!(env.release, ctx.root.main_release(commit));
        assert!(env.extra.is_empty(), "{:?}", env.extra);
        let (common, rel) = Job::new(&ctx, release(), commit, "x").common();
        assert_eq!((common, rel), (ctx.root.common(), PathBuf::from("common")));
    }

    #[test]
    fn each_kind_runs_its_own_steps() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = ctx(t.path());
        ctx.config.warmup.migrate = vec!["bin/migrate".into()];
        ctx.config.previews.migrate = Vec::new();
        ctx.config.warmup.check = vec!["curl".into()];
        let commit = Commit::parse(HEX).unwrap();
        let r = Job::new(&ctx, release(), commit, "refs/heads/main");
        let (stages, prefix) = r.stages();
        assert_eq!(
            stages[2],
            (WarmStage::Migrate, &vec!["bin/migrate".to_string()])
        );
        assert_eq!(prefix, "");
        assert!(r.has_check());
        let p = Job::new(&ctx, preview("s"), commit, "refs/heads/s");
        let (stages, prefix) = p.stages();
        assert!(
            stages[2].1.is_empty(),
            "a preview never migrates unless told to"
        );
        assert_eq!(prefix, "preview-");
        assert!(!p.has_check(), "a preview has no check");
        assert!(!r.rebuild());
        let rebuild = Target::Release {
            rebuild: true,
            promote_follows: false,
        };
        assert!(Job::new(&ctx, rebuild, commit, "x").rebuild());
    }
}
