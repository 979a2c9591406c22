//! What is on disk and in git: the deploy root's layout, deploy.toml, commits,
//! release records, the journal, and the bare repository.

pub(crate) mod commit;
pub(crate) mod config;
pub(crate) mod journal;
pub(crate) mod manifest;
pub(crate) mod reflocks;
pub(crate) mod release;
pub(crate) mod release_name;
pub(crate) mod repo;
pub(crate) mod root;
pub(crate) mod schema;
pub(crate) mod watch;
