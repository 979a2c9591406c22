//! `symdeploy init ROOT`: the layout, the bare repository, its hook and a
//! commented deploy.toml. It never overwrites a hook or a deploy.toml.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::state::config::{Config, Hook, TEMPLATE};
use crate::state::root::Root;
use crate::sys::output;

const POST_RECEIVE: &str = include_str!("../../hooks/post-receive");
const PRE_RECEIVE: &str = include_str!("../../hooks/pre-receive");

/// Create or complete the deploy root at `dir`; with `user`, give it to that
/// (non-root) deploy user.
pub(crate) fn run(dir: &Path, strict: bool, user: Option<&str>) -> Result<()> {
    let owner = user.map(deploy_user).transpose()?;
    std::fs::create_dir_all(dir).at("create directory", dir)?;
    let root = Root::new(dir)?;
    let mut did: Vec<String> = Vec::new();

    let config_path = root.config_file();
    write_config(&config_path, strict, &mut did)?;
    let config = Config::load(&config_path)?;
    let hook_kind = if strict {
        Hook::PreReceive
    } else {
        config.hook
    };
    if strict && config.hook != Hook::PreReceive {
        // The kept deploy.toml is the user's; say what to change rather than edit it.
        output::warning(&format!(
            "{} says hook = \"{}\": add hook = \"pre-receive\" to it (above the first [section]), or pushes will warn and `symdeploy check` will look for the wrong hook",
            config_path.display(),
            config.hook
        ));
    }

    for d in [root.releases(), root.common()] {
        std::fs::create_dir_all(&d).at("create directory", &d)?;
    }
    root.ensure_state_dirs()?;

    let repo_dir = root.repository();
    init_repository(&repo_dir, &config, &mut did)?;
    let binary = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .at("find", "the symdeploy binary")?;
    install_hooks(&repo_dir.join("hooks"), &binary, hook_kind, &mut did)?;

    for (name, target) in &config.links {
        if std::fs::symlink_metadata(root.link(name)).is_err() {
            crate::sys::symlink::flip(&root.dir, name, target)?;
        }
    }

    let me = nix::unistd::geteuid();
    hand_over(&root, owner.as_ref(), &binary, &mut did)?;
    for line in &did {
        output::detail(line);
    }
    output::success(&format!("deploy root ready at {}", root.dir.display()));
    print_next(&root, &config, owner.as_ref(), me.is_root());
    Ok(())
}

/// Write deploy.toml from the template (programs not on PATH here left out,
/// commented), unless one is there: a user's file is never rewritten.
fn write_config(config_path: &Path, strict: bool, did: &mut Vec<String>) -> Result<()> {
    // A dangling symlink is kept (and refused by the load below), never written through.
    if std::fs::symlink_metadata(config_path).is_ok() {
        did.push(format!("kept the existing {}", config_path.display()));
    } else {
        let (mut text, left_out) = adapt_template(TEMPLATE);
        if strict {
            text = with_strict_hook(&text);
        }
        std::fs::write(config_path, text).at("write", config_path)?;
        let mut progs: Vec<&String> = left_out.iter().map(|(_, _, p)| p).collect();
        progs.sort();
        progs.dedup();
        for prog in progs {
            let keys: Vec<String> = left_out
                .iter()
                .filter(|(_, _, p)| p == prog)
                .map(|(k, c, _)| format!("{k} \"{c}\""))
                .collect();
            output::warning(&format!(
                "`{prog}` is not on PATH here: left out {} (commented out in deploy.toml; install {prog} and restore them, or write your own commands)",
                keys.join(", ")
            ));
        }
        did.push(format!(
            "wrote {} (every key, with comments)",
            config_path.display()
        ));
    }
    Ok(())
}

/// The bare repository the pushes go to, made unless it is there, with
/// the settings a push-to-deploy repository needs.
fn init_repository(repo_dir: &Path, config: &Config, did: &mut Vec<String>) -> Result<()> {
    if repo_dir.join("HEAD").exists() {
        did.push(format!(
            "kept the existing repository {}",
            repo_dir.display()
        ));
    } else {
        gix::init_bare(repo_dir).map_err(|e| {
            Error::msg(format!(
                "cannot create the bare repository {}: {e}",
                repo_dir.display()
            ))
        })?;
        // The branch users push is the repository's default one.
        std::fs::write(
            repo_dir.join("HEAD"),
            format!("ref: refs/heads/{}\n", config.branch),
        )
        .at("write", repo_dir.join("HEAD"))?;
        did.push(format!(
            "created the bare repository {}",
            repo_dir.display()
        ));
    }
    configure_repository(repo_dir)?;

    Ok(())
}

/// The hooks of `hook_kind` calling `binary`: the deploy hook, and the
/// access check (post-receive mode) or the reference-transaction hook
/// (strict mode). A hook that is not symdeploy's is left alone, with a warning.
fn install_hooks(
    hooks: &Path,
    binary: &Path,
    hook_kind: Hook,
    did: &mut Vec<String>,
) -> Result<()> {
    std::fs::create_dir_all(hooks).at("create directory", hooks)?;
    // The config allows only these two (see `Hook`).
    let (template, other) = if hook_kind == Hook::PreReceive {
        (PRE_RECEIVE, Hook::PostReceive)
    } else {
        (POST_RECEIVE, Hook::PreReceive)
    };
    let hook_path = hooks.join(hook_kind.file_name());
    let wanted = template.replace(
        "@SYMDEPLOY@",
        &crate::hook::files::shell_quote(&binary.display().to_string()),
    );
    match std::fs::read_to_string(&hook_path) {
        // Post-receive mode's access check gives way to strict mode's hook,
        // which checks access itself.
        Ok(existing) if crate::hook::files::is_access_hook(&existing) && hook_kind == Hook::PreReceive => {
            let tmp = hooks.join(".pre-receive.tmp");
            std::fs::write(&tmp, wanted).at("write", &tmp)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).at("make executable", &tmp)?;
            std::fs::rename(&tmp, &hook_path).at("install", &hook_path)?;
            did.push(format!("replaced the access check {} by strict mode's hook calling {}", hook_path.display(), binary.display()));
        }
        Ok(existing) if existing == wanted => did.push(format!("kept {} (already calls {})", hook_path.display(), binary.display())),
        Ok(_) => output::warning(&format!(
            "{} exists and differs from symdeploy's; left as it is (remove it and run init again to replace it)",
            hook_path.display()
        )),
        Err(_) => {
            std::fs::write(&hook_path, wanted).at("write", &hook_path)?;
            std::fs::set_permissions(&hook_path, std::fs::Permissions::from_mode(0o755)).at("make executable", &hook_path)?;
            did.push(format!("installed {} calling {}", hook_path.display(), binary.display()));
        }
    }
    if hook_kind == Hook::PostReceive {
        // The access check: refusals must come before git moves a ref.
        match crate::hook::files::install_access_hook(hooks, binary)? {
            crate::hook::files::HookInstall::Kept(path) => did.push(format!("kept {}", path.display())),
            crate::hook::files::HookInstall::Installed(path) => did.push(format!(
                "installed {} (checks [access] and signed release tags before any ref moves)",
                path.display()
            )),
            crate::hook::files::HookInstall::Foreign(path) => output::warning(&format!(
                "{} exists and is not symdeploy's access check: [access] and promote.signers are then only enforced after git has moved the refs (make it also call `symdeploy hook access`, reading the same stdin)",
                path.display()
            )),
        }
    }
    if hook_kind == Hook::PreReceive {
        // Strict mode's second half; an existing strict root gets it here.
        match crate::hook::files::install_hook(hooks, binary)? {
            crate::hook::files::HookInstall::Kept(path) => did.push(format!("kept {}", path.display())),
            crate::hook::files::HookInstall::Installed(path) => {
                did.push(format!("installed {}", path.display()))
            }
            crate::hook::files::HookInstall::Foreign(path) => output::warning(&format!(
                "{} exists and differs from symdeploy's; strict pushes are refused until it calls `symdeploy hook reference-transaction \"$1\"` (remove it and run init again)",
                path.display()
            )),
        }
    }
    let other = hooks.join(other.file_name());
    if std::fs::read_to_string(&other).is_ok_and(|t| {
        !crate::hook::files::is_access_hook(&t)
            && (t.contains("symdeploy hook")
                || t.contains(" hook post-receive")
                || t.contains(" hook pre-receive"))
    }) {
        output::warning(&format!(
            "{} also calls symdeploy; remove it so that each push deploys once",
            other.display()
        ));
    }

    Ok(())
}

/// With `--user` (as root): the root given to that user, who must be able
/// to run this binary; as root without it, the warning that pushes must
/// then come as root.
fn hand_over(
    root: &Root,
    owner: Option<&Owner>,
    binary: &Path,
    did: &mut Vec<String>,
) -> Result<()> {
    let me = nix::unistd::geteuid();
    match owner {
        Some(u) if me.is_root() => {
            chown_tree(&root.dir, u.uid, u.gid)?;
            did.push(format!(
                "gave {} to {} (every file root owned in it; pushes as {} work)",
                root.dir.display(),
                u.name,
                u.name
            ));
            if let Some(why) = unreachable_for(binary, u) {
                output::warning(&format!(
                    "{} cannot run {} ({why}): its pushes will fail; install symdeploy where every user can run it (the package puts it in /usr/bin)",
                    u.name,
                    binary.display()
                ));
            }
        }
        Some(_) => {}
        None if me.is_root() => output::warning(&format!(
            "{} is owned by root: pushes must then come as root (git refuses a repository owned by someone else: `dubious ownership`); to deploy as a normal user, run `symdeploy init {} --user NAME`",
            root.dir.display(),
            root.dir.display()
        )),
        None => {}
    }

    Ok(())
}

/// What to do next: check the configuration, then push.
/// `as_root`: init ran as root (the check then runs as the owner).
fn print_next(root: &Root, config: &Config, owner: Option<&Owner>, as_root: bool) {
    let config_path = root.config_file();
    let repo_dir = root.repository();
    let check = format!("symdeploy --root {} check", root.dir.display());
    match owner {
        Some(o) if as_root => output::line(&format!(
            "next, edit {} and run `runuser -u {} -- {check}` until it finds 0 errors",
            config_path.display(),
            o.name
        )),
        _ => output::line(&format!(
            "next, edit {} and run `{check}` until it finds 0 errors",
            config_path.display()
        )),
    }
    output::line("then, from your project's clone:");
    output::line(&format!(
        "       git remote add deploy {}        (or ssh://{}@HOST{} from another machine)",
        repo_dir.display(),
        owner.map_or("USER", |o| o.name.as_str()),
        repo_dir.display()
    ));
    output::line(&format!("       git push deploy {}", config.branch));
}

/// Settings a push-to-deploy repository needs: reject corrupt objects at the
/// door, and let pushers ask for a promote with `git push -o promote`.
fn configure_repository(repo_dir: &Path) -> Result<()> {
    let path = repo_dir.join("config");
    let text = std::fs::read(&path).at("read", &path)?;
    let mut file = gix::config::File::from_bytes_owned(
        &mut text.clone(),
        gix::config::file::Metadata::from(gix::config::Source::Local),
        Default::default(),
    )
    .map_err(|e| Error::msg(format!("cannot parse {}: {e}", path.display())))?;
    let mut changed = false;
    for (key, value) in [("fsckObjects", "true"), ("advertisePushOptions", "true")] {
        let current = file
            .raw_value_by("receive", None, key)
            .ok()
            .map(|v| v.to_string());
        if current.as_deref() != Some(value) {
            file.set_raw_value_by("receive", None, key, value)
                .map_err(|e| {
                    Error::msg(format!(
                        "cannot set receive.{key} in {}: {e}",
                        path.display()
                    ))
                })?;
            changed = true;
        }
    }
    if changed {
        let mut out = Vec::new();
        file.write_to(&mut out).at("encode", &path)?;
        std::fs::write(&path, out).at("write", &path)?;
    }
    Ok(())
}

/// The deploy user `init --user NAME` gives the root to.
struct Owner {
    name: String,
    uid: u32,
    gid: u32,
}

fn deploy_user(name: &str) -> Result<Owner> {
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| Error::msg(format!("cannot look up the user \"{name}\": {e}")))?
        .ok_or_else(|| {
            Error::with_help(
                format!("the deploy user \"{name}\" does not exist"),
                format!("create it first: `useradd --create-home --shell /bin/bash {name}`, then add its SSH key to ~{name}/.ssh/authorized_keys"),
            )
        })?;
    if user.uid.is_root() {
        return Err(Error::with_help(
            format!("--user {name} is root; the deploy user must be a normal user"),
            "create one (`useradd --create-home --shell /bin/bash deploy`) and pass --user deploy, or leave --user out to keep the root owned by root",
        ));
    }
    let me = nix::unistd::geteuid();
    if !me.is_root() && me != user.uid {
        return Err(Error::with_help(
            format!(
                "--user {name}: only root can give a deploy root to another user (you are {})",
                crate::sys::fs::current_user()
            ),
            format!("run it as root (`sudo symdeploy init ROOT --user {name}`), or as {name} without --user"),
        ));
    }
    Ok(Owner {
        name: name.to_string(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

/// `chown -R uid:gid dir` for what root owns, symlinks themselves rather
/// than their targets. Files of other users (the web user's uploads in
/// common/, its caches in a release) keep their owner: re-running init on an
/// existing root must not take them from the web user.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir).at("inspect", dir)?;
    if meta.uid() == 0 {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).at("chown", dir)?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).at("read directory", dir)? {
            let entry = entry.at("read directory", dir)?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Why `owner` could not execute `binary`, if it could not: a private home
/// (`/root/.cargo/bin`) is the usual reason.
fn unreachable_for(binary: &Path, owner: &Owner) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let groups = std::ffi::CString::new(owner.name.as_str())
        .ok()
        .and_then(|c| nix::unistd::getgrouplist(&c, nix::unistd::Gid::from_raw(owner.gid)).ok())
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect::<Vec<_>>())
        .unwrap_or_else(|| vec![owner.gid]);
    let allowed = |m: &std::fs::Metadata| {
        let mode = m.mode();
        if m.uid() == owner.uid {
            mode & 0o100 != 0
        } else if groups.contains(&m.gid()) {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    };
    for p in binary.ancestors() {
        let Ok(m) = std::fs::metadata(p) else {
            continue;
        };
        if !allowed(&m) {
            return Some(format!("no execute permission on {}", p.display()));
        }
    }
    None
}

/// `hook = "pre-receive"` in the template, its comments kept.
fn with_strict_hook(text: &str) -> String {
    match text.parse::<toml_edit::DocumentMut>() {
        Ok(mut doc) => {
            if let Some(v) = doc.get_mut("hook").and_then(|v| v.as_value_mut()) {
                let decor = v.decor().clone();
                *v = "pre-receive".into();
                *v.decor_mut() = decor;
            }
            doc.to_string()
        }
        Err(_) => text.to_string(),
    }
}

/// The template with every step whose program is missing here commented out
/// (with a note), and the list of what was left out: (key, command, program).
/// A server without supervisord then does not fail its first promote on
/// `supervisorctl: not found`.
fn adapt_template(text: &str) -> (String, Vec<(String, String, String)>) {
    adapt_template_with(text, |c| {
        crate::sys::program::program_on_path(c) == Some(false)
    })
}

fn adapt_template_with(
    text: &str,
    missing: impl Fn(&str) -> bool,
) -> (String, Vec<(String, String, String)>) {
    const STEP_KEYS: &[&str] = &[
        "build",
        "links",
        "migrate",
        "notify",
        "stop",
        "after_switch",
        "start",
        "check",
    ];
    // The template is ours and parses; should it not, it is written as it is.
    let Ok(mut doc) = text.parse::<toml_edit::DocumentMut>() else {
        return (text.to_string(), Vec::new());
    };
    let mut left_out = Vec::new();
    for section in ["warmup", "promote"] {
        let Some(table) = doc.get_mut(section).and_then(|t| t.as_table_mut()) else {
            continue;
        };
        for &key in STEP_KEYS {
            let Some(array) = table.get(key).and_then(|v| v.as_array()) else {
                continue;
            };
            let written = format!("{key} = {}", array.to_string().trim());
            let commands: Vec<String> = array
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let (keep, gone): (Vec<&String>, Vec<&String>) =
                commands.iter().partition(|c| !missing(c));
            if gone.is_empty() {
                continue;
            }
            let progs: Vec<String> = gone
                .iter()
                .filter_map(|c| c.split_whitespace().next().map(str::to_string))
                .collect();
            let mut uniq = progs.clone();
            uniq.dedup();
            let mut kept = toml_edit::Array::new();
            kept.extend(keep.iter().map(|c| c.as_str()));
            table[key] = toml_edit::value(kept);
            if let Some(mut k) = table.key_mut(key) {
                let before = k
                    .leaf_decor()
                    .prefix()
                    .and_then(|p| p.as_str())
                    .unwrap_or_default()
                    .to_string();
                k.leaf_decor_mut().set_prefix(format!(
                    "{before}# {} is not on PATH on this machine (symdeploy init); install it and restore:\n# {written}\n",
                    uniq.join(", ")
                ));
            }
            for (c, p) in gone.iter().zip(progs) {
                left_out.push((format!("{section}.{key}"), c.to_string(), p));
            }
        }
    }
    (doc.to_string(), left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_programs_are_commented_out_and_the_rest_kept() {
        let (text, left) = adapt_template_with(TEMPLATE, |c| c.starts_with("supervisorctl"));
        let c = crate::state::config::parse_str(&text, Path::new("deploy.toml"), None).unwrap();
        assert!(c.promote.stop.is_empty() && c.promote.start.is_empty());
        assert_eq!(c.promote.after_switch, vec!["make production-supervisor"]);
        assert_eq!(c.warmup.build, Config::default().warmup.build);
        assert!(
            text.contains("# stop = [\"supervisorctl stop all\"]"),
            "{text}"
        );
        let keys: Vec<&str> = left.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["promote.stop", "promote.start"]);

        // TOML's own escaping, not Rust's: a command with quotes, a
        // backslash and a non-ASCII character survives the rewrite.
        let odd = "[promote]\nstop = [\"supervisorctl stop all\", 'printf \"a\\\\b\" é']\n";
        let (text, _) = adapt_template_with(odd, |c| c.starts_with("supervisorctl"));
        let t: toml::Table = text.parse().expect(&text);
        assert_eq!(
            t["promote"]["stop"][0].as_str(),
            Some("printf \"a\\\\b\" é"),
            "{text}"
        );

        let strict = with_strict_hook(TEMPLATE);
        let c = crate::state::config::parse_str(&strict, Path::new("deploy.toml"), None).unwrap();
        assert_eq!(c.hook, crate::state::config::Hook::PreReceive);
        assert_eq!(
            strict.lines().count(),
            TEMPLATE.lines().count(),
            "comments kept"
        );

        let (text, left) = adapt_template_with(TEMPLATE, |_| false);
        assert_eq!(text, TEMPLATE);
        assert!(left.is_empty());
    }
}
