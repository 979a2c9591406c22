//! The git hooks: read `<old> <new> <ref>` lines, route each ref.
//!
//! The whole of stdin is parsed and checked before anything runs, so a
//! malformed line means nothing is half-processed. Branch pushes warm up,
//! release tags promote, branches matching `previews.branches` get (or, when
//! deleted, lose) a preview, everything else is reported and ignored.

use std::io::Read;
use std::path::{Path, PathBuf};

use gix::ObjectId;

use crate::config::HookKind;
use crate::error::{Error, IoContext, Result};
use crate::ops::{self, Ctx};
use crate::output;
use crate::root::{short, Root};

/// One line of hook input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// The ref's old value (zeros when created).
    pub old: String,
    /// The ref's new value (zeros when deleted).
    pub new: String,
    /// The full ref name.
    pub name: String,
}

impl RefUpdate {
    /// A push that deletes the ref.
    pub fn is_deletion(&self) -> bool {
        self.new.bytes().all(|b| b == b'0')
    }
}

/// What a ref push asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Warm up the pushed commit.
    Warmup,
    /// Warm up (if needed) and promote the pushed tag's commit.
    Promote,
    /// Warm the pushed commit up as its branch's preview.
    Preview,
    /// The branch of a preview was deleted: remove the preview.
    RemovePreview,
    /// Nothing; the reason is shown.
    Ignore(String),
}

/// Parse hook stdin; the first bad line fails the whole input.
pub fn parse_input(text: &str) -> Result<Vec<RefUpdate>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let bad = |why: &str| {
            Error::with_help(
                format!("hook input line {}: {why}: {:?}", i + 1, truncate(line, 200)),
                "the hook expects `<old-id> <new-id> <ref-name>` lines from git; run it only as a git hook (or pipe exactly that format)",
            )
        };
        if fields.len() != 3 {
            return Err(bad("expected three space-separated fields"));
        }
        for id in &fields[..2] {
            if !crate::root::is_commit_hash(id) {
                return Err(bad("not a full hexadecimal object id"));
            }
        }
        if gix::validate::reference::name(fields[2].into()).is_err()
            || !fields[2].starts_with("refs/")
        {
            return Err(bad("not a valid ref name"));
        }
        out.push(RefUpdate {
            old: fields[0].to_string(),
            new: fields[1].to_string(),
            name: fields[2].to_string(),
        });
    }
    Ok(out)
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Decide what to do with one ref update.
pub fn route(ctx: &Ctx, update: &RefUpdate) -> Action {
    let branch_ref = ctx.config.branch_ref();
    if crate::ops::preview::preview_branch(ctx, &update.name).is_some() {
        return if update.is_deletion() {
            Action::RemovePreview
        } else {
            Action::Preview
        };
    }
    if update.is_deletion() {
        return Action::Ignore(format!(
            "{} deleted; symdeploy never removes releases on a push",
            update.name
        ));
    }
    if update.name == branch_ref {
        return Action::Warmup;
    }
    if let Some(tag) = update.name.strip_prefix("refs/tags/") {
        if ctx.config.is_promote_tag(tag) {
            return Action::Promote;
        }
        return Action::Ignore(format!(
            "tag {tag} does not match promote.tags \"{}\"",
            ctx.config.promote.tags
        ));
    }
    if let Some(branch) = update.name.strip_prefix("refs/heads/") {
        return Action::Ignore(format!(
            "branch {branch} is not the deploy branch ({})",
            ctx.config.branch
        ));
    }
    Action::Ignore(format!(
        "{} is neither the deploy branch nor a release tag",
        update.name
    ))
}

/// Push options (`git push -o promote`), as git hands them to hooks.
pub fn push_options() -> Vec<String> {
    let count: usize = std::env::var("GIT_PUSH_OPTION_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (0..count.min(100))
        .filter_map(|i| std::env::var(format!("GIT_PUSH_OPTION_{i}")).ok())
        .collect()
}

/// `symdeploy hook post-receive|pre-receive`.
pub fn run(kind: HookKind) -> Result<()> {
    let git_dir = std::env::var_os("GIT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let root = Root::from_repository(&git_dir)?;
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).map_err(|e| {
        Error::with_help(
            format!("cannot read the hook input: {e}"),
            "ref names and ids must be UTF-8",
        )
    })?;
    let updates = parse_input(&input)?;
    let ctx = match Ctx::load(root.clone()) {
        Ok(ctx) => ctx,
        Err(e) => return config_broken(&root, &updates, e),
    };
    if ctx.config.hook != kind {
        output::warning(&format!(
            "this is the {} hook, but deploy.toml says hook = \"{}\"; deploying anyway (run `symdeploy init` to install the configured hook)",
            kind.file_name(),
            ctx.config.hook.file_name()
        ));
    }
    let options = push_options();
    let promote_option = options.iter().any(|o| o == "promote");
    for o in options.iter().filter(|o| *o != "promote") {
        output::warning(&format!(
            "unknown push option `{o}` ignored (symdeploy knows: promote)"
        ));
    }

    let objects = HookObjects::open(&ctx.root)?;
    if kind == HookKind::PreReceive {
        // Strict mode: build now, flip once git has the refs locked.
        return crate::strict::pre_receive(&ctx, &objects.repo, &updates, promote_option);
    }
    let mut failures = Vec::new();
    for update in &updates {
        match route(&ctx, update) {
            Action::Ignore(why) => output::line(&format!("-----> ignored: {why}")),
            Action::Warmup => {
                let result = deploy(&ctx, &objects.repo, update, promote_option);
                output::close_log();
                if let Err(e) = result {
                    report_once(&e);
                    failures.push(e);
                }
            }
            Action::Promote => {
                let result = promote(&ctx, &objects.repo, update);
                output::close_log();
                if let Err(e) = result {
                    report_once(&e);
                    failures.push(e);
                }
            }
            Action::Preview => {
                if promote_option {
                    output::warning(&format!(
                        "-o promote does not apply to {}: a preview branch never moves production",
                        output::escape(&update.name)
                    ));
                }
                let result = parse_id(&update.new)
                    .and_then(|id| crate::repo::peel_to_commit(&objects.repo, id, &update.name))
                    .and_then(|c| {
                        crate::ops::preview::deploy(&ctx, &objects.repo, c, &update.name)
                    });
                output::close_log();
                if let Err(e) = result {
                    report_once(&e);
                    failures.push(e);
                }
            }
            Action::RemovePreview => {
                let result = crate::ops::preview::delete_branch(&ctx, &update.name);
                output::close_log();
                if let Err(e) = result {
                    report_once(&e);
                    failures.push(e);
                }
            }
        }
    }
    match failures.first() {
        // Already reported above; the exit code is what matters to git now.
        Some(e) => Err(Error::Reported {
            code: e.exit_code(),
        }),
        None => Ok(()),
    }
}

/// deploy.toml cannot be read: nothing can be routed or run, but the push
/// must not go unnoticed. The failure gets a run log and a failed run in the
/// journal (so `status` and `log` show it), and one error with its fix.
fn config_broken(root: &Root, updates: &[RefUpdate], e: Error) -> Result<()> {
    let Some(update) = updates.iter().find(|u| !u.is_deletion()) else {
        return Err(e);
    };
    ops::open_run_log(root, "warmup", short(&update.new));
    let recorded = crate::lock::acquire(
        root,
        "recording a push refused by a broken deploy.toml",
        std::time::Duration::from_secs(600),
    )
    .and_then(|_lock| {
        let mut entry = crate::journal::Entry::start(
            crate::journal::Event::Warmup,
            Some(&update.new),
            Some(&update.name),
        );
        crate::journal::append(root, &entry)?;
        entry.error = Some(e.to_string());
        crate::journal::append(root, &entry.end(crate::journal::Outcome::Failed))
    });
    if let Err(j) = recorded {
        output::warning(&format!("could not record the failure in the journal: {j}"));
    }
    let what = updates
        .iter()
        .filter(|u| !u.is_deletion())
        .map(|u| format!("{} ({})", short(&u.new), u.name))
        .collect::<Vec<_>>()
        .join(", ");
    output::failure(
        &format!("deploy.toml is broken, so nothing was deployed for {what}: {e}"),
        &crate::ops::warmup::where_now(root),
        &format!(
            "fix {} on the server (`symdeploy check` validates it), then run `symdeploy warmup {}` there (pushing the same commit again runs no hook)",
            root.config_file().display(),
            short(&update.new)
        ),
    );
    output::close_log();
    Err(Error::Reported {
        code: e.exit_code(),
    })
}

fn deploy(ctx: &Ctx, repo: &gix::Repository, update: &RefUpdate, and_promote: bool) -> Result<()> {
    let new = parse_id(&update.new)?;
    let commit = crate::repo::peel_to_commit(repo, new, &update.name)?;
    ops::open_run_log(&ctx.root, "warmup", commit.short());
    let _lock = ops::lock_and_recover(
        ctx,
        &format!("warm-up of {} ({})", short(&update.new), update.name),
    )?;
    crate::ops::warmup::warm(ctx, repo, commit, &update.name, false, and_promote)?;
    if and_promote {
        crate::ops::promote::promote_locked(ctx, repo, commit, &update.name, false)?;
    }
    Ok(())
}

fn promote(ctx: &Ctx, repo: &gix::Repository, update: &RefUpdate) -> Result<()> {
    let new = parse_id(&update.new)?;
    let commit = crate::repo::peel_to_commit(repo, new, &update.name)?;
    ops::open_run_log(&ctx.root, "promote", commit.short());
    let _lock = ops::lock_and_recover(
        ctx,
        &format!("promote of {} ({})", commit.short(), update.name),
    )?;
    crate::ops::promote::promote_locked(ctx, repo, commit, &update.name, true)
}

/// Show a ref's failure, unless the operation already did (a failed warm-up
/// prints its own error lines and returns `Reported`).
fn report_once(e: &Error) {
    if !e.is_reported() {
        output::report(e);
    }
}

fn parse_id(hex: &str) -> Result<ObjectId> {
    ObjectId::from_hex(hex.as_bytes()).map_err(|e| Error::msg(format!("bad object id {hex}: {e}")))
}

/// Prefix of the temporary quarantine views in ROOT/.symdeploy, followed by
/// the pid of the hook that made it.
pub const QUARANTINE_VIEW_PREFIX: &str = "quarantine-view-";

/// The repository as a hook must read it. In pre-receive the pushed objects
/// are still in quarantine (GIT_QUARANTINE_PATH), which gix does not read from
/// the environment; a throwaway git directory whose alternates name both the
/// quarantine and the real object store sees everything, and changes nothing.
struct HookObjects {
    repo: gix::Repository,
    _view: Option<tempfile::TempDir>,
}

impl HookObjects {
    fn open(root: &Root) -> Result<HookObjects> {
        let real = root.repository();
        let Some(quarantine) = std::env::var_os("GIT_QUARANTINE_PATH").map(PathBuf::from) else {
            return Ok(HookObjects {
                repo: crate::repo::open(&real)?,
                _view: None,
            });
        };
        let view = tempfile::Builder::new()
            // The pid lets a later deploy remove the view of a hook that was killed.
            .prefix(&format!("{QUARANTINE_VIEW_PREFIX}{}-", std::process::id()))
            .tempdir_in(root.state_dir())
            .at("create a temporary directory in", root.state_dir())?;
        let dir = view.path();
        let quarantine = std::path::absolute(&quarantine).unwrap_or(quarantine);
        write_view(
            dir,
            &quarantine,
            &std::fs::canonicalize(real.join("objects")).unwrap_or(real.join("objects")),
        )?;
        Ok(HookObjects {
            repo: crate::repo::open(dir)?,
            _view: Some(view),
        })
    }
}

fn write_view(dir: &Path, quarantine: &Path, objects: &Path) -> Result<()> {
    for sub in ["objects/info", "objects/pack", "refs/heads", "refs/tags"] {
        std::fs::create_dir_all(dir.join(sub)).at("create directory", dir.join(sub))?;
    }
    std::fs::write(dir.join("HEAD"), "ref: refs/heads/main\n").at("write", dir.join("HEAD"))?;
    std::fs::write(
        dir.join("config"),
        "[core]\n\trepositoryformatversion = 0\n\tbare = true\n",
    )
    .at("write", dir.join("config"))?;
    let alternates = format!("{}\n{}\n", quarantine.display(), objects.display());
    std::fs::write(dir.join("objects/info/alternates"), alternates)
        .at("write", dir.join("objects/info/alternates"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const Z: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn parses_well_formed_input() {
        let u = parse_input(&format!(
            "{Z} {A} refs/heads/main\n{A} {Z} refs/tags/release-1\n"
        ))
        .unwrap();
        assert_eq!(u.len(), 2);
        assert!(!u[0].is_deletion());
        assert!(u[1].is_deletion());
    }

    #[test]
    fn rejects_malformed_lines_naming_the_line() {
        for bad in [
            format!("{Z} {A}\n"),
            format!("{Z} xyz refs/heads/main\n"),
            format!("{Z} {A} refs/heads/../x\n"),
            format!("{Z} {A} main\n"),
            format!("{Z} {A} refs/heads/main extra\n"),
        ] {
            let e = parse_input(&format!("{Z} {A} refs/heads/ok\n{bad}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("line 2"), "{bad}: {e}");
        }
    }
}
