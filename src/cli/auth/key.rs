//! `tessera auth key create|list|show|disable|enable|revoke|rotate|hash`: API keys (contract
//! section 9), in the local token store by default, or on a server with `--remote NAME`
//! (through its `/auth/keys` API, with the remote's stored token).

use clap::{Args, Subcommand};
use jiff::Timestamp;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::auth::apikey::KeyText;
use crate::auth::keys::{self, KeyError, NewKey, RateLimit};
use crate::cli::Context;
use crate::cli::error::{CliError, ErrorCode};
use crate::cli::remotes::{client_for, select, select_token};
use crate::duration::HumanDuration;
use crate::scope::ScopeSet;
use crate::store::{self, ApiKeyRecord, StoredKeyState, TokenStore};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key. The key goes to stdout, once (it is never shown again: the store
    /// keeps only its SHA-256); a summary goes to stderr.
    ///
    /// A key acts as its owner (--subject) with the scopes given, from anywhere or only from
    /// the --allow-ip networks, at most --rate-limit requests per period. It is accepted as
    /// `Authorization: Bearer KEY`, as `X-API-Key: KEY`, and as the password of a registry
    /// login (username: the owner, or `key`).
    #[command(after_help = "EXAMPLES:
  tessera auth key create --name ci --subject ci --scopes pull --expiry 90d
  tessera auth key create --name deploy --subject deploy --scopes push --allow-ip 10.0.0.0/8
  tessera auth key create --name bot --subject bot --scopes pull --rate-limit 100/1m
  # on a server, as yourself (the remote's stored token):
  tessera auth key create --remote prod --name laptop --scopes pull")]
    Create(CreateArgs),
    /// List API keys (never the keys themselves): id, name, owner, state, scopes, expiry,
    /// last use. Expired and revoked keys stay listed.
    #[command(after_help = "EXAMPLES:
  tessera auth key list
  tessera auth key list --owner ci
  tessera --json auth key list --remote prod")]
    List(ListArgs),
    /// Show one API key by name or id: state, scopes, expiry, last use and the last
    /// addresses it was used from.
    #[command(after_help = "EXAMPLES:
  tessera auth key show ci
  tessera --json auth key show 3f0c9a6e2b7d41c8a5e0f1d2c3b4a596")]
    Show(TargetArgs),
    /// Disable an API key: refused until enabled again (within a second on every server
    /// sharing the store).
    #[command(after_help = "EXAMPLES:
  tessera auth key disable ci
  tessera auth key disable ci --remote prod")]
    Disable(TargetArgs),
    /// Enable a disabled API key again.
    #[command(after_help = "EXAMPLES:
  tessera auth key enable ci")]
    Enable(TargetArgs),
    /// Revoke an API key for good (it stays listed as revoked).
    #[command(after_help = "EXAMPLES:
  tessera auth key revoke ci
  tessera auth key revoke 3f0c9a6e2b7d41c8a5e0f1d2c3b4a596 --remote prod")]
    Revoke(TargetArgs),
    /// Replace an API key by a new one with the same name, owner, scopes, expiry, allow-list
    /// and rate limit. The new key goes to stdout, once. The old key keeps working for
    /// --grace (default: none, it is revoked at once).
    #[command(after_help = "EXAMPLES:
  tessera auth key rotate ci --grace 1h
  tessera auth key rotate ci --remote prod > new-key.txt")]
    Rotate(RotateArgs),
    /// Print a new API key and its argon2id hash, for a server without a writable store:
    /// put the hash in `[[auth.api_keys]]` (name, hash, scopes) and give the key to the
    /// client. Line 1 of stdout is the key, line 2 the hash; stderr shows the config block.
    #[command(after_help = "EXAMPLES:
  tessera auth key hash --name ci --scopes pull
  tessera --json auth key hash --name ci")]
    Hash(HashArgs),
}

/// `--remote NAME`: act on a server instead of the local store.
#[derive(Debug, Args)]
pub struct RemoteFlag {
    /// Act on this remote tessera server (its /auth/keys API, with the remote's stored
    /// token) instead of the local token store.
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A name for the key, unique per owner, e.g. `ci` (letters, digits, `.`, `_`, `-`).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Who the key acts as. Locally required; with --remote, default: you.
    #[arg(long, value_name = "S")]
    pub subject: Option<String>,
    /// Comma-separated scopes: `push`, `pull`, `*`, `repository:NAME:ACTION`,
    /// `admin:RESOURCE:ACTION`, `admin`. Default: none (an identity-only key).
    #[arg(long, value_name = "LIST")]
    pub scopes: Option<String>,
    /// Repositories that `push`, `pull` and `*` apply to, e.g. `team/*`.
    #[arg(long, value_name = "PATTERN", default_value = "*")]
    pub repo: String,
    /// Lifetime, e.g. `90d`, `1y`; `0` for never (default: never, or `auth.max_token_expiry`
    /// when that is set).
    #[arg(long, value_name = "DUR")]
    pub expiry: Option<String>,
    /// Comma-separated CIDR blocks the key may be used from, e.g. `10.0.0.0/8,192.0.2.7`;
    /// requests from elsewhere get 403 IP_NOT_ALLOWED. Default: anywhere.
    #[arg(long, value_name = "CIDR,...")]
    pub allow_ip: Option<String>,
    /// At most N requests per PERIOD, e.g. `100/1m`; past it, 429 RATE_LIMITED.
    #[arg(long, value_name = "N/PERIOD")]
    pub rate_limit: Option<String>,
    #[command(flatten)]
    pub remote: RemoteFlag,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the keys of this owner.
    #[arg(long, value_name = "S")]
    pub owner: Option<String>,
    #[command(flatten)]
    pub remote: RemoteFlag,
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The key's name or id (`tessera auth key list` shows both).
    #[arg(value_name = "NAME|ID")]
    pub key: String,
    /// With a name: the owner whose key it is (when several owners use the name).
    #[arg(long, value_name = "S")]
    pub owner: Option<String>,
    #[command(flatten)]
    pub remote: RemoteFlag,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// How long the old key keeps working, e.g. `1h`, `7d` (default: it is revoked at once).
    #[arg(long, value_name = "DUR")]
    pub grace: Option<String>,
}

#[derive(Debug, Args)]
pub struct HashArgs {
    /// The name to show in the `[[auth.api_keys]]` block.
    #[arg(long, value_name = "NAME", default_value = "ci")]
    pub name: String,
    /// The scopes to show in the block.
    #[arg(long, value_name = "LIST", default_value = "pull")]
    pub scopes: String,
}

pub fn run(ctx: &Context, cmd: KeyCommand) -> Result<(), CliError> {
    match cmd {
        KeyCommand::Create(a) => create(ctx, a),
        KeyCommand::List(a) => list(ctx, a),
        KeyCommand::Show(a) => show(ctx, a),
        KeyCommand::Disable(a) => change(ctx, a, StoredKeyState::Disabled),
        KeyCommand::Enable(a) => change(ctx, a, StoredKeyState::Active),
        KeyCommand::Revoke(a) => change(ctx, a, StoredKeyState::Revoked),
        KeyCommand::Rotate(a) => rotate(ctx, a),
        KeyCommand::Hash(a) => hash(ctx, a),
    }
}

impl From<KeyError> for CliError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Invalid(m) => CliError::usage(m),
            KeyError::NotFound(_) => CliError::new(e.to_string()).with_code(ErrorCode::NotFound),
            KeyError::NameTaken { .. } => {
                CliError::new(e.to_string()).with_code(ErrorCode::AlreadyExists)
            }
            KeyError::Store(s) => s.into(),
            KeyError::Auth(a) => a.into(),
            other => CliError::new(other.to_string()),
        }
    }
}

fn now() -> Timestamp {
    super::token::now()
}

fn open_store(ctx: &Context) -> Result<std::sync::Arc<dyn TokenStore>, CliError> {
    Ok(store::open(&ctx.config)?)
}

/// A remote's client and token, when `--remote` is given.
fn remote(
    ctx: &Context,
    flag: &RemoteFlag,
) -> Result<Option<(crate::client::Client, SecretString)>, CliError> {
    let Some(name) = flag.remote.as_deref() else {
        return Ok(None);
    };
    let (name, remote) = select(ctx, Some(name))?;
    let (token, _) = select_token(ctx, &name, &remote)?;
    Ok(Some((client_for(&remote)?, token)))
}

/// A key's view, as the API shows it.
fn view(k: &ApiKeyRecord) -> Value {
    let mut v = json!({
        "id": k.id,
        "name": k.name,
        "owner": k.owner,
        "scopes": k.scopes.split_whitespace().collect::<Vec<_>>(),
        "state": k.state_at(Timestamp::now()).as_str(),
        "created_at": k.created_at.to_string(),
        "expires_at": k.expires_at.map(|t| t.to_string()),
        "last_used_at": k.last_used_at.map(|t| t.to_string()),
        "last_addresses": k.last_addresses,
        "allow_ip": k.allow_ip,
        "rate_limit": k.rate_limit,
        "successor": k.successor,
        "grace_until": k.grace_until.map(|t| t.to_string()),
        "parent": k.parent,
        "source": "store",
    });
    if k.id.starts_with("config:") {
        v["source"] = json!("config");
    }
    v
}

fn text(v: &Value, field: &str) -> String {
    match &v[field] {
        Value::String(s) => crate::term::safe(s).to_string(),
        Value::Null => "-".to_owned(),
        Value::Array(a) if a.is_empty() => "(none)".to_owned(),
        Value::Array(a) => a
            .iter()
            .map(|x| crate::term::safe(x.as_str().unwrap_or("?")).to_string())
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// The human summary of a key (one view from the store or from a remote).
fn summary(v: &Value) -> String {
    let mut s = format!(
        "key `{}` of `{}` ({})\n  id:        {}\n  scopes:    {}\n  expires:   {}\n  last used: {}",
        text(v, "name"),
        text(v, "owner"),
        text(v, "state"),
        text(v, "id"),
        text(v, "scopes"),
        match v["expires_at"].as_str() {
            Some(t) => crate::term::safe(t).to_string(),
            None => "never".to_owned(),
        },
        text(v, "last_used_at"),
    );
    if v["last_addresses"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        s.push_str(&format!("\n  from:      {}", text(v, "last_addresses")));
    }
    if v["allow_ip"].as_array().is_some_and(|a| !a.is_empty()) {
        s.push_str(&format!("\n  allow-ip:  {}", text(v, "allow_ip")));
    }
    if !v["rate_limit"].is_null() {
        s.push_str(&format!("\n  rate:      {}", text(v, "rate_limit")));
    }
    if !v["successor"].is_null() {
        s.push_str(&format!(
            "\n  replaced:  by {} (grace until {})",
            text(v, "successor"),
            text(v, "grace_until")
        ));
    }
    s
}

/// Prints a new key: the key alone on stdout (or the JSON view with `key`), the summary on
/// stderr.
fn print_new(ctx: &Context, v: &Value, what: &str) -> Result<(), CliError> {
    if ctx.out.json {
        ctx.out.json(v)?;
    } else {
        ctx.out.line(v["key"].as_str().unwrap_or_default())?;
    }
    ctx.out.note(&format!(
        "{what} {}\n  the key is shown once: store it now (e.g. in your CI's secret store)",
        summary(v)
    ));
    Ok(())
}

fn create(ctx: &Context, a: CreateArgs) -> Result<(), CliError> {
    // Checked before anything is opened.
    let scopes = match &a.scopes {
        Some(l) => ScopeSet::parse_list(l, &a.repo)?,
        None => ScopeSet::default(),
    };
    let expiry = a.expiry.as_deref().map(HumanDuration::parse).transpose()?;
    let allow_ip = match &a.allow_ip {
        Some(l) => keys::parse_cidr_list(l).map_err(CliError::usage)?,
        None => vec![],
    };
    let rate_limit = a
        .rate_limit
        .as_deref()
        .map(RateLimit::parse)
        .transpose()
        .map_err(CliError::usage)?;
    keys::check_name(&a.name)?;
    if let Some((client, token)) = remote(ctx, &a.remote)? {
        let mut body = json!({
            "name": a.name,
            "scopes": scopes.to_strings(),
            "allow_ip": allow_ip.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        if let Some(s) = &a.subject {
            body["subject"] = json!(s);
        }
        if let Some(e) = &a.expiry {
            body["expiry"] = json!(e);
        }
        if let Some(r) = &a.rate_limit {
            body["rate_limit"] = json!(r);
        }
        let v = client.api_call(Method::POST, "/auth/keys", &token, Some(&body))?;
        return print_new(ctx, &v, "created");
    }
    let Some(owner) = a.subject else {
        return Err(CliError::usage(
            "name the key's owner with --subject (on the local store there is no logged-in user); with --remote NAME the owner is you",
        ));
    };
    let new = NewKey {
        name: a.name,
        owner,
        scopes,
        expiry,
        allow_ip,
        rate_limit,
        parent: None,
        not_after: None,
    };
    let store = open_store(ctx)?;
    let (text, rec) = keys::create_key(
        store.as_ref(),
        &ctx.config.auth.key_prefix,
        &new,
        ctx.config.auth.max_token_expiry,
        now(),
    )?;
    let mut v = view(&rec);
    v["key"] = json!(text.expose());
    print_new(ctx, &v, "created")
}

fn list(ctx: &Context, a: ListArgs) -> Result<(), CliError> {
    let views: Vec<Value> = match remote(ctx, &a.remote)? {
        Some((client, token)) => {
            let path = match &a.owner {
                Some(o) => format!(
                    "/auth/keys?owner={}",
                    url::form_urlencoded::byte_serialize(o.as_bytes()).collect::<String>()
                ),
                None => "/auth/keys".to_owned(),
            };
            let v = client.api_call(Method::GET, &path, &token, None)?;
            v["keys"].as_array().cloned().unwrap_or_default()
        }
        None => match store::open_existing(&ctx.config)? {
            None => vec![],
            Some(s) => s.list_keys(a.owner.as_deref())?.iter().map(view).collect(),
        },
    };
    if ctx.out.json {
        return ctx.out.json(&json!({ "keys": views }));
    }
    if views.is_empty() {
        ctx.out.note("no API keys");
        return Ok(());
    }
    let mut out = format!(
        "{:<32}  {:<16}  {:<16}  {:<9}  {:<20}  {}\n",
        "ID", "NAME", "OWNER", "STATE", "LAST USED", "SCOPES"
    );
    for v in &views {
        out.push_str(&format!(
            "{:<32}  {:<16}  {:<16}  {:<9}  {:<20}  {}\n",
            text(v, "id"),
            text(v, "name"),
            text(v, "owner"),
            text(v, "state"),
            v["last_used_at"]
                .as_str()
                .map_or("never".to_owned(), |t| t.chars().take(19).collect()),
            text(v, "scopes"),
        ));
    }
    ctx.out.line(out.trim_end())
}

/// The id of the key `t` names on a remote (an id, or a name in the listing).
fn remote_id(
    client: &crate::client::Client,
    token: &SecretString,
    t: &TargetArgs,
) -> Result<String, CliError> {
    let v = client.api_call(Method::GET, "/auth/keys", token, None)?;
    let keys = v["keys"].as_array().cloned().unwrap_or_default();
    let named: Vec<&Value> = keys
        .iter()
        .filter(|k| {
            k["id"] == json!(t.key)
                || (k["name"] == json!(t.key)
                    && t.owner.as_ref().is_none_or(|o| k["owner"] == json!(o))
                    && k["successor"].is_null()
                    && k["state"] != json!("revoked"))
        })
        .collect();
    match named.as_slice() {
        [one] => Ok(one["id"].as_str().unwrap_or_default().to_owned()),
        [] => Err(CliError::from(KeyError::NotFound(
            crate::term::escaped_head(&t.key, 64),
        ))),
        _ => Err(CliError::usage(format!(
            "`{}` names keys of several owners; add --owner S or give the key's id",
            crate::term::escaped_head(&t.key, 64)
        ))),
    }
}

fn show(ctx: &Context, t: TargetArgs) -> Result<(), CliError> {
    let v = match remote(ctx, &t.remote)? {
        Some((client, token)) => {
            let id = remote_id(&client, &token, &t)?;
            client.api_call(Method::GET, &format!("/auth/keys/{id}"), &token, None)?
        }
        None => {
            let store = store::open_existing(&ctx.config)?
                .ok_or_else(|| CliError::from(KeyError::NotFound(t.key.clone())))?;
            view(&keys::find_key(store.as_ref(), &t.key, t.owner.as_deref())?)
        }
    };
    if ctx.out.json {
        return ctx.out.json(&v);
    }
    ctx.out.line(&summary(&v))
}

fn change(ctx: &Context, t: TargetArgs, to: StoredKeyState) -> Result<(), CliError> {
    let (verb, path) = match to {
        StoredKeyState::Active => ("enabled", "/enable"),
        StoredKeyState::Disabled => ("disabled", "/disable"),
        StoredKeyState::Revoked => ("revoked", ""),
    };
    let v = match remote(ctx, &t.remote)? {
        Some((client, token)) => {
            let id = remote_id(&client, &token, &t)?;
            let method = if to == StoredKeyState::Revoked {
                Method::DELETE
            } else {
                Method::POST
            };
            client.api_call(method, &format!("/auth/keys/{id}{path}"), &token, None)?
        }
        None => {
            let store = store::open_existing(&ctx.config)?
                .ok_or_else(|| CliError::from(KeyError::NotFound(t.key.clone())))?;
            let k = keys::find_key(store.as_ref(), &t.key, t.owner.as_deref())?;
            view(&keys::set_state(store.as_ref(), &k.id, to)?)
        }
    };
    if ctx.out.json {
        return ctx.out.json(&v);
    }
    ctx.out.note(&format!(
        "{verb} {}\n  servers sharing the store obey within 1 s",
        summary(&v)
    ));
    Ok(())
}

fn rotate(ctx: &Context, a: RotateArgs) -> Result<(), CliError> {
    let grace = a.grace.as_deref().map(HumanDuration::parse).transpose()?;
    let t = &a.target;
    let v = match remote(ctx, &t.remote)? {
        Some((client, token)) => {
            let id = remote_id(&client, &token, t)?;
            let body = match &a.grace {
                Some(g) => json!({ "grace": g }),
                None => json!({}),
            };
            client.api_call(
                Method::POST,
                &format!("/auth/keys/{id}/rotate"),
                &token,
                Some(&body),
            )?
        }
        None => {
            let store = open_store(ctx)?;
            let old = keys::find_key(store.as_ref(), &t.key, t.owner.as_deref())?;
            let (text, new, old) = keys::rotate_key(
                store.as_ref(),
                &ctx.config.auth.key_prefix,
                &old,
                grace,
                now(),
            )?;
            let mut v = view(&new);
            v["key"] = json!(text.expose());
            v["previous"] = view(&old);
            v
        }
    };
    let what = match v["previous"]["grace_until"].as_str() {
        Some(g) => format!(
            "rotated (the old key {} works until {})",
            text(&v["previous"], "id"),
            crate::term::safe(g)
        ),
        None => format!(
            "rotated (the old key {} is revoked)",
            text(&v["previous"], "id")
        ),
    };
    print_new(ctx, &v, &what)
}

fn hash(ctx: &Context, a: HashArgs) -> Result<(), CliError> {
    keys::check_name(&a.name)?;
    let scopes = ScopeSet::parse_list(&a.scopes, "*")?;
    let key =
        KeyText::generate(&ctx.config.auth.key_prefix).map_err(|e| CliError::new(e.to_string()))?;
    let secret = SecretString::from(key.expose().to_owned());
    let hash = crate::password::hash_argon2id(&secret)?;
    if ctx.out.json {
        ctx.out.json(&json!({
            "key": key.expose(),
            "hash": hash.expose_secret(),
            "name": a.name,
            "scopes": scopes.to_strings(),
        }))?;
    } else {
        ctx.out
            .line(&format!("{}\n{}", key.expose(), hash.expose_secret()))?;
    }
    ctx.out.note(&format!(
        "line 1 is the key (give it to the client, once), line 2 its argon2id hash; add to the server's config:\n\n[[auth.api_keys]]\nname = \"{}\"\nhash = \"{}\"\nscopes = \"{}\"\n",
        a.name,
        hash.expose_secret(),
        a.scopes
    ));
    Ok(())
}
