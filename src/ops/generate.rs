//! `symdeploy generate man|completions DIR` (hidden): the man page and the
//! shell completions, written from the clap definitions in `cli.rs`, so they
//! can never drift from the binary. `scripts/build-deb` runs it before
//! `cargo deb`; a from-source install can run it too.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, Generated};
use crate::error::{IoContext, Result};

/// Write the requested files into `dir`.
pub(crate) fn run(what: Generated, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).at("create directory", dir)?;
    let cmd = Cli::command();
    match what {
        Generated::Man => {
            let path = dir.join("symdeploy.1");
            let mut out = Vec::new();
            let man = clap_mangen::Man::new(cmd.clone());
            // Not `render()`: its SUBCOMMANDS section points at symdeploy-<sub>(1)
            // pages; one page holds everything instead.
            man.render_title(&mut out).at("render", &path)?;
            man.render_name_section(&mut out).at("render", &path)?;
            out.extend_from_slice(synopsis(&cmd, "symdeploy").as_bytes());
            man.render_description_section(&mut out)
                .at("render", &path)?;
            man.render_options_section(&mut out).at("render", &path)?;
            // One page for the whole tool: the subcommands, each with its flags.
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let name = sub.get_name();
                out.extend_from_slice(
                    format!(".SH \"SYMDEPLOY {}\"\n", name.to_uppercase()).as_bytes(),
                );
                let sub = sub
                    .clone()
                    .bin_name(format!("symdeploy {name}"))
                    .display_name(format!("symdeploy {name}"));
                out.extend_from_slice(synopsis(&sub, &format!("symdeploy {name}")).as_bytes());
                let man = clap_mangen::Man::new(sub);
                man.render_description_section(&mut out)
                    .at("render", &path)?;
                man.render_options_section(&mut out).at("render", &path)?;
            }
            man.render_version_section(&mut out).at("render", &path)?;
            std::fs::write(&path, out).at("write", &path)?;
            println!("{}", path.display());
        }
        Generated::Completions => {
            use clap_complete::Shell;
            for (shell, file) in [
                (Shell::Bash, "symdeploy.bash"),
                (Shell::Zsh, "_symdeploy"),
                (Shell::Fish, "symdeploy.fish"),
            ] {
                let path = dir.join(file);
                let mut out = Vec::new();
                clap_complete::generate(shell, &mut cmd.clone(), "symdeploy", &mut out);
                std::fs::write(&path, out).at("write", &path)?;
                println!("{}", path.display());
            }
        }
    }
    Ok(())
}

/// A SYNOPSIS section that shows what each flag takes (`--user NAME`), which
/// clap_mangen's leaves out (`[--user]`): the argument's value name, or its
/// possible values for an enum.
fn synopsis(cmd: &clap::Command, name: &str) -> String {
    let roff = |s: &str| s.replace('-', "\\-");
    let mut words = Vec::new();
    let args = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"));
    for arg in args {
        let value = {
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_string())
                .collect();
            if !possible.is_empty() {
                possible.join("|")
            } else {
                arg.get_value_names()
                    .and_then(|n| n.first())
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
            }
        };
        let word = if arg.is_positional() {
            format!("\\fI{}\\fR", roff(&value))
        } else {
            let flag = match (arg.get_short(), arg.get_long()) {
                (_, Some(long)) => format!("\\fB\\-\\-{}\\fR", roff(long)),
                (Some(short), None) => format!("\\fB\\-{short}\\fR"),
                (None, None) => continue,
            };
            if arg.get_action().takes_values() {
                format!("{flag} \\fI{}\\fR", roff(&value))
            } else {
                flag
            }
        };
        words.push(if arg.is_required_set() {
            word
        } else {
            format!("[{word}]")
        });
    }
    if cmd.has_subcommands() {
        words.push("\\fICOMMAND\\fR".to_string());
    }
    format!(".SH SYNOPSIS\n.B {}\n{}\n", roff(name), words.join(" "))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_synopsis_shows_what_each_flag_takes() {
        let cmd = crate::cli::Cli::command();
        let top = super::synopsis(&cmd, "symdeploy");
        assert!(top.contains(r"[\fB\-\-root\fR \fIROOT\fR]"), "{top}");
        let find = |name: &str| cmd.find_subcommand(name).unwrap().clone();
        let init = super::synopsis(&find("init"), "symdeploy init");
        assert_eq!(
            init,
            ".SH SYNOPSIS\n.B symdeploy init\n\\fIDIR\\fR [\\fB\\-\\-strict\\fR] [\\fB\\-\\-user\\fR \\fINAME\\fR]\n"
        );
        let cleanup = super::synopsis(&find("cleanup"), "symdeploy cleanup");
        assert!(cleanup.contains(r"[\fB\-\-keep\fR \fIN\fR]"), "{cleanup}");
        let log = super::synopsis(&find("log"), "symdeploy log");
        assert!(log.contains(r"[\fB\-n\fR \fIN\fR]"), "{log}");
        let hook = super::synopsis(&find("hook"), "symdeploy hook");
        assert!(
            hook.contains(r"\fIpost\-receive|pre\-receive|reference\-transaction|access\fR"),
            "{hook}"
        );
    }
}
