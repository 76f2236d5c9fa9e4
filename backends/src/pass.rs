//! The `pass` backend (stub: being implemented).

use crate::{BackendError, KeyPath, PassConfig, SecretString, SecretsBackend};

#[derive(Debug)]
pub struct PassBackend {
    #[allow(dead_code)]
    config: PassConfig,
}

impl PassBackend {
    pub fn new(config: PassConfig) -> Self {
        Self { config }
    }
}

impl SecretsBackend for PassBackend {
    fn name(&self) -> &'static str {
        "pass"
    }
    fn get(&self, _key: &KeyPath) -> Result<SecretString, BackendError> {
        Err(BackendError::Unsupported {
            backend: "pass",
            operation: "get",
        })
    }
    fn set(&self, _key: &KeyPath, _value: &SecretString) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            backend: "pass",
            operation: "set",
        })
    }
    fn delete(&self, _key: &KeyPath) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            backend: "pass",
            operation: "delete",
        })
    }
    fn list(&self, _prefix: Option<&KeyPath>) -> Result<Vec<KeyPath>, BackendError> {
        Err(BackendError::Unsupported {
            backend: "pass",
            operation: "list",
        })
    }
    fn check(&self) -> Result<String, BackendError> {
        Err(BackendError::Unsupported {
            backend: "pass",
            operation: "check",
        })
    }
}
