//! `symdeploy check`: a newcomer's first command and an operator's doctor.
//! Every finding says what to do; any error makes the exit code non-zero.

use std::os::unix::fs::PermissionsExt;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::root::Root;

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
pub fn run(root: &Root) -> Result<()> {
    let mut r = Report {
        errors: 0,
        warnings: 0,
    };
    let config = match Config::load(&root.config_file()) {
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
    };

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
    for d in [root.releases(), root.common(), root.state_dir()] {
        match writable(&d) {
            Ok(()) => r.say(Level::Ok, &format!("{} is writable", d.display())),
            Err(why) => r.say(Level::Error, &format!("{} {why}", d.display())),
        }
    }

    if let Some(c) = &config {
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
                    None => r.say(Level::Warn, &format!("{} does not look like symdeploy's hook; check that it runs `symdeploy hook {}`", hook.display(), c.hook.file_name())),
                }
            }
        }
        if c.hook == crate::config::HookKind::PreReceive {
            // Strict mode's second half (issue 14): without it strict pushes are refused.
            let rt = repo.join("hooks/reference-transaction");
            if crate::strict::hook_installed(root) {
                r.say(Level::Ok, &format!("{} flips strict pushes", rt.display()));
            } else {
                r.say(Level::Error, &format!("{} is missing or not symdeploy's: strict pushes are refused; run `symdeploy init {}`", rt.display(), root.dir.display()));
            }
        }
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
        ];
        for (key, cmds) in all {
            for cmd in cmds.iter() {
                if crate::steps::program_on_path(cmd) == Some(false) {
                    let prog = cmd.split_whitespace().next().unwrap_or_default();
                    r.say(Level::Error, &format!("{key}: `{prog}` (in \"{cmd}\") is not on PATH; install it or change the command"));
                }
            }
        }
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
    for name in [crate::root::PRODUCTION, crate::root::WARMUP] {
        if let Some(c) = root.pointed_release(name) {
            if crate::release::is_ready(root, &c) {
                r.say(Level::Ok, &format!("{name} -> releases/{c} (ready)"));
            } else {
                r.say(
                    Level::Error,
                    &format!(
                        "{name} points at releases/{c}, which is {}",
                        crate::release::effective_state(root, &c)
                    ),
                );
            }
        }
    }
    if let Some(h) = crate::lock::holder(root) {
        r.say(Level::Warn, &format!("the deploy lock is held by {h}"));
    }
    println!("{} errors, {} warnings", r.errors, r.warnings);
    if r.errors > 0 {
        Err(Error::Reported { code: 1 })
    } else {
        Ok(())
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
