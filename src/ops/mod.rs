//! One file per command, like Deployer's recipes. An operation parses what
//! the operator asked for, opens a [`crate::session`] and hands the work to
//! the shared modules (`warm`, `switch`, `pointers`, `recovery`, `cleanup`,
//! `preview`). Operations never call each other: what two of them share
//! lives in one of those modules.

pub mod check;
pub mod cleanup;
pub mod export;
pub mod generate;
pub mod init;
pub mod log;
pub mod preview;
pub mod promote;
pub mod recover;
pub mod releases;
pub mod rollback;
pub mod status;
pub mod verify;
pub mod warmup;
