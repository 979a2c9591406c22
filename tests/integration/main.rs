//! The integration tests, one binary: each module drives the built
//! `symdeploy` as a user would (real git, real pushes, the real stack where
//! a module says so); `common` holds what they share.

mod common;

mod access;
mod cli;
mod export;
mod faults;
mod history;
mod migrations;
mod preview_root;
mod previews;
mod promote;
mod report;
mod server;
mod signals;
mod stack;
mod status;
mod strict;
mod strict_kills;
mod structure;
mod transcript;
mod transcript_watch;
mod upgrade;
mod verify;
mod warmup;
mod warmup_check;
mod watch;
