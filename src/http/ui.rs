//! The web UI at `/ui/` (contract section 10) and the read-only `GET /auth/security` it
//! shows on its Security screen.
//!
//! The pages are server-rendered skeletons (maud) that carry no data of any principal: one
//! script, `/ui/app.js`, fills them from the same JSON API the CLI uses (`/auth/session`,
//! `/auth/tokens`, `/auth/keys`, `/auth/users`, `/auth/sessions`, `/auth/security`), with the
//! session cookie, `X-CSRF-Token` and the browser's own `Origin`. So there is no second code
//! path: who may see or change what is decided by the API alone, and a page served to anyone
//! reveals nothing. Assets are compiled into the binary; nothing is loaded from elsewhere.
//!
//! Every `/ui/` response carries a strict `Content-Security-Policy` (no inline script or
//! style, nothing from another origin, no framing), `X-Frame-Options: DENY` and
//! `Referrer-Policy: no-referrer`. Pages are `Cache-Control: no-store`; the script and the
//! style sheet, which hold no secret, are linked with a version (a digest of both) in their
//! URL and may be kept by the browser for good, so moving between screens costs one request
//! for the page and the API calls only.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine;
use jiff::Timestamp;
use maud::{DOCTYPE, Markup, html};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::Caller;
use super::middleware::AuditSlot;
use super::state::ServerState;
use crate::registry::validity::certificate_validity;

const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");
const ICON_SVG: &str = include_str!("ui/icon.svg");

/// The policy of every `/ui/` response: only this origin's script, style, images and API; no
/// inline script or style, no plugins, no `<base>`, no framing, forms post only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The routes of the UI (with their security headers) and of `GET /auth/security`.
pub(crate) fn routes() -> Router<Arc<ServerState>> {
    let pages = Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { page(Screen::SignIn) }))
        .route("/ui/tokens", get(|| async { page(Screen::Tokens) }))
        .route("/ui/users", get(|| async { page(Screen::Users) }))
        .route("/ui/security", get(|| async { page(Screen::Security) }))
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/ui/icon.svg",
            get(|| async { asset("image/svg+xml", ICON_SVG) }),
        )
        .route("/ui/{*rest}", get(|| async { page(Screen::NotFound) }))
        .layer(axum::middleware::from_fn(headers));
    pages.route("/auth/security", get(security))
}

/// Adds the security headers to every `/ui/` response.
async fn headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The version in the URLs of the script and the style sheet: the first 12 hex digits of
/// the SHA-256 of both, so a new build's assets are never taken from an old cache.
fn asset_version() -> &'static str {
    use sha2::{Digest, Sha256};
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let digest = Sha256::new()
            .chain_update(APP_JS)
            .chain_update(APP_CSS)
            .finalize();
        hex::encode(&digest[..6])
    })
}

/// A static asset; the script and the style sheet may be cached for good (see the module
/// documentation), the icon (not versioned) for a day.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let cache = if content_type.starts_with("image/") {
        "public, max-age=86400"
    } else {
        "public, max-age=31536000, immutable"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Screen {
    SignIn,
    Tokens,
    Users,
    Security,
    NotFound,
}

impl Screen {
    fn id(self) -> &'static str {
        match self {
            Screen::SignIn => "signin",
            Screen::Tokens => "tokens",
            Screen::Users => "users",
            Screen::Security => "security",
            Screen::NotFound => "notfound",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Screen::SignIn => "Sign in",
            Screen::Tokens => "Tokens and API keys",
            Screen::Users => "Users",
            Screen::Security => "Security",
            Screen::NotFound => "Not found",
        }
    }

    /// Whether the screen needs a session (the script sends the browser to Sign in without).
    fn signed_in(self) -> bool {
        matches!(self, Screen::Tokens | Screen::Users | Screen::Security)
    }
}

/// A whole page: the common frame around the screen's skeleton.
fn page(screen: Screen) -> Response {
    let status = if screen == Screen::NotFound {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (screen.title()) " · tessera" }
                link rel="icon" href="/ui/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href=(format!("/ui/app.css?v={}", asset_version()));
                script src=(format!("/ui/app.js?v={}", asset_version())) defer {}
            }
            body data-screen=(screen.id()) {
                a.skip href="#main" { "Skip to content" }
                header.bar {
                    a.brand href="/ui/tokens" { "tessera" }
                    @if screen.signed_in() {
                        nav aria-label="Main" {
                            ul {
                                (nav_item(screen, Screen::Tokens, "/ui/tokens", "Tokens", false))
                                (nav_item(screen, Screen::Users, "/ui/users", "Users", true))
                                (nav_item(screen, Screen::Security, "/ui/security", "Security", false))
                            }
                        }
                        div.who {
                            span #who {}
                            button #signout type="button" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (screen.title()) }
                    @match screen {
                        Screen::SignIn => (sign_in()),
                        Screen::Tokens => (tokens()),
                        Screen::Users => (users()),
                        Screen::Security => (security_screen()),
                        Screen::NotFound => p { "There is no such page. " a href="/ui/" { "Go to tessera" } "." },
                    }
                }
                (confirm_dialog())
                div #status.status role="status" aria-live="polite" {}
            }
        }
    };
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        body.into_string(),
    )
        .into_response()
}

fn nav_item(current: Screen, to: Screen, href: &str, label: &str, admin_only: bool) -> Markup {
    let aria_current = (current == to).then_some("page");
    html! {
        li id=(format!("nav-{}", to.id())) hidden[admin_only] {
            a href=(href) aria-current=[aria_current] { (label) }
        }
    }
}

fn sign_in() -> Markup {
    html! {
        form #signin-form.card method="post" autocomplete="on" {
            div.field {
                label for="username" { "Username" }
                input #username name="username" type="text" required autocomplete="username"
                    autocapitalize="none" spellcheck="false" maxlength="256";
            }
            div.field {
                label for="password" { "Password" }
                input #password name="password" type="password" required
                    autocomplete="current-password" maxlength="1024";
            }
            p #signin-error.error role="alert" hidden {}
            button #signin type="submit" { "Sign in" }
        }
        p.hint { "Scripts and CI use tokens, not this page: see " code { "tessera auth login" } "." }
    }
}

fn tokens() -> Markup {
    html! {
        p.lead { "Your own tokens and API keys. Nothing here can do more than you can." }
        section #secret-panel.card.secret aria-labelledby="secret-h" hidden {
            h2 #secret-h tabindex="-1" { "Copy your new secret now" }
            p.warning { strong { "This is the only time it is shown." } " tessera does not keep it: if you lose it, revoke it and create another. Do not paste it into chats or tickets." }
            label for="secret" #secret-label { "Secret" }
            div.copyrow {
                input #secret type="text" readonly autocomplete="off" spellcheck="false";
                button #copy type="button" { "Copy" }
            }
            p #copy-status.hint role="status" {}
            button #secret-done type="button" { "I have saved it" }
        }
        section #create-section.card aria-labelledby="create-h" {
            h2 #create-h tabindex="-1" { "Create a token or an API key" }
            form #create-form method="post" autocomplete="off" {
                fieldset.kind {
                    legend { "Kind" }
                    label { input type="radio" name="kind" value="token" checked; span { "Token (JWT, for " code{"docker login"} " and the API)" } }
                    label { input type="radio" name="kind" value="key"; span { "API key (opaque " code{"tsk_"} " key: can be disabled and rotated, records its last use)" } }
                }
                div #name-field.field {
                    label for="c-name" { "Name" }
                    input #c-name name="name" type="text" required maxlength="64"
                        autocomplete="off" spellcheck="false" aria-describedby="c-name-hint";
                    p #c-name-hint.hint { "So that you recognise it later, e.g. " code { "ci-deploy" } "." }
                }
                fieldset #c-scopes aria-describedby="c-scopes-hint" {
                    legend { "Scopes" }
                    p #c-scopes-hint.hint { "What it may do: at most what you may do yourself." }
                    div #scope-choices.choices {}
                    div.field {
                        label for="c-more" { "More scopes (optional)" }
                        input #c-more name="more" type="text" spellcheck="false"
                            autocomplete="off" aria-describedby="c-more-hint";
                        p #c-more-hint.hint { "Comma-separated, narrower than the ones above, e.g. " code { "repository:acme/app:pull" } "." }
                    }
                }
                div.field {
                    label for="c-expiry" { "Expires after" }
                    input #c-expiry name="expiry" type="text" value="30d" required
                        list="expiry-choices" spellcheck="false" autocomplete="off"
                        aria-describedby="c-expiry-hint";
                    datalist #expiry-choices {
                        option value="1h" {} option value="1d" {} option value="7d" {}
                        option value="30d" {} option value="90d" {} option value="1y" {}
                        option value="0" {}
                    }
                    p #c-expiry-hint.hint { "A duration such as " code{"15m"} ", " code{"7d"} ", " code{"1y6M"} "; " code{"0"} " means never (when the server allows it)." }
                }
                div #key-options hidden {
                    div.field {
                        label for="c-allow-ip" { "Allowed client addresses (optional)" }
                        input #c-allow-ip name="allow_ip" type="text" spellcheck="false"
                            autocomplete="off" aria-describedby="c-allow-ip-hint";
                        p #c-allow-ip-hint.hint { "Comma-separated CIDRs, e.g. " code{"10.0.0.0/8, 192.0.2.7/32"} "." }
                    }
                    div.field {
                        label for="c-rate" { "Rate limit (optional)" }
                        input #c-rate name="rate_limit" type="text" spellcheck="false"
                            autocomplete="off" aria-describedby="c-rate-hint";
                        p #c-rate-hint.hint { "Requests per period, e.g. " code{"100/1m"} "." }
                    }
                }
                p #create-error.error role="alert" hidden {}
                button #create type="submit" { "Create" }
            }
        }
        section aria-labelledby="tokens-h" {
            h2 #tokens-h { "Tokens" }
            div #tokens-list { p.hint { "Loading…" } }
        }
        section aria-labelledby="keys-h" {
            h2 #keys-h { "API keys" }
            div #keys-list { p.hint { "Loading…" } }
        }
    }
}

fn users() -> Markup {
    html! {
        p.lead { "Everyone who can sign in, their roles, and the scopes these give them." }
        div #users-list { p.hint { "Loading…" } }
    }
}

fn security_screen() -> Markup {
    html! {
        section.card aria-labelledby="server-h" {
            h2 #server-h { "This server" }
            dl #server-facts.facts { dt { "Loading…" } dd {} }
        }
        section.card aria-labelledby="keys-h" {
            h2 #keys-h { "Token signing keys" }
            div #signing-keys {}
        }
        section.card aria-labelledby="registry-h" {
            h2 #registry-h { "Registry token service" }
            dl #registry-facts.facts {}
        }
        section.card aria-labelledby="sessions-h" {
            h2 #sessions-h { "Your sessions" }
            div #sessions-list { p.hint { "Loading…" } }
            button #signout-all.danger type="button" { "Sign out everywhere" }
        }
    }
}

fn confirm_dialog() -> Markup {
    html! {
        dialog #confirm aria-labelledby="confirm-text" {
            p #confirm-text {}
            div.actions {
                button #confirm-cancel type="button" { "Cancel" }
                button #confirm-ok.danger type="button" { "Confirm" }
            }
        }
    }
}

// ---- GET /auth/security --------------------------------------------------------------------

/// `GET /auth/security`: the server facts of the Security screen, for any authenticated
/// principal (a session, a token or, with the API keys merged, a key; anonymous when
/// `auth.enabled = false`). Never a secret: key ids, algorithms, the certificate's dates.
async fn security(
    State(state): State<Arc<ServerState>>,
    audit: AuditSlot,
    caller: Caller,
) -> Result<Response, ApiError> {
    super::api::authenticate_any(&state, &caller, &audit).await?;
    let auth = &state.auth;
    let settings = auth.settings();
    let keys = auth.keys();
    let mut signing = vec![json!({
        "kid": keys.current.kid(),
        "algorithm": "HS256",
        "use": "current",
    })];
    signing.extend(keys.previous.iter().map(|k| {
        json!({
            "kid": k.kid(),
            "algorithm": "HS256",
            "use": "previous",
        })
    }));
    let registry = state.registry.as_ref().map(|r| {
        let validity = base64::engine::general_purpose::STANDARD
            .decode(r.key.x5c())
            .ok()
            .and_then(|der| certificate_validity(&der));
        let (not_before, not_after) = match validity {
            Some((b, a)) => (Value::from(b.to_string()), Value::from(a.to_string())),
            None => (Value::Null, Value::Null),
        };
        let days_left =
            validity.map(|(_, a)| (a.as_second() - Timestamp::now().as_second()) / 86_400);
        json!({
            "service": r.service,
            "issuer": r.issuer,
            "kid": r.key.kid(),
            "algorithm": "ES256",
            "certificate_not_before": not_before,
            "certificate_not_after": not_after,
            "certificate_days_left": days_left,
            "token_ttl_seconds": r.ttl.as_secs(),
        })
    });
    Ok(axum::Json(json!({
        "auth_enabled": settings.enabled,
        "issuer": settings.issuer,
        "token_expiry": settings.token_expiry.to_string(),
        "max_token_expiry": settings.max_token_expiry.to_string(),
        "password_login": auth.password_login().is_some(),
        "signing_keys": signing,
        "registry": registry,
    }))
    .into_response())
}
