//! `tessera auth token generate|verify|list|revoke`.

use std::sync::Arc;

use clap::{Args, Subcommand};
use jiff::Timestamp;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::auth::issue::{self, Expiry, IssueRequest, Origin};
use crate::auth::{OfflineError, Settings, check_offline};
use crate::cli::Context;
use crate::cli::error::{CliError, ErrorCode};
use crate::cli::io::read_stdin_secret;
use crate::duration::HumanDuration;
use crate::keyring::{SecretOrigin, load_keyring};
use crate::store::{self, StoreError, TokenState, TokenStore};
use crate::token::{Claims, ScopeSet, VerifyOptions};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token. The token alone goes to stdout (one line); a summary goes to stderr.
    #[command(after_help = "EXAMPLES:
  tessera auth token generate --subject ci --scopes push,pull --expiry 1y6M
  tessera auth token generate --subject team --scopes pull --repo 'team/*' --expiry 2w3d
  # 15 minutes (15M = months)
  tessera auth token generate --subject job --scopes pull --expiry 15m
  # minted by the server of remote prod, with the stored token's rights
  tessera auth token generate --subject ci --scopes pull --remote prod")]
    Generate(GenerateArgs),
    /// Check a token (argument, or stdin when absent or `-`): exit 0 and a summary when
    /// valid; exit 1 and the reason (expired, bad signature, revoked, malformed, not yet
    /// valid, wrong issuer) when not.
    #[command(after_help = "EXAMPLES:
  tessera auth token verify \"$TOKEN\"
  printf '%s\\n' \"$TOKEN\" | tessera --json auth token verify")]
    Verify(VerifyArgs),
    /// List recorded tokens that have not expired (ids and claims, never the tokens).
    ///
    /// With --remote, the list comes from that remote's server with the remote's stored
    /// token: the token's own tokens, or everyone's with `admin:tokens:read`.
    #[command(after_help = "EXAMPLES:
  tessera auth token list
  tessera --json auth token list
  tessera auth token list --remote prod    # through the server's API")]
    List(ListArgs),
    /// Revoke one token by id, every token of a subject, or every token.
    #[command(after_help = "EXAMPLES:
  # an id from `tessera auth token list`
  tessera auth token revoke 3f0c9a6e2b7d41c8a5e0f1d2c3b4a596
  tessera auth token revoke --subject ci
  tessera auth token revoke --all
  tessera auth token revoke 3f0c9a6e2b7d41c8a5e0f1d2c3b4a596 --remote prod")]
    Revoke(RevokeArgs),
    /// Print the token of a remote alone on stdout (TESSERA_TOKEN, else the stored one).
    #[command(after_help = "EXAMPLES:
  # -u: the token's subject (`tessera auth status` shows it)
  tessera auth token show --remote prod \\
    | docker login -u deploy --password-stdin registry.example.com")]
    Show(super::login::RemoteArg),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Who the token is for (the `sub` claim), e.g. `ci`.
    #[arg(long, value_name = "S")]
    pub subject: String,
    /// Comma-separated scopes: `push`, `pull`, `*` (both), `repository:NAME:ACTION`,
    /// `admin:RESOURCE:ACTION`, `admin`. Default: none (an identity-only token).
    #[arg(long, value_name = "LIST")]
    pub scopes: Option<String>,
    /// Repositories that `push`, `pull` and `*` apply to, e.g. `team/*`.
    #[arg(long, value_name = "PATTERN", default_value = "*")]
    pub repo: String,
    /// Lifetime: an integer and a unit, several from largest to smallest: y years, M months,
    /// w weeks, d days, h hours, m minutes, s seconds (`m` is minutes, `M` months), e.g.
    /// `30s`, `15m`, `1h30m`, `7d`, `2w3d`, `1y6M`; `0` for never (default:
    /// `auth.token_expiry`, 30d).
    #[arg(long, value_name = "DUR")]
    pub expiry: Option<String>,
    /// Audience (the `aud` claim).
    #[arg(long, value_name = "A")]
    pub audience: Option<String>,
    /// Ask the server of this remote to mint it (`POST /auth/tokens` with the remote's
    /// stored token) instead of signing here: for the token's own subject, or for anyone
    /// with `admin:tokens:write`, never with more than the token's scopes.
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// List through the API of this remote with its stored token instead of the local store.
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The token; read from stdin when absent or `-`.
    pub token: Option<String>,
    /// Require this audience.
    #[arg(long, value_name = "A")]
    pub audience: Option<String>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub target: RevokeTarget,
    /// Do not ask for confirmation (`--all` needs it when there is no terminal to ask on).
    #[arg(long)]
    pub yes: bool,
    /// Revoke JTI although this token store has no record of it (a token minted on another
    /// machine with the same secret); without it, an unknown id is an error.
    #[arg(long, conflicts_with_all = ["subject", "all"])]
    pub unrecorded: bool,
    /// Revoke JTI through the API of this remote with its stored token (one's own tokens, or
    /// anyone's with `admin:tokens:write`).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["subject", "all", "unrecorded"])]
    pub remote: Option<String>,
}

/// What `revoke` revokes: one of an id, a subject, or everything.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RevokeTarget {
    /// The token id (`jti`) to revoke.
    #[arg(value_name = "JTI")]
    pub jti: Option<String>,
    /// Revoke every token of this subject issued until now.
    #[arg(long, value_name = "S")]
    pub subject: Option<String>,
    /// Revoke every token issued until now.
    #[arg(long)]
    pub all: bool,
}

pub fn run(ctx: &Context, cmd: TokenCommand) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Generate(a) if a.remote.is_some() => remote_generate(ctx, a),
        TokenCommand::Revoke(a) if a.remote.is_some() => remote_revoke(ctx, a),
        TokenCommand::List(ListArgs { remote: Some(r) }) => remote_list(ctx, &r),
        TokenCommand::List(_) => list(ctx),
        TokenCommand::Generate(a) => generate(ctx, a),
        TokenCommand::Verify(a) => verify(ctx, a),
        TokenCommand::Revoke(a) => revoke(ctx, a),
        TokenCommand::Show(a) => super::login::show(ctx, a),
    }
}

/// Now, to the millisecond: the precision of the token store. A token records the instant
/// it was minted (its `iat` keeps the second) and a cut-off the instant of the revocation, so
/// a token minted right after `revoke --subject`, in the same second, is valid.
pub(crate) fn now() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now)
}

fn ts(secs: i64) -> Option<String> {
    Timestamp::from_second(secs).ok().map(|t| t.to_string())
}

/// A token's scopes for a sentence: `(none)` when it has none.
fn scope_text(scopes: &ScopeSet) -> String {
    if scopes.is_empty() {
        "(none)".to_owned()
    } else {
        scopes.to_string()
    }
}

fn open_store(ctx: &Context) -> Result<std::sync::Arc<dyn TokenStore>, CliError> {
    Ok(store::open(&ctx.config)?)
}

fn generate(ctx: &Context, args: GenerateArgs) -> Result<(), CliError> {
    let scopes = match &args.scopes {
        Some(list) => ScopeSet::parse_list(list, &args.repo)?,
        None => ScopeSet::default(),
    };
    let expiry = match &args.expiry {
        Some(e) => HumanDuration::parse(e)?,
        None => ctx.config.auth.token_expiry,
    };
    let now = now();
    // Checked before the keys are loaded, so that no secret is created for a refused token.
    issue::check_cap(ctx.config.auth.max_token_expiry, expiry, now)?;
    let (keys, origin) = load_keyring(&ctx.config, &ctx.env, &|| ctx.backend(), true)?;
    if let SecretOrigin::Created(place) = &origin {
        ctx.out.note(&format!(
            "created a new token signing secret at {place} (mode 0600)"
        ));
    }
    let issued = issue::prepare(
        &keys,
        &Settings::from_config(&ctx.config),
        &IssueRequest {
            subject: &args.subject,
            scopes: &scopes,
            audience: args.audience.as_deref(),
            origin: Origin::Granted {
                expiry: Expiry::Asked(expiry),
                single_use: false,
            },
            now,
        },
    )?;
    let minted = &issued.minted;
    let c = &minted.claims;
    if let Err(e) = store::open_lazily(&ctx.config).record_minted(&issued.record) {
        ctx.out.warn(&format!(
            "the token was minted but not recorded, so `tessera auth token list` will not show it: {e}"
        ));
    }
    let expires = c.exp.and_then(ts);
    if ctx.out.json {
        ctx.out.json(&json!({
            "token": minted.token.expose_secret(),
            "jti": c.jti,
            "subject": c.sub,
            "scopes": scopes.to_strings(),
            "issued_at": ts(c.iat),
            "expires_at": expires,
        }))?;
    } else {
        ctx.out.line(minted.token.expose_secret())?;
    }
    let scope_text = scope_text(&c.scope);
    ctx.out.note(&format!(
        "minted a token for `{}`\n  scopes:  {scope_text}\n  expires: {}\n  id:      {}",
        c.sub,
        match &expires {
            Some(t) => format!("{t} ({} from now)", expiry.words()),
            None => "never".to_owned(),
        },
        c.jti
    ));
    Ok(())
}

fn claims_json(c: &Claims) -> Value {
    let scopes = c.scope.to_strings();
    json!({
        "subject": c.sub,
        "scopes": scopes,
        "jti": c.jti,
        "issued_at": ts(c.iat),
        "expires_at": c.exp.and_then(ts),
    })
}

fn verify(ctx: &Context, args: VerifyArgs) -> Result<(), CliError> {
    let raw = match args.token.as_deref() {
        None | Some("-") => read_stdin_secret("token")?,
        Some(t) => secrecy::SecretString::from(t.trim().to_owned()),
    };
    let (keys, _) = load_keyring(&ctx.config, &ctx.env, &|| ctx.backend(), false)?;
    let opts = VerifyOptions {
        issuer: &ctx.config.auth.issuer,
        audience: args.audience.as_deref(),
        now: now(),
    };
    // A token store that cannot answer is not a property of the token: it is an error of its
    // own (naming the file and the fix), never reported as "invalid token: malformed".
    let open_store =
        || -> Result<Option<Arc<dyn TokenStore>>, StoreError> { store::open_existing(&ctx.config) };
    let result = match check_offline(&keys, raw.expose_secret().trim(), &opts, open_store) {
        Ok(claims) => Ok(claims),
        Err(OfflineError::Refused(e)) => Err(e),
        Err(OfflineError::Store(e)) => {
            return Err(
                CliError::from(e).context("cannot check whether the token has been revoked")
            );
        }
    };
    match result {
        Ok(c) => {
            if ctx.out.json {
                let mut v = claims_json(&c);
                v["valid"] = json!(true);
                v["reason"] = Value::Null;
                return ctx.out.json(&v);
            }
            let scope_text = scope_text(&c.scope);
            // Claims of a token from anywhere: control characters escaped.
            ctx.out.line(&format!(
                "valid token for `{}`\n  scopes:  {}\n  issued:  {}\n  expires: {}\n  id:      {}",
                crate::term::safe(&c.sub),
                crate::term::safe(&scope_text),
                ts(c.iat).unwrap_or_default(),
                c.exp.and_then(ts).unwrap_or_else(|| "never".into()),
                c.jti
            ))
        }
        Err(e) => {
            if ctx.out.json {
                ctx.out.json(&json!({
                    "valid": false,
                    "reason": e.reason(),
                    "subject": null, "scopes": null, "jti": null,
                    "issued_at": null, "expires_at": null,
                }))?;
                return Err(CliError::silent(crate::cli::error::EXIT_FAILURE));
            }
            Err(CliError::new(format!(
                "invalid token: {} ({e})",
                e.reason()
            )))
        }
    }
}

fn list(ctx: &Context) -> Result<(), CliError> {
    let records = match store::open_existing(&ctx.config)? {
        Some(store) => {
            store.prune(now())?;
            store.list(now())?
        }
        None => Vec::new(),
    };
    if ctx.out.json {
        let records = serde_json::to_value(&records)
            .map_err(|e| CliError::new(format!("cannot write the token list as JSON: {e}")))?;
        return ctx.out.json(&records);
    }
    if records.is_empty() {
        ctx.out.note("no recorded tokens");
        return Ok(());
    }
    ctx.out.line(&format!(
        "{:<34} {:<16} {:<21} {:<21} {:<8} SCOPES",
        "ID", "SUBJECT", "ISSUED", "EXPIRES", "STATE"
    ))?;
    for r in records {
        ctx.out.line(&format!(
            "{:<34} {:<16} {:<21} {:<21} {:<8} {}",
            r.jti,
            r.subject,
            r.issued_at.to_string(),
            r.expires_at
                .map_or_else(|| "never".to_owned(), |t| t.to_string()),
            if r.revoked { "revoked" } else { "active" },
            r.scopes
        ))?;
    }
    Ok(())
}

/// A token id as `generate` makes them: 32 hexadecimal characters (upper case accepted and
/// lowered). Anything else is a usage error naming the format; a long value is not quoted
/// (it may be a token or a secret pasted in the wrong place).
fn parse_token_id(id: &str) -> Result<String, CliError> {
    if id.len() == TOKEN_ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(id.to_ascii_lowercase());
    }
    let shown = if id.len() <= 40 && id.bytes().all(|b| b.is_ascii_graphic()) {
        format!("`{id}`")
    } else {
        format!("the argument ({} characters)", id.chars().count())
    };
    Err(CliError::usage(format!(
        "{shown} is not a token id: ids are {TOKEN_ID_LEN} hexadecimal characters (0-9, a-f), as `tessera auth token list` and `tessera auth token verify` show them"
    )))
}

/// Length of a token id (`jti`): 128 random bits in hex.
const TOKEN_ID_LEN: usize = 32;

fn revoke(ctx: &Context, args: RevokeArgs) -> Result<(), CliError> {
    let now = now();
    let t = &args.target;
    if let Some(jti) = &t.jti {
        return revoke_id(ctx, &parse_token_id(jti)?, args.unrecorded, now);
    }
    if t.all {
        crate::cli::io::confirm(
            "`revoke --all` revokes every token issued until now, also tokens minted elsewhere with the same secret, and cannot be undone",
            args.yes,
        )?;
    }
    let store = open_store(ctx)?;
    let (doc, text) = if let Some(subject) = &t.subject {
        let n = store.revoke_subject(subject, now)?;
        (
            json!({"subject": subject, "revoked_before": now.to_string(), "recorded_tokens": n}),
            format!(
                "revoked every token of `{subject}` issued until {now} ({n} recorded token(s))"
            ),
        )
    } else {
        let n = store.revoke_all(now)?;
        (
            json!({"all": true, "revoked_before": now.to_string(), "recorded_tokens": n}),
            format!("revoked every token issued until {now} ({n} recorded token(s))"),
        )
    };
    if ctx.out.json {
        return ctx.out.json(&doc);
    }
    ctx.out.note(&text);
    Ok(())
}

/// Revokes one id the store knows; an unknown id is an error (a typo must not look like
/// success) unless `unrecorded` says it is a token minted elsewhere; an id already revoked is
/// reported as such with exit 0 (the wanted state holds, as for a second `docker rm -f`).
fn revoke_id(ctx: &Context, jti: &str, unrecorded: bool, now: Timestamp) -> Result<(), CliError> {
    // No store yet: nothing is known, and an unknown id must not create one.
    let store = if unrecorded {
        Some(store::open(&ctx.config)?)
    } else {
        store::open_existing(&ctx.config)?
    };
    let state = match &store {
        Some(s) => s.token_state(jti)?,
        None => TokenState::Unknown,
    };
    let Some(store) = store.filter(|_| state != TokenState::Unknown || unrecorded) else {
        return Err(CliError::new(format!(
            "no token with id {jti} in the token store; `tessera auth token list` shows the ids"
        ))
        .with_code(ErrorCode::NotFound)
        .with_hint(
            "expired tokens are dropped from the store; for a token minted on another machine with the same secret, add --unrecorded (or revoke its subject with --subject)",
        ));
    };
    // Revoking again is harmless and keeps whatever a revocation implies (e.g. derived tokens).
    store.revoke(jti, now)?;
    let already = state == TokenState::Revoked;
    revoked(ctx, jti, already, "")
}

/// What `auth token revoke` says of a revoked id (`place`: where, e.g. " on the remote").
fn revoked(ctx: &Context, jti: &str, already: bool, place: &str) -> Result<(), CliError> {
    if ctx.out.json {
        return ctx
            .out
            .json(&json!({"jti": jti, "revoked": true, "already_revoked": already}));
    }
    if already {
        ctx.out
            .note(&format!("token {jti} was already revoked; nothing changed"));
    } else {
        ctx.out.note(&format!("revoked token {jti}{place}"));
    }
    Ok(())
}

// --- the same commands against a remote (contract section 9) ---

/// The client and stored token of remote `name`.
fn remote(
    ctx: &Context,
    name: &str,
) -> Result<(crate::client::Client, secrecy::SecretString), CliError> {
    let (name, remote) = crate::cli::remotes::select(ctx, Some(name))?;
    let (token, _) = crate::cli::remotes::select_token(ctx, &name, &remote)?;
    Ok((crate::cli::remotes::client_for(&remote)?, token))
}

fn remote_list(ctx: &Context, name: &str) -> Result<(), CliError> {
    let (client, token) = remote(ctx, name)?;
    let v = client.list_tokens(&token)?;
    let records = v["tokens"].as_array().cloned().unwrap_or_default();
    if ctx.out.json {
        return ctx.out.json(&Value::Array(records));
    }
    if records.is_empty() {
        ctx.out
            .note("no recorded tokens that this remote's token may see");
        return Ok(());
    }
    ctx.out.line(&format!(
        "{:<34} {:<16} {:<21} {:<21} {:<8} SCOPES",
        "ID", "SUBJECT", "ISSUED", "EXPIRES", "STATE"
    ))?;
    let text = |v: &Value| crate::term::safe(v.as_str().unwrap_or("-")).into_owned();
    for r in records {
        let scopes: Vec<String> = r["scopes"]
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default();
        ctx.out.line(&format!(
            "{:<34} {:<16} {:<21} {:<21} {:<8} {}",
            text(&r["jti"]),
            text(&r["subject"]),
            text(&r["issued_at"]),
            if r["expires_at"].is_null() {
                "never".to_owned()
            } else {
                text(&r["expires_at"])
            },
            if r["revoked"] == true {
                "revoked"
            } else {
                "active"
            },
            scopes.join(" ")
        ))?;
    }
    Ok(())
}

fn remote_generate(ctx: &Context, args: GenerateArgs) -> Result<(), CliError> {
    // Checked here first, so that a typo is refused without a round trip.
    if let Some(list) = &args.scopes {
        ScopeSet::parse_list(list, &args.repo)?;
    }
    if let Some(e) = &args.expiry {
        HumanDuration::parse(e)?;
    }
    let (client, token) = remote(ctx, args.remote.as_deref().unwrap_or_default())?;
    let mut body = json!({"subject": args.subject, "repo": args.repo});
    if let Some(s) = &args.scopes {
        body["scopes"] = json!(s);
    } else {
        return Err(CliError::usage(
            "--remote needs --scopes: the server mints no identity-only tokens",
        ));
    }
    if let Some(e) = &args.expiry {
        body["expiry"] = json!(e);
    }
    if let Some(a) = &args.audience {
        body["audience"] = json!(a);
    }
    let v = client.create_token(&token, &body)?;
    let minted = v["token"].as_str().unwrap_or_default().to_owned();
    if ctx.out.json {
        return ctx.out.json(&json!({
            "token": minted,
            "jti": v["jti"],
            "subject": v["subject"],
            "scopes": v["scopes"],
            "issued_at": v["issued_at"],
            "expires_at": v["expires_at"],
        }));
    }
    ctx.out.line(&minted)?;
    ctx.out.note(&format!(
        "minted by the remote for `{}` with scopes {}, expires {}",
        crate::term::safe(v["subject"].as_str().unwrap_or("-")),
        v["scopes"],
        v["expires_at"].as_str().unwrap_or("never")
    ));
    Ok(())
}

fn remote_revoke(ctx: &Context, args: RevokeArgs) -> Result<(), CliError> {
    let Some(jti) = &args.target.jti else {
        return Err(CliError::usage(
            "--remote revokes one token id; `--subject` and `--all` work on the local store only",
        ));
    };
    let jti = parse_token_id(jti)?;
    let (client, token) = remote(ctx, args.remote.as_deref().unwrap_or_default())?;
    let v = client.revoke_token(&token, &jti)?;
    let already = v["already_revoked"] == true;
    revoked(ctx, &jti, already, " on the remote")
}
