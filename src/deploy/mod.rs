//! Building and switching releases: the warm-up (export, shared links, steps;
//! one pipeline for releases and previews, told apart by a job's target),
//! previews, the switch that flips `production`, and the pointers it moves.

pub(crate) mod acl;
pub(crate) mod carry;
pub(crate) mod disk;
pub(crate) mod export;
pub(crate) mod job;
pub(crate) mod manifest_seed;
pub(crate) mod pointers;
pub(crate) mod preview;
pub(crate) mod preview_root;
pub(crate) mod schema_gate;
pub(crate) mod shared;
pub(crate) mod switch;
pub(crate) mod switch_report;
pub(crate) mod verify;
pub(crate) mod warmup;
pub(crate) mod watch;
pub(crate) mod writeback;
