//! The claims of a tessera token.

use crate::scope::ScopeSet;

/// Claims of a tessera token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    /// Absent means never; `null` (or anything but an integer) is refused, not "never".
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    pub exp: Option<i64>,
    /// The granted scopes, parsed once; in the JWT the canonical space-separated string.
    #[serde(
        serialize_with = "scope_as_string",
        deserialize_with = "scope_from_string"
    )]
    pub scope: ScopeSet,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    pub aud: Option<String>,
}

/// An optional claim that, when present, must hold a value of its type (never `null`).
fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The `scope` claim as it is signed: the canonical space-separated form.
fn scope_as_string<S: serde::Serializer>(scopes: &ScopeSet, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(scopes)
}

fn scope_from_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ScopeSet, D::Error> {
    let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
    ScopeSet::parse_claim(&text).map_err(serde::de::Error::custom)
}

/// The claims as they arrive, before the `scope` claim is parsed (so that `verify` can say
/// which check failed in the order it checks them).
#[derive(serde::Deserialize)]
pub(super) struct RawClaims {
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    #[serde(default, deserialize_with = "not_null")]
    pub exp: Option<i64>,
    pub scope: String,
    #[serde(default, deserialize_with = "not_null")]
    pub aud: Option<String>,
}
