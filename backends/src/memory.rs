//! An in-memory backend for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use secrecy::ExposeSecret;

use crate::{BackendError, KeyPath, SecretString, SecretsBackend};

/// Keeps secrets in a map; nothing touches the disk.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    values: Mutex<BTreeMap<KeyPath, SecretString>>,
}

impl MemoryBackend {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<KeyPath, SecretString>> {
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SecretsBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn get(&self, key: &KeyPath) -> Result<SecretString, BackendError> {
        self.map()
            .get(key)
            .map(|v| SecretString::from(v.expose_secret().to_owned()))
            .ok_or_else(|| BackendError::not_found("memory", key))
    }
    fn set(&self, key: &KeyPath, value: &SecretString) -> Result<(), BackendError> {
        self.map().insert(
            key.clone(),
            SecretString::from(value.expose_secret().to_owned()),
        );
        Ok(())
    }
    fn delete(&self, key: &KeyPath) -> Result<(), BackendError> {
        self.map()
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| BackendError::not_found("memory", key))
    }
    fn list(&self, prefix: Option<&KeyPath>) -> Result<Vec<KeyPath>, BackendError> {
        Ok(self
            .map()
            .keys()
            .filter(|k| prefix.is_none_or(|p| k.starts_with(p)))
            .cloned()
            .collect())
    }
    fn check(&self) -> Result<String, BackendError> {
        Ok("in-memory store (nothing is saved)".to_owned())
    }
}
