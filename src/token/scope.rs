//! Scopes: parsing, canonical form, `allows` and `intersect`.
//!
//! Written forms (CLI `--scopes`, comma-separated): `push`, `pull`, `*` (= push and pull) bound
//! to `--repo PATTERN` (default `*`); `repository:NAME:ACTION`; `admin:RESOURCE:ACTION`; bare
//! `admin` (grants everything). In a full scope `*` as a whole segment matches any value, and a
//! name ending in `/*` matches every repository under that prefix. Canonical claim form: the
//! full scopes, deduplicated, sorted, space-separated.

use std::fmt;

/// One granted (or requested) permission.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Bare `admin`: every scope.
    Admin,
    /// `repository:NAME:ACTION` (ACTION is `pull`, `push`, `delete` or `*`).
    Repository { name: String, action: String },
    /// `admin:RESOURCE:ACTION`.
    AdminResource { resource: String, action: String },
    /// `registry:catalog:*` and other `registry:` scopes of the distribution spec.
    Registry { name: String, action: String },
}

/// A validated, canonical set of scopes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeSet(std::collections::BTreeSet<Scope>);

/// Why a scope list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("invalid scope `{scope}`: {reason}")]
    Invalid { scope: String, reason: String },
    #[error("invalid repository pattern `{0}`: use a name like `team/app`, `team/*` or `*`")]
    Repo(String),
}

impl ScopeSet {
    /// Parses the CLI form: a comma-separated list, shorthands bound to `repo`.
    pub fn parse_list(list: &str, repo: &str) -> Result<Self, ScopeError> {
        let _ = (list, repo);
        todo!()
    }

    /// Parses the canonical claim form (space-separated full scopes).
    pub fn parse_claim(claim: &str) -> Result<Self, ScopeError> {
        let _ = claim;
        todo!()
    }

    /// Whether the set grants `requested` (a concrete scope, or a pattern that must be wholly
    /// covered).
    pub fn allows(&self, requested: &Scope) -> bool {
        let _ = requested;
        todo!()
    }

    /// The scopes granted by both `self` and `other`.
    pub fn intersect(&self, other: &ScopeSet) -> ScopeSet {
        let _ = other;
        todo!()
    }

    /// For the registry: the actions on repository `name` among `wanted` that this set grants,
    /// in the order given.
    pub fn repository_actions(&self, name: &str, wanted: &[&str]) -> Vec<String> {
        let _ = (name, wanted);
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// The canonical strings, e.g. `["repository:*:pull", "repository:*:push"]`.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|s| s.to_string()).collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!()
    }
}

impl fmt::Display for ScopeSet {
    /// The canonical claim form: space-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!()
    }
}
