//! The `sops` backend (stub: being implemented).

use crate::{BackendError, KeyPath, SecretString, SecretsBackend, SopsConfig};

#[derive(Debug)]
pub struct SopsBackend {
    #[allow(dead_code)]
    config: SopsConfig,
}

impl SopsBackend {
    pub fn new(config: SopsConfig) -> Self {
        Self { config }
    }
}

impl SecretsBackend for SopsBackend {
    fn name(&self) -> &'static str {
        "sops"
    }
    fn get(&self, _key: &KeyPath) -> Result<SecretString, BackendError> {
        Err(BackendError::Unsupported {
            backend: "sops",
            operation: "get",
        })
    }
    fn set(&self, _key: &KeyPath, _value: &SecretString) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            backend: "sops",
            operation: "set",
        })
    }
    fn delete(&self, _key: &KeyPath) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            backend: "sops",
            operation: "delete",
        })
    }
    fn list(&self, _prefix: Option<&KeyPath>) -> Result<Vec<KeyPath>, BackendError> {
        Err(BackendError::Unsupported {
            backend: "sops",
            operation: "list",
        })
    }
    fn check(&self) -> Result<String, BackendError> {
        Err(BackendError::Unsupported {
            backend: "sops",
            operation: "check",
        })
    }
}
