//! `tessera registry init`: the registry signing key and its certificate.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use secrecy::SecretString;
use serde_json::json;
use tessera_backends::fsutil;

use super::Context;
use crate::cli::error::CliError;
use crate::registry::key::{self, RegistryKey, TokenHeader};

/// The Docker registry token service.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Create the registry's token signing key and its certificate, and print the registry
    /// configuration.
    ///
    /// Generates an EC P-256 private key (PKCS#8 PEM) and stores it in the secrets backend at
    /// `registry.signing_key`, writes its self-signed certificate (public) to
    /// `registry.certificate`, and prints the `auth: token:` block to paste into the registry's
    /// config.yml. Run again without flags to print the block once more: an existing key is
    /// never replaced without --force or --rotate. Needs `[registry] service` in the config
    /// file (the registry's `auth.token.service`).
    ///
    /// With `[registry] header = "jwks"` (distribution 3.x configured with only a `jwks:` file)
    /// it also writes the JWKS file next to the certificate (same name, extension `.jwks`) and
    /// prints a block with `jwks:` instead of `rootcertbundle:`.
    ///
    /// The registry must be able to read the certificate (or JWKS) file: a registry running as
    /// another user (Debian's `docker-registry` service) cannot enter a 0700 folder such as
    /// ~/.config/tessera. Set `[registry] certificate` to a path it can read, e.g.
    /// "/etc/docker/registry/tessera/token.crt"; init warns when the file is out of its reach.
    ///
    /// Rotation (--rotate): a new key signs from the next `tessera serve` start; the
    /// certificate file then holds the new certificate and the old one, so the registry (after
    /// a restart, as it reads `rootcertbundle` at start) accepts tokens of both keys. Tokens of
    /// the old key expire within `registry.token_ttl`; after that grace period, run
    /// `--rotate` again later or `--force` to drop the old certificate.
    #[command(after_help = "EXAMPLES:
  tessera registry init  # prints the auth: block for the registry's config.yml
  tessera registry init --realm https://auth.example.com/token
  tessera registry init --rotate")]
    Init(InitArgs),
}

/// Arguments of `tessera registry init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Replace an existing key and certificate (tokens signed with the old key stop working
    /// once the registry restarts with the new certificate).
    #[arg(long, conflicts_with = "rotate")]
    pub force: bool,
    /// Make a new key and keep the old key's certificate in the bundle next to the new one.
    #[arg(long)]
    pub rotate: bool,
    /// The token endpoint URL the registry sends clients to (default: http(s)://SERVER_BIND/token
    /// from `server.bind` and the TLS settings).
    #[arg(long, value_name = "URL")]
    pub realm: Option<String>,
}

/// Runs a `tessera registry` command.
pub fn run(ctx: &Context, cmd: RegistryCommand) -> Result<(), CliError> {
    match cmd {
        RegistryCommand::Init(args) => init(ctx, args),
    }
}

fn write_bundle(path: &Path, pem: &str) -> Result<(), CliError> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            CliError::new(format!(
                "cannot create the folder {}: {e}",
                parent.display()
            ))
        })?;
    }
    fsutil::write_atomic(path, pem.as_bytes(), 0o644).map_err(|e| {
        CliError::new(format!(
            "cannot write the registry certificate {}: {e}",
            path.display()
        ))
    })
}

fn read_bundle(path: &Path) -> Result<Option<Vec<u8>>, CliError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::new(format!(
            "cannot read the registry certificate {}: {e}",
            path.display()
        ))),
    }
}

/// PEM of a DER certificate.
fn cert_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn init(ctx: &Context, args: InitArgs) -> Result<(), CliError> {
    let config = &ctx.config;
    let reg = &config.registry;
    let service = crate::registry::service(reg)?;
    let backend = ctx.backend()?;
    let existing = backend
        .get_optional(&reg.signing_key)
        .map_err(|e| CliError::from(e).context("cannot read the registry signing key"))?;
    let bundle = read_bundle(&reg.certificate)?;
    let common_name = format!("tessera registry token signer ({service})");
    let what: &str;
    match (&existing, args.force, args.rotate) {
        (Some(old), false, false) => {
            // Never replace a key without a flag; repair or confirm the certificate.
            let matches = bundle
                .as_deref()
                .is_some_and(|b| RegistryKey::new(old, b).is_ok());
            if matches {
                what = "the registry signing key and its certificate already exist; nothing changed (--rotate makes a new key)";
            } else {
                if bundle.is_some() {
                    return Err(CliError::new(format!(
                        "no certificate in {} belongs to the registry signing key at `{}`",
                        reg.certificate.display(),
                        reg.signing_key
                    ))
                    .with_hint("run `tessera registry init --rotate` to make a new key and certificate, or move the certificate file away and run `tessera registry init` to write the key's certificate"));
                }
                let pem = key::self_signed_certificate(old, &common_name)?;
                write_bundle(&reg.certificate, &pem)?;
                what = "wrote the certificate of the existing registry signing key (restart `tessera serve` and the registry)";
            }
        }
        (None, _, true) => {
            return Err(CliError::usage(format!(
                "there is no registry signing key at `{}` to rotate",
                reg.signing_key
            ))
            .with_hint("run `tessera registry init` without --rotate"));
        }
        (old, _, rotate) => {
            let new_key = key::generate_key()?;
            let mut pem = key::self_signed_certificate(&new_key, &common_name)?;
            if rotate && let (Some(old), Some(b)) = (old, bundle.as_deref()) {
                // Keep the certificate of the key being replaced (older ones are dropped).
                let spki = key::public_key_der(old)?;
                if let Ok(certs) = key::bundle_certificates(b) {
                    for c in certs.iter().filter(|c| key::certificate_has_key(c, &spki)) {
                        pem.push_str(&cert_pem(c));
                    }
                }
            }
            // The bundle first: it still holds the old certificate on rotation, so a failure
            // to store the key leaves a working pair.
            write_bundle(&reg.certificate, &pem)?;
            backend.set(&reg.signing_key, &new_key)?;
            what = if rotate {
                "created a new registry signing key; the certificate file holds the new and the old certificate (restart the registry and `tessera serve`)"
            } else if old.is_some() {
                "replaced the registry signing key and its certificate (restart the registry and `tessera serve`)"
            } else {
                "created the registry signing key and its certificate"
            };
        }
    }
    if reg.header == TokenHeader::Jwks {
        write_jwks(&reg.certificate)?;
    }
    print_setup(ctx, &args, what)
}

/// The JWKS file for distribution 3.x's `jwks:` setting: next to the certificate, with the
/// extension `.jwks`.
fn jwks_path(certificate: &Path) -> PathBuf {
    certificate.with_extension("jwks")
}

/// Writes the JWKS of every key in the certificate bundle (the new and the old one after a
/// rotation), public like the certificate.
fn write_jwks(certificate: &Path) -> Result<(), CliError> {
    let bundle = read_bundle(certificate)?.unwrap_or_default();
    let jwks = key::bundle_jwks(&bundle)?;
    let path = jwks_path(certificate);
    let text = serde_json::to_string_pretty(&jwks)
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
    fsutil::write_atomic(&path, format!("{text}\n").as_bytes(), 0o644).map_err(|e| {
        CliError::new(format!(
            "cannot write the registry JWKS file {}: {e}",
            path.display()
        ))
    })
}

/// The first folder on `path`'s way (or the file itself) that other users cannot pass
/// through or read, with its mode: a registry running as its own user cannot read `path`.
fn out_of_others_reach(path: &Path) -> Option<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    };
    for dir in path
        .ancestors()
        .skip(1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        if dir.as_os_str().is_empty() {
            continue;
        }
        if let Some(m) = mode(dir)
            && m & 0o001 == 0
        {
            return Some((dir.to_path_buf(), m));
        }
    }
    match mode(path) {
        Some(m) if m & 0o004 == 0 => Some((path.to_path_buf(), m)),
        _ => None,
    }
}

fn print_setup(ctx: &Context, args: &InitArgs, what: &str) -> Result<(), CliError> {
    let config = &ctx.config;
    let reg = &config.registry;
    let key_pem: SecretString = ctx.backend()?.get(&reg.signing_key)?;
    let bundle = read_bundle(&reg.certificate)?.unwrap_or_default();
    let loaded = RegistryKey::new(&key_pem, &bundle).and_then(|k| k.with_header(reg.header))?;
    let service = crate::registry::service(reg)?;
    let realm = match &args.realm {
        Some(r) => r.clone(),
        None => {
            let scheme = if config.server.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}/token", config.server.bind)
        }
    };
    let cert = std::fs::canonicalize(&reg.certificate).unwrap_or_else(|_| reg.certificate.clone());
    let jwks = (reg.header == TokenHeader::Jwks).then(|| jwks_path(&cert));
    // What the registry reads: the certificate bundle, or the JWKS file.
    let trust = jwks.clone().unwrap_or_else(|| cert.clone());
    if ctx.out.json {
        return ctx.out.json(&json!({
            "realm": realm,
            "service": service,
            "issuer": reg.issuer,
            "header": reg.header.as_str(),
            "rootcertbundle": cert.display().to_string(),
            "jwks": jwks.as_ref().map(|j| j.display().to_string()),
            "signing_key": reg.signing_key.as_str(),
            "kid": loaded.kid(),
        }));
    }
    let mut note = format!(
        "{what}\n  key: `{}` in the {} backend (kid {})\n  certificate: {}",
        reg.signing_key,
        config.secrets.backend,
        loaded.kid(),
        cert.display()
    );
    if let Some(j) = &jwks {
        note.push_str(&format!("\n  JWKS: {}", j.display()));
    }
    if let Some((blocker, mode)) = out_of_others_reach(&trust) {
        note.push_str(&format!(
            "\nwarning: other users cannot read {} ({} has mode {mode:04o}), so a registry running \
             as its own user (Debian's `docker-registry` service) will fail to start; set \
             `[registry] certificate` to a path it can read, e.g. \
             \"/etc/docker/registry/tessera/token.crt\", and run `tessera registry init` again",
            trust.display(),
            blocker.display()
        ));
    }
    note.push_str(
        "\nPaste this `auth:` block into the registry's config.yml (replacing any `auth:` there):",
    );
    ctx.out.note(&note);
    let trust_line = match &jwks {
        None => format!("rootcertbundle: \"{}\"", cert.display()),
        Some(j) => format!("jwks: \"{}\"", j.display()),
    };
    ctx.out.line(&format!(
        "auth:\n  token:\n    realm: \"{realm}\"\n    service: \"{service}\"\n    issuer: \"{}\"\n    {trust_line}",
        reg.issuer,
    ))
}
