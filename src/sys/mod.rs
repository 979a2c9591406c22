//! Context-free helpers: what people see (output), signals, fault injection,
//! atomic symlinks, filesystem facts, running steps.

pub(crate) mod advice;
pub(crate) mod color;
pub(crate) mod deployer;
pub(crate) mod faults;
pub(crate) mod fs;
pub(crate) mod machine;
pub(crate) mod output;
pub(crate) mod program;
pub(crate) mod signals;
pub(crate) mod steps;
pub(crate) mod symlink;
pub(crate) mod time;
pub(crate) mod word;
