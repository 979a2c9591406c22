//! deploy.toml: the interface users write.
//!
//! The names and defaults follow the seed (make production-composer, ...).
//! Every problem is reported with the file, the line and the key, because the
//! person reading it is usually looking at a failed `git push`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result};

/// The commented template `symdeploy init` writes; parsing it gives the defaults.
pub(crate) const TEMPLATE: &str = include_str!("../../templates/deploy.toml");

/// A git hook symdeploy runs as (`symdeploy hook NAME`), spelled as git
/// names it. deploy.toml's `hook` says which of the first two drives
/// deploys: `post-receive` (the push always lands, the warm-up runs after
/// it) or `pre-receive` (strict mode: a failed warm-up rejects the push);
/// for those two the word is also the hook's file name in
/// `repository/hooks/`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    clap::ValueEnum,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[strum(serialize_all = "kebab-case")]
pub(crate) enum Hook {
    /// After the refs are updated (the default hook).
    PostReceive,
    /// Before the refs are updated (strict mode).
    PreReceive,
    /// While git updates refs (strict mode's flips): takes the state argument.
    ReferenceTransaction,
    /// Before the refs are updated, in post-receive mode: who may push what
    /// (`[access]`) and signed release tags (`promote.signers`).
    Access,
}

impl Hook {
    /// The file in `repository/hooks/` of a hook that drives deploys (the
    /// access check is installed as `pre-receive`, by `crate::hook::files`).
    pub(crate) fn file_name(self) -> &'static str {
        self.into()
    }
}

/// Commands of the warm-up, in the seed's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Warmup {
    /// composer, assets.
    pub(crate) build: Vec<String>,
    /// project-specific links (`make production-links`).
    pub(crate) links: Vec<String>,
    /// database migrations.
    pub(crate) migrate: Vec<String>,
    /// Health checks of the new release through `www_warmup`, run with
    /// `warmup` already pointing at it; retried until `check_timeout`. A
    /// release is ready only once they pass.
    pub(crate) check: Vec<String>,
    /// How long `check` is retried.
    pub(crate) check_timeout: Duration,
    /// run after `warmup` flipped.
    pub(crate) notify: Vec<String>,
}

/// Commands and settings of a promote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Promote {
    /// Tag glob whose pushes promote.
    pub(crate) tags: String,
    /// Stop the daemons.
    pub(crate) stop: Vec<String>,
    /// Run after production flipped.
    pub(crate) after_switch: Vec<String>,
    /// Start the daemons.
    pub(crate) start: Vec<String>,
    /// Health checks, retried until `check_timeout`.
    pub(crate) check: Vec<String>,
    /// How long checks are retried.
    pub(crate) check_timeout: Duration,
    /// Run at the end, with SYMDEPLOY_RESULT.
    pub(crate) notify: Vec<String>,
    /// How long production is watched after a promote (zero: not at all).
    pub(crate) watch: Duration,
    /// Time between two checks of the watch.
    pub(crate) watch_interval: Duration,
    /// The watch's checks (default: `check`).
    pub(crate) watch_check: Vec<String>,
    /// An SSH allowed-signers file: when set, only release tags signed by a
    /// principal it lists promote (a relative path is from the deploy root).
    pub(crate) signers: Option<PathBuf>,
    /// How the release is checked against its manifest before anything stops.
    pub(crate) verify: VerifyMode,
}

/// `promote.verify`: how much of a release is checked before a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub(crate) enum VerifyMode {
    /// Hash every file.
    Full,
    /// Hash the files whose inode, size, ctime or mtime changed.
    Metadata,
    /// No check.
    Off,
}

/// `[previews]`: a warm-up per matching branch, served from `ROOT/previews/<slug>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Previews {
    /// Branch glob (`"feature/*"`); `None`: previews are off.
    pub(crate) branches: Option<String>,
    /// Most previews at once; the least recently pushed go first.
    pub(crate) keep: usize,
    /// A preview not pushed to for this many days is removed by cleanup.
    pub(crate) ttl_days: u64,
    /// A directory (absolute, or relative to the root) copied into a new
    /// preview's `previews/<slug>/common/`; `None`: it starts empty.
    pub(crate) seed: Option<PathBuf>,
    /// Build commands (default: the warm-up's).
    pub(crate) build: Vec<String>,
    /// Link commands (default: the warm-up's).
    pub(crate) links: Vec<String>,
    /// Migrations (default: none: a preview never migrates unless told to).
    pub(crate) migrate: Vec<String>,
    /// Run after the preview flipped, with SYMDEPLOY_STAGE=preview
    /// (default: the warm-up's notify).
    pub(crate) notify: Vec<String>,
}

impl Previews {
    /// Is `branch` (without refs/heads/) one that gets a preview?
    pub(crate) fn matches(&self, branch: &str) -> bool {
        self.branches.as_deref().is_some_and(|glob| {
            gix::glob::wildmatch(
                glob.into(),
                branch.into(),
                gix::glob::wildmatch::Mode::empty(),
            )
        })
    }
}

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// The file it came from, if any.
    pub(crate) file: Option<PathBuf>,
    /// Branch whose pushes warm up.
    pub(crate) branch: String,
    /// Ready releases kept by cleanup.
    pub(crate) keep_releases: usize,
    /// Release paths linked to common/.
    pub(crate) shared: Vec<String>,
    /// Release paths copied from the previous release before the build.
    pub(crate) carry: Vec<String>,
    /// The git hook that drives deploys.
    pub(crate) hook: Hook,
    /// How long to wait for the deploy lock.
    pub(crate) lock_timeout: Duration,
    /// How long one step may run.
    pub(crate) step_timeout: Duration,
    /// Static symlinks in the root: (name, target relative to the root).
    pub(crate) links: Vec<(String, String)>,
    /// The warm-up commands.
    pub(crate) warmup: Warmup,
    /// The promote commands.
    pub(crate) promote: Promote,
    /// The user the web server / php-fpm runs as, who must write the shared
    /// paths and `writable`; `None`: symdeploy leaves permissions alone.
    pub(crate) web_user: Option<String>,
    /// Release-relative directories the web user must write (caches, temp/).
    pub(crate) writable: Vec<String>,
    /// Release-relative paths `verify` leaves out (with what is below them).
    pub(crate) verify_ignore: Vec<String>,
    /// Run logs cleanup keeps (besides those of releases still on disk).
    pub(crate) keep_logs: usize,
    /// Free space a warm-up leaves on the releases filesystem.
    pub(crate) min_free: MinFree,
    /// Size (KiB) past which the journal's current segment is compressed away.
    pub(crate) journal_segment_kib: u64,
    /// Where the HTML report goes, refreshed after every run (absolute, or
    /// relative to the root); unset: no report.
    pub(crate) report: Option<PathBuf>,
    /// Preview environments per branch.
    pub(crate) previews: Previews,
    /// What symdeploy knows of the database schema across releases.
    pub(crate) schema: Schema,
    /// Who may push and who may promote (`[access]`); `None`: everyone may
    /// do everything, as before roles existed.
    pub(crate) access: Option<crate::sys::deployer::Roles>,
}

/// Migrations as data: which files of a release are its migrations, how to
/// ask the app what the database has, and how to undo them on a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Schema {
    /// `migrations`: a release-relative glob (`migrations/*.sql`) naming a
    /// release's migration files; `None`: the feature is off.
    pub(crate) migrations: Option<String>,
    /// `migrations_applied`: a command printing the applied migration ids,
    /// one a line (overrides the migrate step's release's set).
    pub(crate) applied_cmd: Option<String>,
    /// `rollback.migrate`: steps that undo migrations, run in the release
    /// being left, after `stop` and before the flip.
    pub(crate) rollback_migrate: Vec<String>,
}

/// The reserve a warm-up must leave free: a share of the filesystem or a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MinFree {
    /// 10% of the filesystem, at most 1 GiB (the default).
    Auto,
    /// No preflight at all (a filesystem whose free space is not what
    /// statvfs says, like some network or thin-provisioned ones).
    Off,
    /// Percent of the filesystem (of its blocks, and of its inodes).
    Percent(u8),
    /// Bytes (inodes in the same proportion of the filesystem).
    Bytes(u64),
}

impl MinFree {
    /// The reserve in bytes on a filesystem of `total` bytes.
    pub(crate) fn bytes(self, total: u64) -> u64 {
        match self {
            MinFree::Auto => (total / 10).min(1 << 30),
            MinFree::Off => 0,
            MinFree::Percent(p) => total / 100 * u64::from(p),
            MinFree::Bytes(b) => b.min(total),
        }
    }

    /// Parse `"auto"`, `"off"`, `"10%"`, `"1GiB"`, `"512MiB"`, `"0"`.
    pub(crate) fn parse(s: &str) -> Option<MinFree> {
        let s = s.trim();
        match s {
            "auto" => return Some(MinFree::Auto),
            "off" => return Some(MinFree::Off),
            _ => {}
        }
        if let Some(p) = s.strip_suffix('%') {
            return p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 90)
                .map(MinFree::Percent);
        }
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let n: u64 = s[..digits].parse().ok()?;
        let unit: u64 = match s[digits..].trim() {
            "" | "B" => 1,
            "K" | "KiB" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            "T" | "TiB" => 1 << 40,
            _ => return None,
        };
        n.checked_mul(unit).map(MinFree::Bytes)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    branch: Option<Spanned<String>>,
    keep_releases: Option<Spanned<i64>>,
    shared: Option<Vec<Spanned<String>>>,
    carry: Option<Vec<Spanned<String>>>,
    hook: Option<Spanned<String>>,
    lock_timeout: Option<Spanned<i64>>,
    step_timeout: Option<Spanned<i64>>,
    links: Option<Spanned<toml::Table>>,
    warmup: Option<RawWarmup>,
    promote: Option<RawPromote>,
    web_user: Option<Spanned<String>>,
    writable: Option<Vec<Spanned<String>>>,
    verify_ignore: Option<Vec<Spanned<String>>>,
    keep_logs: Option<Spanned<i64>>,
    min_free: Option<Spanned<String>>,
    journal_segment_kib: Option<Spanned<i64>>,
    previews: Option<RawPreviews>,
    report: Option<Spanned<String>>,
    migrations: Option<Spanned<String>>,
    migrations_applied: Option<Spanned<String>>,
    rollback: Option<RawRollback>,
    access: Option<RawAccess>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    push: Option<Vec<Spanned<String>>>,
    release: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRollback {
    migrate: RawCommands,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPreviews {
    branches: Option<Spanned<String>>,
    keep: Option<Spanned<i64>>,
    ttl_days: Option<Spanned<i64>>,
    seed: Option<Spanned<String>>,
    build: RawCommands,
    links: RawCommands,
    migrate: RawCommands,
    notify: RawCommands,
}

type RawCommands = Option<Vec<Spanned<String>>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWarmup {
    build: RawCommands,
    links: RawCommands,
    migrate: RawCommands,
    check: RawCommands,
    check_timeout: Option<Spanned<i64>>,
    notify: RawCommands,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPromote {
    tags: Option<Spanned<String>>,
    stop: RawCommands,
    after_switch: RawCommands,
    start: RawCommands,
    check: RawCommands,
    check_timeout: Option<Spanned<i64>>,
    notify: RawCommands,
    watch: Option<Spanned<i64>>,
    watch_interval: Option<Spanned<i64>>,
    watch_check: RawCommands,
    signers: Option<Spanned<String>>,
    verify: Option<Spanned<String>>,
}

/// Names in the deploy root that symdeploy itself owns; a `[links]` entry may
/// not take them.
pub(crate) const RESERVED_ROOT_NAMES: &[&str] = &[
    "repository",
    "releases",
    "common",
    "deploy.toml",
    ".symdeploy",
    "warmup",
    "production",
    "previews",
    "common-previews",
];

struct ParseCtx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl ParseCtx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err<T>(&self, span: std::ops::Range<usize>, message: String) -> Result<T> {
        Err(Error::Config {
            file: self.file.to_path_buf(),
            line: Some(self.line_of(span.start)),
            message,
        })
    }

    fn seconds(&self, key: &str, v: Option<Spanned<i64>>, default: Duration) -> Result<Duration> {
        match v {
            None => Ok(default),
            Some(s) if *s.get_ref() > 0 && *s.get_ref() <= 7 * 24 * 3600 => {
                Ok(Duration::from_secs(*s.get_ref() as u64))
            }
            Some(s) => self.err(
                s.span(),
                format!(
                    "`{key}` must be a number of seconds between 1 and 604800, not {}",
                    s.get_ref()
                ),
            ),
        }
    }

    /// An error about the file as a whole (two keys that disagree), so no line.
    fn err_file<T>(&self, message: String) -> Result<T> {
        Err(Error::Config {
            file: self.file.to_path_buf(),
            line: None,
            message,
        })
    }

    /// A whole number in `range`, or `default` when the key is absent.
    fn count(
        &self,
        key: &str,
        v: Option<Spanned<i64>>,
        range: std::ops::RangeInclusive<i64>,
        default: u64,
    ) -> Result<u64> {
        match v {
            None => Ok(default),
            Some(k) if range.contains(k.get_ref()) => Ok(*k.get_ref() as u64),
            Some(k) => self.err(
                k.span(),
                format!(
                    "`{key}` must be between {} and {}, not {}",
                    range.start(),
                    range.end(),
                    k.get_ref()
                ),
            ),
        }
    }

    fn commands(&self, key: &str, v: RawCommands, default: &[String]) -> Result<Vec<String>> {
        let Some(list) = v else {
            return Ok(default.to_vec());
        };
        list.into_iter()
            .map(|c| {
                if c.get_ref().trim().is_empty() {
                    self.err(
                        c.span(),
                        format!("`{key}` has an empty command; remove it or write the command"),
                    )
                } else {
                    Ok(c.into_inner())
                }
            })
            .collect()
    }

    fn names(&self, key: &str, v: Option<Vec<Spanned<String>>>) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for n in v.unwrap_or_default() {
            if !crate::sys::deployer::valid_name(n.get_ref()) {
                return self.err(
                    n.span(),
                    format!(
                        "`{key}` entry \"{}\" is not a deployer's name (letters, digits, `.`, `_`, `-`, `@`; as given to `symdeploy keys add`)",
                        n.get_ref()
                    ),
                );
            }
            out.push(n.into_inner());
        }
        Ok(out)
    }

    fn paths(
        &self,
        key: &str,
        v: Option<Vec<Spanned<String>>>,
        default: &[String],
    ) -> Result<Vec<String>> {
        let Some(list) = v else {
            return Ok(default.to_vec());
        };
        let mut out: Vec<String> = Vec::new();
        for p in list {
            let span = p.span();
            let path = p.into_inner();
            if let Err(why) = check_release_path(&path) {
                return self.err(span, format!("`{key}` entry \"{path}\" {why}"));
            }
            let clean = path.trim_end_matches('/').to_string();
            if let Some(other) = out.iter().find(|o| nested(o, &clean)) {
                return self.err(
                    span,
                    format!("`{key}` entries \"{other}\" and \"{clean}\" overlap; list only one of them"),
                );
            }
            out.push(clean);
        }
        Ok(out)
    }
}

fn nested(a: &str, b: &str) -> bool {
    a == b || b.starts_with(&format!("{a}/")) || a.starts_with(&format!("{b}/"))
}

/// Why a release-relative path from the config is unsafe, if it is.
pub(crate) fn check_release_path(path: &str) -> std::result::Result<(), String> {
    if path.is_empty() {
        return Err("is empty".into());
    }
    if path.starts_with('/') {
        return Err(
            "is absolute; write it relative to the release (like \"www/data/images\")".into(),
        );
    }
    if path.contains('\0') || path.contains('\\') {
        return Err("contains a NUL or backslash".into());
    }
    for part in path.trim_end_matches('/').split('/') {
        match part {
            "" => return Err("has an empty component (`//`)".into()),
            "." | ".." => {
                return Err("contains `.` or `..`; it must stay inside the release".into())
            }
            p if p.eq_ignore_ascii_case(".git") => return Err("names a .git directory".into()),
            _ => {}
        }
    }
    if path.trim_end_matches('/') == "REVISION" {
        return Err("is the REVISION file symdeploy writes".into());
    }
    Ok(())
}

impl Default for Config {
    fn default() -> Self {
        // The template is part of the binary and covered by a unit test.
        parse_str(TEMPLATE, Path::new("(built-in defaults)"), None)
            .unwrap_or_else(|e| panic!("built-in deploy.toml template is invalid: {e}"))
    }
}

impl Config {
    /// Load `path`; a missing file means the defaults.
    pub(crate) fn load(path: &Path) -> Result<Config> {
        match read_config_file(path)? {
            Some(text) => parse_str(&text, path, Some(path.to_path_buf())),
            None => Ok(Config {
                file: None,
                ..Config::default()
            }),
        }
    }

    /// Does a tag name match `promote.tags`?
    pub(crate) fn is_promote_tag(&self, tag: &str) -> bool {
        gix::glob::wildmatch(
            self.promote.tags.as_str().into(),
            tag.into(),
            gix::glob::wildmatch::Mode::empty(),
        )
    }

    /// The branch's full ref name.
    pub(crate) fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }
}

/// The largest deploy.toml read; a real one is a few KiB.
pub(crate) const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Read deploy.toml, or `None` when there is none at all. Only "does not
/// exist" means the defaults: a dangling symlink (a missing config mount)
/// running the seed's `supervisorctl stop all` would act on the whole host.
/// The type is checked before opening, and the file is opened non-blocking,
/// so a FIFO or device never hangs or floods a command.
fn read_config_file(path: &Path) -> Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let refuse = |what: String, help: &str| Error::Config {
        file: path.to_path_buf(),
        line: None,
        message: format!("{what}; {help}"),
    };
    let link = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(refuse(
                format!("cannot be examined: {e}"),
                "check its permissions",
            ))
        }
    };
    let meta = if link.file_type().is_symlink() {
        match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                let target = std::fs::read_link(path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "?".into());
                return Err(refuse(
                    format!("is a symlink to {target}, which cannot be followed ({e})"),
                    "a missing config (an unmounted volume?) never means the defaults; restore the target, or remove the symlink to use the built-in defaults",
                ));
            }
        }
    } else {
        link
    };
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Some("a directory")
    } else if ft.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if ft.is_socket() {
        Some("a socket")
    } else if ft.is_char_device() {
        Some("a character device")
    } else if ft.is_block_device() {
        Some("a block device")
    } else {
        None
    };
    if let Some(kind) = kind {
        return Err(refuse(
            format!("is {kind}, not a regular file"),
            "deploy.toml must be a regular file (or absent, for the defaults)",
        ));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(refuse(
            format!(
                "is {} bytes, more than the 1 MiB a deploy.toml may have",
                meta.len()
            ),
            "is it the right file?",
        ));
    }
    // Checked again on the open file: the path could change in between.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|e| refuse(format!("cannot be read: {e}"), "check its permissions"))?;
    let opened = file
        .metadata()
        .map_err(|e| refuse(format!("cannot be read: {e}"), "check its permissions"))?;
    if !opened.file_type().is_file() {
        return Err(refuse(
            "is not a regular file".into(),
            "deploy.toml must be a regular file (or absent, for the defaults)",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(format!("cannot be read: {e}"), "check its permissions"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(refuse(
            "is more than the 1 MiB a deploy.toml may have".into(),
            "is it the right file?",
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| refuse("is not UTF-8 text".into(), "save it as UTF-8"))
}

/// Parse and validate configuration text; `file` is used in error messages.
pub(crate) fn parse_str(text: &str, file: &Path, source: Option<PathBuf>) -> Result<Config> {
    let ctx = ParseCtx { file, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| Error::Config {
        file: file.to_path_buf(),
        line: e.span().map(|s| ctx.line_of(s.start)),
        message: e.message().trim().to_string(),
    })?;
    // The first problem found is the one reported, so the order of these
    // steps is part of what a user sees.
    let branch = branch(&ctx, raw.branch)?;
    let keep_releases = ctx.count("keep_releases", raw.keep_releases, 1..=1000, 5)? as usize;
    let shared = ctx.paths(
        "shared",
        raw.shared,
        &strings(&["log", "www/data/banners", "www/data/images"]),
    )?;
    let carry = carry(&ctx, raw.carry, &shared)?;
    let hook = hook(&ctx, raw.hook)?;
    let lock_timeout = ctx.seconds("lock_timeout", raw.lock_timeout, Duration::from_secs(600))?;
    let step_timeout = ctx.seconds("step_timeout", raw.step_timeout, Duration::from_secs(1800))?;
    let links = links(&ctx, raw.links)?;
    let warmup = warmup(&ctx, raw.warmup.unwrap_or_default())?;
    let promote = promote(&ctx, raw.promote.unwrap_or_default())?;
    let web_user = web_user(&ctx, raw.web_user)?;
    let keep_logs = ctx.count("keep_logs", raw.keep_logs, 1..=1_000_000, 100)? as usize;
    let writable = writable(&ctx, raw.writable, &shared, web_user.is_some())?;
    let verify_ignore = ctx.paths("verify_ignore", raw.verify_ignore, &[])?;
    let min_free = min_free(&ctx, raw.min_free)?;
    let journal_segment_kib = ctx.count(
        "journal_segment_kib",
        raw.journal_segment_kib,
        1..=1_048_576,
        256,
    )?;
    let previews = previews(&ctx, raw.previews.unwrap_or_default(), &warmup, &branch)?;
    let report = report(&ctx, raw.report)?;
    let schema = schema(&ctx, raw.migrations, raw.migrations_applied, raw.rollback)?;
    let access = access(&ctx, raw.access)?;
    Ok(Config {
        access,
        report,
        previews,
        schema,
        keep_logs,
        min_free,
        journal_segment_kib,
        file: source,
        branch,
        keep_releases,
        shared,
        carry,
        hook,
        lock_timeout,
        step_timeout,
        links,
        warmup,
        promote,
        web_user,
        writable,
        verify_ignore,
    })
}

/// Owned strings for a default list. The defaults are the seed's (the
/// template deploy.toml); they are spelled once, in the functions below.
fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `branch`: the deploy branch, a name git accepts under refs/heads/.
fn branch(ctx: &ParseCtx, raw: Option<Spanned<String>>) -> Result<String> {
    let Some(b) = raw else {
        return Ok("main".to_string());
    };
    let full = format!("refs/heads/{}", b.get_ref());
    if b.get_ref().is_empty() || gix::validate::reference::name(full.as_str().into()).is_err() {
        return ctx.err(
            b.span(),
            format!("`branch` \"{}\" is not a valid branch name", b.get_ref()),
        );
    }
    Ok(b.into_inner())
}

/// `carry`: release paths copied from release to release; none may overlap
/// `shared`, whose paths live in common/ instead.
fn carry(
    ctx: &ParseCtx,
    raw: Option<Vec<Spanned<String>>>,
    shared: &[String],
) -> Result<Vec<String>> {
    let carry = ctx.paths("carry", raw, &[])?;
    for c in &carry {
        if let Some(s) = shared.iter().find(|s| nested(s, c)) {
            return ctx.err_file(format!("`carry` entry \"{c}\" overlaps `shared` entry \"{s}\"; shared paths live in common/ and need no carrying"));
        }
    }
    Ok(carry)
}

/// `hook`: which git hook deploys, post-receive or (strict mode) pre-receive.
fn hook(ctx: &ParseCtx, raw: Option<Spanned<String>>) -> Result<Hook> {
    let Some(h) = raw else {
        return Ok(Hook::PostReceive);
    };
    match h.get_ref().parse() {
        Ok(hook @ (Hook::PostReceive | Hook::PreReceive)) => Ok(hook),
        _ => {
            let other = h.get_ref();
            ctx.err(
                h.span(),
                format!("`hook` must be \"post-receive\" or \"pre-receive\", not \"{other}\""),
            )
        }
    }
}

/// `[links]`: symlinks in the deploy root, each a plain name that is not
/// one of symdeploy's own, pointing inside the root; sorted by name.
fn links(ctx: &ParseCtx, raw: Option<Spanned<toml::Table>>) -> Result<Vec<(String, String)>> {
    let mut links = match raw {
        None => vec![
            ("www_warmup".to_string(), "warmup/www".to_string()),
            ("www".to_string(), "production/www".to_string()),
            ("app".to_string(), "production/app".to_string()),
        ],
        Some(table) => {
            let span = table.span();
            let mut out = Vec::new();
            for (name, value) in table.into_inner() {
                let Some(target) = value.as_str() else {
                    return ctx.err(span, format!("`links.{name}` must be a string (a target relative to the deploy root)"));
                };
                if name.is_empty()
                    || name.contains('/')
                    || name.starts_with('.')
                    || RESERVED_ROOT_NAMES.contains(&name.as_str())
                {
                    return ctx.err(span, format!("`links.{name}`: a link name must be one plain file name in the deploy root, not one of {RESERVED_ROOT_NAMES:?}"));
                }
                if let Err(why) = check_release_path(target) {
                    return ctx.err(span, format!("`links.{name}` target \"{target}\" {why}"));
                }
                out.push((name, target.to_string()));
            }
            out
        }
    };
    // A TOML table has no order; make ours stable.
    links.sort();
    Ok(links)
}

/// `[warmup]`: the steps that prepare a pushed release.
fn warmup(ctx: &ParseCtx, w: RawWarmup) -> Result<Warmup> {
    Ok(Warmup {
        build: ctx.commands(
            "warmup.build",
            w.build,
            &strings(&["make production-composer", "make production-assets"]),
        )?,
        links: ctx.commands(
            "warmup.links",
            w.links,
            &strings(&["make production-links"]),
        )?,
        migrate: ctx.commands("warmup.migrate", w.migrate, &[])?,
        check: ctx.commands("warmup.check", w.check, &[])?,
        check_timeout: ctx.seconds(
            "warmup.check_timeout",
            w.check_timeout,
            Duration::from_secs(30),
        )?,
        notify: ctx.commands(
            "warmup.notify",
            w.notify,
            &strings(&["make deploy-notify-warmup"]),
        )?,
    })
}

/// `[promote]`: the tag glob, the switch's steps, the watch after it, and
/// who may sign release tags. A watch needs something to check.
fn promote(ctx: &ParseCtx, p: RawPromote) -> Result<Promote> {
    let tags = match p.tags {
        None => "release-*".to_string(),
        Some(t) if !t.get_ref().trim().is_empty() => t.into_inner(),
        Some(t) => {
            return ctx.err(
                t.span(),
                "`promote.tags` must be a glob like \"release-*\"".to_string(),
            )
        }
    };
    let promote = Promote {
        tags,
        stop: ctx.commands(
            "promote.stop",
            p.stop,
            &strings(&["supervisorctl stop all"]),
        )?,
        after_switch: ctx.commands(
            "promote.after_switch",
            p.after_switch,
            &strings(&["make production-supervisor"]),
        )?,
        start: ctx.commands(
            "promote.start",
            p.start,
            &strings(&["supervisorctl reload"]),
        )?,
        check: ctx.commands("promote.check", p.check, &[])?,
        check_timeout: ctx.seconds(
            "promote.check_timeout",
            p.check_timeout,
            Duration::from_secs(30),
        )?,
        notify: ctx.commands(
            "promote.notify",
            p.notify,
            &strings(&["make deploy-notify"]),
        )?,
        watch: match p.watch {
            Some(w) if *w.get_ref() == 0 => Duration::ZERO,
            w => ctx.seconds("promote.watch", w, Duration::ZERO)?,
        },
        watch_interval: ctx.seconds(
            "promote.watch_interval",
            p.watch_interval,
            Duration::from_secs(10),
        )?,
        watch_check: Vec::new(),
        signers: signers(ctx, p.signers)?,
        verify: verify_mode(ctx, p.verify)?,
    };
    let promote = Promote {
        watch_check: match p.watch_check {
            None => promote.check.clone(),
            w => ctx.commands("promote.watch_check", w, &[])?,
        },
        ..promote
    };
    if !promote.watch.is_zero() && promote.watch_check.is_empty() {
        return ctx.err_file("`promote.watch` is set but there is nothing to check: set promote.check (or promote.watch_check)".to_string());
    }
    Ok(promote)
}

/// `promote.signers`: the SSH allowed-signers file release tags are checked
/// against (whether it exists is `symdeploy check`'s business).
fn signers(ctx: &ParseCtx, raw: Option<Spanned<String>>) -> Result<Option<PathBuf>> {
    match raw {
        None => Ok(None),
        Some(s) if !s.get_ref().trim().is_empty() => Ok(Some(PathBuf::from(s.into_inner()))),
        Some(s) => ctx.err(
            s.span(),
            "`promote.signers` must name an SSH allowed-signers file (like \".symdeploy/allowed_signers\"), or be removed".to_string(),
        ),
    }
}

/// `promote.verify`: how much of a release is checked against its manifest
/// before it is promoted.
fn verify_mode(ctx: &ParseCtx, raw: Option<Spanned<String>>) -> Result<VerifyMode> {
    let Some(v) = raw else {
        return Ok(VerifyMode::Full);
    };
    match v.get_ref().parse() {
        Ok(mode) => Ok(mode),
        Err(_) => {
            let other = v.get_ref();
            ctx.err(
                v.span(),
                format!(
                    "`promote.verify` must be \"full\", \"metadata\" or \"off\", not \"{other}\""
                ),
            )
        }
    }
}

/// `web_user`: the user php-fpm runs as, a name safe in an ACL entry.
fn web_user(ctx: &ParseCtx, raw: Option<Spanned<String>>) -> Result<Option<String>> {
    match raw {
        None => Ok(None),
        Some(u) if valid_user_name(u.get_ref()) => Ok(Some(u.into_inner())),
        Some(u) => ctx.err(
            u.span(),
            format!(
                "`web_user` \"{}\" is not a user name (like \"www-data\"); write the user php-fpm runs as, or remove the key",
                u.get_ref()
            ),
        ),
    }
}

/// `writable`: release paths the web user may write. They must not overlap
/// `shared` (made writable in common/), and need `web_user` to say who.
fn writable(
    ctx: &ParseCtx,
    raw: Option<Vec<Spanned<String>>>,
    shared: &[String],
    has_web_user: bool,
) -> Result<Vec<String>> {
    let writable = ctx.paths("writable", raw, &[])?;
    for w in &writable {
        if let Some(s) = shared.iter().find(|s| nested(s, w)) {
            return ctx.err_file(format!("`writable` entry \"{w}\" overlaps `shared` entry \"{s}\"; shared paths live in common/ and are made writable there"));
        }
    }
    if !writable.is_empty() && !has_web_user {
        return ctx.err_file("`writable` is set but `web_user` is not: say which user must write them (e.g. web_user = \"www-data\")".to_string());
    }
    Ok(writable)
}

/// `min_free`: the space a deploy keeps free on the root's filesystem.
fn min_free(ctx: &ParseCtx, raw: Option<Spanned<String>>) -> Result<MinFree> {
    let Some(m) = raw else {
        return Ok(MinFree::Auto);
    };
    match MinFree::parse(m.get_ref()) {
        Some(v) => Ok(v),
        None => ctx.err(
            m.span(),
            format!(
                "`min_free` must be \"auto\", \"off\", a percentage up to 90% (\"10%\") or a size (\"1GiB\", \"512MiB\", \"0\"), not \"{}\"",
                m.get_ref()
            ),
        ),
    }
}

/// `report`: the directory deploy reports are written to, if any.
fn report(ctx: &ParseCtx, raw: Option<Spanned<String>>) -> Result<Option<PathBuf>> {
    match raw {
        None => Ok(None),
        Some(r) if r.get_ref().trim().is_empty() => ctx.err(
            r.span(),
            "`report` must name a directory, e.g. \"report\"".into(),
        ),
        Some(r) => Ok(Some(PathBuf::from(r.get_ref()))),
    }
}

/// `[access]`: which deployers may push and which may release; without the
/// table, everyone who can push may do both.
fn access(ctx: &ParseCtx, raw: Option<RawAccess>) -> Result<Option<crate::sys::deployer::Roles>> {
    let Some(a) = raw else {
        return Ok(None);
    };
    Ok(Some(crate::sys::deployer::Roles {
        push: ctx.names("access.push", a.push)?,
        release: ctx.names("access.release", a.release)?,
    }))
}

fn schema(
    ctx: &ParseCtx,
    migrations: Option<Spanned<String>>,
    applied: Option<Spanned<String>>,
    rollback: Option<RawRollback>,
) -> Result<Schema> {
    let migrations = match migrations {
        None => None,
        Some(m) if m.get_ref().trim().is_empty() => None,
        Some(m) => {
            let glob = m.get_ref().trim().to_string();
            let dir = glob.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            if let Err(why) = check_release_path(&glob) {
                return ctx.err(m.span(), format!("`migrations` \"{glob}\" {why}"));
            }
            if dir.contains(['*', '?', '[']) {
                return ctx.err(
                    m.span(),
                    format!("`migrations` \"{glob}\": only the file name may have wildcards (like \"migrations/*.sql\")"),
                );
            }
            Some(glob)
        }
    };
    let applied_cmd = match applied {
        Some(a) if a.get_ref().trim().is_empty() => {
            return ctx.err(
                a.span(),
                "`migrations_applied` is empty; remove it or write the command".to_string(),
            )
        }
        Some(a) => Some(a.into_inner()),
        None => None,
    };
    let rollback_migrate = ctx.commands(
        "rollback.migrate",
        rollback.unwrap_or_default().migrate,
        &[],
    )?;
    Ok(Schema {
        migrations,
        applied_cmd,
        rollback_migrate,
    })
}

fn previews(ctx: &ParseCtx, p: RawPreviews, warmup: &Warmup, branch: &str) -> Result<Previews> {
    let branches = match p.branches {
        None => None,
        Some(b) if b.get_ref().trim().is_empty() => None,
        Some(b) => {
            let glob = b.get_ref().trim();
            if glob.starts_with("refs/") || glob.contains(char::is_whitespace) {
                return ctx.err(
                    b.span(),
                    format!("`previews.branches` \"{glob}\" must be a branch glob without refs/heads/ and without spaces, like \"feature/*\""),
                );
            }
            if glob == branch {
                return ctx.err(
                    b.span(),
                    format!("`previews.branches` \"{glob}\" is the deploy branch itself; previews are for other branches (like \"feature/*\")"),
                );
            }
            Some(glob.to_string())
        }
    };
    let keep = ctx.count("previews.keep", p.keep, 1..=1000, 10)? as usize;
    let ttl_days = ctx.count("previews.ttl_days", p.ttl_days, 1..=3650, 14)?;
    let seed = match p.seed {
        None => None,
        Some(s) if s.get_ref().trim().is_empty() => None,
        Some(s) => {
            let path = PathBuf::from(s.get_ref().trim());
            if path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
            {
                return ctx.err(
                    s.span(),
                    format!("`previews.seed` \"{}\" contains `..`; write an absolute path or one relative to the deploy root", s.get_ref()),
                );
            }
            if path.starts_with("common") && !path.starts_with("common-") {
                return ctx.err(
                    s.span(),
                    format!("`previews.seed` \"{}\" is inside common/; production's data is never handed to previews, make a seed directory of its own (like \"previews-seed\")", s.get_ref()),
                );
            }
            Some(path)
        }
    };
    Ok(Previews {
        branches,
        keep,
        ttl_days,
        seed,
        build: ctx.commands("previews.build", p.build, &warmup.build)?,
        links: ctx.commands("previews.links", p.links, &warmup.links)?,
        migrate: ctx.commands("previews.migrate", p.migrate, &[])?,
        notify: ctx.commands("previews.notify", p.notify, &warmup.notify)?,
    })
}

/// A plausible POSIX user name: what `useradd` accepts, and nothing a shell
/// or an ACL entry (`u:NAME:rwx`) could misread.
fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Config {
    /// The branch of a full ref name that gets a preview, if any.
    pub(crate) fn preview_branch<'a>(&self, git_ref: &'a str) -> Option<&'a str> {
        let branch = git_ref.strip_prefix("refs/heads/")?;
        (git_ref != self.branch_ref() && self.previews.matches(branch)).then_some(branch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        parse_str(text, Path::new("deploy.toml"), None)
    }

    fn err_text(text: &str) -> String {
        parse(text)
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn empty_file_means_the_seed_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.branch, "main");
        assert_eq!(c.keep_releases, 5);
        assert_eq!(c.shared, vec!["log", "www/data/banners", "www/data/images"]);
        assert_eq!(
            c.warmup.build,
            vec!["make production-composer", "make production-assets"]
        );
        assert_eq!(c.promote.start, vec!["supervisorctl reload"]);
        assert_eq!(c.links.len(), 3);
    }

    #[test]
    fn template_sets_every_key_to_its_default() {
        let from_template = parse(TEMPLATE).unwrap();
        assert_eq!(from_template, parse("").unwrap());
        for key in [
            "branch",
            "keep_releases",
            "shared",
            "carry",
            "hook",
            "lock_timeout",
            "step_timeout",
            "[links]",
            "[warmup]",
            "build",
            "links",
            "migrate",
            "notify",
            "[promote]",
            "tags",
            "stop",
            "after_switch",
            "start",
            "check",
            "check_timeout",
            "watch",
            "watch_interval",
            "watch_check",
            "web_user",
            "writable",
            "keep_logs",
            "min_free",
            "journal_segment_kib",
            "migrations",
            "migrations_applied",
            "[rollback]",
            "report",
            "[previews]",
            "branches",
            "ttl_days",
            "seed",
        ] {
            assert!(TEMPLATE.contains(key), "template lacks {key}");
        }
    }

    #[test]
    fn warmup_check_and_watch_keys() {
        let c = parse("").unwrap();
        assert!(c.warmup.check.is_empty());
        assert_eq!(c.warmup.check_timeout, Duration::from_secs(30));
        assert!(c.promote.watch.is_zero(), "the watch is off by default");
        let c = parse(
            "[warmup]\ncheck = [\"curl -fsS http://127.0.0.1/\"]\ncheck_timeout = 5\n[promote]\ncheck = [\"true\"]\nwatch = 300\nwatch_interval = 5\n",
        )
        .unwrap();
        assert_eq!(c.warmup.check, vec!["curl -fsS http://127.0.0.1/"]);
        assert_eq!(c.warmup.check_timeout, Duration::from_secs(5));
        assert_eq!(c.promote.watch, Duration::from_secs(300));
        assert_eq!(
            c.promote.watch_check,
            vec!["true"],
            "default: promote.check"
        );
        let c = parse("[promote]\nwatch = 60\nwatch_check = [\"false\"]\n").unwrap();
        assert_eq!(c.promote.watch_check, vec!["false"]);
        assert!(err_text("[promote]\nwatch = 60\n").contains("nothing to check"));
        assert!(err_text("[promote]\nwatch = -1\ncheck = [\"true\"]\n").contains("promote.watch"));
        assert!(err_text("[warmup]\ncheck_timeout = 0\n").contains("warmup.check_timeout"));
        assert!(err_text("[warmup]\ncheck = [\" \"]\n").contains("warmup.check"));
    }

    #[test]
    fn web_user_and_writable() {
        let c = parse("web_user = \"www-data\"\nwritable = [\"temp\", \"var/cache/\"]").unwrap();
        assert_eq!(c.web_user.as_deref(), Some("www-data"));
        assert_eq!(c.writable, vec!["temp", "var/cache"]);
        assert_eq!(parse("").unwrap().web_user, None);
        assert!(err_text("writable = [\"temp\"]").contains("web_user"));
        assert!(err_text("web_user = \"a b\"").starts_with("deploy.toml:1:"));
        assert!(err_text("web_user = \"x\"\nwritable = [\"../x\"]").contains("writable"));
        assert!(err_text("web_user = \"x\"\nwritable = [\"log/x\"]").contains("overlaps"));
    }

    #[test]
    fn verify_settings() {
        let c = parse("").unwrap();
        assert_eq!(c.promote.verify, VerifyMode::Full);
        assert!(c.verify_ignore.is_empty());
        let c = parse("verify_ignore = [\"var/log/\"]\n[promote]\nverify = \"metadata\"").unwrap();
        assert_eq!(c.verify_ignore, vec!["var/log"]);
        assert_eq!(c.promote.verify, VerifyMode::Metadata);
        assert!(err_text("[promote]\nverify = \"some\"").contains("`promote.verify`"));
        assert!(err_text("verify_ignore = [\"../etc\"]").contains("verify_ignore"));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = err_text("branch = \"main\"\nkeep_relases = 3\n");
        assert!(e.starts_with("deploy.toml:2:"), "{e}");
        assert!(e.contains("keep_relases"), "{e}");
    }

    #[test]
    fn wrong_type_names_line() {
        let e = err_text("branch = \"main\"\n\nkeep_releases = \"five\"\n");
        assert!(e.starts_with("deploy.toml:3:"), "{e}");
    }

    #[test]
    fn bad_values_are_rejected_with_their_line() {
        assert!(err_text("keep_releases = 0").contains("keep_releases"));
        let e = err_text("\nshared = [\"log\", \"../etc\"]\n");
        assert!(
            e.starts_with("deploy.toml:2:") && e.contains("../etc"),
            "{e}"
        );
        assert!(err_text("shared = [\"/var/log\"]").contains("absolute"));
        assert!(err_text("shared = [\"www\", \"www/data\"]").contains("overlap"));
        assert!(err_text("branch = \"a..b\"").contains("branch"));
        assert!(err_text("hook = \"update\"").contains("pre-receive"));
        assert!(err_text("[links]\nreleases = \"x\"").contains("links.releases"));
        assert!(err_text("[warmup]\nbuild = [\"\"]").contains("warmup.build"));
        assert!(err_text("step_timeout = -1").contains("step_timeout"));
        assert!(err_text("[promote]\nretries = 3").contains("retries"));
    }

    #[test]
    fn history_keys_are_checked() {
        let c = parse("keep_logs = 7\nmin_free = \"5%\"\njournal_segment_kib = 2").unwrap();
        assert_eq!(c.keep_logs, 7);
        assert_eq!(c.min_free, MinFree::Percent(5));
        assert_eq!(c.journal_segment_kib, 2);
        assert_eq!(
            parse("min_free = \"512MiB\"").unwrap().min_free,
            MinFree::Bytes(512 << 20)
        );
        assert_eq!(
            parse("min_free = \"0\"").unwrap().min_free,
            MinFree::Bytes(0)
        );
        assert!(err_text("keep_logs = 0").contains("keep_logs"));
        assert!(err_text("min_free = \"lots\"").contains("min_free"));
        assert!(err_text("min_free = \"95%\"").contains("min_free"));
        assert!(err_text("journal_segment_kib = 0").contains("journal_segment_kib"));
        assert_eq!(MinFree::Percent(10).bytes(1000), 100);
        assert_eq!(MinFree::Bytes(1 << 30).bytes(1000), 1000);
        assert_eq!(parse("").unwrap().min_free, MinFree::Auto);
        assert_eq!(MinFree::Auto.bytes(1000), 100);
        assert_eq!(MinFree::Auto.bytes(1 << 40), 1 << 30);
        assert_eq!(parse("min_free = \"off\"").unwrap().min_free, MinFree::Off);
    }

    #[test]
    fn previews_are_off_by_default_and_checked() {
        let c = parse("").unwrap();
        assert_eq!(c.previews.branches, None);
        assert!(!c.previews.matches("feature/x"));
        assert_eq!(c.previews.keep, 10);
        assert_eq!(c.previews.ttl_days, 14);
        assert_eq!(c.previews.build, c.warmup.build);
        assert_eq!(c.previews.links, c.warmup.links);
        assert!(c.previews.migrate.is_empty());
        let c = parse("[warmup]\nmigrate = [\"m\"]\n[previews]\nbranches = \"feature/*\"\nkeep = 3\nttl_days = 2\nseed = \"previews-seed\"\n").unwrap();
        assert!(c.previews.matches("feature/login-form"));
        assert!(!c.previews.matches("main"));
        assert!(!c.previews.matches("bugfix/x"));
        assert!(
            c.previews.migrate.is_empty(),
            "no migrate unless configured"
        );
        assert_eq!(c.previews.seed.as_deref(), Some(Path::new("previews-seed")));
        let e = err_text("[previews]\nbranches = \"feature/*\"\nkeep = 0\n");
        assert!(
            e.starts_with("deploy.toml:3:") && e.contains("previews.keep"),
            "{e}"
        );
        assert!(err_text("[previews]\nttl_days = -1").contains("previews.ttl_days"));
        assert!(err_text("[previews]\nbranches = \"refs/heads/x\"").contains("previews.branches"));
        assert!(err_text("[previews]\nbranches = \"main\"").contains("deploy branch"));
        assert!(err_text("[previews]\nseed = \"../x\"").contains("previews.seed"));
        assert!(err_text("[previews]\nseed = \"common/db\"").contains("common/"));
        assert!(err_text("[previews]\nbuild = [\"\"]").contains("previews.build"));
        assert!(err_text("[previews]\nbranchs = \"x\"").contains("branchs"));
    }

    #[test]
    fn tag_glob_matches() {
        let c = parse("").unwrap();
        assert!(c.is_promote_tag("release-42"));
        assert!(!c.is_promote_tag("v1.0"));
    }
}
