//! `symdeploy check`: a newcomer's first command and an operator's doctor.
//! Every finding says what to do; any error makes the exit code non-zero.

use std::os::unix::fs::PermissionsExt;

use crate::error::Result;
use crate::state::config::Config;
use crate::state::root::Root;

enum Level {
    Ok,
    Warn,
    Error,
}

struct Report {
    errors: usize,
    warnings: usize,
}

impl Report {
    fn say(&mut self, level: Level, text: &str) {
        match level {
            Level::Ok => println!("ok:      {text}"),
            Level::Warn => {
                self.warnings += 1;
                println!("warning: {text}")
            }
            Level::Error => {
                self.errors += 1;
                println!("error:   {text}")
            }
        }
    }
}

/// Check the root at `dir`.
pub(crate) fn run(root: &Root) -> Result<std::process::ExitCode> {
    let mut r = Report {
        errors: 0,
        warnings: 0,
    };
    let config = check_config(&mut r, root);
    check_repository(&mut r, root);
    check_writable(&mut r, root);
    ownership(&mut r, root);
    if let Some(c) = &config {
        web_user(&mut r, root, c);
        check_repository_hooks(&mut r, root, c);
        check_signers(&mut r, root, c);
        check_steps(&mut r, root, c);
        check_links(&mut r, root, c);
    }
    check_pointers(&mut r, root);
    check_previews(&mut r, root);
    for l in crate::hook::pending::ref_lock_problems(root) {
        r.say(Level::Error, &l);
    }
    if let Some(h) = crate::session::lock::holder(root) {
        r.say(Level::Warn, &format!("the deploy lock is held by {h}"));
    }
    println!(
        "{}, {}",
        crate::sys::output::count(r.errors as u64, "error", "errors"),
        crate::sys::output::count(r.warnings as u64, "warning", "warnings")
    );
    Ok(if r.errors > 0 {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}

/// deploy.toml parses and validates; without it the defaults apply. The
/// config is returned for the checks that depend on it (none of them run
/// when it is broken: its error is the one thing to fix first).
fn check_config(r: &mut Report, root: &Root) -> Option<Config> {
    match Config::load(&root.config_file()) {
        Ok(c) => {
            match &c.file {
                Some(f) => r.say(Level::Ok, &format!("{} is valid", f.display())),
                None => r.say(Level::Warn, &format!("{} is missing: the defaults apply (`symdeploy init` writes a commented one)", root.config_file().display())),
            }
            Some(c)
        }
        Err(e) => {
            r.say(Level::Error, &format!("{e}"));
            None
        }
    }
}

/// The root's `repository` is a git repository pushes can reach.
fn check_repository(r: &mut Report, root: &Root) {
    let repo = root.repository();
    if repo.join("HEAD").is_file() {
        r.say(
            Level::Ok,
            &format!("{} is a git repository", repo.display()),
        );
    } else {
        r.say(
            Level::Error,
            &format!(
                "{} is not a git repository: run `symdeploy init {}`",
                repo.display(),
                root.dir.display()
            ),
        );
    }
}

/// releases/, common/ and the state directory exist and take new files.
fn check_writable(r: &mut Report, root: &Root) {
    for d in [root.releases(), root.common(), root.state_dir()] {
        match writable(&d) {
            Ok(()) => r.say(Level::Ok, &format!("{} is writable", d.display())),
            Err(why) => r.say(Level::Error, &format!("{} {why}", d.display())),
        }
    }
}

/// The hooks git runs: the configured one calls an existing symdeploy
/// binary, and the companion hooks the config needs are installed (strict
/// mode's reference transaction; the pre-receive access check when
/// `[access]` or signed tags must be enforced before refs move).
fn check_repository_hooks(r: &mut Report, root: &Root, c: &Config) {
    let repo = root.repository();
    let hook = repo.join("hooks").join(c.hook.file_name());
    match std::fs::read_to_string(&hook) {
        Err(_) => r.say(
            Level::Error,
            &format!(
                "{} is missing: pushes will not deploy; run `symdeploy init {}`",
                hook.display(),
                root.dir.display()
            ),
        ),
        Ok(text) => {
            let exec = std::fs::metadata(&hook)
                .map(|m| m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
            if !exec {
                r.say(
                    Level::Error,
                    &format!("{} is not executable: chmod +x it", hook.display()),
                );
            }
            match hook_binary(&text) {
                Some(bin) if std::path::Path::new(&bin).is_file() => r.say(Level::Ok, &format!("{} calls {bin}", hook.display())),
                Some(bin) => r.say(Level::Error, &format!("{} calls {bin}, which does not exist: reinstall symdeploy or fix the hook", hook.display())),
                None => r.say(Level::Warn, &format!("{} does not look like symdeploy's hook; check that it runs `symdeploy hook {}`", hook.display(), c.hook)),
            }
        }
    }
    if c.hook == crate::state::config::Hook::PreReceive {
        // Strict mode's second half: without it strict pushes are refused.
        let rt = repo.join("hooks/reference-transaction");
        if crate::hook::files::hook_installed(root) {
            r.say(Level::Ok, &format!("{} flips strict pushes", rt.display()));
        } else {
            r.say(Level::Error, &format!("{} is missing or not symdeploy's: strict pushes are refused; run `symdeploy init {}`", rt.display(), root.dir.display()));
        }
    }
    if c.hook == crate::state::config::Hook::PostReceive
        && (c.access.is_some() || c.promote.signers.is_some())
    {
        // Authorization must come before git moves a ref.
        let pre = repo.join("hooks/pre-receive");
        if crate::hook::files::access_checked(root) {
            r.say(
                Level::Ok,
                &format!(
                    "{} checks [access] and signed tags before refs move",
                    pre.display()
                ),
            );
        } else {
            r.say(Level::Error, &format!("{} is missing or not symdeploy's access check: [access] and promote.signers only act after git has moved the refs; run `symdeploy init {}`", pre.display(), root.dir.display()));
        }
    }
}

/// The allowed-signers file `promote.signers` names exists: without it every
/// release tag is refused.
fn check_signers(r: &mut Report, root: &Root, c: &Config) {
    let Some(signers) = &c.promote.signers else {
        return;
    };
    let path = if signers.is_absolute() {
        signers.clone()
    } else {
        root.dir.join(signers)
    };
    if path.is_file() {
        r.say(
            Level::Ok,
            &format!("promote.signers: {} exists", path.display()),
        );
    } else {
        r.say(Level::Error, &format!("promote.signers names {}, which is not a file: every release tag is refused until it exists (one `PRINCIPAL KEY` line per signer)", path.display()));
    }
}

/// Every configured step's program can be found, and no preview step names
/// production's common/ by an absolute path.
fn check_steps(r: &mut Report, root: &Root, c: &Config) {
    let all = [
        ("warmup.build", &c.warmup.build),
        ("warmup.links", &c.warmup.links),
        ("warmup.migrate", &c.warmup.migrate),
        ("warmup.notify", &c.warmup.notify),
        ("promote.stop", &c.promote.stop),
        ("promote.after_switch", &c.promote.after_switch),
        ("promote.start", &c.promote.start),
        ("promote.check", &c.promote.check),
        ("promote.notify", &c.promote.notify),
        ("previews.build", &c.previews.build),
        ("previews.links", &c.previews.links),
        ("previews.migrate", &c.previews.migrate),
        ("previews.notify", &c.previews.notify),
    ];
    // Steps run inside a release, so `bin/x` is looked up in one: the
    // release warmup points at (the next to be promoted), else production.
    let release = [crate::state::root::WARMUP, crate::state::root::PRODUCTION]
        .iter()
        .find_map(|name| root.pointed_release(name))
        .map(|c| root.main_release(c));
    let common = root.common();
    let common = common.to_string_lossy();
    for (key, cmds) in all {
        for cmd in cmds.iter() {
            match crate::sys::program::step_program(cmd, release.as_deref()) {
                Some(Err(why)) => r.say(Level::Error, &format!("{key}: {why} (in \"{cmd}\")")),
                None if release.is_none()
                    && cmd
                        .split_whitespace()
                        .next()
                        .is_some_and(|p| p.contains('/')) =>
                {
                    let prog = cmd.split_whitespace().next().unwrap_or_default();
                    r.say(Level::Warn, &format!("{key}: `{prog}` (in \"{cmd}\") runs from the release; there is no release yet to look in"));
                }
                _ => {}
            }
            // A preview's own root makes relative paths safe; an absolute one
            // into production's data is not.
            if key.starts_with("previews.")
                && (names_path_under(cmd, &common)
                    || names_path_under(cmd, "$SYMDEPLOY_ROOT/common")
                    || names_path_under(cmd, "${SYMDEPLOY_ROOT}/common")
                    || names_path_under(cmd, "$(SYMDEPLOY_ROOT)/common"))
            {
                r.say(Level::Warn, &format!("{key}: \"{cmd}\" names {common} by an absolute path, so a preview would read or write production's data; use a path relative to the release (../../common/...) or $SYMDEPLOY_SHARED"));
            }
        }
    }
}

/// The `[links]` in the root point where the config says (a deploy repairs
/// them, so a difference is only a warning).
fn check_links(r: &mut Report, root: &Root, c: &Config) {
    for (name, target) in &c.links {
        match std::fs::read_link(root.link(name)) {
            Ok(t) if t == std::path::Path::new(target) => {
                r.say(Level::Ok, &format!("{name} -> {target}"))
            }
            Ok(t) => r.say(
                Level::Warn,
                &format!(
                    "{name} points at {} instead of {target}; the next deploy repairs it",
                    t.display()
                ),
            ),
            Err(_) => r.say(
                Level::Warn,
                &format!("{name} -> {target} is missing; the next deploy makes it"),
            ),
        }
    }
}

/// production and warmup, where set, point at ready releases.
fn check_pointers(r: &mut Report, root: &Root) {
    for name in [crate::state::root::PRODUCTION, crate::state::root::WARMUP] {
        if let Some(c) = root.pointed_release(name) {
            if crate::state::release::is_ready(root, &c.into()) {
                r.say(Level::Ok, &format!("{name} -> releases/{c} (ready)"));
            } else {
                r.say(
                    Level::Error,
                    &format!(
                        "{name} points at releases/{c}, which is {}",
                        crate::state::release::effective_state(root, &c.into())
                    ),
                );
            }
        }
    }
}

/// Each preview is in the current layout and serves a ready release.
fn check_previews(r: &mut Report, root: &Root) {
    for m in crate::deploy::preview::all_meta(root) {
        if std::fs::symlink_metadata(root.preview_dir(&m.slug))
            .is_ok_and(|x| x.file_type().is_symlink())
        {
            r.say(
                Level::Warn,
                &format!("preview {} is in the old layout (releases/preview-*, common-previews/); its next push or `symdeploy recover` moves it to previews/{}/ with its data", m.slug, m.slug),
            );
            continue;
        }
        let rel = |n: &crate::state::release_name::ReleaseName| n.commit();
        match root.preview_pointed(&m.slug) {
            Some(n) if crate::state::release::is_ready(root, &n) => r.say(
                Level::Ok,
                &format!("previews/{}/production -> releases/{} (ready)", m.slug, rel(&n)),
            ),
            Some(n) => r.say(
                Level::Error,
                &format!(
                    "previews/{}/production points at releases/{}, which is {}; push {} again or `symdeploy preview rm {}`",
                    m.slug,
                    rel(&n),
                    crate::state::release::effective_state(root, &n),
                    m.branch,
                    m.slug
                ),
            ),
            None => r.say(
                Level::Warn,
                &format!(
                    "preview {} ({}) serves nothing yet (its first build failed or was refused); push the branch again or `symdeploy preview rm {}`",
                    m.slug, m.branch, m.slug
                ),
            ),
        }
    }
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// The root, its repository and releases/ must belong to whoever runs
/// symdeploy (the pushing user runs the hook): git refuses a repository owned
/// by someone else ("dubious ownership"), and files made by another user
/// cannot be cleaned up.
fn ownership(r: &mut Report, root: &Root) {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid();
    let me_name = crate::sys::fs::current_user();
    let mut fine = true;
    for path in [root.dir.clone(), root.repository(), root.releases()] {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue; // reported as missing above
        };
        if meta.uid() == me.as_raw() {
            continue;
        }
        fine = false;
        let owner = user_name(meta.uid());
        if me.is_root() {
            r.say(Level::Warn, &format!(
                "{} is owned by {owner}, not root: pushes come as {owner}; run symdeploy as {owner} too (`runuser -u {owner} -- symdeploy --root {} check`), or files root makes there are ones {owner} cannot remove",
                path.display(),
                root.dir.display()
            ));
        } else {
            r.say(Level::Error, &format!(
                "{} is owned by {owner}, not by you ({me_name}): pushes and deploys as {me_name} fail (git: \"dubious ownership\"); as root, run `chown -R {me_name}: {}` (or `symdeploy init {} --user {me_name}`)",
                path.display(),
                root.dir.display(),
                root.dir.display()
            ));
        }
    }
    if fine {
        r.say(
            Level::Ok,
            &format!(
                "{}, its repository and releases/ are owned by {me_name}, who runs this",
                root.dir.display()
            ),
        );
    }
}

/// With `web_user`: it exists, setfacl is there, and it can write the shared
/// paths in common/ and the `writable` dirs of production and warmup.
fn web_user(r: &mut Report, root: &Root, c: &Config) {
    let Some(name) = &c.web_user else {
        return;
    };
    let web = match crate::deploy::acl::resolve(name) {
        Ok(w) => w,
        Err(e) => {
            r.say(Level::Error, &format!("{e}"));
            return;
        }
    };
    if crate::sys::program::program_on_path("setfacl") == Some(false) {
        r.say(Level::Error, "web_user is set but `setfacl` is not on PATH: warm-ups will fail; `apt-get install acl`");
    }
    // One verdict for a path the web user must write: ok, or what to run.
    let writable = |r: &mut Report, path: &std::path::Path| {
        match crate::deploy::acl::can_write(path, &web)
    {
        Ok(()) => r.say(
            Level::Ok,
            &format!("{} is writable for {name}", path.display()),
        ),
        Err(why) => r.say(
            Level::Error,
            &format!(
                "{} {why}; the next warm-up grants it, or now: `setfacl -R -m u:{name}:rwX,d:u:{name}:rwx {}`",
                path.display(),
                path.display()
            ),
        ),
    }
    };
    for s in &c.shared {
        let path = root.common().join(s);
        if !path.exists() {
            r.say(
                Level::Warn,
                &format!("{} is missing: the next warm-up makes it", path.display()),
            );
            continue;
        }
        writable(r, &path);
    }
    let mut releases: Vec<crate::state::commit::Commit> = [root.production(), root.warmup()]
        .into_iter()
        .flatten()
        .collect();
    releases.dedup();
    for commit in releases {
        for w in &c.writable {
            let path = root.main_release(commit).join(w);
            if !path.is_dir() {
                r.say(Level::Error, &format!("{} is missing (that release predates `writable`): the next warm-up makes it in its release; `mkdir` it by hand to fix this one", path.display()));
                continue;
            }
            writable(r, &path);
        }
    }
}

fn writable(dir: &std::path::Path) -> std::result::Result<(), String> {
    if !dir.is_dir() {
        return Err("is missing: run `symdeploy init` on the root".into());
    }
    match tempfile::tempfile_in(dir) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("is not writable ({e})")),
    }
}

/// The binary a symdeploy hook script execs.
fn hook_binary(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("exec ") && l.contains(" hook "))?;
    let rest = line.trim_start().strip_prefix("exec ")?.trim();
    if let Some(stripped) = rest.strip_prefix('\'') {
        return stripped.split('\'').next().map(str::to_string);
    }
    rest.split_whitespace().next().map(str::to_string)
}

/// Whether `cmd` mentions `dir` or a path below it (not a longer name
/// that merely starts the same, such as `common-old`).
fn names_path_under(cmd: &str, dir: &str) -> bool {
    cmd.match_indices(dir).any(|(i, _)| {
        matches!(
            cmd[i + dir.len()..].chars().next(),
            None | Some('/' | ' ' | '"' | '\'' | ';')
        )
    })
}

#[cfg(test)]
mod common_path_tests {
    use super::names_path_under;

    #[test]
    fn absolute_paths_into_common_are_seen() {
        let d = "/srv/app/common";
        assert!(names_path_under("cp /srv/app/common/app/local.neon x", d));
        assert!(names_path_under("ls /srv/app/common", d));
        assert!(!names_path_under("cp /srv/app/common-old/x y", d));
        assert!(!names_path_under("cp ../../common/x y", d));
    }
}
