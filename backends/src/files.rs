//! The `unsafe` backend (stub: being implemented).

use crate::{BackendError, KeyPath, SecretString, SecretsBackend, UnsafeConfig};

#[derive(Debug)]
pub struct UnsafeBackend {
    #[allow(dead_code)]
    config: UnsafeConfig,
}

impl UnsafeBackend {
    pub fn new(config: UnsafeConfig) -> Self {
        Self { config }
    }
}

impl SecretsBackend for UnsafeBackend {
    fn name(&self) -> &'static str {
        "unsafe"
    }
    fn get(&self, _key: &KeyPath) -> Result<SecretString, BackendError> {
        Err(BackendError::Unsupported {
            backend: "unsafe",
            operation: "get",
        })
    }
    fn set(&self, _key: &KeyPath, _value: &SecretString) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            backend: "unsafe",
            operation: "set",
        })
    }
    fn delete(&self, _key: &KeyPath) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            backend: "unsafe",
            operation: "delete",
        })
    }
    fn list(&self, _prefix: Option<&KeyPath>) -> Result<Vec<KeyPath>, BackendError> {
        Err(BackendError::Unsupported {
            backend: "unsafe",
            operation: "list",
        })
    }
    fn check(&self) -> Result<String, BackendError> {
        Err(BackendError::Unsupported {
            backend: "unsafe",
            operation: "check",
        })
    }
}
