//! How the PostgreSQL store is opened at its first use ([`crate::store::open_lazily`]): a
//! command that never needs the store (or fails before) never connects.

use std::sync::Arc;

use crate::config::Config;
use crate::store::lazy::Opener;
use crate::store::{StoreError, TokenStore};

/// Opens the PostgreSQL store of a configuration.
#[derive(Debug)]
pub(crate) struct PgOpener(pub(crate) Box<Config>);

impl Opener for PgOpener {
    fn open(&self) -> Result<Arc<dyn TokenStore>, StoreError> {
        Ok(Arc::new(crate::store::open_postgres(&self.0)?))
    }
}
