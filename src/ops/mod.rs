//! One file per command, like Deployer's recipes. An operation parses what
//! the operator asked for, opens a [`crate::session`] and hands the work to
//! the shared modules (`warm`, `switch`, `pointers`, `recovery`, `cleanup`,
//! `preview`). Operations never call each other: what two of them share
//! lives in one of those modules.

pub(crate) mod check;
pub(crate) mod cleanup;
pub(crate) mod export;
pub(crate) mod generate;
pub(crate) mod init;
pub(crate) mod log;
pub(crate) mod preview;
pub(crate) mod promote;
pub(crate) mod recover;
pub(crate) mod releases;
pub(crate) mod report;
pub(crate) mod rollback;
pub(crate) mod status;
pub(crate) mod verify;
pub(crate) mod warmup;
