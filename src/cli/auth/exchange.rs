//! `tessera auth exchange` (a CI job trades its OIDC ID token for a tessera token at a remote)
//! and `tessera auth trust test` (which `[[auth.trust]]` policy would accept an ID token).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::auth::exchange::Workloads;
use crate::cli::Context;
use crate::cli::error::{CliError, EXIT_FAILURE, ErrorCode};
use crate::cli::io::read_stdin_secret;
use crate::cli::remotes::{client_for, save_token, select};
use crate::client::ClientError;
use crate::term::safe;

/// The environment variables GitHub Actions sets in a job with `permissions: id-token: write`.
const GHA_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
const GHA_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// Arguments of `auth exchange`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").args(["id_token_file", "id_token_stdin", "github_actions"]).required(true)))]
pub struct ExchangeArgs {
    /// The remote to exchange at (default: TESSERA_REMOTE, else the active remote).
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Read the ID token from a file (GitLab CI: a file holding `$ID_TOKEN`; Kubernetes: the
    /// projected service-account token).
    #[arg(long, value_name = "F")]
    pub id_token_file: Option<PathBuf>,
    /// Read the ID token from stdin.
    #[arg(long)]
    pub id_token_stdin: bool,
    /// Ask GitHub Actions (or Forgejo Actions) for the ID token: GET
    /// $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUDIENCE with $ACTIONS_ID_TOKEN_REQUEST_TOKEN
    /// as bearer. The job needs `permissions: id-token: write`.
    #[arg(long)]
    pub github_actions: bool,
    /// The audience asked for with --github-actions: the policy's `audience`.
    #[arg(long, value_name = "AUD", default_value = "tessera")]
    pub audience: String,
    /// Print the tessera token on stdout instead of storing it for the remote.
    #[arg(long)]
    pub print: bool,
}

/// `tessera auth trust ...`.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Which [[auth.trust]] policy would accept an ID token, and for each other policy the
    /// first claim that does not match. Nothing is exchanged or recorded.
    ///
    /// The signature is checked with the issuer's keys: read from the policy's `jwks_file`
    /// (offline), else fetched through the issuer's discovery document. Exit 0 when a policy
    /// accepts the token, 1 when none does.
    #[command(after_help = "EXAMPLES:
  tessera auth trust test \"$ID_TOKEN\"
  printf '%s' \"$ID_TOKEN\" | tessera auth trust test
  tessera --json auth trust test < id-token.jwt | jq '.policies[] | select(.accepted == false)'")]
    Test(TestArgs),
}

/// Arguments of `auth trust test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The ID token (stdin when absent or `-`).
    #[arg(value_name = "JWT")]
    pub token: Option<String>,
}

fn read_file_token(path: &PathBuf) -> Result<SecretString, CliError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        CliError::new(format!(
            "cannot read the ID token file {}: {e}",
            path.display()
        ))
    })?);
    let t = text.trim();
    if t.is_empty() {
        return Err(CliError::new(format!(
            "the ID token file {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(t.to_owned()))
}

/// The ID token of the running GitHub (or Forgejo) Actions job, for `audience`.
fn github_actions_token(audience: &str) -> Result<SecretString, CliError> {
    let missing = |var: &str| {
        CliError::new(format!("{var} is not set, so there is no GitHub Actions ID token to ask for"))
            .with_hint("give the job `permissions: id-token: write` (GitHub) or the workflow `enable-openid-connect: true` (Forgejo), or pass --id-token-file / --id-token-stdin")
    };
    let url = std::env::var(GHA_URL)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing(GHA_URL))?;
    let bearer = Zeroizing::new(
        std::env::var(GHA_TOKEN)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| missing(GHA_TOKEN))?,
    );
    let mut u =
        url::Url::parse(&url).map_err(|_| CliError::new(format!("{GHA_URL} is not a URL")))?;
    if !crate::auth::trust::allowed_url(u.as_str()) {
        return Err(CliError::new(format!(
            "{GHA_URL} must be an https:// URL (http:// only on loopback)"
        )));
    }
    u.query_pairs_mut().append_pair("audience", audience);
    crate::tls::install_crypto_provider();
    let http = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| CliError::new(format!("cannot set up the HTTP client: {e}")))?;
    let host = u.host_str().unwrap_or("?").to_owned();
    let r = http
        .get(u)
        .header("Authorization", format!("bearer {}", bearer.as_str()))
        .header("Accept", "application/json; api-version=2.0")
        .send()
        .map_err(|e| {
            CliError::new(format!(
                "cannot ask {host} for the job's ID token: {}",
                if e.is_timeout() {
                    "no answer in time"
                } else {
                    "the connection failed"
                }
            ))
        })?;
    let status = r.status();
    let v: Value = r.json().unwrap_or(Value::Null);
    match v.get("value").and_then(Value::as_str) {
        Some(t) if status.is_success() && !t.is_empty() => Ok(SecretString::from(t.to_owned())),
        _ => Err(CliError::new(format!(
            "{host} did not give an ID token (HTTP {})",
            status.as_u16()
        ))
        .with_hint("check the job's `permissions: id-token: write`")),
    }
}

/// `tessera auth exchange`.
pub fn exchange(ctx: &Context, args: ExchangeArgs) -> Result<(), CliError> {
    let (name, remote) = select(ctx, args.remote.as_deref())?;
    let id_token = if let Some(f) = &args.id_token_file {
        read_file_token(f)?
    } else if args.id_token_stdin {
        read_stdin_secret("ID token")?
    } else {
        github_actions_token(&args.audience)?
    };
    let client = client_for(&remote)?;
    let (token, expires_in) = client.exchange(&id_token).map_err(|e| match e {
        ClientError::Api { ref code, ref message, .. } if code == "INVALID_TOKEN" => {
            CliError::new(format!(
                "remote `{name}` ({}) refused the ID token: {}",
                safe(&remote.url),
                safe(message)
            ))
            .with_code(ErrorCode::InvalidToken)
            .with_hint("run `tessera auth trust test` on the server with the same ID token to see each policy's verdict")
        }
        other => other.into(),
    })?;
    if args.print {
        if ctx.out.json {
            return ctx.out.json(&json!({
                "remote": name, "url": remote.url,
                "token": token.expose_secret(), "expires_in": expires_in,
            }));
        }
        return ctx.out.line(token.expose_secret());
    }
    let place = save_token(ctx, &name, &token)?;
    if ctx.out.json {
        return ctx.out.json(&json!({
            "remote": name, "url": remote.url, "stored_in": place, "expires_in": expires_in,
        }));
    }
    ctx.out.note(&format!(
        "exchanged the ID token at `{name}` ({}); token stored in {place}, expires in {expires_in} s",
        safe(&remote.url)
    ));
    Ok(())
}

/// `tessera auth trust ...`.
pub fn trust(ctx: &Context, cmd: TrustCommand) -> Result<(), CliError> {
    match cmd {
        TrustCommand::Test(a) => test(ctx, a),
    }
}

fn test(ctx: &Context, args: TestArgs) -> Result<(), CliError> {
    let where_ = ctx.config.file.as_ref().map_or_else(
        || ctx.config.path.display().to_string(),
        |p| p.display().to_string(),
    );
    let workloads = Workloads::new(ctx.config.auth.trust.clone())
        .map_err(|e| CliError::new(e).with_code(ErrorCode::Config))?
        .ok_or_else(|| {
            CliError::new(format!(
                "{where_} has no [[auth.trust]] policy to test against"
            ))
            .with_code(ErrorCode::Config)
            .with_hint("add one as docs/workload-identity.md shows")
        })?;
    let raw = match args.token.as_deref() {
        None | Some("-") => read_stdin_secret("ID token")?,
        Some(t) => SecretString::from(t.trim().to_owned()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))?;
    let verdict = runtime.block_on(workloads.judge(raw.expose_secret(), jiff::Timestamp::now()));
    let token = verdict.token.as_ref();
    let accepted = verdict
        .accepted
        .map(|i| workloads.policies()[i].name.clone());
    if ctx.out.json {
        let policies: Vec<Value> = verdict
            .results
            .iter()
            .map(|(n, r)| match r {
                Ok(()) => json!({"name": n, "accepted": true}),
                Err(m) => {
                    json!({"name": n, "accepted": false, "claim": m.claim, "reason": m.reason})
                }
            })
            .collect();
        ctx.out.json(&json!({
            "accepted": accepted.is_some(),
            "policy": accepted,
            "iss": token.and_then(|t| t.iss()),
            "sub": token.and_then(|t| t.sub()),
            "jti": token.and_then(|t| t.jti()),
            "policies": policies,
        }))?;
    } else {
        let mut lines = Vec::new();
        if let Some(t) = token {
            lines.push(format!(
                "ID token: iss {}, sub {}, jti {}",
                safe(t.iss().unwrap_or("(none)")),
                safe(t.sub().unwrap_or("(none)")),
                safe(t.jti().unwrap_or("(none)"))
            ));
        }
        for (i, (n, r)) in verdict.results.iter().enumerate() {
            let p = &workloads.policies()[i];
            lines.push(match r {
                Ok(()) if Some(n) == accepted.as_ref() => format!(
                    "  {n}: ACCEPTS: would issue a token for `{}` with scopes `{}`, expiring in {}",
                    p.subject, p.scopes, p.expiry
                ),
                Ok(()) => format!("  {n}: would accept too (an earlier policy wins)"),
                Err(m) => format!("  {n}: refuses: claim `{}`: {}", m.claim, safe(&m.reason)),
            });
        }
        ctx.out.line(&lines.join("\n"))?;
    }
    if accepted.is_none() {
        if ctx.out.json {
            return Err(CliError::silent(EXIT_FAILURE));
        }
        return Err(CliError::new(format!(
            "no policy accepts the ID token: {}",
            verdict.refusal()
        ))
        .with_code(ErrorCode::InvalidToken));
    }
    Ok(())
}
