//! symdeploy: push-to-deploy with atomic symlink flips.
//!
//! The data takes one road: push → hook → lock → export → shared links →
//! steps → flip → journal. Each module below owns one idea of the design;
//! `ops` composes them into the commands.

#![deny(missing_docs)]

pub mod acl;
pub mod blobstream;
pub mod carry;
pub mod cleanup;
pub mod cli;
pub mod commit;
pub mod config;
pub mod ctx;
pub mod decide;
pub mod disk;
pub mod error;
pub mod export;
pub mod facts;
pub mod faults;
pub mod fsutil;
pub mod githooks;
pub mod hook;
pub mod journal;
pub mod leftovers;
pub mod link;
pub mod lock;
pub mod manifest;
pub mod ops;
pub mod outcome;
pub mod output;
pub mod pointers;
pub mod preview;
pub mod push;
pub mod quarantine;
pub mod recovery;
pub mod release;
pub mod repo;
pub mod retention;
pub mod root;
pub mod session;
pub mod shared;
pub mod signals;
pub mod steps;
pub mod strict;
pub mod switch;
pub mod trash;
pub mod txn;
pub mod verify;
pub mod warm;

use cli::{Cli, Command, HookName};
use config::HookKind;
use ctx::Ctx;
use error::Result;
use root::Root;

/// Run one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let root_arg = cli.root.as_deref();
    let ctx = || -> Result<Ctx> { Ctx::load(Root::locate(root_arg)?) };
    match cli.command {
        Command::Init { dir, strict, user } => ops::init::run(&dir, strict, user.as_deref()),
        Command::Generate { what, dir } => ops::generate::run(what, &dir),
        Command::Hook { name, state } => match name {
            HookName::PostReceive => hook::run(HookKind::PostReceive),
            HookName::PreReceive => hook::run(HookKind::PreReceive),
            HookName::ReferenceTransaction => {
                strict::reference_transaction(state.as_deref().unwrap_or_default())
            }
        },
        Command::Warmup { rebuild, rev } => ops::warmup::run(&ctx()?, rev.as_deref(), rebuild),
        Command::Promote {
            dry_run,
            json: true,
            rev,
        } => outcome::report(&ctx()?, journal::Event::Promote, |c| {
            ops::promote::run(c, rev.as_deref(), dry_run)
        }),
        Command::Promote { dry_run, rev, .. } => {
            ops::promote::run(&ctx()?, rev.as_deref(), dry_run)
        }
        Command::Rollback {
            json: true,
            release,
            force,
        } => outcome::report(&ctx()?, journal::Event::Rollback, |c| {
            ops::rollback::run(c, release.as_deref(), force)
        }),
        Command::Rollback { release, force, .. } => {
            ops::rollback::run(&ctx()?, release.as_deref(), force)
        }
        Command::Verify { release, all, json } => {
            ops::verify::run(&ctx()?, release.as_deref(), all, json)
        }
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
