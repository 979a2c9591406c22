//! `symdeploy shell NAME`: the forced command of every deploy key.
//!
//! sshd runs it instead of whatever the client asked for, with the request
//! in `SSH_ORIGINAL_COMMAND`. It lets through exactly two kinds of request:
//! git's own (`git-receive-pack`/`git-upload-pack` of a deploy root's
//! repository) and `symdeploy` subcommands the person's role allows. The
//! command runs with an environment built here from a short list, with
//! `SYMDEPLOY_BY=NAME`: nothing the client sent (SendEnv, a variable set in
//! the request) reaches git, the hooks or the steps. Everything else is
//! refused with one line saying why, and nothing runs.

use std::os::unix::process::CommandExt;

use clap::Parser;
use std::path::{Component, Path, PathBuf};

use crate::access::{self, Role};
use crate::cli::{Cli, Command, PreviewCommand};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::state::root::Root;

/// A request the forced command lets through, before it runs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// git-receive-pack / git-upload-pack of a root's repository.
    Git {
        /// `git-receive-pack` or `git-upload-pack`.
        program: &'static str,
        /// The repository, canonical.
        repository: PathBuf,
    },
    /// `symdeploy ARGS…` (the words after `symdeploy`).
    Symdeploy(Vec<String>),
}

/// `symdeploy shell NAME`: check the request and exec it, or refuse.
pub(crate) fn run(name: &str) -> Result<()> {
    if !access::valid_name(name) {
        return Err(Error::with_help(
            format!(
                "refused: `symdeploy shell` was given \"{}\", which is not a deployer's name; nothing was run",
                crate::sys::output::escape(name)
            ),
            "fix the key's line in authorized_keys: `symdeploy keys rm` and `symdeploy keys add NAME KEYFILE` write it",
        ));
    }
    let request = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    let home = home()?;
    let parsed = parse(name, &request, &home)?;
    let mut cmd = match &parsed {
        Request::Git {
            program,
            repository,
        } => {
            let root = Root::from_repository(repository)?;
            authorize(name, &root, Role::Read, "use this deploy root")?;
            let mut c = std::process::Command::new(program);
            c.arg(repository);
            c
        }
        Request::Symdeploy(args) => {
            let exe = std::env::current_exe()
                .map_err(|e| Error::msg(format!("cannot find the symdeploy binary: {e}")))?;
            let mut c = std::process::Command::new(exe);
            c.args(args);
            c
        }
    };
    clean_env(&mut cmd, name, matches!(parsed, Request::Git { .. }));
    cmd.current_dir(&home);
    let err = cmd.exec();
    Err(Error::msg(format!("cannot run {request}: {err}")))
}

/// Build the child's environment from nothing: what a session needs, and
/// the name. `git` also keeps a well-formed `GIT_PROTOCOL` (protocol v2).
fn clean_env(cmd: &mut std::process::Command, name: &str, git: bool) {
    cmd.env_clear();
    for key in [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "SSH_CONNECTION",
        "SSH_CLIENT",
    ] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    }
    if git {
        if let Ok(v) = std::env::var("GIT_PROTOCOL") {
            if v.len() < 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "=:.".contains(c))
            {
                cmd.env("GIT_PROTOCOL", v);
            }
        }
    }
    cmd.env(access::BY_VAR, name);
}

fn home() -> Result<PathBuf> {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => Ok(u.dir),
        _ => std::env::var_os("HOME")
            .map(PathBuf::from)
            .ok_or_else(|| Error::msg(format!("cannot find the home directory of uid {uid}"))),
    }
}

/// Refuse unless `name` may do what needs `role` in `root`.
fn authorize(name: &str, root: &Root, role: Role, what: &str) -> Result<()> {
    let ctx = match Ctx::load(root.clone()) {
        Ok(c) => c,
        // Roles unknown: only what changes nothing passes.
        Err(_) if role == Role::Read => return Ok(()),
        Err(e) => {
            return Err(Error::with_help(
                format!("refused: {}'s deploy.toml cannot be read, so who may {what} is unknown; nothing was run ({e})", root.dir.display()),
                "fix deploy.toml on the server (`symdeploy check` validates it)",
            ))
        }
    };
    let Some(roles) = &ctx.config.access else {
        return Ok(());
    };
    if roles.allows(name, role) {
        return Ok(());
    }
    Err(Error::with_help(
        format!(
            "refused: {name} may not {what} in {}: that needs the {} role, which deploy.toml's [access] gives to {}; nothing was run",
            root.dir.display(),
            role.key(),
            roles.holders(role)
        ),
        "ask the server's operator to add the name to [access] in deploy.toml",
    ))
}

fn refuse(what: &str, why: &str) -> Error {
    Error::with_help(
        format!("refused: {what}: {why}; nothing was run"),
        "this key may only push to and fetch from a deploy root (git push deploy main) and run `symdeploy --root ROOT COMMAND` (status, log, releases, check, warmup, promote, rollback, …)",
    )
}

/// Check `request` (SSH_ORIGINAL_COMMAND) for `name`, whose home is `home`.
pub(crate) fn parse(name: &str, request: &str, home: &Path) -> Result<Request> {
    if request.trim().is_empty() {
        return Err(refuse(
            &format!("an interactive login as {name}"),
            "deploy keys get no shell",
        ));
    }
    let shown = crate::sys::output::escape(request.trim()).into_owned();
    let words = split(request).map_err(|why| refuse(&format!("`{shown}`"), &why))?;
    let (program, args): (&str, &[String]) = match words.as_slice() {
        [git, sub, rest @ ..]
            if git == "git" && (sub == "receive-pack" || sub == "upload-pack") =>
        {
            (
                if sub == "receive-pack" {
                    "git-receive-pack"
                } else {
                    "git-upload-pack"
                },
                rest,
            )
        }
        [first, rest @ ..] => (first.as_str(), rest),
        [] => return Err(refuse(&format!("`{shown}`"), "it is empty")),
    };
    match program {
        "git-receive-pack" | "git-upload-pack" => {
            let [path] = args else {
                return Err(refuse(
                    &format!("`{shown}`"),
                    "git asks for exactly one repository",
                ));
            };
            let repository =
                repository(path, home).map_err(|why| refuse(&format!("`{shown}`"), &why))?;
            Ok(Request::Git {
                program: if program == "git-receive-pack" {
                    "git-receive-pack"
                } else {
                    "git-upload-pack"
                },
                repository,
            })
        }
        "symdeploy" => symdeploy(name, args, home).map(Request::Symdeploy),
        other => Err(refuse(
            &format!("`{shown}`"),
            &format!(
                "`{}` is not git's push or fetch, nor symdeploy",
                crate::sys::output::escape(other)
            ),
        )),
    }
}

/// Words of a request the way a shell would split it, without any of a
/// shell's powers: quotes and backslashes only. Anything that would make a
/// shell do more (`;`, `|`, `$`, backquotes, redirections) is refused.
pub(crate) fn split(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err("a quote is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\')) => cur.push(ch),
                            Some(ch) => {
                                cur.push('\\');
                                cur.push(ch);
                            }
                            None => return Err("a quote is not closed".into()),
                        },
                        Some(ch @ ('$' | '`')) => {
                            return Err(format!(
                                "`{ch}` asks for shell expansion, which is not run here"
                            ))
                        }
                        Some(ch) => cur.push(ch),
                        None => return Err("a quote is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(ch) => cur.push(ch),
                    None => return Err("it ends with a backslash".into()),
                }
            }
            ';' | '|' | '&' | '<' | '>' | '(' | ')' | '$' | '`' | '\n' | '\r' | '*' | '?' | '{'
            | '}' | '[' | ']' => {
                return Err(format!(
                    "`{}` is shell syntax, and no shell runs here",
                    c.escape_default()
                ))
            }
            c if c.is_control() => return Err("it contains control characters".into()),
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// A path as a client sends it (`/srv/app/repository`, `srv/app/repository`
/// relative to the home, `~/…`, `~USER/…` for this user), made absolute.
/// `..` anywhere is refused rather than resolved.
fn client_path(path: &str, home: &Path) -> std::result::Result<PathBuf, String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    let me = crate::sys::fs::current_user();
    let expanded = if path == "~" {
        home.to_path_buf()
    } else if let Some(rest) = path.strip_prefix("~/") {
        home.join(rest)
    } else if let Some(rest) = path.strip_prefix('~') {
        let (user, rest) = rest.split_once('/').unwrap_or((rest, ""));
        if user != me {
            return Err(format!(
                "`~{}` is another user's home; only {me}'s roots are served here",
                crate::sys::output::escape(user)
            ));
        }
        home.join(rest)
    } else {
        home.join(path)
    };
    if expanded.components().any(|c| c == Component::ParentDir) {
        return Err("the path contains `..`".into());
    }
    Ok(expanded)
}

/// The repository of a deploy root named by `path`, canonical.
fn repository(path: &str, home: &Path) -> std::result::Result<PathBuf, String> {
    let full = client_path(path, home)?;
    let shown = full.display().to_string();
    let canonical = std::fs::canonicalize(&full).map_err(|_| format!("{shown} does not exist"))?;
    let not_root = || format!("{shown} is not the repository of a symdeploy deploy root");
    if canonical.file_name().and_then(|n| n.to_str()) != Some("repository") {
        return Err(not_root());
    }
    let root = canonical.parent().ok_or_else(not_root)?;
    let root = Root::new(root).map_err(|_| not_root())?;
    if root.ensure_exists().is_err() || !root.config_file().is_file() {
        return Err(not_root());
    }
    Ok(canonical)
}

/// Check a `symdeploy …` request: a subcommand this person may run, on a
/// deploy root. Returns the arguments to run symdeploy with.
fn symdeploy(name: &str, args: &[String], home: &Path) -> Result<Vec<String>> {
    let shown = format!("symdeploy {}", crate::sys::output::escape(&args.join(" ")));
    let cli = match Cli::try_parse_from(
        std::iter::once("symdeploy".to_string()).chain(args.iter().cloned()),
    ) {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion
                    | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            // Help changes nothing; clap prints it and exits.
            e.exit()
        }
        Err(e) => {
            let first = e.to_string();
            let first = first
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            return Err(refuse(&format!("`{shown}`"), first));
        }
    };
    let (role, what) = match &cli.command {
        Command::Status { .. }
        | Command::Releases { .. }
        | Command::Log { .. }
        | Command::Check => (Role::Read, "read this root's state"),
        Command::Preview {
            command: PreviewCommand::List { .. },
        } => (Role::Read, "list previews"),
        Command::Warmup { .. } => (Role::Push, "warm up a release"),
        Command::Preview {
            command: PreviewCommand::Rm { .. },
        } => (Role::Push, "remove a preview"),
        Command::Promote { .. } => (Role::Release, "promote"),
        Command::Rollback { .. } => (Role::Release, "roll production back"),
        Command::Recover => (Role::Release, "recover interrupted runs"),
        Command::Cleanup {
            background: false, ..
        } => (Role::Release, "clean up releases"),
        _ => {
            return Err(refuse(
                &format!("`{shown}`"),
                "that subcommand is for the server's operator, not over a deploy key",
            ))
        }
    };
    // Only a --root on the request counts: SYMDEPLOY_ROOT may have come
    // from the client.
    let given = args
        .iter()
        .any(|a| a == "--root" || a.starts_with("--root="));
    let dir = match cli.root.as_ref().filter(|_| given) {
        Some(r) => client_path(&r.display().to_string(), home)
            .map_err(|why| refuse(&format!("`{shown}`"), &why))?,
        None => home.to_path_buf(),
    };
    let root = Root::new(&dir)?;
    if root.ensure_exists().is_err() || !root.config_file().is_file() {
        return Err(refuse(
            &format!("`{shown}`"),
            &format!(
                "{} is not a symdeploy deploy root (name one with --root)",
                root.dir.display()
            ),
        ));
    }
    authorize(name, &root, role, what)?;
    // The root made explicit and absolute: the child runs in the home.
    let mut out = vec!["--root".to_string(), root.dir.display().to_string()];
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--root" {
            skip = true;
            continue;
        }
        if a.starts_with("--root=") {
            continue;
        }
        out.push(a.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_split_like_a_shell_without_its_powers() {
        assert_eq!(
            split("git-receive-pack '/srv/my app/repository'").unwrap(),
            vec!["git-receive-pack", "/srv/my app/repository"]
        );
        assert_eq!(
            split(r#"a "b \"c\"" d\ e"#).unwrap(),
            vec!["a", "b \"c\"", "d e"]
        );
        for bad in [
            "id; rm -rf /",
            "a | b",
            "a && b",
            "echo $(id)",
            "echo `id`",
            "a > /etc/x",
            "rm -rf /*",
            "\"$HOME\"",
            "'open",
        ] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_stay_plain() {
        let home = Path::new("/home/deploy");
        assert_eq!(
            client_path("srv/repository", home).unwrap(),
            Path::new("/home/deploy/srv/repository")
        );
        assert_eq!(
            client_path("/srv/app/repository", home).unwrap(),
            Path::new("/srv/app/repository")
        );
        assert_eq!(
            client_path("~/app/repository", home).unwrap(),
            Path::new("/home/deploy/app/repository")
        );
        assert!(client_path("/srv/app/../../etc", home).is_err());
        assert!(client_path("~nobody-else-here/x", home).is_err());
        assert!(client_path("", home).is_err());
    }

    #[test]
    fn only_git_and_symdeploy_pass() {
        let home = Path::new("/nonexistent-home");
        for (req, says) in [
            ("", "interactive login"),
            ("id", "`id` is not git's push or fetch"),
            ("rm -rf /", "`rm` is not git's push or fetch"),
            (
                "git-receive-pack '/etc'",
                "is not the repository of a symdeploy deploy root",
            ),
            ("git-receive-pack '/srv/../etc/repository'", "contains `..`"),
            (
                "git-upload-archive '/srv/app/repository'",
                "not git's push or fetch",
            ),
            ("symdeploy keys add x /tmp/k", "for the server's operator"),
            ("symdeploy export HEAD /tmp/x", "for the server's operator"),
            ("symdeploy init /tmp/x", "for the server's operator"),
            ("symdeploy shell lead", "for the server's operator"),
            ("symdeploy --root /srv/../etc status", "contains `..`"),
            ("bash -c id", "`bash` is not"),
        ] {
            let e = parse("ci", req, home).unwrap_err().to_string();
            assert!(e.contains(says) && e.starts_with("refused: "), "{req}: {e}");
        }
    }
}
