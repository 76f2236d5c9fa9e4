//! API keys over HTTP (contract section 9): a key as the credential of a request
//! ([`key_principal`], called by the one dispatch in `api::authenticate` and by the registry
//! flow), the `X-RateLimit-*` headers ([`rate_headers`]), and the `/auth/keys` endpoints.
//!
//! Who may do what (the rule of `/auth/tokens`, per owner): every principal lists, creates and
//! changes its OWN keys (owner = its subject), never with more scopes than it holds itself;
//! `admin:tokens:read` reads everyone's, `admin:tokens:write` changes anyone's and creates keys
//! for another subject. A key of another owner that the caller may not read is 404, as if it
//! did not exist.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{ScopesField, authenticate_any, scope_list};
use super::error::ApiError;
use super::extract::{Caller, PathParam, RateSlot};
use super::middleware::AuditSlot;
use super::state::ServerState;
use crate::auth::keys::{
    self, Access, KeyError, NewKey, PresentedKey, RateLimit, check_grantable, may_manage,
};
use crate::auth::{AuthError, Principal};
use crate::duration::HumanDuration;
use crate::scope::ScopeSet;
use crate::store::{ApiKeyRecord, StoredKeyState};

type AppState = State<Arc<ServerState>>;

// ---- a key as a credential -----------------------------------------------------------------

/// Authenticates an API key presented by `caller`: the principal is the key's owner with the
/// key's scopes. The key's rate-limit state goes into the response headers (also with a 429),
/// and the audit line names the key.
pub(crate) async fn key_principal(
    state: &ServerState,
    key: &str,
    caller: &Caller,
    audit: Option<&AuditSlot>,
) -> Result<Principal, ApiError> {
    let result = state.auth.authenticate_key(key, caller.client).await;
    match &result {
        Ok(who) => {
            if let Some(p) = &who.key {
                if let Some(rate) = p.rate {
                    caller.rate.set(rate);
                }
                if let Some(a) = audit {
                    a.set_principal(&format!("{} of {}", p.key.audit_name(), who.subject));
                }
            }
        }
        Err(AuthError::KeyRateLimited { status, .. }) => caller.rate.set(*status),
        Err(_) => {}
    }
    Ok(result?)
}

/// Adds `X-RateLimit-Limit`, `-Remaining` and `-Reset` to the response of a request made with
/// a rate-limited API key (the handler put its state in the request's [`RateSlot`]).
pub(crate) async fn rate_headers(mut req: Request, next: Next) -> Response {
    let slot = RateSlot::default();
    req.extensions_mut().insert(slot.clone());
    let mut response = next.run(req).await;
    if let Some(s) = slot.get() {
        let h = response.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from(s.limit));
        h.insert("x-ratelimit-remaining", HeaderValue::from(s.remaining));
        h.insert("x-ratelimit-reset", HeaderValue::from(s.reset));
    }
    response
}

fn rfc3339(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_string()))
}

/// The body of `GET /auth/verify` for an API key: made once per key and kept with it.
pub(crate) fn verify_body(presented: &PresentedKey) -> Response {
    let body = presented.key.rendered(|k| {
        let r = &k.record;
        serde_json::to_vec(&json!({
            "valid": true,
            "method": "api_key",
            "subject": r.owner,
            "scopes": k.scopes.to_strings(),
            "jti": Value::Null,
            "key_id": r.id,
            "key_name": r.name,
            "issued_at": rfc3339(Some(r.created_at)).as_str().filter(|_| !k.from_config),
            "expires_at": rfc3339(r.expires_at),
        }))
        .unwrap_or_default()
    });
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Bytes::from_owner(body),
    )
        .into_response()
}

/// `DELETE /auth/token` made with an API key: revokes that key.
pub(crate) async fn revoke_presented(
    state: &ServerState,
    presented: &PresentedKey,
    audit: &AuditSlot,
) -> Result<Response, ApiError> {
    if presented.key.from_config {
        return Err(ApiError::bad_request(
            "a key held in the configuration cannot be revoked over the API; remove it from `[[auth.api_keys]]`",
        ));
    }
    let id = presented.key.record.id.clone();
    audit.set_target(&id);
    let rec = change(state, id, StoredKeyState::Revoked).await?;
    Ok(answer(StatusCode::OK, key_json(&rec, Timestamp::now())))
}

// ---- the view of a key ---------------------------------------------------------------------

/// A key as the API shows it (never the key itself).
pub(crate) fn key_json(k: &ApiKeyRecord, now: Timestamp) -> Value {
    let from_config = k.id.starts_with("config:");
    json!({
        "id": k.id,
        "name": k.name,
        "owner": k.owner,
        "scopes": k.scopes.split_whitespace().collect::<Vec<_>>(),
        "state": k.state_at(now).as_str(),
        "created_at": if from_config { Value::Null } else { rfc3339(Some(k.created_at)) },
        "expires_at": rfc3339(k.expires_at),
        "last_used_at": rfc3339(k.last_used_at),
        "last_addresses": k.last_addresses,
        "allow_ip": k.allow_ip,
        "rate_limit": k.rate_limit,
        "successor": k.successor,
        "grace_until": rfc3339(k.grace_until),
        "parent": k.parent,
        "source": if from_config { "config" } else { "store" },
    })
}

fn answer(status: StatusCode, body: Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

// ---- endpoints -----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    owner: Option<String>,
}

/// `GET /auth/keys[?owner=S]`: the caller's keys; with `admin:tokens:read`, everyone's (or
/// those of `owner`), config-held keys included. Expired and revoked keys stay listed.
pub(crate) async fn list(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let who = authenticate_any(&state, &caller, &audit).await?;
    let Query(q) = query.map_err(|_| {
        ApiError::bad_request("the only query parameter of `GET /auth/keys` is `owner`")
    })?;
    let admin = who.scopes.allows(&keys::admin_scope(Access::Read));
    let owner = match q.owner {
        Some(o) if o != who.subject && !admin => {
            return Err(ApiError::forbidden(
                keys::admin_scope(Access::Read).to_string(),
            ));
        }
        Some(o) => Some(o),
        None if admin => None,
        None => Some(who.subject.clone()),
    };
    state.auth.flush_key_uses().await?;
    let o = owner.clone();
    let mut records = state
        .auth
        .with_store(move |s| s.list_keys(o.as_deref()))
        .await?;
    records.extend(
        state
            .auth
            .api_keys()
            .config_keys()
            .filter(|k| owner.as_ref().is_none_or(|o| &k.owner == o))
            .filter(|k| may_manage(&who, &k.owner, Access::Read))
            .cloned(),
    );
    let now = Timestamp::now();
    let list: Vec<Value> = records.iter().map(|k| key_json(k, now)).collect();
    Ok(answer(StatusCode::OK, json!({ "keys": list })))
}

/// Allow-list in a body: a comma-separated string or an array.
#[derive(Deserialize, Default)]
#[serde(untagged)]
pub(crate) enum ListField {
    #[default]
    None,
    Text(String),
    List(Vec<String>),
}

impl ListField {
    fn joined(self) -> Option<String> {
        match self {
            ListField::None => None,
            ListField::Text(t) if t.trim().is_empty() => None,
            ListField::Text(t) => Some(t),
            ListField::List(v) if v.is_empty() => None,
            ListField::List(v) => Some(v.join(",")),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    name: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    scopes: ScopesField,
    #[serde(default)]
    repo: Option<String>,
    #[serde(default)]
    expiry: Option<String>,
    #[serde(default)]
    allow_ip: ListField,
    #[serde(default)]
    rate_limit: Option<String>,
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(e.to_string())
}

/// `POST /auth/keys`: a new key for the caller (or, with `admin:tokens:write`, for
/// `subject`), with at most the caller's scopes. The key is in the answer, once.
pub(crate) async fn create(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
    super::extract::JsonBody(body): super::extract::JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let who = authenticate_any(&state, &caller, &audit).await?;
    let owner = match body.subject {
        Some(s) => s,
        None if who.method == crate::auth::Method::Anonymous => {
            return Err(ApiError::bad_request(
                "authentication is off on this server, so name the key's owner with `subject`",
            ));
        }
        None => who.subject.clone(),
    };
    if !may_manage(&who, &owner, Access::Write) {
        return Err(ApiError::forbidden(
            keys::admin_scope(Access::Write).to_string(),
        ));
    }
    let scopes = scope_list(body.scopes, body.repo.as_deref())?.unwrap_or_default();
    check_grantable(&who, &scopes)?;
    let expiry = body
        .expiry
        .as_deref()
        .map(HumanDuration::parse)
        .transpose()
        .map_err(bad)?;
    let allow_ip = match body.allow_ip.joined() {
        None => vec![],
        Some(l) => keys::parse_cidr_list(&l).map_err(bad)?,
    };
    let rate_limit = body
        .rate_limit
        .as_deref()
        .map(RateLimit::parse)
        .transpose()
        .map_err(bad)?;
    // The key never outlives the credential it is made with (a token, or another key).
    let (parent, not_after) = keys::parent_of(&who);
    let new = NewKey {
        name: body.name,
        owner,
        scopes,
        expiry,
        allow_ip,
        rate_limit,
        parent,
        not_after,
    };
    let prefix = state.auth.api_keys().prefix().to_owned();
    let max = state.auth.settings().max_token_expiry;
    let (text, rec) = state
        .auth
        .with_store(move |s| Ok(keys::create_key(s, &prefix, &new, max, Timestamp::now())))
        .await??;
    audit.set_target(&format!("key {} ({}) of {}", rec.name, rec.id, rec.owner));
    tracing::info!(target: "tessera::audit", key = %rec.id, name = ?rec.name, owner = ?rec.owner, scopes = %rec.scopes, "API key created");
    let mut body = key_json(&rec, Timestamp::now());
    body["key"] = Value::String(text.expose().to_owned());
    Ok(answer(StatusCode::CREATED, body))
}

/// The key `id` if `who` may `access` it; 404 otherwise (as if there were none).
async fn visible(
    state: &ServerState,
    who: &Principal,
    id: &str,
    access: Access,
) -> Result<ApiKeyRecord, ApiError> {
    let not_found = || {
        ApiError::no_such(
            "no API key with that id that you may see; `GET /auth/keys` lists the keys".to_owned(),
        )
    };
    if id.is_empty() || id.len() > 128 {
        return Err(not_found());
    }
    if let Some(k) = state.auth.api_keys().config_keys().find(|k| k.id == id) {
        if !may_manage(who, &k.owner, Access::Read) {
            return Err(not_found());
        }
        if access == Access::Write {
            return Err(ApiError::bad_request(
                "a key held in the configuration cannot be changed over the API; edit `[[auth.api_keys]]`",
            ));
        }
        return Ok(k.clone());
    }
    let i = id.to_owned();
    let rec = state
        .auth
        .with_store(move |s| s.key_by_id(&i))
        .await?
        .ok_or_else(not_found)?;
    if !may_manage(who, &rec.owner, Access::Read) {
        return Err(not_found());
    }
    if !may_manage(who, &rec.owner, access) {
        return Err(ApiError::forbidden(keys::admin_scope(access).to_string()));
    }
    Ok(rec)
}

/// `GET /auth/keys/{id}`.
pub(crate) async fn show(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    let who = authenticate_any(&state, &caller, &audit).await?;
    state.auth.flush_key_uses().await?;
    let rec = visible(&state, &who, &id, Access::Read).await?;
    Ok(answer(StatusCode::OK, key_json(&rec, Timestamp::now())))
}

/// Sets the state of key `id` in the store and drops it from this server's table.
async fn change(
    state: &ServerState,
    id: String,
    to: StoredKeyState,
) -> Result<ApiKeyRecord, ApiError> {
    let rec = state
        .auth
        .with_store(move |s| Ok(keys::set_state(s, &id, to)))
        .await?
        .map_err(ApiError::from)?;
    state.auth.api_keys().forget(&rec.digest);
    tracing::info!(target: "tessera::audit", key = %rec.id, name = ?rec.name, owner = ?rec.owner, state = to.as_str(), "API key changed");
    Ok(rec)
}

async fn change_handler(
    state: &ServerState,
    audit: &AuditSlot,
    caller: &Caller,
    id: &str,
    to: StoredKeyState,
) -> Result<Response, ApiError> {
    let who = authenticate_any(state, caller, audit).await?;
    let rec = visible(state, &who, id, Access::Write).await?;
    audit.set_target(&format!("key {} ({}) of {}", rec.name, rec.id, rec.owner));
    let rec = change(state, rec.id, to).await?;
    Ok(answer(StatusCode::OK, key_json(&rec, Timestamp::now())))
}

/// `DELETE /auth/keys/{id}`: revokes the key (it stays listed).
pub(crate) async fn revoke(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    change_handler(&state, &audit, &caller, &id, StoredKeyState::Revoked).await
}

/// `POST /auth/keys/{id}/disable`.
pub(crate) async fn disable(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    change_handler(&state, &audit, &caller, &id, StoredKeyState::Disabled).await
}

/// `POST /auth/keys/{id}/enable`.
pub(crate) async fn enable(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    change_handler(&state, &audit, &caller, &id, StoredKeyState::Active).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    grace: Option<String>,
}

/// `POST /auth/keys/{id}/rotate` (body `{"grace": "1h"}`, optional): a new key with the old
/// one's name, owner, scopes, expiry, allow-list and rate limit; the old key works until the
/// grace ends (none: revoked at once). The new key is in the answer, once.
pub(crate) async fn rotate(
    State(state): AppState,
    audit: AuditSlot,
    caller: Caller,
    PathParam(id): PathParam<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = authenticate_any(&state, &caller, &audit).await?;
    let body: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            ApiError::bad_request(
                "the body of a rotation is empty or `{\"grace\": \"DURATION\"}`, e.g. `{\"grace\": \"1h\"}`",
            )
        })?
    };
    let grace = body
        .grace
        .as_deref()
        .map(HumanDuration::parse)
        .transpose()
        .map_err(bad)?;
    let old = visible(&state, &who, &id, Access::Write).await?;
    // A key rotated by a caller holding fewer scopes than the key cannot outgrow the caller.
    check_grantable(
        &who,
        &ScopeSet::parse_claim(&old.scopes).unwrap_or_default(),
    )?;
    audit.set_target(&format!("key {} ({}) of {}", old.name, old.id, old.owner));
    let prefix = state.auth.api_keys().prefix().to_owned();
    let (text, new, old) = state
        .auth
        .with_store(move |s| Ok(keys::rotate_key(s, &prefix, &old, grace, Timestamp::now())))
        .await?
        .map_err(|e: KeyError| ApiError::from(e))?;
    state.auth.api_keys().forget(&old.digest);
    tracing::info!(target: "tessera::audit", key = %old.id, successor = %new.id, name = ?new.name, owner = ?new.owner, grace_until = ?old.grace_until, "API key rotated");
    let now = Timestamp::now();
    let mut body = key_json(&new, now);
    body["key"] = Value::String(text.expose().to_owned());
    body["previous"] = key_json(&old, now);
    Ok(answer(StatusCode::CREATED, body))
}
