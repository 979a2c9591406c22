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
            man.render_synopsis_section(&mut out).at("render", &path)?;
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
                let man = clap_mangen::Man::new(sub);
                man.render_synopsis_section(&mut out).at("render", &path)?;
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
