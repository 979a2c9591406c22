//! The command line: every subcommand and flag, with help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Push-to-deploy with atomic symlink flips.
///
/// `git push deploy main` warms up a release in releases/<commit> and points
/// `warmup` at it; pushing a release tag (or `symdeploy promote`) switches
/// `production` to it.
#[derive(Debug, Parser)]
#[command(name = "symdeploy", version, about, long_about)]
pub(crate) struct Cli {
    /// The deploy root (default: SYMDEPLOY_ROOT, else the current directory).
    #[arg(long, global = true, env = "SYMDEPLOY_ROOT", value_name = "ROOT")]
    pub(crate) root: Option<PathBuf>,

    /// When to colour `error:`, `warning:`, `success:` and stage headers on
    /// stderr (auto: on a terminal, unless NO_COLOR is set; never in a hook).
    #[arg(long, global = true, value_enum, default_value_t = crate::sys::color::When::Auto, value_name = "WHEN")]
    pub(crate) color: crate::sys::color::When,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a deploy root: bare repository with its hook, releases/, common/, deploy.toml.
    Init {
        /// Where the deploy root goes.
        dir: PathBuf,
        /// Strict mode: install a pre-receive hook, so a failed warm-up rejects the push.
        #[arg(long)]
        strict: bool,
        /// The deploy user who pushes: the root is made owned by it (run init as root).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Run as a git hook (what the installed hook script calls); reads ref updates on stdin.
    Hook {
        /// Which hook.
        #[arg(value_enum)]
        name: crate::state::config::Hook,
        /// The transaction state git passes to reference-transaction
        /// (prepared, committed, aborted).
        state: Option<String>,
    },
    /// Warm up a release by hand (default: the tip of the deploy branch).
    Warmup {
        /// Remove and rebuild the release even if it is ready (refused if production or warmup points at it).
        #[arg(long)]
        rebuild: bool,
        /// Commit, branch or tag.
        rev: Option<String>,
    },
    /// Switch production to a release (default: what warmup points at).
    Promote {
        /// Print what would happen and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also print one JSON object on stdout: result, production before and after, the switch time.
        #[arg(long, conflicts_with = "dry_run")]
        json: bool,
        /// With promote.signers set: promote although no release tag with a
        /// good signature is on the commit (the journal records it).
        #[arg(long)]
        unsigned: bool,
        /// Commit, branch or tag.
        rev: Option<String>,
        /// Promote a release that does not know every applied migration
        /// without undoing them (you vouch that it works; journaled).
        #[arg(long)]
        keep_schema: bool,
    },
    /// Switch production back to the previous good release (or RELEASE).
    Rollback {
        /// Also print one JSON object on stdout: result, production before and after, the switch time.
        #[arg(long)]
        json: bool,
        /// Roll back even to a release whose files changed since its warm-up.
        #[arg(long)]
        force: bool,
        /// A release's commit (a unique prefix is enough).
        release: Option<String>,
        /// Roll back to a release that does not know every applied migration
        /// without undoing them (you vouch that it works; journaled).
        #[arg(long)]
        keep_schema: bool,
    },
    /// Show production, warmup, previous, the deploy branch's tip, the lock
    /// and interrupted runs (also with a broken deploy.toml).
    Status {
        /// Machine-readable output.
        #[arg(long, conflicts_with_all = ["check", "prometheus"])]
        json: bool,
        /// For monitoring (cron, Nagios): exit 0 when all is well, 1 listing
        /// each problem.
        #[arg(long, conflicts_with = "prometheus")]
        check: bool,
        /// Print metrics in the Prometheus text format (node_exporter's
        /// textfile collector).
        #[arg(long)]
        prometheus: bool,
    },
    /// Check a release's files against the manifest its warm-up wrote
    /// (default: production): lists `modified:`, `added:`, `removed:`,
    /// `mode:` and `type:` PATH; exit 0 when clean, 1 on differences, 2
    /// when there is no manifest to check against.
    Verify {
        /// `production`, `warmup`, a release's commit (a unique prefix is
        /// enough) or `previews/<slug>`.
        #[arg(conflicts_with = "all")]
        release: Option<String>,
        /// Every ready release and every live preview.
        #[arg(long)]
        all: bool,
        /// Hash only the files whose inode, size, ctime or mtime changed since
        /// the manifest was written (what `promote.verify = "metadata"` does).
        #[arg(long)]
        metadata: bool,
        /// For a release warmed up before symdeploy wrote manifests: write
        /// one from its commit (the exported files only: what the build made
        /// is not covered), then check against it.
        #[arg(long, conflicts_with = "all")]
        from_commit: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List release directories with their state.
    Releases {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove old, failed and incomplete releases.
    Cleanup {
        /// Ready releases to keep (default: keep_releases from deploy.toml).
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Print what would be removed and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete what a promote moved aside, and apply retention (run by
        /// symdeploy itself, detached, after a promote).
        #[arg(long, hide = true)]
        background: bool,
    },
    /// Preview environments of branches (`[previews]` in deploy.toml).
    Preview {
        /// What to do with them.
        #[command(subcommand)]
        command: PreviewCommand,
    },
    /// The watch of production after a promote (`promote.watch` in deploy.toml).
    Watch {
        /// What to do with it.
        #[command(subcommand)]
        command: WatchCommand,
    },
    /// Show the deploy history from the journal.
    Log {
        /// How many runs to show.
        #[arg(short = 'n', default_value_t = 20, value_name = "N")]
        n: usize,
        /// The whole history, oldest first, including compressed segments.
        #[arg(long, conflicts_with = "n")]
        all: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Validate deploy.toml, the layout, the hook and the programs steps need.
    Check,
    /// Write the HTML report: where things point, the last runs, their stage
    /// durations, the logs of failures (also after every run with `report`
    /// in deploy.toml).
    Report {
        /// The directory to write index.html (and logs/) into.
        #[arg(long, value_name = "DIR")]
        html: PathBuf,
        /// How many runs to show.
        #[arg(short = 'n', default_value_t = 30, value_name = "N")]
        n: usize,
    },
    /// Finish or undo runs that were interrupted (crash, kill, power cut).
    Recover,
    /// Export a commit to a new directory (like `git archive | tar -x`).
    Export {
        /// The git directory (default: GIT_DIR, else the deploy root's repository).
        #[arg(long, value_name = "GIT_DIR")]
        repo: Option<PathBuf>,
        /// Commit, branch or tag.
        rev: String,
        /// Directory to create.
        dir: PathBuf,
    },
    /// Manage the deploy user's SSH keys: one per person, each restricted to
    /// `symdeploy shell NAME`.
    Keys {
        /// The authorized_keys file to edit (default: ~/.ssh/authorized_keys
        /// of the user running this, the one sshd reads).
        #[arg(long, global = true, value_name = "PATH")]
        authorized_keys: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The forced command of a deploy key: runs what SSH_ORIGINAL_COMMAND
    /// asks if NAME may (git push/fetch of a deploy root, symdeploy
    /// subcommands), refuses anything else.
    Shell {
        /// Whose key this is (recorded as the deployer).
        name: String,
    },
    /// Write the man page or shell completions (what the Debian package ships).
    #[command(hide = true)]
    Generate {
        /// What to write.
        #[arg(value_enum)]
        what: Generated,
        /// Directory to write into (created if missing).
        dir: PathBuf,
    },
}

impl Command {
    /// Commands that change nothing on disk (they print what they read).
    /// Whether the command may change the root, so that the report that
    /// deploy.toml asks for is refreshed after it.
    pub(crate) fn changes_root(&self) -> bool {
        matches!(
            self,
            Command::Warmup { .. }
                | Command::Promote { .. }
                | Command::Rollback { .. }
                | Command::Cleanup { .. }
                | Command::Recover
                | Command::Hook { .. }
                | Command::Preview {
                    command: PreviewCommand::Rm { .. }
                }
        )
    }

    pub(crate) fn only_reads(&self) -> bool {
        matches!(
            self,
            Command::Status { .. }
                | Command::Verify { .. }
                | Command::Releases { .. }
                | Command::Log { .. }
                | Command::Check
                | Command::Generate { .. }
                | Command::Keys {
                    command: KeysCommand::List,
                    ..
                }
                | Command::Preview {
                    command: PreviewCommand::List { .. }
                }
        )
    }
}

/// `symdeploy preview ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum PreviewCommand {
    /// List previews: slug, branch, commit, age of the last push.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove a preview: its link, its releases and its record.
    Rm {
        /// The preview's slug (as `symdeploy preview list` shows it).
        slug: String,
        /// Also delete its data in previews/<slug>/common/ (kept otherwise).
        #[arg(long)]
        data: bool,
    },
}

/// `symdeploy watch ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum WatchCommand {
    /// End the watch under way by hand (journaled); production stays as it is.
    Stop,
    /// The detached watcher a promote starts (not for people).
    #[command(hide = true)]
    Run {
        /// The journal run of the watch.
        run: String,
    },
}

/// `symdeploy keys ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Authorize a person's public key, restricted to `symdeploy shell NAME`.
    Add {
        /// The person (as [access] in deploy.toml names them).
        name: String,
        /// Their public key file (`-`: stdin).
        key: PathBuf,
    },
    /// List the keys symdeploy manages: name, type, fingerprint.
    List,
    /// Remove every key of a person.
    Rm {
        /// The person.
        name: String,
    },
}

/// Files `symdeploy generate` writes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Generated {
    /// symdeploy.1 (roff), from these definitions.
    Man,
    /// symdeploy.bash, _symdeploy (zsh), symdeploy.fish.
    Completions,
}
