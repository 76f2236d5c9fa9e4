//! Registry tokens: the `scope` parameters a client asks for, what a credential's scopes
//! grant of them, and the ES256 JWT the registry checks.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::key::RegistryKey;
use crate::scope::{Action, Scope, ScopeSet};

/// The most `scope` parameters one token request may carry (400 beyond).
pub const MAX_SCOPES: usize = 64;

/// One `access` entry of a registry token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name, or `catalog`.
    pub name: String,
    /// Granted actions, in the order asked.
    pub actions: Vec<String>,
}

/// Claims of a registry token (what distribution 2.8 and 3.x read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryClaims {
    pub iss: String,
    pub sub: String,
    /// The service, as a JSON string (2.8 rejects a list).
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    pub access: Vec<Access>,
}

/// A requested scope: `TYPE:NAME:ACTIONS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// Resource type (`repository`, `registry`, or anything else, which is granted nothing).
    pub kind: String,
    /// Resource name (may contain `/`; a `host:port/` prefix stays in the name).
    pub name: String,
    /// Actions, comma-separated in the request.
    pub actions: Vec<String>,
}

/// Why a `scope` parameter cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid scope `{shown}`: expected TYPE:NAME:ACTIONS, e.g. `repository:team/app:pull,push`"
)]
pub struct ScopeParseError {
    shown: String,
}

/// Parses one scope, `TYPE:NAME:ACTIONS`, splitting at the first and the last `:` so that a
/// name with a `host:port/` prefix never moves the actions.
pub fn parse_scope(s: &str) -> Result<Requested, ScopeParseError> {
    let err = || ScopeParseError {
        shown: crate::term::escaped_head(s, 80),
    };
    let (kind, rest) = s.split_once(':').ok_or_else(err)?;
    let (name, actions) = rest.rsplit_once(':').ok_or_else(err)?;
    if kind.is_empty() || name.is_empty() || actions.is_empty() {
        return Err(err());
    }
    let actions: Vec<String> = actions.split(',').map(str::to_owned).collect();
    if actions.iter().any(String::is_empty) {
        return Err(err());
    }
    Ok(Requested {
        kind: kind.to_owned(),
        name: name.to_owned(),
        actions,
    })
}

/// What `scopes` grants of `requested`: per resource, the actions asked for that the scopes
/// allow. Resources granted nothing are left out; the same resource asked twice is merged.
pub fn grant(scopes: &ScopeSet, requested: &[Requested]) -> Vec<Access> {
    let mut out: Vec<Access> = Vec::new();
    for r in requested {
        let actions: Vec<String> = match r.kind.as_str() {
            "repository" => {
                let wanted: Vec<&str> = r.actions.iter().map(String::as_str).collect();
                scopes.repository_actions(&r.name, &wanted)
            }
            "registry" if r.name == "catalog" => r
                .actions
                .iter()
                .filter(|a| a.as_str() == "*")
                .filter(|_| {
                    scopes.allows(&Scope::Registry {
                        name: r.name.clone(),
                        action: Action::Any,
                    })
                })
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        if actions.is_empty() {
            continue;
        }
        match out
            .iter_mut()
            .find(|a| a.kind == r.kind && a.name == r.name)
        {
            Some(existing) => {
                for a in actions {
                    if !existing.actions.contains(&a) {
                        existing.actions.push(a);
                    }
                }
            }
            None => out.push(Access {
                kind: r.kind.clone(),
                name: r.name.clone(),
                actions,
            }),
        }
    }
    out
}

/// Signs a registry token (ES256; the header of [`RegistryKey`]'s mode: `x5c` and the libtrust
/// `kid`, or only the RFC 7638 `kid`): the JWS that
/// `jsonwebtoken::encode` makes, with the key and the header prepared once in [`RegistryKey`].
pub fn sign(key: &RegistryKey, claims: &RegistryClaims) -> Result<String, String> {
    let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
    let header = key.header_b64();
    // header . payload . 64-byte signature (86 characters)
    let mut token = String::with_capacity(header.len() + payload.len().div_ceil(3) * 4 + 88);
    token.push_str(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(token.as_bytes()).map_err(|e| e.to_string())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
    Ok(token)
}

/// A random token id (128 bits, hex).
pub fn new_jti() -> Result<String, String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness for the token id: {e}"))?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Requested {
        parse_scope(s).unwrap()
    }

    #[test]
    fn parses_first_and_last_colon() {
        let r = req("repository:team/app:pull,push");
        assert_eq!(
            (r.kind.as_str(), r.name.as_str()),
            ("repository", "team/app")
        );
        assert_eq!(r.actions, ["pull", "push"]);
        let r = req("repository:127.0.0.1:5000/team/app:pull");
        assert_eq!(r.name, "127.0.0.1:5000/team/app");
        assert_eq!(r.actions, ["pull"]);
        assert_eq!(req("registry:catalog:*").name, "catalog");
        for bad in [
            "",
            "repository",
            "repository:app",
            ":app:pull",
            "repository::pull",
            "repository:app:",
            "repository:app:pull,,push",
        ] {
            assert!(parse_scope(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_verify_with_the_published_key_and_match_jsonwebtoken() {
        use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
        use secrecy::ExposeSecret;
        let pem = super::super::key::generate_key().unwrap();
        let cert = super::super::key::self_signed_certificate(&pem, "t").unwrap();
        let key = RegistryKey::new(&pem, cert.as_bytes()).unwrap();
        let claims = RegistryClaims {
            iss: "tessera".into(),
            sub: "ci".into(),
            aud: "registry.local".into(),
            exp: 2_000_000_000,
            nbf: 1_700_000_000,
            iat: 1_700_000_000,
            jti: new_jti().unwrap(),
            access: vec![Access {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: vec!["pull".into()],
            }],
        };
        let token = sign(&key, &claims).unwrap();
        // Header and payload are the bytes jsonwebtoken makes; only the signature differs
        // (ring's nonces are random, RustCrypto's deterministic).
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid().to_owned());
        header.x5c = Some(vec![key.x5c().to_owned()]);
        let encoding = EncodingKey::from_ec_pem(pem.expose_secret().as_bytes()).unwrap();
        let reference = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
        let signed = |t: &str| t[..t.rfind('.').unwrap()].to_owned();
        assert_eq!(signed(&token), signed(&reference));
        assert_eq!(token.len(), reference.len());
        // The signature checks out with the JWK the server publishes.
        let jwk = key.jwk();
        let decoding =
            DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
                .unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["registry.local"]);
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<RegistryClaims>(&token, &decoding, &v).unwrap();
        assert_eq!(data.claims, claims);
        assert_ne!(sign(&key, &claims).unwrap(), token, "random nonces");
    }

    #[test]
    fn grants_the_intersection() {
        let pull_team = ScopeSet::parse_list("pull", "team/*").unwrap();
        let g = grant(
            &pull_team,
            &[
                req("repository:team/app:pull,push"),
                req("repository:other/app:pull"),
                req("repository:team/app:delete"),
                req("repository:team/app:pull"),
                req("repository:Team/App:pull"),
                req("repository:127.0.0.1:5000/team/app:pull"),
                req("repository:team/app:fly"),
                req("widget:team/app:pull"),
                req("registry:catalog:*"),
            ],
        );
        assert_eq!(
            g,
            vec![Access {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: vec!["pull".into()],
            }]
        );
        let admin = ScopeSet::parse_claim("admin").unwrap();
        let g = grant(
            &admin,
            &[req("registry:catalog:*"), req("repository:a:push,pull")],
        );
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].actions, ["*"]);
        assert_eq!(g[1].actions, ["push", "pull"]);
        assert!(grant(&admin, &[]).is_empty());
    }
}
