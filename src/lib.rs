//! symdeploy: push-to-deploy with atomic symlink flips.
//!
//! The data takes one road: push → hook → lock → export → shared links →
//! steps → flip → journal. Each module below owns one idea of the design;
//! `ops` composes them into the commands.
//!
//! The binary is the product: everything here is crate-private, so the
//! compiler reports dead code; `main` is the one entry point.

#![deny(missing_docs)]

mod cli;
mod ctx;
mod deploy;
mod error;
mod hook;
mod housekeeping;
mod ops;
mod session;
mod state;
mod sys;

use cli::{Cli, Command, HookName};
use ctx::Ctx;
use error::Result;
use state::config::HookKind;
use state::root::Root;

/// Run one parsed command line.
fn run(cli: Cli) -> Result<()> {
    let root_arg = cli.root.as_deref();
    let ctx = || -> Result<Ctx> { Ctx::load(Root::locate(root_arg)?) };
    match cli.command {
        Command::Init { dir, strict, user } => ops::init::run(&dir, strict, user.as_deref()),
        Command::Generate { what, dir } => ops::generate::run(what, &dir),
        Command::Hook { name, state } => match name {
            HookName::PostReceive => hook::run(HookKind::PostReceive),
            HookName::PreReceive => hook::run(HookKind::PreReceive),
            HookName::ReferenceTransaction => {
                hook::strict::reference_transaction(state.as_deref().unwrap_or_default())
            }
        },
        Command::Warmup { rebuild, rev } => ops::warmup::run(&ctx()?, rev.as_deref(), rebuild),
        Command::Promote {
            dry_run,
            json: true,
            rev,
        } => deploy::switch_report::report(&ctx()?, state::journal::Event::Promote, |c| {
            ops::promote::run(c, rev.as_deref(), dry_run)
        }),
        Command::Promote { dry_run, rev, .. } => {
            ops::promote::run(&ctx()?, rev.as_deref(), dry_run)
        }
        Command::Rollback {
            json: true,
            release,
            force,
        } => deploy::switch_report::report(&ctx()?, state::journal::Event::Rollback, |c| {
            ops::rollback::run(c, release.as_deref(), force)
        }),
        Command::Rollback { release, force, .. } => {
            ops::rollback::run(&ctx()?, release.as_deref(), force)
        }
        Command::Verify {
            release,
            all,
            metadata,
            from_commit,
            json,
        } => ops::verify::run(
            &ctx()?,
            release.as_deref(),
            ops::verify::Asked {
                all,
                metadata,
                from_commit,
                json,
            },
        ),
        // Not through ctx(): status must work with a broken deploy.toml.
        Command::Status {
            json,
            check,
            prometheus,
        } => ops::status::run(Root::locate(root_arg)?, json, check, prometheus),
        Command::Releases { json } => ops::releases::run(&ctx()?, json),
        Command::Cleanup {
            keep,
            dry_run,
            background,
        } => ops::cleanup::run(&ctx()?, keep, dry_run, background),
        Command::Preview { command } => match command {
            cli::PreviewCommand::List { json } => ops::preview::run_list(&ctx()?, json),
            cli::PreviewCommand::Rm { slug, data } => ops::preview::run_rm(&ctx()?, &slug, data),
        },
        Command::Log { n, all, json } => ops::log::run(&ctx()?, n, all, json),
        Command::Check => ops::check::run(&Root::new(
            &root_arg.map(Into::into).unwrap_or(
                std::env::current_dir()
                    .map_err(|e| error::Error::io("read", "the current directory", e))?,
            ),
        )?),
        Command::Recover => ops::recover::run(&ctx()?),
        Command::Export { repo, rev, dir } => {
            ops::export::run(repo.as_deref(), root_arg, &rev, &dir)
        }
    }
}

/// The binary's entry point: parse the command line, set up logging, run,
/// and turn an error into an operator's message and an exit code.
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = Cli::parse();
    if cli.command.only_reads() {
        // `symdeploy status | head` must end quietly like any Unix filter,
        // not panic on a closed pipe. Only for commands that change nothing:
        // a deploy must outlive a pusher who hung up.
        // SAFETY: single-threaded here, and SIG_DFL installs no handler code.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
    }
    sys::output::init_tracing();
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            if !e.is_reported() {
                sys::output::report(&e);
            }
            e.exit_code()
        }
    };
    sys::output::close_log();
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
