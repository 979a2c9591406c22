//! `symdeploy init ROOT`: the layout, the bare repository, its hook and a
//! commented deploy.toml. It never overwrites a hook or a deploy.toml.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::config::{Config, HookKind, TEMPLATE};
use crate::error::{Error, IoContext, Result};
use crate::output;
use crate::root::Root;

const POST_RECEIVE: &str = include_str!("../../hooks/post-receive");
const PRE_RECEIVE: &str = include_str!("../../hooks/pre-receive");
const REFERENCE_TRANSACTION: &str = include_str!("../../hooks/reference-transaction");

/// Create or complete the deploy root at `dir`.
pub fn run(dir: &Path, strict: bool) -> Result<()> {
    std::fs::create_dir_all(dir).at("create directory", dir)?;
    let root = Root::new(dir)?;
    let mut did: Vec<String> = Vec::new();

    let config_path = root.config_file();
    // A dangling symlink is kept (and refused by the load below), never written through.
    if std::fs::symlink_metadata(&config_path).is_ok() {
        did.push(format!("kept the existing {}", config_path.display()));
    } else {
        let text = if strict {
            TEMPLATE.replace("hook = \"post-receive\"", "hook = \"pre-receive\"")
        } else {
            TEMPLATE.to_string()
        };
        std::fs::write(&config_path, text).at("write", &config_path)?;
        did.push(format!(
            "wrote {} (every key, with comments)",
            config_path.display()
        ));
    }
    let config = Config::load(&config_path)?;
    let hook_kind = if strict {
        HookKind::PreReceive
    } else {
        config.hook
    };
    if strict && config.hook != HookKind::PreReceive {
        // The kept deploy.toml is the user's; say what to change rather than edit it.
        output::warning(&format!(
            "{} says hook = \"{}\": add hook = \"pre-receive\" to it (above the first [section]), or pushes will warn and `symdeploy check` will look for the wrong hook",
            config_path.display(),
            config.hook.file_name()
        ));
    }

    for d in [root.releases(), root.common()] {
        std::fs::create_dir_all(&d).at("create directory", &d)?;
    }
    root.ensure_state_dirs()?;

    let repo_dir = root.repository();
    if repo_dir.join("HEAD").exists() {
        did.push(format!(
            "kept the existing repository {}",
            repo_dir.display()
        ));
    } else {
        gix::init_bare(&repo_dir).map_err(|e| {
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
    configure_repository(&repo_dir)?;

    let binary = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .at("find", "the symdeploy binary")?;
    let hooks = repo_dir.join("hooks");
    std::fs::create_dir_all(&hooks).at("create directory", &hooks)?;
    let (name, template) = match hook_kind {
        HookKind::PostReceive => ("post-receive", POST_RECEIVE),
        HookKind::PreReceive => ("pre-receive", PRE_RECEIVE),
    };
    let hook_path = hooks.join(name);
    let wanted = template.replace("@SYMDEPLOY@", &shell_quote(&binary.display().to_string()));
    match std::fs::read_to_string(&hook_path) {
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
    if hook_kind == HookKind::PreReceive {
        // Strict mode's second half; an existing strict root gets it here.
        let path = hooks.join("reference-transaction");
        let wanted = REFERENCE_TRANSACTION
            .replace("@SYMDEPLOY@", &shell_quote(&binary.display().to_string()));
        match std::fs::read_to_string(&path) {
            Ok(existing) if existing == wanted => did.push(format!("kept {}", path.display())),
            Ok(_) => output::warning(&format!(
                "{} exists and differs from symdeploy's; strict pushes are refused until it calls `symdeploy hook reference-transaction \"$1\"` (remove it and run init again)",
                path.display()
            )),
            Err(_) => {
                std::fs::write(&path, wanted).at("write", &path)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .at("make executable", &path)?;
                did.push(format!("installed {}", path.display()));
            }
        }
    }
    let other = hooks.join(match hook_kind {
        HookKind::PostReceive => "pre-receive",
        HookKind::PreReceive => "post-receive",
    });
    if std::fs::read_to_string(&other).is_ok_and(|t| {
        t.contains("symdeploy hook")
            || t.contains(" hook post-receive")
            || t.contains(" hook pre-receive")
    }) {
        output::warning(&format!(
            "{} also calls symdeploy; remove it so that each push deploys once",
            other.display()
        ));
    }

    for (name, target) in &config.links {
        if std::fs::symlink_metadata(root.link(name)).is_err() {
            crate::link::flip(&root.dir, name, target)?;
        }
    }

    for line in &did {
        output::detail(line);
    }
    output::success(&format!("deploy root ready at {}", root.dir.display()));
    output::line("next, from your project's clone:");
    output::line(&format!(
        "       git remote add deploy {}        (or ssh://USER@HOST{} from another machine)",
        repo_dir.display(),
        repo_dir.display()
    ));
    output::line(&format!("       git push deploy {}", config.branch));
    Ok(())
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

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
