//! `[[auth.trust]]` policies (contract section 11): which OIDC issuer is trusted, with which
//! audience and claim conditions, and what a workload proven by it receives (subject, scopes,
//! repository pattern, expiry of at most one hour).
//!
//! The config file is parsed by `crate::config`; this module turns each raw table into a
//! [`TrustPolicy`] and refuses, with the file, the line and the fix, anything that would trust
//! more than was written: a missing audience, a policy without one exact claim condition (it
//! would accept every repository of a public issuer), an expiry over one hour, a `*` that is
//! not in a claim value, duplicate names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::duration::HumanDuration;
use crate::scope::ScopeSet;

/// The longest expiry a policy may give the tokens it issues.
pub const MAX_POLICY_EXPIRY_SECS: u64 = 3600;
/// The expiry of a policy that does not name one.
pub const DEFAULT_POLICY_EXPIRY: &str = "15m";

/// One `[[auth.trust]]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrust {
    name: Option<String>,
    issuer: Option<String>,
    jwks_file: Option<String>,
    audience: Option<String>,
    subject: Option<String>,
    scopes: Option<Vec<String>>,
    repo: Option<String>,
    expiry: Option<String>,
    #[serde(default)]
    claims: BTreeMap<String, toml::Value>,
}

/// A claim condition: the claim must be present and equal the value; a `*` in the value
/// matches any run of characters (and only where it is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimCondition {
    /// The claim's name (`repository`, `repository_owner_id`, `ref`, ...).
    pub name: String,
    /// The value as written.
    pub value: String,
}

impl ClaimCondition {
    /// Whether `actual` (the claim's value as text) satisfies the condition.
    pub fn matches(&self, actual: &str) -> bool {
        glob_match(&self.value, actual)
    }

    fn has_wildcard(&self) -> bool {
        self.value.contains('*')
    }
}

/// `pattern` with `*` matching any run of characters (including none and `/`), everything
/// else literally.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// One trust policy, checked.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// `name`: unique among the policies; named in logs and refusals.
    pub name: String,
    /// `issuer`: the exact `iss` of the ID tokens.
    pub issuer: String,
    /// `jwks_file`: a pinned JWKS (no discovery, works offline).
    pub jwks_file: Option<PathBuf>,
    /// `audience`: the ID token's `aud` must contain it.
    pub audience: String,
    /// `subject`: the `sub` of the tokens issued under this policy.
    pub subject: String,
    /// `scopes` bound to `repo`, as issued.
    pub scopes: ScopeSet,
    /// `repo`: the repository pattern of the `push`/`pull` shorthands.
    pub repo: String,
    /// `expiry`: of the tokens issued (at most one hour).
    pub expiry: HumanDuration,
    /// `[auth.trust.claims]`, by claim name.
    pub claims: Vec<ClaimCondition>,
    /// The line of the `[[auth.trust]]` header in the config file.
    pub line: usize,
}

/// Why a `[[auth.trust]]` table was refused: the line and a sentence with the fix.
#[derive(Debug)]
pub struct PolicyError {
    pub line: usize,
    pub message: String,
}

/// Whether `url` may be an issuer or a key URL: `https://`, or `http://` on a loopback
/// address (a test issuer, or a proxy on the same host).
pub fn allowed_url(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    match u.scheme() {
        "https" => u.host().is_some(),
        "http" => match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        },
        _ => false,
    }
}

/// Checks the raw policies (`line` of each, in file order); relative `jwks_file` paths are
/// resolved by `fix`.
pub fn resolve(
    raw: Vec<(usize, RawTrust)>,
    fix: &dyn Fn(&str) -> PathBuf,
) -> Result<Vec<TrustPolicy>, PolicyError> {
    let mut out: Vec<TrustPolicy> = Vec::new();
    for (line, r) in raw {
        let p = resolve_one(line, r, fix)?;
        if let Some(other) = out.iter().find(|o| o.name == p.name) {
            return Err(PolicyError {
                line,
                message: format!(
                    "[[auth.trust]] `{}` is defined twice (first at line {}); give each policy its own name",
                    p.name, other.line
                ),
            });
        }
        out.push(p);
    }
    Ok(out)
}

fn resolve_one(
    line: usize,
    r: RawTrust,
    fix: &dyn Fn(&str) -> PathBuf,
) -> Result<TrustPolicy, PolicyError> {
    let err = |message: String| PolicyError { line, message };
    let name = r.name.filter(|n| !n.is_empty()).ok_or_else(|| {
        err("[[auth.trust]] has no `name`; add `name = \"my-ci-release\"` (letters, digits, `.`, `_`, `-`)".into())
    })?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        || name.len() > 64
    {
        return Err(err(format!(
            "[[auth.trust]] name `{}` may hold only letters, digits, `.`, `_` and `-` (at most 64)",
            crate::term::escaped_head(&name, 64)
        )));
    }
    let within = |m: &str| err(format!("[[auth.trust]] `{name}`: {m}"));
    let issuer = r.issuer.filter(|i| !i.is_empty()).ok_or_else(|| {
        within("`issuer` is missing; set it to the exact `iss` of the ID tokens, e.g. \"https://token.actions.githubusercontent.com\"")
    })?;
    if !allowed_url(&issuer) {
        return Err(within(&format!(
            "`issuer` `{}` must be an https:// URL (http:// only on a loopback address); it is the exact `iss` of the ID tokens",
            crate::term::escaped_head(&issuer, 80)
        )));
    }
    let audience = r.audience.filter(|a| !a.is_empty()).ok_or_else(|| {
        within("`audience` is required: an ID token made for another service must not be accepted here; set `audience = \"tessera\"` and ask the CI platform for that audience")
    })?;
    let subject = r.subject.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
        within("`subject` is missing; set the `sub` of the tokens this policy issues, e.g. `subject = \"ci-acme-app\"`")
    })?;
    let repo = r.repo.unwrap_or_else(|| "*".to_owned());
    let scope_list = r.scopes.unwrap_or_default();
    if scope_list.is_empty() {
        return Err(within(
            "`scopes` is missing or empty; list what the workload may do, e.g. `scopes = [\"push\"]`",
        ));
    }
    let scopes = ScopeSet::parse_list(&scope_list.join(","), &repo)
        .map_err(|e| within(&format!("`scopes`/`repo`: {e}")))?;
    let expiry_text = r.expiry.unwrap_or_else(|| DEFAULT_POLICY_EXPIRY.to_owned());
    let expiry =
        HumanDuration::parse(&expiry_text).map_err(|e| within(&format!("`expiry`: {e}")))?;
    match expiry.as_fixed() {
        Some(d) if !d.is_zero() && d.as_secs() <= MAX_POLICY_EXPIRY_SECS => {}
        _ => {
            return Err(within(&format!(
                "`expiry` `{expiry_text}` must be between 1s and 1h: a workload token lives no longer than the CI job; e.g. `expiry = \"15m\"`"
            )));
        }
    }
    let jwks_file = r.jwks_file.filter(|f| !f.is_empty()).map(|f| fix(&f));
    let mut claims = Vec::new();
    for (claim, value) in r.claims {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(within(&format!(
                    "claim `{claim}` must be a string, an integer or a boolean"
                )));
            }
        };
        if text.is_empty() {
            return Err(within(&format!(
                "claim `{claim}` is empty; write the exact value, or remove the line"
            )));
        }
        if matches!(claim.as_str(), "iss" | "aud" | "exp" | "nbf" | "iat") {
            return Err(within(&format!(
                "claim `{claim}` is checked by the policy itself (`issuer`, `audience`, times); remove it from [auth.trust.claims]"
            )));
        }
        claims.push(ClaimCondition {
            name: claim,
            value: text,
        });
    }
    if !claims.iter().any(|c| !c.has_wildcard()) {
        return Err(within(
            "[auth.trust.claims] needs at least one exact condition (no `*`), or every job of the issuer would be trusted; bind an immutable id such as `repository_owner_id = \"123456\"` (GitHub) or `namespace_id = \"42\"` (GitLab)",
        ));
    }
    Ok(TrustPolicy {
        name,
        issuer,
        jwks_file,
        audience,
        subject,
        scopes,
        repo,
        expiry,
        claims,
        line,
    })
}

/// The line in `text` of the byte offset `at` (1-based).
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// A path for messages.
pub fn shown_path(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml_text: &str) -> Result<Vec<TrustPolicy>, PolicyError> {
        #[derive(Deserialize)]
        struct Doc {
            trust: Vec<RawTrust>,
        }
        let d: Doc = toml::from_str(toml_text).unwrap();
        resolve(d.trust.into_iter().map(|t| (1, t)).collect(), &|s: &str| {
            PathBuf::from("/etc/tessera").join(s)
        })
    }

    const OK: &str = "[[trust]]\nname = \"a\"\nissuer = \"https://token.actions.githubusercontent.com\"\naudience = \"tessera\"\nsubject = \"ci\"\nscopes = [\"push\"]\nrepo = \"acme/*\"\n[trust.claims]\nrepository_owner_id = \"123\"\nref = \"refs/heads/*\"\n";

    #[test]
    fn a_complete_policy_loads_with_defaults() {
        let p = &raw(OK).unwrap()[0];
        assert_eq!(p.expiry.to_string(), "15m");
        assert_eq!(p.claims.len(), 2);
        assert_eq!(p.scopes.to_string(), "repository:acme/*:push");
    }

    #[test]
    fn refusals_name_the_fix() {
        let cases = [
            (
                OK.replace("audience = \"tessera\"\n", ""),
                "`audience` is required",
            ),
            (
                OK.replace("repository_owner_id = \"123\"\n", ""),
                "at least one exact condition",
            ),
            (
                OK.replace("repo = ", "expiry = \"2h\"\nrepo = "),
                "between 1s and 1h",
            ),
            (OK.replace("https://token", "http://token"), "https://"),
            (
                OK.replace("scopes = [\"push\"]\n", ""),
                "`scopes` is missing",
            ),
            (format!("{OK}aud = \"x\"\n"), "checked by the policy itself"),
            (format!("{OK}{OK}"), "defined twice"),
        ];
        for (text, want) in cases {
            let e = raw(&text).unwrap_err().message;
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn a_star_matches_only_where_written() {
        let c = |v: &str| ClaimCondition {
            name: "ref".into(),
            value: v.into(),
        };
        assert!(c("refs/heads/main").matches("refs/heads/main"));
        assert!(!c("refs/heads/main").matches("refs/heads/main2"));
        assert!(!c("refs/heads/main").matches("refs/heads/mai"));
        assert!(c("refs/heads/*").matches("refs/heads/release/1"));
        assert!(!c("refs/heads/*").matches("refs/tags/v1"));
        assert!(c("repo:acme/*:ref:*").matches("repo:acme/app:ref:refs/heads/x"));
        assert!(!c("repo:acme/*:ref:*").matches("repo:evil/app:ref:x"));
        assert!(!c("a*b*c").matches("ac"));
        assert!(c("a*b*c").matches("abc"));
    }

    #[test]
    fn urls_are_https_or_loopback_http() {
        assert!(allowed_url("https://gitlab.example.com"));
        assert!(allowed_url("http://127.0.0.1:8080"));
        assert!(allowed_url("http://localhost:1"));
        assert!(!allowed_url("http://10.0.0.1"));
        assert!(!allowed_url("ftp://x"));
        assert!(!allowed_url("not a url"));
    }
}
