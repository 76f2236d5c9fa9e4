//! Workload identity (contract section 11) against real issuers: the GitHub-shaped issuer of
//! `support/workload.rs` (RS256, discovery, JWKS, rotation, the Actions ID-token endpoint)
//! and the real `oidc-provider` from npm (ES256 JWT access tokens from its client_credentials
//! grant); exchanges at `POST /auth/exchange`, ID tokens at the registry's `/token`, the real
//! registry and skopeo, `tessera auth exchange` and `tessera auth trust test`.

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::http::{Served, basic, status_and_json, verify};
use crate::support::real::{Registry, Skopeo, fails, oci_image, ok, text, tools_present};
use crate::support::workload::{
    GithubIssuer, PROVIDER_AUDIENCE, Provider, RsaKey, exchange, jwks_fetches, now, policy,
    serve_with_refetch, uuid_like,
};
use crate::support::{Home, SERVICE};

/// The claim conditions of a release job of acme/app on main in production.
const GH_CLAIMS: &str = "repository = \"acme/app\"\nrepository_owner_id = \"123456\"\nrepository_id = \"654321\"\nref = \"refs/heads/main\"\nenvironment = \"production\"\n";

/// A registry home trusting `issuer` with the release policy `gh`.
fn gh_home(issuer: &str) -> Home {
    let home = Home::new();
    home.append_config(&policy("gh", issuer, "tessera", "", GH_CLAIMS));
    home
}

/// The `error_description` of a refused exchange, checked to be a 401 `INVALID_TOKEN` that
/// does not echo the token.
#[track_caller]
fn refused(base: &str, token: &str) -> String {
    let (status, v) = exchange(base, token);
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["code"], "INVALID_TOKEN", "{v}");
    let text = v.to_string();
    let sig = token.rsplit('.').next().unwrap();
    assert!(
        sig.len() < 8 || !text.contains(sig),
        "the refusal echoes the token: {text}"
    );
    v["error_description"].as_str().unwrap().to_owned()
}

#[track_caller]
fn assert_claim(description: &str, claim: &str) {
    assert!(
        description.contains(&format!("claim `{claim}`")),
        "expected the claim `{claim}` to be named: {description}"
    );
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn a_github_job_exchanges_once_and_every_bad_token_is_refused_with_its_claim() {
    let (a, b) = (RsaKey::fixture("a"), RsaKey::fixture("b"));
    let gh = GithubIssuer::start(&[&a]);
    let s = Served::start(gh_home(&gh.issuer));
    let base = s.url("");

    // The job gets a token of the policy's subject, scopes and expiry.
    let id_token = gh.token(&a, "tessera");
    let (status, v) = exchange(&base, &id_token);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(v["token_type"], "Bearer");
    let expires_in = v["expires_in"].as_u64().unwrap();
    assert!((800..=900).contains(&expires_in), "{v}");
    let (status, info) = verify(&base, v["access_token"].as_str().unwrap());
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["subject"], "ci-gh");
    assert_eq!(
        info["scopes"],
        json!(["repository:acme/*:pull", "repository:acme/*:push"])
    );

    // Once only.
    assert_claim(&refused(&base, &id_token), "jti");

    // Each wrong claim is named.
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = gh.claims("tessera");
        f(&mut c);
        gh.sign(&a, &c)
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "repository",
            with(&|c| c["repository"] = json!("acme/other")),
        ),
        ("ref", with(&|c| c["ref"] = json!("refs/heads/dev"))),
        (
            "environment",
            with(&|c| c["environment"] = json!("staging")),
        ),
        (
            "repository_owner_id",
            with(&|c| c["repository_owner_id"] = json!("999")),
        ),
        ("aud", gh.token(&a, "https://github.com/acme")),
        (
            "exp",
            with(&|c| {
                let t = now() - 4000;
                c["iat"] = json!(t);
                c["nbf"] = json!(t);
                c["exp"] = json!(t + 300);
            }),
        ),
        (
            "nbf",
            with(&|c| {
                c["nbf"] = json!(now() + 600);
                c["exp"] = json!(now() + 900);
            }),
        ),
        (
            "exp",
            with(&|c| {
                c["nbf"] = json!(now());
                c["iat"] = json!(now());
                c["exp"] = json!(now() + 7200);
            }),
        ),
        (
            "iss",
            with(&|c| c["iss"] = json!("https://gitlab.example.com")),
        ),
        // Signed by a key the issuer does not publish, under the published kid.
        ("signature", {
            let mut h = Header::new(Algorithm::RS256);
            h.kid = Some(a.kid.clone());
            jsonwebtoken::encode(
                &h,
                &gh.claims("tessera"),
                &EncodingKey::from_rsa_pem(&b.private_pem).unwrap(),
            )
            .unwrap()
        }),
        // Unsigned.
        ("alg", {
            let h = json!({"alg": "none", "typ": "JWT", "kid": a.kid});
            format!("{}.{}.", b64(&h), b64(&gh.claims("tessera")))
        }),
        // HS256 "signed" with the issuer's public key, as PEM and as the JWK.
        ("alg", {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some(a.kid.clone());
            jsonwebtoken::encode(
                &h,
                &gh.claims("tessera"),
                &EncodingKey::from_secret(&a.public_pem),
            )
            .unwrap()
        }),
        ("alg", {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some(a.kid.clone());
            jsonwebtoken::encode(
                &h,
                &gh.claims("tessera"),
                &EncodingKey::from_secret(a.jwk.to_string().as_bytes()),
            )
            .unwrap()
        }),
        ("token", "eyJhbGciOiJSUzI1NiJ9.not-json.x".to_owned()),
    ];
    for (claim, token) in &cases {
        let why = refused(&base, token);
        assert_claim(&why, claim);
    }
    // Nothing refused was remembered as exchanged: the same job's next token works.
    let (status, v) = exchange(&base, &gh.token(&a, "tessera"));
    assert_eq!(status, 200, "{v}");

    // JSON bodies work too; a wrong grant type is a 400.
    let r = s
        .http
        .post(s.url("/auth/exchange"))
        .json(&json!({
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": gh.token(&a, "tessera"),
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let r = s
        .http
        .post(s.url("/auth/exchange"))
        .json(&json!({"grant_type": "password", "subject_token": "x", "subject_token_type": "x"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // A web page of another origin cannot use it.
    let r = s
        .http
        .post(s.url("/auth/exchange"))
        .header("Origin", "https://evil.example")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=x")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[test]
fn thirty_concurrent_replays_of_one_id_token_succeed_exactly_once() {
    let a = RsaKey::fixture("a");
    let gh = GithubIssuer::start(&[&a]);
    let s = Served::start(gh_home(&gh.issuer));
    let base = s.url("");
    let id_token = gh.token(&a, "tessera");
    let handles: Vec<_> = (0..30)
        .map(|_| {
            let (base, t) = (base.clone(), id_token.clone());
            std::thread::spawn(move || exchange(&base, &t))
        })
        .collect();
    let answers: Vec<(u16, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "{answers:?}");
    for (status, v) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 401, "{v}");
        assert_claim(v["error_description"].as_str().unwrap(), "jti");
    }
}

#[test]
fn a_key_rotation_fetches_the_new_kid_and_drops_the_old_one() {
    let (a, b) = (RsaKey::fixture("a"), RsaKey::fixture("b"));
    let gh = GithubIssuer::start(&[&a]);
    let home = gh_home(&gh.issuer);
    let server = serve_with_refetch(&home, Duration::from_secs(3));
    let base = format!("http://{}", server.addr());

    let (status, v) = exchange(&base, &gh.token(&a, "tessera"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(jwks_fetches(&server), 1);
    // Warm: no fetch for a known kid.
    assert_eq!(exchange(&base, &gh.token(&a, "tessera")).0, 200);
    assert_eq!(gh.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst), 1);

    gh.publish(&[&b]);
    // Within the refetch interval an unknown kid is refused without a fetch.
    let started = std::time::Instant::now();
    let why = refused(&base, &gh.token(&b, "tessera"));
    if started.elapsed() < Duration::from_secs(2) {
        assert_claim(&why, "kid");
        assert_eq!(jwks_fetches(&server), 1);
    }
    std::thread::sleep(Duration::from_millis(3100));
    let (status, v) = exchange(&base, &gh.token(&b, "tessera"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(jwks_fetches(&server), 2);
    // The old key is gone with the old set.
    assert_claim(&refused(&base, &gh.token(&a, "tessera")), "kid");
}

#[test]
fn an_oversized_jwks_is_not_read_and_the_refusal_says_why() {
    let a = RsaKey::fixture("a");
    let gh = GithubIssuer::start(&[&a]);
    let mut doc = gh.jwks();
    doc["padding"] = json!("x".repeat(300 * 1024));
    gh.publish_raw(doc);
    let s = Served::start(gh_home(&gh.issuer));
    let why = refused(&s.url(""), &gh.token(&a, "tessera"));
    assert_claim(&why, "kid");
    assert!(why.contains("larger than"), "{why}");
}

#[test]
fn an_id_token_logs_in_at_the_registry_until_it_expires_without_a_refresh_token() {
    let a = RsaKey::fixture("a");
    let gh = GithubIssuer::start(&[&a]);
    let s = Served::start(gh_home(&gh.issuer));
    let id_token = gh.token(&a, "tessera");
    let scope = format!(
        "?service={SERVICE}&scope=repository:acme/app:pull,push&offline_token=true&client_id=docker"
    );
    for _ in 0..2 {
        let (status, v) = status_and_json(s.get_token(&scope, Some(&basic("oidc", &id_token))));
        assert_eq!(status, 200, "{v}");
        assert!(v.get("refresh_token").is_none(), "{v}");
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v["token"].as_str().unwrap().split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["sub"], "ci-gh");
        assert_eq!(claims["access"][0]["actions"], json!(["pull", "push"]));
    }
    // Outside the policy's repository pattern nothing is granted.
    let (status, v) = status_and_json(s.get_token(
        &format!("?service={SERVICE}&scope=repository:other/app:pull,push"),
        Some(&basic("oidc", &id_token)),
    ));
    assert_eq!(status, 200, "{v}");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v["token"].as_str().unwrap().split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["access"], json!([]));
    // An expired or foreign ID token is a 401 naming the claim.
    let mut c = gh.claims("tessera");
    c["ref"] = json!("refs/heads/dev");
    let (status, v) = status_and_json(s.get_token(&scope, Some(&basic("oidc", &gh.sign(&a, &c)))));
    assert_eq!(status, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("claim `ref`"), "{v}");
    // Tessera's own tokens still log in as before.
    let token = s.home.token(&["--subject", "ci", "--scopes", "pull"]);
    assert_eq!(
        s.get_token(&scope, Some(&basic("ci", &token)))
            .status()
            .as_u16(),
        200
    );
}

#[test]
fn a_github_job_exchanges_with_the_cli_and_pushes_to_the_real_registry() {
    if !tools_present(
        &["docker-registry", "skopeo", "tar", "gzip"],
        "apt-get install docker-registry skopeo",
    ) {
        return;
    }
    let a = RsaKey::fixture("a");
    let gh = GithubIssuer::start(&[&a]);
    let home = gh_home(&gh.issuer);
    let server = home.serve();
    let url = format!("http://{}", server.addr());
    let work = tempfile::tempdir().unwrap();
    let mut registry = Registry::start(work.path(), &format!("{url}/token"), &home.certificate());
    let host = registry.host();
    let image = work.path().join("image");
    oci_image(&image, "v1");

    // The CI job: its own home, a remote, and the Actions ID-token endpoint.
    let job = Home::with_config("");
    job.cmd()
        .args(["remotes", "add", "ci", &url])
        .assert()
        .success();
    let request_url = gh.serve_actions_token(&gh.token(&a, "tessera"), "actions-request-bearer");
    let out = job
        .cmd()
        .args([
            "--json",
            "auth",
            "exchange",
            "--remote",
            "ci",
            "--github-actions",
        ])
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &request_url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "actions-request-bearer")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["expires_in"].as_u64().unwrap() > 0, "{v}");
    assert!(v.get("token").is_none(), "{v}");
    let shown = job
        .cmd()
        .args(["auth", "token", "show", "--remote", "ci"])
        .output()
        .unwrap();
    let token = String::from_utf8(shown.stdout).unwrap().trim().to_owned();
    let client = Skopeo::new();
    ok(client.login(&host, "ci-gh", &token));
    ok(client.push(&image, "v1", &format!("{host}/acme/app:v1")));
    let denied = fails(client.push(&image, "v1", &format!("{host}/other/app:v1")));
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("denied"),
        "{}",
        text(&denied)
    );

    // `docker login -u oidc --password-stdin` with the job's ID token itself.
    let direct = Skopeo::new();
    let id_token = gh.token(&a, "tessera");
    ok(direct.login(&host, "oidc", &id_token));
    ok(direct.push(&image, "v1", &format!("{host}/acme/app:v2")));
    ok(direct.inspect(&format!("{host}/acme/app:v2")));

    // A wrong bearer at the Actions endpoint gives no token and a clear error.
    let out = job
        .cmd()
        .args(["auth", "exchange", "--remote", "ci", "--github-actions"])
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &request_url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not give an ID token"), "{err}");
    assert!(!err.contains("wrong"), "{err}");
    registry.assert_no_token_trouble();
}

#[test]
fn the_real_oidc_provider_tokens_are_exchanged_refused_and_logged() {
    let Some(p) = Provider::start() else { return };
    let home = Home::with_config(&format!(
        "[auth]\ntoken_expiry = \"1h\"\n{}",
        policy(
            "provider-main",
            &p.issuer,
            PROVIDER_AUDIENCE,
            "",
            "repository = \"acme/app\"\nrepository_owner_id = \"123456\"\nref = \"refs/heads/main\"\n"
        )
    ));
    let mut server = home.serve_process(Some("info"));
    let base = server.url();

    let good = p.token("acme-app-main", PROVIDER_AUDIENCE);
    let (status, v) = exchange(&base, &good);
    assert_eq!(status, 200, "{v}");
    let (status, info) = verify(&base, v["access_token"].as_str().unwrap());
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["subject"], "ci-provider-main");

    let wrong_ref = p.token("acme-app-dev", PROVIDER_AUDIENCE);
    assert_claim(&refused(&base, &wrong_ref), "ref");
    let wrong_repo = p.token("evil-app-main", PROVIDER_AUDIENCE);
    assert_claim(&refused(&base, &wrong_repo), "repository");
    let wrong_aud = p.token("acme-app-main", "https://other.test");
    assert_claim(&refused(&base, &wrong_aud), "aud");
    assert_claim(&refused(&base, &good), "jti");

    // One log line per refusal, with the policies tried, the claim, iss, sub and jti, and
    // never the token.
    server.alive();
    let log = server.stop();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused an OIDC ID token"))
        .collect();
    assert_eq!(lines.len(), 4, "{log}");
    for (line, claim) in lines.iter().zip(["ref", "repository", "aud", "jti"]) {
        assert!(line.contains("provider-main"), "{line}");
        assert!(line.contains(&format!("claim={claim}")), "{line}");
        assert!(line.contains(&p.issuer), "{line}");
        assert!(line.contains("jti="), "{line}");
        assert!(line.contains("sub="), "{line}");
    }
    for t in [&good, &wrong_ref, &wrong_repo, &wrong_aud] {
        let sig = t.rsplit('.').next().unwrap();
        assert!(!log.contains(sig), "the log holds a token");
        assert!(
            !log.contains(t.split('.').nth(1).unwrap()),
            "the log holds a token"
        );
    }
}

#[test]
fn trust_test_says_offline_which_policy_accepts_and_why_the_others_do_not() {
    let a = RsaKey::fixture("a");
    let gh = GithubIssuer::start(&[&a]);
    let real_issuer = "https://token.actions.githubusercontent.com";
    let home = Home::with_config("");
    let jwks = home.config_dir().join("github-jwks.json");
    std::fs::write(&jwks, gh.jwks().to_string()).unwrap();
    let pinned = "jwks_file = \"github-jwks.json\"";
    home.append_config(&policy(
        "release",
        real_issuer,
        "tessera",
        pinned,
        GH_CLAIMS,
    ));
    home.append_config(&policy(
        "dev",
        real_issuer,
        "tessera",
        pinned,
        "repository_owner_id = \"123456\"\nref = \"refs/heads/dev\"\n",
    ));
    let mut claims = gh.claims("tessera");
    claims["iss"] = json!(real_issuer);
    let token = gh.sign(&a, &claims);
    drop(gh); // offline: nothing to fetch from

    let out = home
        .cmd()
        .args(["auth", "trust", "test", &token])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("release: ACCEPTS"), "{stdout}");
    assert!(stdout.contains("dev: refuses: claim `ref`"), "{stdout}");

    claims["environment"] = json!("staging");
    claims["jti"] = json!(uuid_like());
    let staging = {
        let gh = GithubIssuer::start(&[&a]);
        gh.sign(&a, &claims)
    };
    let out = home
        .cmd()
        .args(["--json", "auth", "trust", "test"])
        .write_stdin(staging)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["accepted"], false);
    assert_eq!(v["policies"][0]["claim"], "environment");
    assert_eq!(v["policies"][1]["claim"], "ref");
    assert_eq!(v["iss"], real_issuer);
}

#[test]
fn bad_trust_policies_are_refused_at_load_with_the_line_and_the_fix() {
    let cases = [
        ("audience = \"tessera\"\n", "", "`audience` is required"),
        (
            "expiry = \"15m\"\n",
            "expiry = \"2h\"\n",
            "between 1s and 1h",
        ),
        ("ref = \"refs/heads/main\"\n", "ref = \"*\"\n", ""),
    ];
    for (from, to, want) in cases {
        let mut text = policy(
            "p",
            "https://token.actions.githubusercontent.com",
            "tessera",
            "",
            "ref = \"refs/heads/main\"\n",
        );
        text = text.replace(from, to);
        let home = Home::with_config(&format!("[auth]\nissuer = \"tessera\"\n{text}"));
        let out = home
            .cmd()
            .args(["auth", "trust", "test", "x"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("tessera.toml:4:"), "{err}");
        let want = if want.is_empty() {
            "at least one exact condition"
        } else {
            want
        };
        assert!(err.contains(want), "{err}");
    }
    // A pinned JWKS file that cannot be read stops the server at start, naming it.
    let home = Home::with_config(&policy(
        "pinned",
        "https://gitlab.example.com",
        "tessera",
        "jwks_file = \"missing-jwks.json\"",
        "namespace_id = \"42\"\n",
    ));
    let e = home.start_error();
    assert!(
        e.contains("pinned") && e.contains("missing-jwks.json"),
        "{e}"
    );
    // A server without policies has no exchange.
    let s = Served::start(Home::with_login(""));
    let (status, v) = exchange(&s.url(""), "a.b.c");
    assert_eq!(status, 404, "{v}");
}

#[test]
fn auth_exchange_reports_the_refusal_and_prints_with_print() {
    let a = RsaKey::fixture("a");
    let gh = GithubIssuer::start(&[&a]);
    let s = Served::start(gh_home(&gh.issuer));
    let job = Home::with_config("");
    job.cmd()
        .args(["remotes", "add", "ci", &s.url("")])
        .assert()
        .success();
    let mut c = gh.claims("tessera");
    c["ref"] = json!("refs/heads/dev");
    let out = job
        .cmd()
        .args([
            "--json",
            "auth",
            "exchange",
            "--remote",
            "ci",
            "--id-token-stdin",
        ])
        .write_stdin(gh.sign(&a, &c))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["code"], "INVALID_TOKEN", "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("claim `ref`"),
        "{err}"
    );
    // --print: the token on stdout, nothing stored.
    let file = job.home().join("id-token.jwt");
    std::fs::write(&file, format!("{}\n", gh.token(&a, "tessera"))).unwrap();
    let out = job
        .cmd()
        .args([
            "auth",
            "exchange",
            "--remote",
            "ci",
            "--print",
            "--id-token-file",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(verify(&s.url(""), token.trim()).0, 200);
    let shown = job
        .cmd()
        .args(["auth", "token", "show", "--remote", "ci"])
        .output()
        .unwrap();
    assert!(
        !shown.status.success(),
        "a token was stored despite --print"
    );
}
