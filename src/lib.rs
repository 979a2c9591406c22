//! symdeploy: push-to-deploy with atomic symlink flips.
//!
//! The data takes one road: push → hook → lock → export → shared links →
//! steps → flip → journal. Each module below owns one idea of the design;
//! `ops` composes them into the commands.
//!
//! The binary is the product: everything here is crate-private, so the
//! compiler reports dead code; `main` is the one entry point.
//!
//! "The seed", where comments say so, is the design symdeploy grew from: a
//! push-to-deploy write-up for PHP (Nette) applications whose deploy-root
//! layout (`repository`, `releases/`, `common/`, `warmup`, `www_warmup`,
//! `production`, `www`, `app`) and order of warm-up steps are symdeploy's
//! contract. `state::root` holds that layout.

#![deny(missing_docs)]

mod access;
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

use cli::{Cli, Command};
use ctx::Ctx;
use error::Result;
use state::config::Hook;
use state::root::Root;
use std::process::ExitCode;

/// Run one parsed command line.
fn run(cli: Cli) -> Result<ExitCode> {
    let root_arg = cli.root.as_deref();
    let ctx = || -> Result<Ctx> { Ctx::load(Root::locate(root_arg)?) };
    // Most commands succeed or fail whole; the hooks, `status --check` and
    // `check` render what they found themselves and return the exit code.
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Init { dir, strict, user } => done(ops::init::run(&dir, strict, user.as_deref())),
        Command::Generate { what, dir } => done(ops::generate::run(what, &dir)),
        Command::Hook { name, state } => match name {
            Hook::PostReceive | Hook::PreReceive => hook::run(name),
            Hook::Access => hook::access(),
            Hook::ReferenceTransaction => {
                hook::strict::reference_transaction(state.as_deref().unwrap_or_default())
            }
        },
        Command::Warmup { rebuild, rev } => {
            done(ops::warmup::run(&ctx()?, rev.as_deref(), rebuild))
        }
        Command::Promote {
            dry_run,
            json: true,
            unsigned,
            rev,
            keep_schema,
        } => done(deploy::switch_report::report(
            &ctx()?,
            state::journal::Event::Promote,
            |c| ops::promote::run(c, rev.as_deref(), dry_run, unsigned, keep_schema),
        )),
        Command::Promote {
            dry_run,
            rev,
            unsigned,
            keep_schema,
            ..
        } => done(ops::promote::run(
            &ctx()?,
            rev.as_deref(),
            dry_run,
            unsigned,
            keep_schema,
        )),
        Command::Rollback {
            json: true,
            release,
            keep_schema,
            force,
        } => done(deploy::switch_report::report(
            &ctx()?,
            state::journal::Event::Rollback,
            |c| ops::rollback::run(c, release.as_deref(), keep_schema, force),
        )),
        Command::Rollback {
            release,
            keep_schema,
            force,
            ..
        } => done(ops::rollback::run(
            &ctx()?,
            release.as_deref(),
            keep_schema,
            force,
        )),
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
        Command::Releases { json } => done(ops::releases::run(&ctx()?, json)),
        Command::Cleanup {
            keep,
            dry_run,
            background,
        } => done(ops::cleanup::run(&ctx()?, keep, dry_run, background)),
        Command::Preview { command } => done(match command {
            cli::PreviewCommand::List { json } => ops::preview::run_list(&ctx()?, json),
            cli::PreviewCommand::Rm { slug, data } => ops::preview::run_rm(&ctx()?, &slug, data),
        }),
        Command::Watch { command } => done(match command {
            cli::WatchCommand::Stop => deploy::watch::stop(&ctx()?),
            cli::WatchCommand::Run { run } => deploy::watch::run(&ctx()?, &run),
        }),
        Command::Keys {
            authorized_keys,
            command,
        } => {
            let file = authorized_keys.as_deref();
            done(match command {
                cli::KeysCommand::Add { name, key } => access::keys::add(file, &name, &key),
                cli::KeysCommand::List => access::keys::list(file),
                cli::KeysCommand::Rm { name } => access::keys::rm(file, &name),
            })
        }
        Command::Shell { name } => done(access::shell::run(&name)),
        Command::Log { n, all, json } => done(ops::log::run(&ctx()?, n, all, json)),
        Command::Check => ops::check::run(&Root::new(
            &root_arg.map(Into::into).unwrap_or(
                std::env::current_dir()
                    .map_err(|e| error::Error::io("read", "the current directory", e))?,
            ),
        )?),
        Command::Recover => done(ops::recover::run(&ctx()?)),
        Command::Report { html, n } => done(ops::report::run(&ctx()?, &html, n)),
        Command::Export { repo, rev, dir } => {
            done(ops::export::run(repo.as_deref(), root_arg, &rev, &dir))
        }
    }
}

/// The binary's entry point: parse the command line, set up logging, run,
/// and turn an error into an operator's message and an exit code.
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    // Before any thread exists (see there why): a deploy's export then
    // never waits for the kernel to grow the descriptor table.
    symdeploy_export::reserve_descriptors();
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
    sys::color::choose(cli.color, matches!(cli.command, Command::Hook { .. }));
    let refresh = cli
        .command
        .changes_root()
        .then(|| (cli.root.clone(), hook_state(&cli.command)));
    // The one place a command's error is printed (a hook's runs end theirs
    // in `session::close_run`, one run per ref).
    let code = run(cli).unwrap_or_else(|e| {
        sys::output::report(&e);
        error::exit(e.exit_code())
    });
    if let Some((root_arg, hook)) = refresh {
        refresh_report(root_arg.as_deref(), hook);
    }
    sys::output::close_log();
    code
}

/// For a hook: whether it is one after which the root may have changed (a
/// reference-transaction's `prepared` leaves that to `committed`/`aborted`).
fn hook_state(command: &Command) -> Option<bool> {
    match command {
        Command::Hook {
            name: Hook::ReferenceTransaction,
            state,
        } => Some(matches!(
            state.as_deref().map(str::parse),
            Some(Ok(
                hook::pending::TxnState::Committed | hook::pending::TxnState::Aborted
            ))
        )),
        Command::Hook { .. } => Some(true),
        _ => None,
    }
}

/// After a run: the HTML report deploy.toml's `report` asks for. The hooks
/// find their root through GIT_DIR, the commands through --root.
fn refresh_report(root_arg: Option<&std::path::Path>, hook: Option<bool>) {
    let root = match hook {
        Some(false) => return,
        Some(true) => {
            let git_dir = std::env::var_os("GIT_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| std::path::PathBuf::from("."));
            Root::from_repository(&git_dir)
        }
        None => Root::locate(root_arg),
    };
    if let Ok(ctx) = root.and_then(Ctx::load) {
        housekeeping::report::refresh(&ctx);
    }
}
