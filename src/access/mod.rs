//! Who deploys, and what they may do.
//!
//! One system user serves everyone; each SSH key carries a forced command
//! (`symdeploy shell NAME`, see `crate::shell`) that names the person and
//! hands the name down in `SYMDEPLOY_BY`. Everything that records or
//! authorizes reads the name from here. `[access]` in deploy.toml gives
//! roles per root; without it everyone may do everything (names are still
//! recorded). Release tags can be required to carry a good SSH signature
//! (`promote.signers`), which git itself verifies.

pub(crate) mod keys;
pub(crate) mod shell;

use std::path::{Path, PathBuf};

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::hook::push::{Action, RefUpdate};
use crate::state::commit::Commit;
pub(crate) use crate::sys::deployer::{
    named, parse_good, set_authority, valid_name, Authority, Role, Roles, Signature, BY_VAR,
};

/// The person to authorize, when `[access]` is set: the forced command's
/// name; a local user (no SSH) is the operator of the deploy user itself and
/// passes under the Unix name; an SSH session without a name came through a
/// key without symdeploy's forced command and is refused.
fn person(roles: &Roles) -> std::result::Result<Option<String>, Error> {
    if let Some(n) = named() {
        return Ok(Some(n));
    }
    if std::env::var_os("SSH_CONNECTION").is_some() || std::env::var_os("SSH_CLIENT").is_some() {
        return Err(Error::with_help(
            format!(
                "refused: this SSH key carries no name, and deploy.toml's [access] only lets named deployers in ({}); nothing was changed",
                roles.holders(Role::Read)
            ),
            "give each key its name on the server: `symdeploy keys add NAME KEYFILE` (it writes the forced command `symdeploy shell NAME`)",
        ));
    }
    Ok(None)
}

/// Refuse unless whoever runs this may do what needs `role` in `ctx`'s root.
/// `what` says what was asked, for the message.
pub(crate) fn require(ctx: &Ctx, role: Role, what: &str) -> Result<()> {
    let Some(roles) = &ctx.config.access else {
        return Ok(());
    };
    let Some(name) = person(roles)? else {
        return Ok(());
    };
    if roles.allows(&name, role) {
        return Ok(());
    }
    Err(refusal(roles, &name, role, what))
}

fn refusal(roles: &Roles, name: &str, role: Role, what: &str) -> Error {
    Error::with_help(
        format!(
            "refused: {name} may not {what}: that needs the {} role, which deploy.toml's [access] gives to {}; nothing was changed",
            role.key(),
            roles.holders(role)
        ),
        format!(
            "ask someone with that role, or have the server's operator add {name} to [access] {} in deploy.toml",
            if role == Role::Read { "push" } else { role.key() }
        ),
    )
}

/// What one ref update of a push needs.
pub(crate) fn needed(ctx: &Ctx, update: &RefUpdate, promote_option: bool) -> (Role, String) {
    let name = crate::sys::output::escape(&update.name);
    match crate::hook::push::route(ctx, update) {
        Action::Promote if update.is_deletion() => (Role::Release, format!("delete {name}")),
        Action::Promote => (Role::Release, format!("push {name} (a release tag)")),
        Action::Warmup if promote_option => (
            Role::Release,
            format!("push {name} with -o promote (it moves production)"),
        ),
        Action::Warmup => (Role::Push, format!("push {name}")),
        _ if update.is_deletion() => (Role::Push, format!("delete {name}")),
        _ => (Role::Push, format!("push {name}")),
    }
}

/// The check git runs before any ref moves (pre-receive, in both modes):
/// every update must be allowed for the pusher, and with `promote.signers`
/// every promote must come with a good signature. One refused update
/// refuses the whole push, so nothing moves.
pub(crate) fn check_push(ctx: &Ctx, updates: &[RefUpdate], options: &[String]) -> Result<()> {
    let promote_option = options.iter().any(|o| o == "promote");
    let unsigned_option = options.iter().any(|o| o == "unsigned");
    if let Some(roles) = &ctx.config.access {
        if let Some(name) = person(roles)? {
            let refused: Vec<(Role, String)> = updates
                .iter()
                .map(|u| needed(ctx, u, promote_option))
                .filter(|(role, _)| !roles.allows(&name, *role))
                .collect();
            if let Some((role, what)) = refused.first() {
                let mut what = what.clone();
                if refused.len() > 1 {
                    what.push_str(&format!(" (and {} more refs)", refused.len() - 1));
                }
                return Err(refusal(roles, &name, *role, &what));
            }
        }
    }
    let Some(signers) = signers_file(ctx) else {
        return Ok(());
    };
    for update in updates.iter().filter(|u| !u.is_deletion()) {
        match crate::hook::push::route(ctx, update) {
            Action::Promote => {
                verify_tag(&ctx.root.repository(), &signers, &update.new, &update.name)?;
            }
            Action::Warmup if promote_option => {
                if unsigned_option {
                    crate::sys::output::warning(&format!(
                        "-o unsigned: promoting {} without a signed release tag (the journal records it)",
                        crate::state::root::short(&update.new)
                    ));
                    continue;
                }
                let Some(commit) = peeled(&ctx.root.repository(), &update.new) else {
                    return Err(Error::with_help(
                        format!(
                            "refused: -o promote of {}: its commit cannot be read, so its release tag cannot be checked; nothing was changed",
                            crate::sys::output::escape(&update.name)
                        ),
                        "push again; if it persists, run `symdeploy check` on the server",
                    ));
                };
                let in_push = updates.iter().any(|u| {
                    !u.is_deletion()
                        && matches!(crate::hook::push::route(ctx, u), Action::Promote)
                        && peeled(&ctx.root.repository(), &u.new) == Some(commit)
                });
                if !in_push && signed_tag_of(ctx, &signers, commit).is_none() {
                    return Err(unsigned_refusal(
                        commit,
                        "-o promote",
                        "git push -o promote -o unsigned",
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The refusal of a promote without a signed release tag.
pub(crate) fn unsigned_refusal(commit: Commit, how: &str, override_: &str) -> Error {
    Error::with_help(
        format!(
            "refused: {how} of {} needs a release tag on it with a good signature (promote.signers is set in deploy.toml); nothing was changed",
            commit.short()
        ),
        format!(
            "push a signed tag instead (`git tag -s release-N {}` with gpg.format = ssh, then `git push deploy release-N`), or, with the release role, `{override_}` (recorded as unsigned)",
            commit.short()
        ),
    )
}

/// The allowed-signers file `promote.signers` names, made absolute.
pub(crate) fn signers_file(ctx: &Ctx) -> Option<PathBuf> {
    let s = ctx.config.promote.signers.as_ref()?;
    Some(if s.is_absolute() {
        s.clone()
    } else {
        ctx.root.dir.join(s)
    })
}

/// Verify that `object` (what the ref `name` points at) is an annotated tag
/// named like the ref, with a good SSH signature by a principal of
/// `signers`. Git does the cryptography (`git verify-tag`); the refusal
/// carries the reason git gave.
pub(crate) fn verify_tag(
    git_dir: &Path,
    signers: &Path,
    object: &str,
    name: &str,
) -> Result<Signature> {
    let escaped = crate::sys::output::escape(name);
    let refuse = |why: String| {
        Error::with_help(
            format!("refused: {escaped} is not a release symdeploy may promote: {why}; nothing was changed"),
            format!(
                "sign the tag with a key listed in {} (`git config gpg.format ssh`, `git config user.signingKey ~/.ssh/id_ed25519.pub`, `git tag -s {}`), then push it",
                signers.display(),
                name.strip_prefix("refs/tags/").unwrap_or(name)
            ),
        )
    };
    if !signers.is_file() {
        return Err(Error::with_help(
            format!(
                "refused: promote.signers names {}, which is not a file; nothing was changed",
                signers.display()
            ),
            "write the allowed-signers file (one `PRINCIPAL KEY` line per signer, e.g. `lead ssh-ed25519 AAAA…`) or remove promote.signers from deploy.toml",
        ));
    }
    let kind = git(git_dir, &["cat-file", "-t", object])?;
    if kind.0.trim() != "tag" {
        return Err(refuse(
            "it is a lightweight tag (no tag object, so no signature)".into(),
        ));
    }
    let (body, _, _) = git(git_dir, &["cat-file", "tag", object])?;
    let tag_name = body
        .lines()
        .find_map(|l| l.strip_prefix("tag "))
        .unwrap_or_default();
    let short = name.strip_prefix("refs/tags/").unwrap_or(name);
    if tag_name != short {
        return Err(refuse(format!(
            "the signed tag object is named \"{}\", not \"{short}\" (a signed tag reused under another name)",
            crate::sys::output::escape(tag_name)
        )));
    }
    let allowed = format!("gpg.ssh.allowedSignersFile={}", signers.display());
    let (out, err, ok) = git(
        git_dir,
        &[
            "-c",
            "gpg.format=ssh",
            "-c",
            &allowed,
            "verify-tag",
            "--raw",
            object,
        ],
    )?;
    let said = format!("{out}\n{err}");
    match parse_good(&said) {
        Some(sig) if ok => Ok(sig),
        _ => {
            let reason = said
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            Err(refuse(format!(
                "git verify-tag says: {}",
                if reason.is_empty() {
                    "no good signature".to_string()
                } else {
                    crate::sys::output::escape(&reason).into_owned()
                }
            )))
        }
    }
}

/// The commit an object peels to (tags followed), by git.
fn peeled(git_dir: &Path, object: &str) -> Option<Commit> {
    let (out, _, ok) = git(
        git_dir,
        &[
            "rev-parse",
            "--verify",
            "-q",
            &format!("{object}^{{commit}}"),
        ],
    )
    .ok()?;
    ok.then(|| Commit::parse_stored(out.trim())).flatten()
}

/// A release tag already in the repository on `commit` with a good signature.
pub(crate) fn signed_tag_of(
    ctx: &Ctx,
    signers: &Path,
    commit: Commit,
) -> Option<(String, Signature)> {
    let git_dir = ctx.root.repository();
    let (out, _, ok) = git(
        &git_dir,
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            &format!("--points-at={commit}"),
            "refs/tags/",
        ],
    )
    .ok()?;
    if !ok {
        return None;
    }
    out.lines().find_map(|l| {
        let (object, name) = l.split_once(' ')?;
        let short = name.strip_prefix("refs/tags/")?;
        if !ctx.config.is_promote_tag(short) {
            return None;
        }
        verify_tag(&git_dir, signers, object, name)
            .ok()
            .map(|s| (name.to_string(), s))
    })
}

/// Run git on `git_dir`, isolated from the machine's and the user's git
/// configuration (a global `gpg.ssh.allowedSignersFile` must not widen
/// who may sign). Returns stdout, stderr and success.
fn git(git_dir: &Path, args: &[&str]) -> Result<(String, String, bool)> {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            Error::with_help(
                format!("cannot run git to verify a release tag: {e}"),
                "install git on the server (it verifies the signatures)",
            )
        })?;
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    ))
}

/// The refusal [`authorize_promote`] would give, checked before any lock or
/// log is taken (a refusal changes nothing); says nothing when it passes.
pub(crate) fn precheck_promote(ctx: &Ctx, commit: Commit, unsigned: bool) -> Result<()> {
    let Some(signers) = signers_file(ctx) else {
        return Ok(());
    };
    if unsigned || signed_tag_of(ctx, &signers, commit).is_some() {
        return Ok(());
    }
    Err(unsigned_refusal(
        commit,
        "symdeploy promote",
        "symdeploy promote --unsigned",
    ))
}

/// Before a promote of `commit` runs: with `promote.signers`, find its good
/// signature (on `tag`, the pushed release tag's object and ref, else on any
/// release tag of the repository on the commit) or accept `unsigned`, and
/// remember which for the journal. `how` and `override_` word the refusal.
pub(crate) fn authorize_promote(
    ctx: &Ctx,
    commit: Commit,
    tag: Option<(&str, &str)>,
    unsigned: bool,
    how: &str,
    override_: &str,
) -> Result<()> {
    let Some(signers) = signers_file(ctx) else {
        return Ok(());
    };
    let signer = match tag {
        Some((object, name)) => Some(verify_tag(&ctx.root.repository(), &signers, object, name)?),
        None => signed_tag_of(ctx, &signers, commit).map(|(_, s)| s),
    };
    match signer {
        Some(s) => {
            crate::sys::output::detail(&format!("release tag signed by {s}"));
            set_authority(Authority {
                signer: Some(s),
                unsigned: false,
            });
        }
        None if unsigned => {
            crate::sys::output::warning(&format!(
                "promoting {} without a signed release tag, as asked (the journal records it as unsigned)",
                commit.short()
            ));
            set_authority(Authority {
                signer: None,
                unsigned: true,
            });
        }
        None => return Err(unsigned_refusal(commit, how, override_)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::state::config::parse_str;

    #[test]
    fn access_and_signers_are_read_and_checked() {
        let c = parse_str(
            "[promote]\nsigners = \"allowed\"\n[access]\npush = [\"ci\", \"lead\"]\nrelease = [\"lead\"]\n",
            Path::new("deploy.toml"),
            None,
        )
        .unwrap();
        let roles = c.access.unwrap();
        assert_eq!(roles.push, vec!["ci", "lead"]);
        assert_eq!(roles.release, vec!["lead"]);
        assert_eq!(c.promote.signers.as_deref(), Some(Path::new("allowed")));
        // absent: today's behaviour
        let c = parse_str("", Path::new("deploy.toml"), None).unwrap();
        assert!(c.access.is_none() && c.promote.signers.is_none());
        for (bad, says) in [
            ("[access]\npush = [\"a b\"]\n", "is not a deployer's name"),
            ("[access]\nadmin = [\"x\"]\n", "unknown field"),
            (
                "[promote]\nsigners = \" \"\n",
                "must name an SSH allowed-signers file",
            ),
        ] {
            let e = parse_str(bad, Path::new("deploy.toml"), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
