//! `GET /auth/users` (contract section 9): the configured users, their roles and effective
//! scopes, where each password hash lives and whether the server found it at start-up. Needs
//! `admin:users:read` (a bare `admin` covers it).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::api::authenticate_any;
use super::error::ApiError;
use super::middleware::AuditSlot;
use super::state::ServerState;
use crate::scope::{Action, Scope};

/// `GET /auth/users`.
pub(crate) async fn list(
    State(state): State<Arc<ServerState>>,
    audit: AuditSlot,
    caller: super::extract::Caller,
) -> Result<Response, ApiError> {
    let who = authenticate_any(&state, &caller, &audit).await?;
    who.require(&Scope::AdminResource {
        resource: "users".to_owned(),
        action: Action::Read,
    })?;
    let users: Vec<_> = match state.auth.password_login() {
        None => Vec::new(),
        Some(login) => login
            .directory()
            .iter()
            .map(|u| {
                json!({
                    "name": u.name,
                    "roles": u.roles,
                    "scopes": u.scopes.to_strings(),
                    "password_hash": u.password_hash.as_str(),
                    "hash_present": login.has_hash(&u.name),
                    "single_user_keys": u.single_user_keys,
                })
            })
            .collect(),
    };
    Ok(axum::Json(json!({ "users": users })).into_response())
}
