//! Letting go of old releases: what cleanup keeps, and the removal itself.

pub(crate) mod cleanup;
pub(crate) mod report;
pub(crate) mod retention;
pub(crate) mod trash;
