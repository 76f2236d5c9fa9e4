//! Users and roles (contract section 9) through the binary and a real server: each built-in
//! role's effective scopes (with `${user}`), scopes asked for at login, configuration
//! errors with file and line, `tessera users`, `GET /auth/users`, self-service on
//! `/auth/tokens` with its audit lines, and a `user`-role account pushing to its own
//! namespace of the real registry (and refused elsewhere).

use serde_json::{Value, json};

use crate::support::http::{client, login, status_and_code, status_and_json};
use crate::support::principals::{USER_PASSWORD, set_password, users_home};
use crate::support::real::{Rig, Skopeo, fails, oci_image, ok, text, tools_present};
use crate::support::{Run, argv};

const ROLES: &str = "[[auth.users]]\nname = \"root\"\nroles = [\"admin\"]\n\n[[auth.users]]\nname = \"dev\"\nroles = [\"developer\"]\n\n[[auth.users]]\nname = \"carol\"\nroles = [\"user\"]\n\n[[auth.users]]\nname = \"vic\"\nroles = [\"viewer\"]\n\n[auth.roles.ci]\nscopes = [\"repository:ci/${user}:push\"]\n\n[[auth.users]]\nname = \"runner\"\nroles = [\"ci\", \"viewer\"]\nscopes = [\"admin:users:read\"]\n";
const NAMES: [&str; 5] = ["root", "dev", "carol", "vic", "runner"];

fn scopes(v: &Value) -> Vec<String> {
    serde_json::from_value(v["scopes"].clone()).unwrap()
}

/// `POST /auth/login` of `user` with `USER_PASSWORD` and `body` extras: (status, body).
fn login_with(base: &str, user: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"username": user, "password": USER_PASSWORD});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    status_and_json(
        client()
            .post(format!("{base}/auth/login"))
            .json(&body)
            .send()
            .unwrap(),
    )
}

#[test]
fn each_role_grants_its_scopes_to_password_logins() {
    let h = users_home(ROLES, &NAMES, false);
    let expected: [(&str, &[&str]); 5] = [
        ("root", &["admin"]),
        (
            "dev",
            &[
                "repository:*:pull",
                "repository:*:push",
                "admin:tokens:read",
            ],
        ),
        ("carol", &["repository:*:pull", "repository:carol/*:push"]),
        ("vic", &["repository:*:pull"]),
        (
            "runner",
            &[
                "repository:*:pull",
                "repository:ci/runner:push",
                "admin:users:read",
            ],
        ),
    ];
    // What `tessera users check` explains ...
    for (name, want) in expected {
        let (out, _) = h.ok(&["--json", "users", "check", name]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(scopes(&v), want, "{name}: {v}");
    }
    let (out, _) = h.ok(&argv("users check runner"));
    assert!(out.contains("role ci ([auth.roles.ci])"), "{out}");
    assert!(out.contains("role viewer (built-in)"), "{out}");
    assert!(out.contains("repository:ci/${user}:push"), "{out}");
    // ... is what a password login issues, and what the token verifies with.
    let (_srv, base) = h.serve_base();
    for (name, want) in expected {
        let (s, v) = login_with(&base, name, json!({}));
        assert_eq!(s, 200, "{name}: {v}");
        assert_eq!(scopes(&v), want, "{name}");
        let (s, verified) = crate::support::http::verify(&base, v["token"].as_str().unwrap());
        assert_eq!(
            (s, scopes(&verified)),
            (200, want.iter().map(|s| s.to_string()).collect())
        );
        assert_eq!(verified["subject"], name);
    }
    // Asking for more than the role allows: the token carries the intersection ...
    let (s, v) = login_with(
        &base,
        "carol",
        json!({"scopes": ["repository:carol/app:push", "repository:team/app:push", "repository:team/app:pull"]}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        scopes(&v),
        ["repository:carol/app:push", "repository:team/app:pull"]
    );
    // ... and nothing of it is a refusal naming what was asked.
    let (s, v) = login_with(&base, "vic", json!({"scopes": "push"}));
    assert_eq!((s, v["code"].as_str()), (403, Some("FORBIDDEN")), "{v}");
    assert_eq!(v["required_scope"], "repository:*:push");
}

#[test]
fn the_configuration_refuses_bad_users_and_roles_with_file_line_and_fix() {
    let cases = [
        (
            "[auth]\n\n[[auth.users]]\nname = \"alice\"\nroles = [\"develper\"]\n",
            "tessera.toml:3:",
            "did you mean `developer`",
        ),
        (
            "[[auth.users]]\nname = \"a\"\n\n[[auth.users]]\nname = \"a\"\n",
            "tessera.toml:4:",
            "declared twice (first on line 1)",
        ),
        (
            "[auth.roles.ci]\nscopes = [\"repository:x:fly\"]\n",
            "tessera.toml:1:",
            "`[auth.roles.ci]` scopes",
        ),
        (
            "[[auth.users]]\nname = \"Bob\"\nroles = [\"user\"]\n",
            "tessera.toml:1:",
            "lowercase repository name",
        ),
        (
            "[[auth.users]]\nname = \"eve\"\nscopes = [\"push,,pull\"]\n",
            "tessera.toml:1:",
            "write each item as in `--scopes`",
        ),
    ];
    for (config, place, fix) in cases {
        let h = crate::support::Home::with_config(config);
        let e = h.fails(&argv("users list"), "", 1);
        assert!(e.contains(place) && e.contains(fix), "{config}\n{e}");
    }
}

#[test]
fn users_list_and_get_auth_users_show_roles_scopes_and_hashes() {
    let h = users_home(ROLES, &["root", "dev", "vic", "runner"], false);
    let (out, _) = h.ok(&argv("--json users list"));
    let v: Value = serde_json::from_str(&out).unwrap();
    let carol = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "carol")
        .unwrap();
    assert_eq!(carol["hash_present"], false);
    assert_eq!(carol["password_hash"], "tessera/users/carol/password_hash");
    assert_eq!(carol["roles"], json!(["user"]));
    let (out, _) = h.ok(&argv("users list"));
    assert!(out.contains("carol") && out.contains("NO HASH"), "{out}");
    // carol cannot log in until her password is set; then she can (after a restart).
    let (srv, base) = h.serve_base();
    assert_eq!(login(&base, "carol", USER_PASSWORD).status().as_u16(), 401);
    drop(srv);
    set_password(&h, "carol", USER_PASSWORD);
    let (_srv, base) = h.serve_base();
    assert_eq!(login(&base, "carol", USER_PASSWORD).status().as_u16(), 200);
    // GET /auth/users: admin:users:read (runner has it; bare admin covers it; vic has not).
    let token = |user: &str| {
        login_with(&base, user, json!({})).1["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let get = |tok: &str| {
        status_and_json(
            client()
                .get(format!("{base}/auth/users"))
                .bearer_auth(tok)
                .send()
                .unwrap(),
        )
    };
    let (s, v) = get(&token("vic"));
    assert_eq!(
        (s, v["required_scope"].as_str()),
        (403, Some("admin:users:read"))
    );
    for who in ["root", "runner"] {
        let (s, v) = get(&token(who));
        assert_eq!(s, 200, "{v}");
        let users = v["users"].as_array().unwrap();
        assert_eq!(users.len(), 5);
        let dev = users.iter().find(|u| u["name"] == "dev").unwrap();
        assert_eq!(dev["hash_present"], true);
        assert_eq!(scopes(dev).len(), 3);
        assert!(!v.to_string().contains("$2b$"), "never a hash: {v}");
    }
    // `users passwd` of an unknown user names the fix.
    h.refuses_with_stdin(
        &argv("users passwd nobody --stdin"),
        "pw\n",
        1,
        "no user `nobody`",
    );
}

#[test]
fn principals_manage_their_own_tokens_and_admins_everyones() {
    let h = users_home(ROLES, &["root", "carol", "vic"], false);
    let mut srv = h.serve_process(None);
    let base = srv.url();
    let token = |user: &str| {
        login_with(&base, user, json!({})).1["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (carol, vic, root) = (token("carol"), token("vic"), token("root"));
    let mint = |tok: &str, body: Value| {
        status_and_json(
            client()
                .post(format!("{base}/auth/tokens"))
                .bearer_auth(tok)
                .json(&body)
                .send()
                .unwrap(),
        )
    };
    let list = |tok: &str| -> Vec<(String, String)> {
        let (s, v) = status_and_json(
            client()
                .get(format!("{base}/auth/tokens"))
                .bearer_auth(tok)
                .send()
                .unwrap(),
        );
        assert_eq!(s, 200, "{v}");
        v["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["subject"].as_str().unwrap().to_owned(),
                    t["jti"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let revoke = |tok: &str, jti: &str| {
        status_and_code(
            client()
                .delete(format!("{base}/auth/tokens/{jti}"))
                .bearer_auth(tok)
                .send()
                .unwrap(),
        )
    };
    // carol mints for herself, within her scopes, never beyond them, never for vic.
    let (s, mine) = mint(
        &carol,
        json!({"scopes": "repository:carol/app:push", "expiry": "10m"}),
    );
    assert_eq!(s, 201, "{mine}");
    assert_eq!(mine["subject"], "carol");
    let (s, v) = mint(&carol, json!({"scopes": "repository:team/app:push"}));
    assert_eq!(
        (s, v["required_scope"].as_str()),
        (403, Some("repository:team/app:push"))
    );
    let (s, v) = mint(&carol, json!({"subject": "vic", "scopes": "pull"}));
    assert_eq!(
        (s, v["required_scope"].as_str()),
        (403, Some("admin:tokens:write"))
    );
    let (s, vics) = mint(&vic, json!({"scopes": "pull"}));
    assert_eq!(s, 201, "{vics}");
    let vics_jti = vics["jti"].as_str().unwrap();
    // Each sees only its own; the admin sees everyone's.
    let carols = list(&carol);
    assert!(carols.iter().all(|(sub, _)| sub == "carol"), "{carols:?}");
    assert!(
        carols
            .iter()
            .any(|(_, j)| j == mine["jti"].as_str().unwrap())
    );
    assert!(!carols.iter().any(|(_, j)| j == vics_jti));
    let all = list(&root);
    for who in ["carol", "vic", "root"] {
        assert!(all.iter().any(|(sub, _)| sub == who), "{who}: {all:?}");
    }
    // carol cannot revoke vic's token, nor an id nobody has; she can revoke her own.
    assert_eq!(revoke(&carol, vics_jti), (403, "FORBIDDEN".into()));
    assert_eq!(
        revoke(&carol, "0123456789abcdef0123456789abcdef"),
        (403, "FORBIDDEN".into())
    );
    assert_eq!(
        crate::support::http::verify(&base, vics["token"].as_str().unwrap()).0,
        200
    );
    assert_eq!(revoke(&carol, mine["jti"].as_str().unwrap()).0, 200);
    assert_eq!(
        crate::support::http::verify(&base, mine["token"].as_str().unwrap()).0,
        401
    );
    // The admin revokes vic's.
    assert_eq!(revoke(&root, vics_jti).0, 200);
    assert_eq!(
        crate::support::http::verify(&base, vics["token"].as_str().unwrap()).0,
        401
    );
    // A token minted with a token lives inside it: revoking the parent revokes it.
    let (_, child) = mint(&carol, json!({"scopes": "pull"}));
    let parent_jti = crate::support::http::verify(&base, &carol).1["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(revoke(&root, &parent_jti).0, 200);
    assert_eq!(
        crate::support::http::verify(&base, child["token"].as_str().unwrap()).0,
        401
    );
    // The audit lines name who did it and what.
    srv.alive();
    let log = srv.stop();
    assert!(
        log.lines().any(|l| l.contains("\"carol\"")
            && l.contains("minted token")
            && l.contains("repository:carol/app:push")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("\"root\"") && l.contains(&format!("revoked token {vics_jti}"))),
        "{log}"
    );
    assert!(
        !log.contains(USER_PASSWORD) && !log.contains(&carol),
        "no secret in the log"
    );
}

#[test]
fn a_user_role_account_pushes_to_its_own_namespace_only() {
    if !tools_present(
        &["docker-registry", "skopeo", "tar", "gzip"],
        "apt-get install docker-registry skopeo",
    ) {
        return;
    }
    let home = users_home(ROLES, &["carol", "dev"], true);
    let rig = Rig::start_with(home);
    let image = rig.work.path().join("image");
    oci_image(&image, "v1");
    let at = |repo: &str| format!("{}/{repo}", rig.host);
    let carol = Skopeo::new();
    ok(carol.login(&rig.host, "carol", USER_PASSWORD));
    ok(carol.push(&image, "v1", &at("carol/app:v1")));
    let denied = fails(carol.push(&image, "v1", &at("team/app:v1")));
    assert!(text(&denied).contains("denied"), "{}", text(&denied));
    // She pulls anything (a developer pushed team/app).
    let dev = Skopeo::new();
    ok(dev.login(&rig.host, "dev", USER_PASSWORD));
    ok(dev.push(&image, "v1", &at("team/app:v1")));
    ok(carol.inspect(&at("team/app:v1")));
    ok(carol.inspect(&at("carol/app:v1")));
    // A wrong password is refused at login.
    fails(Skopeo::new().login(&rig.host, "carol", "not her password"));
    let mut registry = rig.registry;
    registry.assert_no_token_trouble();
}

#[test]
fn the_cli_token_commands_work_against_a_remote() {
    let h = users_home(ROLES, &["root", "carol"], false);
    let srv = h.serve_process(None);
    let url = srv.url();
    h.ok(&["remotes", "add", "prod", &url]);
    h.ok_with_stdin(
        &argv("auth login --remote prod --username carol --password-stdin"),
        format!("{USER_PASSWORD}\n"),
    );
    // carol mints for herself through the server, within her role.
    let (out, _) = h.ok(&argv(
        "--json auth token generate --subject carol --scopes pull --repo carol/* --expiry 10m --remote prod",
    ));
    let minted: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(minted["subject"], "carol");
    let jti = minted["jti"].as_str().unwrap().to_owned();
    h.refuses(
        &argv("auth token generate --subject carol --scopes admin --remote prod"),
        1,
        "admin",
    );
    h.refuses(
        &argv("auth token generate --subject root --scopes pull --remote prod"),
        1,
        "admin:tokens:write",
    );
    // The list through the remote holds carol's tokens only.
    let (_, root_jti) = h.mint("root", "pull");
    let (out, _) = h.ok(&argv("--json auth token list --remote prod"));
    let listed: Value = serde_json::from_str(&out).unwrap();
    let subjects: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["subject"].as_str().unwrap())
        .collect();
    assert!(
        !subjects.is_empty() && subjects.iter().all(|s| *s == "carol"),
        "{listed}"
    );
    assert!(
        h.prints(&argv("auth token list"), "root")
            .contains(&root_jti)
    );
    // She revokes her own through the remote, not root's.
    h.refuses(
        &["auth", "token", "revoke", &root_jti, "--remote", "prod"],
        1,
        "admin:tokens:write",
    );
    h.ok(&["auth", "token", "revoke", &jti, "--remote", "prod"]);
    assert_eq!(
        crate::support::http::verify(&url, minted["token"].as_str().unwrap()).0,
        401
    );
    drop(srv);
}

/// The registry's `/token` (Basic and `grant_type=password`) issues a user's effective
/// scopes intersected with what is asked.
#[test]
fn the_registry_token_of_a_user_carries_what_its_role_allows_of_the_request() {
    use base64::Engine;
    let h = users_home(ROLES, &["carol"], true);
    let s = crate::support::http::Served::start(h);
    let access = |body: Value| -> Value {
        let token = body["token"].as_str().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let claims: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(claims["sub"], "carol");
        claims["access"].clone()
    };
    let want = json!([
        {"type": "repository", "name": "carol/app", "actions": ["pull", "push"]},
        {"type": "repository", "name": "team/app", "actions": ["pull"]},
    ]);
    let r = s.post_token(&[
        ("grant_type", "password"),
        ("username", "carol"),
        ("password", USER_PASSWORD),
        ("service", crate::support::SERVICE),
        (
            "scope",
            "repository:carol/app:pull,push repository:team/app:pull,push",
        ),
    ]);
    let (st, v) = status_and_json(r);
    assert_eq!(st, 200, "{v}");
    assert_eq!(access(v), want);
    let q = format!(
        "?service={}&scope=repository:carol/app:pull,push&scope=repository:team/app:pull,push",
        crate::support::SERVICE
    );
    let r = s.get_token(
        &q,
        Some(&crate::support::http::basic("carol", USER_PASSWORD)),
    );
    let (st, v) = status_and_json(r);
    assert_eq!(st, 200, "{v}");
    assert_eq!(access(v), want);
    // Unknown user and wrong password: the same refusal.
    let a = status_and_json(s.get_token(&q, Some(&crate::support::http::basic("carol", "x"))));
    let b = status_and_json(s.get_token(&q, Some(&crate::support::http::basic("nobody", "x"))));
    assert_eq!(a.0, 401);
    assert_eq!(a, b);
}

/// An unknown user, a user without a hash and a wrong password cost the same work: one
/// password check each, against a dummy hash of the kind most users have (shown by the
/// server state's `Debug`, which holds no hash).
#[test]
fn unknown_users_cost_one_check_of_the_usual_kind() {
    let h = users_home(ROLES, &["root", "dev"], false);
    // carol gets an argon2id hash; root and dev have bcrypt cost 10, the majority.
    h.ok_with_stdin(
        &argv("users passwd carol --stdin"),
        format!("{USER_PASSWORD}\n"),
    );
    let (config, env) = h.config();
    let state = format!("{:?}", crate::support::api::state(&config, &env));
    assert!(state.contains("dummy_kind: Bcrypt { cost: 10 }"), "{state}");
    assert!(
        !state.contains("$2b$") && !state.contains("$argon2id$"),
        "{state}"
    );
    let srv = h.serve();
    let base = format!("http://{}", srv.addr());
    let mut done = srv.password_checks().done;
    for (user, password) in [
        ("dev", "wrong"),
        ("nobody", USER_PASSWORD),
        ("vic", USER_PASSWORD),
        ("carol", "wrong"),
        ("carol", USER_PASSWORD),
    ] {
        let status = login(&base, user, password).status().as_u16();
        let now = srv.password_checks().done;
        assert_eq!(now, done + 1, "{user}: one check, whoever it is");
        done = now;
        assert_eq!(status == 200, (user, password) == ("carol", USER_PASSWORD));
    }
}
