//! The token store in one SQLite file (WAL mode), safe for several processes at once.

use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::{StoreError, TokenRecord, TokenStore};

#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating with mode 0600 in a 0700 folder) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let _ = path;
        todo!()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl TokenStore for SqliteStore {
    fn record(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let _ = record;
        todo!()
    }
    fn is_revoked(
        &self,
        jti: &str,
        subject: &str,
        issued_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let _ = (jti, subject, issued_at);
        todo!()
    }
    fn revoke(&self, jti: &str, now: Timestamp) -> Result<bool, StoreError> {
        let _ = (jti, now);
        todo!()
    }
    fn revoke_subject(&self, subject: &str, now: Timestamp) -> Result<usize, StoreError> {
        let _ = (subject, now);
        todo!()
    }
    fn revoke_all(&self, now: Timestamp) -> Result<usize, StoreError> {
        let _ = now;
        todo!()
    }
    fn mark_used(&self, jti: &str, now: Timestamp) -> Result<bool, StoreError> {
        let _ = (jti, now);
        todo!()
    }
    fn list(&self, now: Timestamp) -> Result<Vec<TokenRecord>, StoreError> {
        let _ = now;
        todo!()
    }
    fn prune(&self, now: Timestamp) -> Result<usize, StoreError> {
        let _ = now;
        todo!()
    }
}
