//! What every operation works on: a deploy root and its configuration.

use crate::error::Result;
use crate::state::config::Config;
use crate::state::root::Root;

/// A deploy root and its configuration: what every operation works on.
pub(crate) struct Ctx {
    /// The deploy root.
    pub(crate) root: Root,
    /// Its deploy.toml (or the defaults).
    pub(crate) config: Config,
}

impl Ctx {
    /// Load the configuration of `root`.
    pub(crate) fn load(root: Root) -> Result<Ctx> {
        let config = Config::load(&root.config_file())?;
        Ok(Ctx { root, config })
    }
}
