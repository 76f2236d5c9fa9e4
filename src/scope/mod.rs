//! Scopes: parsing, canonical form, `allows` and `intersect`. A scope's action is a typed
//! [`Action`]; the set is parsed once (from the CLI list or the token claim) and carried as
//! a [`ScopeSet`].
//!
//! Written forms (CLI `--scopes`, comma-separated): `push`, `pull`, `*` (= push and pull) bound
//! to `--repo PATTERN` (default `*`); `repository:NAME:ACTION`; `admin:RESOURCE:ACTION`; bare
//! `admin` (grants everything). In a full scope `*` as a whole segment matches any value, and a
//! name ending in `/*` matches every repository under that prefix. Canonical claim form: the
//! full scopes, deduplicated, sorted, space-separated.
//!
//! Details:
//! - A full scope is exactly `TYPE:NAME:ACTION`; a scope with more or fewer colons is refused.
//!   Repository names never contain `:` (the distribution grammar has no room for one, and a
//!   registry's `host:port` is not part of a scope's name), so there is no ambiguity.
//! - `repository` NAME: lowercase alphanumeric components, separated inside a component by
//!   `.`, `_`, `__` or one or more `-`, components joined by `/`, at most 255 bytes; or a
//!   pattern: `*` (any repository) or `NAME/*` (every repository under `NAME/`, at any depth,
//!   but not `NAME` itself). ACTION: `pull`, `push`, `delete` or `*` (all three).
//! - `admin` RESOURCE and ACTION: `[a-z0-9_-]+` or `*`.
//! - `registry` NAME: `catalog` or `*`; ACTION: `*` (the distribution spec's only one).
//! - In `--scopes`, items are separated by `,` with optional spaces around them; an empty item
//!   (`push,,pull`) or an empty list is refused. A shorthand right after a full repository
//!   scope (`repository:app:pull,push`) is refused as ambiguous: it would grant `push` on
//!   `--repo`, not on `app`.

use std::collections::BTreeSet;
use std::fmt;

/// The longest repository name the distribution spec allows.
const MAX_NAME_LEN: usize = 255;
/// Repository actions a `*` stands for.
const REPOSITORY_ACTIONS: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

/// What `--scopes` and full scopes accept, quoted in errors.
const LIST_GRAMMAR: &str = "expected `push`, `pull`, `*`, `admin`, `repository:NAME:ACTION` (ACTION pull, push, delete or *), `admin:RESOURCE:ACTION` or `registry:catalog:*`";

/// The action part of a scope.
///
/// Ordered by its written form, so that the canonical claim (sorted scopes) is the same
/// whatever the variant names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// `*`: every action on the resource.
    Any,
    /// `pull` (repositories).
    Pull,
    /// `push` (repositories).
    Push,
    /// `delete` (repositories).
    Delete,
    /// `read` (admin resources).
    Read,
    /// `write` (admin resources).
    Write,
    /// Any other admin action (`[a-z0-9_-]+`).
    Other(String),
}

impl Action {
    /// The action named `s`: `*`, a known word, or another `[a-z0-9_-]+` word; `None` for
    /// anything else.
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "*" => Action::Any,
            "pull" => Action::Pull,
            "push" => Action::Push,
            "delete" => Action::Delete,
            "read" => Action::Read,
            "write" => Action::Write,
            _ if is_admin_segment(s) => Action::Other(s.to_owned()),
            _ => return None,
        })
    }

    /// The written form.
    pub fn as_str(&self) -> &str {
        match self {
            Action::Any => "*",
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Read => "read",
            Action::Write => "write",
            Action::Other(s) => s,
        }
    }

    /// Whether this action is one a repository scope may carry (`pull`, `push`, `delete`, `*`).
    pub fn is_repository_action(&self) -> bool {
        matches!(
            self,
            Action::Any | Action::Pull | Action::Push | Action::Delete
        )
    }

    /// Whether granting `self` grants `requested`: `*` grants every action.
    pub fn covers(&self, requested: &Action) -> bool {
        *self == Action::Any || self == requested
    }

    /// The more specific of two actions when one covers the other.
    fn meet(&self, other: &Action) -> Option<Action> {
        if self.covers(other) {
            Some(other.clone())
        } else if other.covers(self) {
            Some(self.clone())
        } else {
            None
        }
    }
}

impl PartialOrd for Action {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Action {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Action, ScopeError> {
        Action::parse(s).ok_or_else(|| invalid(s, "an action is `*` or a word of `[a-z0-9_-]`"))
    }
}

/// One granted (or requested) permission.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Bare `admin`: every scope.
    Admin,
    /// `repository:NAME:ACTION` (ACTION is `pull`, `push`, `delete` or `*`).
    Repository { name: String, action: Action },
    /// `admin:RESOURCE:ACTION`.
    AdminResource { resource: String, action: Action },
    /// `registry:catalog:*` and other `registry:` scopes of the distribution spec.
    Registry { name: String, action: Action },
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

/// Quotes user input for an error message: control characters escaped, long input cut.
fn quote(input: &str) -> String {
    crate::term::excerpt(input, 80)
}

fn invalid(scope: &str, reason: impl Into<String>) -> ScopeError {
    ScopeError::Invalid {
        scope: quote(scope),
        reason: reason.into(),
    }
}

/// One path component: `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`.
fn is_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run; it is followed by an alphanumeric (the last byte is one).
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        match &b[start..i] {
            b"." | b"_" | b"__" => {}
            run if run.iter().all(|&x| x == b'-') => {}
            _ => return false,
        }
    }
    true
}

/// A concrete repository name of the distribution grammar.
fn is_repository_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN && name.split('/').all(is_component)
}

/// A repository name or pattern (`*`, `NAME/*`).
fn is_repository_pattern(name: &str) -> bool {
    name == "*"
        || match name.strip_suffix("/*") {
            Some(prefix) => is_repository_name(prefix),
            None => is_repository_name(name),
        }
}

/// `[a-z0-9_-]+` or `*`.
fn is_admin_segment(s: &str) -> bool {
    s == "*"
        || (!s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'))
}

/// Whether the name or pattern `granted` covers every repository `requested` stands for.
fn name_covers(granted: &str, requested: &str) -> bool {
    if granted == "*" {
        return true;
    }
    match granted.strip_suffix("/*") {
        // `p/*` covers names and patterns strictly under `p/`, and `p/*` itself.
        Some(prefix) => {
            requested != "*"
                && requested
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        }
        None => granted == requested,
    }
}

/// `*` covers any segment; otherwise only the same value.
fn segment_covers(granted: &str, requested: &str) -> bool {
    granted == "*" || granted == requested
}

/// The more specific of two segments when one covers the other.
fn segment_meet<'a>(a: &'a str, b: &'a str) -> Option<&'a str> {
    if segment_covers(a, b) {
        Some(b)
    } else if segment_covers(b, a) {
        Some(a)
    } else {
        None
    }
}

/// The repositories matched by both names or patterns. Patterns are prefixes, so two of them
/// are either nested or disjoint: the meet is one of the two, or nothing.
fn name_meet<'a>(a: &'a str, b: &'a str) -> Option<&'a str> {
    if name_covers(a, b) {
        Some(b)
    } else if name_covers(b, a) {
        Some(a)
    } else {
        None
    }
}

/// The scope granting what both `a` and `b` grant, if any.
fn meet(a: &Scope, b: &Scope) -> Option<Scope> {
    match (a, b) {
        (Scope::Admin, other) | (other, Scope::Admin) => Some(other.clone()),
        (
            Scope::Repository {
                name: n1,
                action: a1,
            },
            Scope::Repository {
                name: n2,
                action: a2,
            },
        ) => Some(Scope::Repository {
            name: name_meet(n1, n2)?.to_owned(),
            action: a1.meet(a2)?,
        }),
        (
            Scope::AdminResource {
                resource: r1,
                action: a1,
            },
            Scope::AdminResource {
                resource: r2,
                action: a2,
            },
        ) => Some(Scope::AdminResource {
            resource: segment_meet(r1, r2)?.to_owned(),
            action: a1.meet(a2)?,
        }),
        (
            Scope::Registry {
                name: n1,
                action: a1,
            },
            Scope::Registry {
                name: n2,
                action: a2,
            },
        ) => Some(Scope::Registry {
            name: segment_meet(n1, n2)?.to_owned(),
            action: a1.meet(a2)?,
        }),
        _ => None,
    }
}

/// Whether one granted scope covers `requested` on its own.
fn covers(granted: &Scope, requested: &Scope) -> bool {
    match (granted, requested) {
        (Scope::Admin, _) => true,
        (
            Scope::Repository {
                name: gn,
                action: ga,
            },
            Scope::Repository {
                name: rn,
                action: ra,
            },
        ) => name_covers(gn, rn) && ga.covers(ra),
        (
            Scope::AdminResource {
                resource: gr,
                action: ga,
            },
            Scope::AdminResource {
                resource: rr,
                action: ra,
            },
        ) => segment_covers(gr, rr) && ga.covers(ra),
        (
            Scope::Registry {
                name: gn,
                action: ga,
            },
            Scope::Registry {
                name: rn,
                action: ra,
            },
        ) => segment_covers(gn, rn) && ga.covers(ra),
        _ => false,
    }
}

impl Scope {
    /// Parses one full scope (`TYPE:NAME:ACTION`) or bare `admin`.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        if s == "admin" {
            return Ok(Scope::Admin);
        }
        let mut parts = s.split(':');
        let (Some(kind), Some(name), Some(action), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(s, LIST_GRAMMAR));
        };
        match kind {
            "repository" => {
                if !is_repository_pattern(name) {
                    return Err(invalid(
                        s,
                        format!(
                            "`{}` is not a repository name or pattern (lowercase components like `team/app`, `team/*` or `*`)",
                            quote(name)
                        ),
                    ));
                }
                let Some(action) = Action::parse(action).filter(Action::is_repository_action)
                else {
                    return Err(invalid(
                        s,
                        format!(
                            "unknown action `{}`; repository actions are pull, push, delete and *",
                            quote(action)
                        ),
                    ));
                };
                Ok(Scope::Repository {
                    name: name.to_owned(),
                    action,
                })
            }
            "admin" => {
                if !is_admin_segment(name) || !is_admin_segment(action) {
                    return Err(invalid(
                        s,
                        "admin scopes are `admin:RESOURCE:ACTION` with `[a-z0-9_-]+` or `*` in each part, e.g. `admin:tokens:read`",
                    ));
                }
                let Some(action) = Action::parse(action) else {
                    return Err(invalid(s, "admin actions are `[a-z0-9_-]+` or `*`"));
                };
                Ok(Scope::AdminResource {
                    resource: name.to_owned(),
                    action,
                })
            }
            "registry" => {
                if !(name == "catalog" || name == "*") || action != "*" {
                    return Err(invalid(s, "the registry scope is `registry:catalog:*`"));
                }
                Ok(Scope::Registry {
                    name: name.to_owned(),
                    action: Action::Any,
                })
            }
            _ => Err(invalid(
                s,
                format!("unknown scope type `{}`; {LIST_GRAMMAR}", quote(kind)),
            )),
        }
    }

    /// The same scope with `*` actions split into their concrete actions where the set of
    /// actions is known (repositories); `allows` checks each part.
    fn split_actions(&self) -> Vec<Scope> {
        match self {
            Scope::Repository {
                name,
                action: Action::Any,
            } => REPOSITORY_ACTIONS
                .iter()
                .map(|a| Scope::Repository {
                    name: name.clone(),
                    action: a.clone(),
                })
                .collect(),
            other => vec![other.clone()],
        }
    }
}

impl ScopeSet {
    /// Parses the CLI form: a comma-separated list, shorthands bound to `repo`.
    pub fn parse_list(list: &str, repo: &str) -> Result<Self, ScopeError> {
        if !is_repository_pattern(repo) {
            return Err(ScopeError::Repo(quote(repo)));
        }
        if list.trim().is_empty() {
            return Err(invalid(
                list,
                format!("the scope list is empty; {LIST_GRAMMAR}"),
            ));
        }
        let mut set = BTreeSet::new();
        let shorthand = |action: Action| Scope::Repository {
            name: repo.to_owned(),
            action,
        };
        // `repository:app:pull,push` reads like "pull and push on app" but would grant push on
        // `--repo`: refuse a shorthand right after a full repository scope rather than guess.
        let mut after_repository = None;
        for item in list.split(',') {
            let item = item.trim_matches(' ');
            if let Some(previous) = after_repository
                && matches!(item, "pull" | "push" | "*" | "delete")
            {
                return Err(invalid(
                    list,
                    format!(
                        "`{item}` after `{}` is ambiguous: a full scope has one action, so write `repository:NAME:pull,repository:NAME:push`, or put the shorthands (bound to --repo) first",
                        quote(previous)
                    ),
                ));
            }
            after_repository = item.starts_with("repository:").then_some(item);
            match item {
                "" => {
                    return Err(invalid(
                        list,
                        format!("empty item in a comma-separated list; {LIST_GRAMMAR}"),
                    ));
                }
                "pull" => {
                    set.insert(shorthand(Action::Pull));
                }
                "push" => {
                    set.insert(shorthand(Action::Push));
                }
                "*" => {
                    set.insert(shorthand(Action::Pull));
                    set.insert(shorthand(Action::Push));
                }
                _ if !item.contains(':') && item != "admin" => {
                    return Err(invalid(item, LIST_GRAMMAR));
                }
                _ => {
                    set.insert(Scope::parse(item)?);
                }
            }
        }
        Ok(ScopeSet(set))
    }

    /// Parses the canonical claim form (space-separated full scopes).
    pub fn parse_claim(claim: &str) -> Result<Self, ScopeError> {
        if claim.is_empty() {
            return Ok(ScopeSet::default());
        }
        claim
            .split(' ')
            .map(|s| {
                if s.is_empty() {
                    Err(invalid(claim, "scopes are separated by single spaces"))
                } else {
                    Scope::parse(s)
                }
            })
            .collect::<Result<BTreeSet<_>, _>>()
            .map(ScopeSet)
    }

    /// Whether the set grants `requested` (a concrete scope, or a pattern that must be wholly
    /// covered).
    ///
    /// A pattern is covered when one granted scope covers every name it matches; a `*`
    /// repository action is covered when each of pull, push and delete is.
    pub fn allows(&self, requested: &Scope) -> bool {
        requested
            .split_actions()
            .iter()
            .all(|part| self.0.iter().any(|granted| covers(granted, part)))
    }

    /// The scopes granted by both `self` and `other`.
    pub fn intersect(&self, other: &ScopeSet) -> ScopeSet {
        let mut out = BTreeSet::new();
        for a in &self.0 {
            for b in &other.0 {
                if let Some(m) = meet(a, b) {
                    out.insert(m);
                }
            }
        }
        ScopeSet(out)
    }

    /// For the registry: the actions on repository `name` among `wanted` that this set grants,
    /// in the order given.
    ///
    /// `name` must be a concrete repository name and each action one of pull, push, delete or
    /// `*`; anything else is granted nothing. Duplicates are dropped.
    pub fn repository_actions(&self, name: &str, wanted: &[&str]) -> Vec<String> {
        if !is_repository_name(name) {
            return Vec::new();
        }
        let mut out: Vec<String> = Vec::new();
        for action in wanted {
            let Some(parsed) = Action::parse(action).filter(Action::is_repository_action) else {
                continue;
            };
            if out.iter().any(|a| a == action) {
                continue;
            }
            let requested = Scope::Repository {
                name: name.to_owned(),
                action: parsed,
            };
            if self.allows(&requested) {
                out.push((*action).to_owned());
            }
        }
        out
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

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        ScopeSet(iter.into_iter().collect())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Repository { name, action } => write!(f, "repository:{name}:{action}"),
            Scope::AdminResource { resource, action } => write!(f, "admin:{resource}:{action}"),
            Scope::Registry { name, action } => write!(f, "registry:{name}:{action}"),
        }
    }
}

impl fmt::Display for ScopeSet {
    /// The canonical claim form: space-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(list: &str) -> ScopeSet {
        ScopeSet::parse_claim(list).unwrap()
    }

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    #[test]
    fn shorthands_bind_to_the_repo() {
        let s = ScopeSet::parse_list("push,pull", "team/*").unwrap();
        assert_eq!(
            s.to_string(),
            "repository:team/*:pull repository:team/*:push"
        );
        let s = ScopeSet::parse_list("*", "*").unwrap();
        assert_eq!(s.to_strings(), ["repository:*:pull", "repository:*:push"]);
        let s = ScopeSet::parse_list("pull, pull ,pull", "app").unwrap();
        assert_eq!(s.to_string(), "repository:app:pull");
        let s = ScopeSet::parse_list("admin", "*").unwrap();
        assert_eq!(s.to_string(), "admin");
        let s = ScopeSet::parse_list(
            "admin:tokens:read,repository:a/b:delete,registry:catalog:*,pull",
            "x",
        )
        .unwrap();
        assert_eq!(
            s.to_string(),
            "repository:a/b:delete repository:x:pull admin:tokens:read registry:catalog:*"
        );
    }

    #[test]
    fn refuses_typos_and_malformed_scopes_quoting_them() {
        for (list, quoted) in [
            ("pul", "pul"),
            ("push,,pull", "push,,pull"),
            ("push,", "push,"),
            ("", ""),
            (" ", " "),
            ("delete", "delete"),
            ("Push", "Push"),
            ("repository:app:pul", "repository:app:pul"),
            ("repository:app", "repository:app"),
            ("repository:app:pull,push", "repository:app:pull,push"),
            ("repository:app:pull, *", "repository:app:pull, *"),
            (
                "pull,repository:app:pull,push",
                "pull,repository:app:pull,push",
            ),
            (
                "repository:localhost:5000/app:pull",
                "repository:localhost:5000/app:pull",
            ),
            ("repository::pull", "repository::pull"),
            ("repository:App:pull", "repository:App:pull"),
            ("repository:team*:pull", "repository:team*:pull"),
            ("repository:*/app:pull", "repository:*/app:pull"),
            ("repository:team/:pull", "repository:team/:pull"),
            ("repository:a..b:pull", "repository:a..b:pull"),
            ("repository:a___b:pull", "repository:a___b:pull"),
            ("repository:-a:pull", "repository:-a:pull"),
            ("repos:app:pull", "repos:app:pull"),
            ("admin:tokens", "admin:tokens"),
            ("admin:Tokens:read", "admin:Tokens:read"),
            ("admin:tokens:read:x", "admin:tokens:read:x"),
            ("admin:tokens:", "admin:tokens:"),
            ("registry:catalog:pull", "registry:catalog:pull"),
            ("registry:catalg:*", "registry:catalg:*"),
            ("admins", "admins"),
        ] {
            let err = ScopeSet::parse_list(list, "*").unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{quoted}`")),
                "{list:?}: {err}"
            );
        }
    }

    #[test]
    fn refuses_bad_repo_patterns() {
        for repo in [
            "", "Team", "team/", "team*", "team/*/x", "*/*", "a:b", "/a", "a//b",
        ] {
            assert_eq!(
                ScopeSet::parse_list("pull", repo),
                Err(ScopeError::Repo(repo.to_owned())),
                "{repo}"
            );
        }
        for repo in [
            "a", "a/b/c", "a.b", "a_b", "a__b", "a---b", "a/*", "0/1", "*",
        ] {
            assert!(ScopeSet::parse_list("pull", repo).is_ok(), "{repo}");
        }
        assert!(ScopeSet::parse_list("pull", &"a".repeat(256)).is_err());
        assert!(ScopeSet::parse_list("pull", &"a".repeat(255)).is_ok());
    }

    #[test]
    fn claim_form_is_strict() {
        assert_eq!(ScopeSet::parse_claim("").unwrap(), ScopeSet::default());
        assert!(ScopeSet::parse_claim("push").is_err());
        assert!(ScopeSet::parse_claim("repository:a:pull  repository:b:pull").is_err());
        assert!(ScopeSet::parse_claim(" repository:a:pull").is_err());
        assert!(ScopeSet::parse_claim("repository:a:pull,repository:b:pull").is_err());
    }

    #[test]
    fn patterns_allow_what_they_cover() {
        let s = set("repository:team/*:pull");
        assert!(s.allows(&scope("repository:team/app:pull")));
        assert!(s.allows(&scope("repository:team/a/b:pull")));
        assert!(s.allows(&scope("repository:team/*:pull")));
        assert!(s.allows(&scope("repository:team/a/*:pull")));
        assert!(!s.allows(&scope("repository:team:pull")));
        assert!(!s.allows(&scope("repository:teams/x:pull")));
        assert!(!s.allows(&scope("repository:*:pull")));
        assert!(!s.allows(&scope("repository:team/app:push")));
        assert!(!s.allows(&scope("repository:team/app:*")));

        let s = set("repository:*:pull");
        assert!(s.allows(&scope("repository:anything/at/all:pull")));
        assert!(!s.allows(&scope("repository:x:push")));

        let s = set("repository:x:*");
        for a in ["pull", "push", "delete", "*"] {
            assert!(s.allows(&scope(&format!("repository:x:{a}"))));
        }
        assert!(!s.allows(&scope("repository:y:pull")));

        // A `*` action is covered when each of its actions is.
        let s = set("repository:x:pull repository:x:push repository:*:delete");
        assert!(s.allows(&scope("repository:x:*")));
        assert!(!set("repository:x:pull repository:x:push").allows(&scope("repository:x:*")));

        let s = set("admin:tokens:*");
        assert!(s.allows(&scope("admin:tokens:read")));
        assert!(s.allows(&scope("admin:tokens:write")));
        assert!(!s.allows(&scope("admin:users:read")));
        assert!(!s.allows(&scope("admin:*:read")));
        assert!(!s.allows(&Scope::Admin));
        assert!(!s.allows(&scope("repository:x:pull")));
        assert!(set("admin:*:*").allows(&scope("admin:users:read")));
        assert!(!set("admin:*:*").allows(&scope("registry:catalog:*")));
        assert!(set("registry:*:*").allows(&scope("registry:catalog:*")));

        let admin = set("admin");
        for s in ["admin", "admin:*:*", "repository:*:*", "registry:catalog:*"] {
            assert!(admin.allows(&scope(s)));
        }
        assert!(!ScopeSet::default().allows(&scope("repository:x:pull")));
    }

    #[test]
    fn intersection_and_registry_actions() {
        let granted = set("repository:team/*:pull repository:team/app:push");
        let asked = set("repository:team/app:* repository:other:pull");
        let i = granted.intersect(&asked);
        assert_eq!(
            i.to_string(),
            "repository:team/app:pull repository:team/app:push"
        );
        assert_eq!(i, asked.intersect(&granted));
        assert_eq!(set("admin").intersect(&asked), asked);
        assert_eq!(
            set("admin:*:read")
                .intersect(&set("admin:tokens:*"))
                .to_string(),
            "admin:tokens:read"
        );

        assert_eq!(
            granted.repository_actions("team/app", &["pull", "push"]),
            ["pull", "push"]
        );
        assert_eq!(
            granted.repository_actions("team/x", &["push", "pull", "pull"]),
            ["pull"]
        );
        assert!(granted.repository_actions("other", &["pull"]).is_empty());
        assert!(granted.repository_actions("team/*", &["pull"]).is_empty());
        assert!(granted.repository_actions("Team/app", &["pull"]).is_empty());
        let all = set("repository:*:*");
        assert!(all.repository_actions("x", &["steal", ""]).is_empty());
        assert_eq!(all.repository_actions("x", &["*"]), ["*"]);
        assert_eq!(set("admin").repository_actions("x", &["push"]), ["push"]);
    }

    // Small alphabets so that patterns, names and actions collide often.
    fn any_scope() -> impl Strategy<Value = Scope> {
        let names = prop::sample::select(vec![
            "*", "a", "a/*", "a/b", "a/b/*", "a/b/c", "ab", "ab/*", "b", "b/a",
        ]);
        let actions = prop::sample::select(vec!["pull", "push", "delete", "*"]);
        let segs = prop::sample::select(vec!["*", "tokens", "users"]);
        let admin_actions = prop::sample::select(vec!["*", "read", "write"]);
        prop_oneof![
            1 => Just(Scope::Admin),
            6 => (names, actions).prop_map(|(n, a)| Scope::Repository {
                name: n.to_owned(),
                action: a.parse().unwrap(),
            }),
            2 => (segs, admin_actions).prop_map(|(r, a)| Scope::AdminResource {
                resource: r.to_owned(),
                action: a.parse().unwrap(),
            }),
            1 => prop::sample::select(vec!["*", "catalog"]).prop_map(|n| Scope::Registry {
                name: n.to_owned(),
                action: Action::Any,
            }),
        ]
    }

    fn any_set() -> impl Strategy<Value = ScopeSet> {
        prop::collection::vec(any_scope(), 0..5).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn intersection_never_grants_more(a in any_set(), b in any_set(), probe in any_scope()) {
            let i = a.intersect(&b);
            for granted in i.iter() {
                prop_assert!(a.allows(granted) && b.allows(granted), "{} from {} and {}", granted, a, b);
            }
            let both = a.allows(&probe) && b.allows(&probe);
            prop_assert_eq!(i.allows(&probe), both, "{} in {} ∩ {}", probe, a, b);
            prop_assert_eq!(b.intersect(&a).allows(&probe), both);
            prop_assert_eq!(&i, &b.intersect(&a));
        }

        #[test]
        fn intersection_is_monotone(a in any_set(), b in any_set(), extra in any_scope(), probe in any_scope()) {
            let mut bigger: Vec<Scope> = b.iter().cloned().collect();
            bigger.push(extra);
            let bigger: ScopeSet = bigger.into_iter().collect();
            if a.intersect(&b).allows(&probe) {
                prop_assert!(a.intersect(&bigger).allows(&probe));
            }
        }

        #[test]
        fn repository_actions_never_grant_more(
            a in any_set(),
            name in prop::sample::select(vec!["a", "a/b", "a/b/c", "ab", "b", "b/a", "c"]),
            wanted in prop::collection::vec(prop::sample::select(vec!["pull", "push", "delete", "*", "x"]), 0..4),
        ) {
            for action in a.repository_actions(name, &wanted) {
                let s = Scope::Repository { name: name.to_owned(), action: action.parse().unwrap() };
                prop_assert!(a.allows(&s), "{} granted by {}", s, a);
                prop_assert!(wanted.contains(&action.as_str()));
            }
        }

        #[test]
        fn canonical_form_roundtrips(a in any_set()) {
            prop_assert_eq!(ScopeSet::parse_claim(&a.to_string()), Ok(a.clone()));
            let list = a.to_strings().join(",");
            if !list.is_empty() {
                prop_assert_eq!(ScopeSet::parse_list(&list, "*"), Ok(a));
            }
        }

        #[test]
        fn parsers_never_panic(s in "\\PC*", repo in "\\PC{0,20}") {
            let _ = ScopeSet::parse_list(&s, &repo);
            let _ = ScopeSet::parse_claim(&s);
        }

        #[test]
        fn parsers_never_panic_near_the_grammar(s in "[a-z*/:,. _-]{0,40}") {
            if let Ok(set) = ScopeSet::parse_list(&s, "*") {
                prop_assert_eq!(ScopeSet::parse_claim(&set.to_string()), Ok(set));
            }
        }
    }
}
