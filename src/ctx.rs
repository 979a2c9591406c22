//! What every operation works on: a deploy root and its configuration.

use crate::config::Config;
use crate::error::Result;
use crate::root::Root;

/// A deploy root and its configuration: what every operation works on.
pub struct Ctx {
    /// The deploy root.
    pub root: Root,
    /// Its deploy.toml (or the defaults).
    pub config: Config,
}

impl Ctx {
    /// Load the configuration of `root`.
    pub fn load(root: Root) -> Result<Ctx> {
        let config = Config::load(&root.config_file())?;
        Ok(Ctx { root, config })
    }
}
