//! Users and roles (contract section 9): who may log in with a password, and with which
//! scopes.
//!
//! A user is either one `[[auth.users]]` entry (a name, the key path of its password hash,
//! roles and extra scopes) or the single user of the older keys `auth.username`,
//! `auth.password_hash` and `auth.login_scopes`, which keep meaning exactly what they meant:
//! one user with those scopes. A user's **effective scopes** are the union of its roles'
//! scopes and its extra scopes, with `${user}` replaced by its name.
//!
//! Roles are `[auth.roles.NAME] scopes = [...]` (each item in the `--scopes` grammar), and
//! four built-in ones that a table of the same name replaces:
//!
//! | role | scopes |
//! |---|---|
//! | `admin` | `admin` (every scope) |
//! | `developer` | `push`, `pull` on every repository, `admin:tokens:read` |
//! | `user` | `pull` on every repository, `push` on `${user}/*` |
//! | `viewer` | `pull` on every repository |
//!
//! [`Directory::check`] runs when the configuration loads, so that an unknown role, a user
//! declared twice or a scope that does not parse is refused with the file and line.

use std::collections::BTreeMap;

use tessera_backends::KeyPath;

use crate::config::AuthConfig;
use crate::scope::{ScopeError, ScopeSet};

/// What `${user}` in a role's or a user's scopes is replaced with.
pub const USER_PLACEHOLDER: &str = "${user}";

/// The built-in roles and their scopes, as written in a config file.
pub const BUILTIN_ROLES: [(&str, &[&str]); 4] = [
    ("admin", &["admin"]),
    ("developer", &["push", "pull", "admin:tokens:read"]),
    ("user", &["pull", "repository:${user}/*:push"]),
    ("viewer", &["pull"]),
];

/// The longest user name accepted in `[[auth.users]]`.
pub const MAX_NAME_LEN: usize = 64;

/// Why the users and roles of a configuration were refused: the line of the entry at fault
/// and one sentence naming the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub line: usize,
    pub message: String,
}

/// Where one part of a user's effective scopes comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A role: built-in (`redefined` false), or a `[auth.roles.NAME]` table.
    Role { name: String, builtin: bool },
    /// The user's own `scopes = [...]`.
    Extra,
    /// `auth.login_scopes` of the single-user keys.
    LoginScopes,
}

/// One part of a user's effective scopes, for `tessera users check`.
#[derive(Debug, Clone)]
pub struct Part {
    pub source: Source,
    /// The scopes as written.
    pub written: Vec<String>,
    /// What they grant this user (`${user}` expanded).
    pub scopes: ScopeSet,
}

/// One user and its effective scopes.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub roles: Vec<String>,
    /// Key path of the password hash in the secrets backend.
    pub password_hash: KeyPath,
    /// The union of [`User::parts`].
    pub scopes: ScopeSet,
    pub parts: Vec<Part>,
    /// Declared with `auth.username` (the single-user keys) rather than `[[auth.users]]`.
    pub single_user_keys: bool,
}

/// Every user of a configuration, in the order written (the single-user keys' user first).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: Vec<User>,
}

/// The scopes of role `name` as written: a `[auth.roles.NAME]` table, else a built-in role.
/// `(scopes, builtin, line)`.
fn role(auth: &AuthConfig, name: &str) -> Option<(Vec<String>, bool, usize)> {
    if let Some(r) = auth.roles.get(name) {
        return Some((r.scopes.clone(), false, r.line));
    }
    BUILTIN_ROLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| (s.iter().map(|s| (*s).to_owned()).collect(), true, 0))
}

/// The names of every role (built-in and configured), sorted, for messages.
fn role_names(auth: &AuthConfig) -> Vec<String> {
    let mut names: Vec<String> = BUILTIN_ROLES.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.extend(auth.roles.keys().cloned());
    names.sort();
    names.dedup();
    names
}

/// The scopes of `items` (each in the `--scopes` grammar) for user `user`.
pub fn expand(items: &[String], user: &str) -> Result<ScopeSet, ScopeError> {
    let mut all = Vec::new();
    for item in items {
        let set = ScopeSet::parse_list(&item.replace(USER_PLACEHOLDER, user), "*")?;
        all.extend(set.iter().cloned());
    }
    Ok(all.into_iter().collect())
}

/// Whether `name` may name a user of `[[auth.users]]`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

fn shown(s: &str) -> String {
    crate::term::escaped_head(s, 40)
}

/// A user's parts and effective scopes from its roles and extra scopes.
fn resolve(
    auth: &AuthConfig,
    name: &str,
    roles: &[String],
    extra: &[String],
) -> Result<(Vec<Part>, ScopeSet), String> {
    let mut parts = Vec::new();
    for r in roles {
        let Some((written, builtin, _)) = role(auth, r) else {
            let names = role_names(auth);
            let guess = names
                .iter()
                .map(|n| (strsim::jaro_winkler(r, n), n))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, n)| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            return Err(format!(
                "user `{}` has the unknown role `{}`; the roles are {} (define others with `[auth.roles.NAME] scopes = [...]`){guess}",
                shown(name),
                shown(r),
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        };
        let scopes = expand(&written, name).map_err(|e| {
            format!(
                "user `{}`: the scopes of role `{}` do not hold for this name: {e}; a name that `${{user}}` stands for must be a lowercase repository name such as `alice`",
                shown(name),
                shown(r)
            )
        })?;
        parts.push(Part {
            source: Source::Role {
                name: r.clone(),
                builtin,
            },
            written,
            scopes,
        });
    }
    if !extra.is_empty() {
        let scopes = expand(extra, name).map_err(|e| {
            format!(
                "user `{}`: `scopes`: {e}; write each item as in `--scopes`, e.g. `pull` or `repository:team/*:push`",
                shown(name)
            )
        })?;
        parts.push(Part {
            source: Source::Extra,
            written: extra.to_vec(),
            scopes,
        });
    }
    let all = parts
        .iter()
        .flat_map(|p| p.scopes.iter().cloned())
        .collect();
    Ok((parts, all))
}

impl Directory {
    /// Checks `[[auth.users]]` and `[auth.roles.*]` (not the single-user keys, whose scopes are
    /// checked when the server starts, as before): every role's scopes parse, every user has
    /// a valid name, is declared once (also against `auth.username`), has known roles, and
    /// scopes that hold with its name in place of `${user}`.
    pub fn check(auth: &AuthConfig) -> Result<(), ConfigProblem> {
        for (name, r) in &auth.roles {
            if name.is_empty() || name.len() > MAX_NAME_LEN {
                return Err(ConfigProblem {
                    line: r.line,
                    message: format!(
                        "a role name must have 1 to {MAX_NAME_LEN} characters; rename `[auth.roles.{}]`",
                        shown(name)
                    ),
                });
            }
            if let Err(e) = expand(&r.scopes, "user") {
                return Err(ConfigProblem {
                    line: r.line,
                    message: format!(
                        "`[auth.roles.{}]` scopes: {e}; write each item as in `--scopes`, e.g. `pull` or `repository:${{user}}/*:push`",
                        shown(name)
                    ),
                });
            }
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for u in &auth.users {
            if !valid_name(&u.name) {
                return Err(ConfigProblem {
                    line: u.line,
                    message: format!(
                        "user name `{}` is not valid; use 1 to {MAX_NAME_LEN} letters, digits, `.`, `_`, `-` or `@`, not starting with `-`",
                        shown(&u.name)
                    ),
                });
            }
            if auth.username.as_deref() == Some(u.name.as_str()) {
                return Err(ConfigProblem {
                    line: u.line,
                    message: format!(
                        "user `{}` is declared twice: by `auth.username` and by `[[auth.users]]`; remove `auth.username` (and `auth.login_scopes`) or this entry",
                        shown(&u.name)
                    ),
                });
            }
            if let Some(first) = seen.insert(&u.name, u.line) {
                return Err(ConfigProblem {
                    line: u.line,
                    message: format!(
                        "user `{}` is declared twice (first on line {first}); keep one `[[auth.users]]` entry per name",
                        shown(&u.name)
                    ),
                });
            }
            resolve(auth, &u.name, &u.roles, &u.scopes).map_err(|message| ConfigProblem {
                line: u.line,
                message,
            })?;
        }
        Ok(())
    }

    /// Every user of `auth`: the single-user keys' user (when `auth.username` is set, with
    /// `auth.login_scopes`), then `[[auth.users]]`. An error only for `auth.login_scopes`
    /// (the rest was checked when the configuration loaded).
    pub fn from_config(auth: &AuthConfig) -> Result<Directory, ScopeError> {
        let mut users = Vec::new();
        if let Some(name) = &auth.username {
            let scopes = ScopeSet::parse_list(&auth.login_scopes, "*")?;
            users.push(User {
                name: name.clone(),
                roles: Vec::new(),
                password_hash: auth.password_hash.clone(),
                scopes: scopes.clone(),
                parts: vec![Part {
                    source: Source::LoginScopes,
                    written: vec![auth.login_scopes.clone()],
                    scopes,
                }],
                single_user_keys: true,
            });
        }
        for u in &auth.users {
            // Checked at load: an error here is a configuration built by hand (tests).
            let (parts, scopes) =
                resolve(auth, &u.name, &u.roles, &u.scopes).map_err(|reason| {
                    ScopeError::Invalid {
                        scope: u.name.clone(),
                        reason,
                    }
                })?;
            users.push(User {
                name: u.name.clone(),
                roles: u.roles.clone(),
                password_hash: u.password_hash.clone(),
                scopes,
                parts,
                single_user_keys: false,
            });
        }
        Ok(Directory { users })
    }

    /// The user named `name` (compared exactly; not constant-time: for lookups by a name
    /// already authenticated, never for a login).
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Every user, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.users.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Env};

    fn load(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tessera.toml");
        let env = Env::from_pairs([("HOME", dir.path().to_str().unwrap())]);
        Config::from_text(&p, text, &env).map_err(|e| e.to_string())
    }

    fn scopes(text: &str, user: &str) -> Vec<String> {
        let c = load(text).unwrap();
        let d = Directory::from_config(&c.auth).unwrap();
        d.get(user).unwrap().scopes.to_strings()
    }

    #[test]
    fn builtin_roles_and_user_expansion() {
        let cfg = |role: &str| format!("[[auth.users]]\nname = \"alice\"\nroles = [\"{role}\"]\n");
        assert_eq!(scopes(&cfg("admin"), "alice"), ["admin"]);
        assert_eq!(
            scopes(&cfg("developer"), "alice"),
            [
                "repository:*:pull",
                "repository:*:push",
                "admin:tokens:read"
            ]
        );
        assert_eq!(
            scopes(&cfg("user"), "alice"),
            ["repository:*:pull", "repository:alice/*:push"]
        );
        assert_eq!(scopes(&cfg("viewer"), "alice"), ["repository:*:pull"]);
    }

    #[test]
    fn roles_can_be_redefined_and_added() {
        let text = "[auth.roles.viewer]\nscopes = [\"repository:public/*:pull\"]\n[auth.roles.ci]\nscopes = [\"repository:${user}:pull\", \"push\"]\n[[auth.users]]\nname = \"bob\"\nroles = [\"viewer\", \"ci\"]\nscopes = [\"admin:users:read\"]\n";
        assert_eq!(
            scopes(text, "bob"),
            [
                "repository:*:push",
                "repository:bob:pull",
                "repository:public/*:pull",
                "admin:users:read"
            ]
        );
    }

    #[test]
    fn problems_name_the_line_and_the_fix() {
        let e = load("[auth]\n\n[[auth.users]]\nname = \"alice\"\nroles = [\"devloper\"]\n")
            .unwrap_err();
        assert!(e.contains("tessera.toml:3:"), "{e}");
        assert!(e.contains("did you mean `developer`"), "{e}");
        let e = load("[[auth.users]]\nname = \"a\"\n[[auth.users]]\nname = \"a\"\n").unwrap_err();
        assert!(e.contains(":3:") && e.contains("first on line 1"), "{e}");
        let e = load("[auth]\nusername = \"a\"\n[[auth.users]]\nname = \"a\"\n").unwrap_err();
        assert!(e.contains("declared twice"), "{e}");
        let e = load("[auth.roles.x]\nscopes = [\"pusj\"]\n").unwrap_err();
        assert!(e.contains(":1:") && e.contains("pusj"), "{e}");
        let e = load("[[auth.users]]\nname = \"Alice\"\nroles = [\"user\"]\n").unwrap_err();
        assert!(e.contains("lowercase"), "{e}");
        let e = load("[[auth.users]]\nname = \"a:b\"\npassword_hash = \"k/a\"\n").unwrap_err();
        assert!(e.contains("not valid"), "{e}");
        let e = load("[[auth.users]]\nname = \"a\"\nrole = [\"x\"]\n").unwrap_err();
        assert!(e.contains("did you mean `roles`"), "{e}");
    }

    #[test]
    fn single_user_keys_are_one_user() {
        let c = load("[auth]\nusername = \"deploy\"\nlogin_scopes = \"pull\"\n").unwrap();
        let d = Directory::from_config(&c.auth).unwrap();
        let u = d.get("deploy").unwrap();
        assert!(u.single_user_keys);
        assert_eq!(u.scopes.to_strings(), ["repository:*:pull"]);
        assert_eq!(u.password_hash.as_str(), "tessera/auth/password_hash");
    }
}
