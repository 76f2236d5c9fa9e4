//! The `age` backend (stub: being implemented).

use crate::{AgeConfig, BackendError, KeyPath, SecretString, SecretsBackend};

#[derive(Debug)]
pub struct AgeBackend {
    #[allow(dead_code)]
    config: AgeConfig,
}

impl AgeBackend {
    pub fn new(config: AgeConfig) -> Self {
        Self { config }
    }
}

impl SecretsBackend for AgeBackend {
    fn name(&self) -> &'static str {
        "age"
    }
    fn get(&self, _key: &KeyPath) -> Result<SecretString, BackendError> {
        Err(BackendError::Unsupported {
            backend: "age",
            operation: "get",
        })
    }
    fn set(&self, _key: &KeyPath, _value: &SecretString) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            backend: "age",
            operation: "set",
        })
    }
    fn delete(&self, _key: &KeyPath) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            backend: "age",
            operation: "delete",
        })
    }
    fn list(&self, _prefix: Option<&KeyPath>) -> Result<Vec<KeyPath>, BackendError> {
        Err(BackendError::Unsupported {
            backend: "age",
            operation: "list",
        })
    }
    fn check(&self) -> Result<String, BackendError> {
        Err(BackendError::Unsupported {
            backend: "age",
            operation: "check",
        })
    }
}
