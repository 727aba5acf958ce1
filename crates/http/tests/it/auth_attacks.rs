//! Attacks on authentication, tried through the real router against a real SQLite store:
//! forged, altered, expired and misdirected tokens, scope escalation at the token service,
//! password guessing, and hostile names. Each attempt is refused with the exact status
//! and code, and a control request shows the refusal is not an accident of the set-up.

use axum::body::Body;
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use berth_auth::token::{issue, AccessEntry, Claims, SigningKey};
use berth_core::AccessConfig;
use berth_http::server::ConnInfo;
use berth_meta::prelude::*;
use berth_testkit::wire::{basic_auth, OCI_MANIFEST};
use berth_testkit::world::{request, send, Resp, World, PASSWORD};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PRIVATE: &str = "acme/private-app";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn all_on(repo: &str) -> Vec<AccessEntry> {
    vec![AccessEntry {
        resource_type: "repository".into(),
        name: repo.into(),
        actions: vec!["pull".into(), "push".into(), "delete".into()],
    }]
}

async fn service_key(w: &World) -> SigningKey {
    let keys = w.meta.signing_keys().await.unwrap();
    berth_core::access::signing_key(&w.kek, &keys[0]).unwrap()
}

async fn get_manifest(w: &World, auth: &str) -> (StatusCode, String) {
    let r = w
        .req(
            "GET",
            &format!("/v2/{PRIVATE}/manifests/v1"),
            Some(auth),
            &[("accept", OCI_MANIFEST)],
            Body::empty(),
        )
        .await;
    (r.status, r.code())
}

async fn delete_manifest(w: &World, auth: &str) -> Resp {
    w.call("DELETE", &format!("/v2/{PRIVATE}/manifests/v1"), Some(auth))
        .await
}

#[tokio::test]
async fn forged_altered_expired_and_misdirected_tokens_are_refused() {
    let w = World::new(crate::app).await;
    w.manifest(PRIVATE, Some("v1"), "x").await;
    let key = service_key(&w).await;
    let t = now();
    let good = Claims::new("berth", "root", "berth", all_on(PRIVATE), t, 300);

    // Control: the service's own key, the right issuer and audience: accepted.
    let ok = issue(&good, &key);
    assert_eq!(
        get_manifest(&w, &format!("Bearer {ok}")).await.0,
        StatusCode::OK
    );
    // A token is worth what its account may do now: one naming an account without the
    // rights it lists is refused, whoever signed it.
    let beyond = Claims::new("berth", "nobody", "berth", all_on(PRIVATE), t, 300);
    let (status, _) = get_manifest(&w, &format!("Bearer {}", issue(&beyond, &key))).await;
    assert_ne!(status, StatusCode::OK);

    let refused = (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".to_string());
    // Signed with another key (whatever kid it claims).
    let other = SigningKey::generate();
    assert_eq!(
        get_manifest(&w, &format!("Bearer {}", issue(&good, &other))).await,
        refused
    );
    let mut forged = issue(&good, &other)
        .split('.')
        .map(str::to_string)
        .collect::<Vec<_>>();
    forged[0] = ok.split('.').next().unwrap().to_string(); // the real kid in the header
    assert_eq!(
        get_manifest(&w, &format!("Bearer {}", forged.join("."))).await,
        refused
    );

    // alg none, with and without a signature segment.
    let claims_b64 = ok.split('.').nth(1).unwrap();
    for header in [
        format!(r#"{{"typ":"JWT","alg":"none","kid":"{}"}}"#, key.kid()),
        format!(r#"{{"typ":"JWT","alg":"HS256","kid":"{}"}}"#, key.kid()),
        r#"{"typ":"JWT","alg":"ES256"}"#.to_string(),
    ] {
        let h = URL_SAFE_NO_PAD.encode(&header);
        for sig in ["", "AAAA"] {
            let t = format!("Bearer {h}.{claims_b64}.{sig}");
            assert_eq!(get_manifest(&w, &t).await, refused, "{header} / {sig:?}");
        }
    }

    // Expired, not yet valid, another audience, another issuer: signed with the real key.
    let mut expired = good.clone();
    expired.exp = t - 3600;
    expired.iat = t - 4000;
    expired.nbf = t - 4000;
    let mut future = good.clone();
    future.nbf = t + 3600;
    future.exp = t + 7200;
    let mut other_service = good.clone();
    other_service.aud = "some-other-registry".into();
    let mut other_issuer = good.clone();
    other_issuer.iss = "evil".into();
    for c in [expired, future, other_service, other_issuer] {
        assert_eq!(
            get_manifest(&w, &format!("Bearer {}", issue(&c, &key))).await,
            refused
        );
    }

    // Tampered: a reader's real pull token with push added to its claims.
    let r = w
        .call(
            "GET",
            &format!("/auth/token?service=berth&scope=repository:{PRIVATE}:pull"),
            w.creds["read-only"].as_deref(),
        )
        .await;
    let real = r.json()["token"].as_str().unwrap().to_string();
    let parts: Vec<&str> = real.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["access"][0]["actions"] = serde_json::json!(["pull", "push", "delete"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    let r = delete_manifest(&w, &format!("Bearer {tampered}")).await;
    assert_eq!((r.status, r.code()), refused);
    // The untampered token still reads, and is refused the delete by the role (403).
    assert_eq!(
        get_manifest(&w, &format!("Bearer {real}")).await.0,
        StatusCode::OK
    );
    let r = delete_manifest(&w, &format!("Bearer {real}")).await;
    r.assert_is(StatusCode::FORBIDDEN, "DENIED");

    // Garbage in the header.
    for bad in [
        "Bearer ",
        "Bearer a.b",
        "Bearer ....",
        "Negotiate abc",
        "Basic !!!",
    ] {
        let r = w.call("GET", "/v2/", Some(bad)).await;
        assert_eq!((r.status, r.code()), refused, "{bad:?}");
    }
}

async fn granted(w: &World, auth: Option<&str>, query: &str) -> (StatusCode, Vec<String>) {
    let r = w.call("GET", &format!("/auth/token?{query}"), auth).await;
    if r.status != StatusCode::OK {
        return (r.status, vec![]);
    }
    let token = r.json()["token"].as_str().unwrap().to_string();
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let mut out = vec![];
    for e in claims["access"].as_array().unwrap() {
        for a in e["actions"].as_array().unwrap() {
            out.push(format!(
                "{}:{}:{}",
                e["type"].as_str().unwrap(),
                e["name"].as_str().unwrap(),
                a.as_str().unwrap()
            ));
        }
    }
    (r.status, out)
}

/// `POST /auth/token` with `form`, as a client without credentials sends it.
async fn post_token_form(w: &World, form: String) -> Resp {
    w.req(
        "POST",
        "/auth/token",
        None,
        &[("content-type", "application/x-www-form-urlencoded")],
        form,
    )
    .await
}

#[tokio::test]
async fn the_token_service_grants_only_what_roles_allow() {
    let w = World::new(crate::app).await;
    let reader = w.creds["read-only"].as_deref();
    let ok = StatusCode::OK;
    // Asking for everything gets what the role gives.
    assert_eq!(
        granted(
            &w,
            reader,
            &format!("service=berth&scope=repository:{PRIVATE}:pull,push,delete,*")
        )
        .await,
        (ok, vec![format!("repository:{PRIVATE}:pull")])
    );
    // Several scopes, one of them somebody else's namespace.
    assert_eq!(
        granted(
            &w,
            reader,
            &format!("service=berth&scope=repository:{PRIVATE}:push&scope=repository:nobody/secret:pull,push")
        )
        .await,
        (ok, vec![])
    );
    // A name with host:port is parsed (first and last colon) and grants nothing here.
    assert_eq!(
        granted(
            &w,
            reader,
            "service=berth&scope=repository:localhost:5000/acme/private-app:pull"
        )
        .await,
        (ok, vec![])
    );
    // Anonymous: pull of the public repository only.
    assert_eq!(
        granted(&w, None, "service=berth&scope=repository:acme/public-app:pull,push&scope=repository:acme/private-app:pull").await,
        (ok, vec!["repository:acme/public-app:pull".to_string()])
    );
    // The catalog scope is granted (the listing itself is filtered).
    assert_eq!(
        granted(&w, reader, "service=berth&scope=registry:catalog:*").await,
        (ok, vec!["registry:catalog:*".to_string()])
    );
    // Another service is refused outright.
    let r = w
        .call(
            "GET",
            "/auth/token?service=other&scope=repository:acme/public-app:pull",
            reader,
        )
        .await;
    r.assert_is(StatusCode::BAD_REQUEST, "UNSUPPORTED");
    // A system administrator asking for `*` gets it, and the token deletes.
    let (_, g) = granted(
        &w,
        w.creds["sysadmin"].as_deref(),
        &format!("service=berth&scope=repository:{PRIVATE}:*"),
    )
    .await;
    assert_eq!(g, vec![format!("repository:{PRIVATE}:*")]);
    // POST forms: a bad password, an unknown grant type, a refresh token that is not one.
    for (form, status) in [
        (format!("grant_type=password&username=reader&password=nope&service=berth&scope=repository:{PRIVATE}:pull"), 401),
        ("grant_type=client_credentials&service=berth".to_string(), 400),
        ("grant_type=refresh_token&refresh_token=berth_0000000000000000_00&service=berth".to_string(), 401),
        ("grant_type=password&service=berth".to_string(), 400),
    ] {
        let r = post_token_form(&w, form.clone()).await;
        assert_eq!(r.status.as_u16(), status, "{form}: {:?}", r.body);
    }
    // The offline flow: a refresh token from a password login buys tokens later, and
    // never a second refresh token.
    let r = post_token_form(
        &w,
        format!("grant_type=password&username=reader&password={}&service=berth&access_type=offline&client_id=docker", PASSWORD.replace(' ', "+")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    let r = post_token_form(
        &w,
        format!("grant_type=refresh_token&refresh_token={refresh}&service=berth&access_type=offline&scope=repository:{PRIVATE}:pull,push"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json().get("refresh_token").is_none());
    assert_eq!(r.json()["scope"], format!("repository:{PRIVATE}:pull"));
}

/// The account `name` of the world, which must exist.
async fn user_named(w: &World, name: &str) -> berth_meta::identity::UserRecord {
    w.meta
        .user_get(berth_meta::identity::UserKey::Name(name))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no user {name}"))
}

/// `GET uri` from `ip` with `auth`: the connection as the listener records it.
async fn get_from(w: &World, ip: &str, uri: &str, auth: Option<&str>) -> Resp {
    let peer: SocketAddr = format!("{ip}:40000").parse().unwrap();
    let mut r = request("GET", uri, auth, &[], Body::empty());
    r.extensions_mut().insert(ConnInfo { peer, tls: false });
    send(&w.router, r).await
}

/// `GET /v2/` from `ip` with `auth`.
async fn v2_from(w: &World, ip: &str, auth: Option<&str>) -> Resp {
    get_from(w, ip, "/v2/", auth).await
}

#[tokio::test]
async fn password_guessing_is_rate_limited_per_account_and_per_source() {
    let w = World::with(
        crate::app,
        AccessConfig {
            login_failures_per_account: 5,
            login_failures_per_source: 12,
            login_window: Duration::from_secs(300),
            ..AccessConfig::default()
        },
    )
    .await;
    // The owner logged in from 10.0.0.4 before, and has an access token for CI.
    let right = basic_auth("reader", PASSWORD);
    let r = v2_from(&w, "10.0.0.4", Some(&right)).await;
    assert_eq!(r.status, StatusCode::OK);
    let reader = user_named(&w, "reader").await;
    let ci = w
        .access
        .create_access_token(
            &berth_core::Caller::anonymous(None),
            reader.id,
            "ci",
            None,
            None,
        )
        .await
        .unwrap();
    // A stranger guesses, anonymously.
    let wrong = basic_auth("reader", "guess");
    for _ in 0..5 {
        let r = v2_from(&w, "10.0.0.1", Some(&wrong)).await;
        r.assert_is(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    // The guessing source is stopped for this account, and so is every source the account
    // never logged in from, on /v2 and on the token service alike.
    for (ip, uri) in [
        ("10.0.0.1", "/v2/"),
        ("10.0.0.2", "/v2/"),
        ("10.0.0.3", "/auth/token?service=berth"),
    ] {
        let r = get_from(&w, ip, uri, Some(&right)).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
            "{uri}"
        );
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=300).contains(&retry));
    }
    // The owner is not locked out: their known source logs in with the password, and the
    // access token (no password: it cannot be guessed) works from anywhere, the guessing
    // source included.
    for (ip, auth) in [
        ("10.0.0.4", right.clone()),
        ("10.0.0.2", basic_auth("reader", &ci.token)),
        ("10.0.0.1", basic_auth("reader", &ci.token)),
    ] {
        let r = v2_from(&w, ip, Some(&auth)).await;
        assert_eq!(r.status, StatusCode::OK, "from {ip}");
    }
    // A known source that guesses itself is stopped too.
    for _ in 0..5 {
        let r = v2_from(&w, "10.0.0.4", Some(&wrong)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = v2_from(&w, "10.0.0.4", Some(&right)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Other accounts are not affected.
    let r = v2_from(&w, "10.0.0.2", w.creds["read-write"].as_deref()).await;
    assert_eq!(r.status, StatusCode::OK);

    // One source spraying many names is stopped by the per-source limit.
    for i in 0..12 {
        let r = v2_from(&w, "10.0.0.9", Some(&basic_auth(&format!("user{i}"), "x"))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let admin = w.creds["admin"].as_deref();
    let r = v2_from(&w, "10.0.0.9", admin).await;
    r.assert_is(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    let r = v2_from(&w, "10.0.0.10", admin).await;
    assert_eq!(r.status, StatusCode::OK);
    // Failures and successes are in the audit log, without the passwords.
    let events = w
        .meta
        .audit_query(&Default::default(), None, 1000)
        .await
        .unwrap();
    let failures = events
        .iter()
        .filter(|e| e.action == "login.failure")
        .count();
    // Aggregated: 5 failures of `reader` from each of two sources are audited at 1, 2 and
    // 4; the twelve sprayed names once each.
    assert_eq!(failures, 3 + 3 + 12, "{failures} failed logins audited");
    assert!(events
        .iter()
        .any(|e| e.action == "login.success" && e.source.as_deref() == Some("10.0.0.10")));
    let all = format!("{events:?}");
    assert!(
        !all.contains(PASSWORD) && !all.contains("guess"),
        "a password reached the audit log"
    );
}

#[tokio::test]
async fn hostile_names_get_clean_refusals_and_change_nothing() {
    let w = World::new(crate::app).await;
    w.manifest(PRIVATE, Some("v1"), "x").await;
    let users_before = w.meta.users_list(None, 1000).await.unwrap().len();
    let root = w.creds["sysadmin"].as_deref();
    let long = "a".repeat(100_000);
    let sql = "x' OR '1'='1'; DROP TABLE accounts; --";
    // Credentials.
    for user in [sql, long.as_str(), "", "root\0", "../root", "ROOT' --"] {
        let r = w
            .call("GET", "/v2/", Some(&basic_auth(user, PASSWORD)))
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            "{:.40}",
            user
        );
    }
    let r = w
        .call("GET", "/v2/", Some(&basic_auth("root", &long)))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Repository names in paths: traversal, SQL, oversize, encoded separators.
    for path in [
        "/v2/acme/../acme/private-app/manifests/v1".to_string(),
        "/v2/acme/%2e%2e/private-app/manifests/v1".to_string(),
        "/v2/acme/private-app%2f..%2fx/manifests/v1".to_string(),
        "/v2/acme/private-app'%20OR%20'1'='1/manifests/v1".to_string(),
        format!(
            "/v2/{}/manifests/v1",
            "a/".repeat(2000).trim_end_matches('/')
        ),
        format!("/v2/{}/tags/list", &long[..60_000]),
    ] {
        let r = w.call("GET", &path, root).await;
        assert!(r.status.is_client_error(), "{:.60}: {}", path, r.status);
        assert_ne!(r.status, StatusCode::OK);
        assert!(
            [
                "NAME_INVALID",
                "NAME_UNKNOWN",
                "UNSUPPORTED",
                "MANIFEST_UNKNOWN"
            ]
            .contains(&r.code().as_str()),
            "{:.60}: {}",
            path,
            r.code()
        );
    }
    // Scopes.
    for scope in [
        format!("repository:{sql}:pull"),
        "repository:acme/../nobody/x:push".to_string(),
        format!("repository:{}:pull", "a".repeat(5000)),
        "repository:acme/private-app:pull,push,".to_string() + &",push".repeat(1000),
    ] {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("service", "berth")
            .append_pair("scope", &scope)
            .finish();
        let (status, g) = granted(&w, w.creds["read-only"].as_deref(), &q).await;
        assert!(
            status == StatusCode::BAD_REQUEST
                || (status == StatusCode::OK && g.is_empty())
                || g == vec![format!("repository:{PRIVATE}:pull")],
            "{:.60}: {status} {g:?}",
            scope
        );
    }
    let many: String = (0..1500)
        .map(|i| format!("&scope=repository:a/b{i}:pull"))
        .collect();
    let r = w
        .call("GET", &format!("/auth/token?service=berth{many}"), None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Nothing changed, everything still works.
    assert_eq!(
        w.meta.users_list(None, 1000).await.unwrap().len(),
        users_before
    );
    let r = w
        .req(
            "GET",
            &format!("/v2/{PRIVATE}/manifests/v1"),
            root,
            &[("accept", OCI_MANIFEST)],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn operations_endpoints_are_open_but_cluster_status_is_for_system_administrators() {
    let w = World::new(crate::app).await;
    for (subject, auth) in &w.creds {
        for path in ["/health", "/nginx_status", "/metrics"] {
            let r = w.call("GET", path, auth.as_deref()).await;
            assert_eq!(r.status, StatusCode::OK, "{path} as {subject}");
        }
        let r = w
            .call("GET", "/api/v0/meta/cluster_status", auth.as_deref())
            .await;
        let want = match *subject {
            "sysadmin" => (StatusCode::OK, "-"),
            "anonymous" | "expired-token" | "revoked-token" => {
                (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
            }
            _ => (StatusCode::FORBIDDEN, "DENIED"),
        };
        assert_eq!(
            (r.status, r.code().as_str()),
            want,
            "cluster_status as {subject}"
        );
        if r.status == StatusCode::OK {
            assert_eq!(
                r.json()["replicas"][0]["stores"]["metadata"]["kind"],
                "sqlite"
            );
        }
    }
}

/// A deactivated account answers a right password exactly as a wrong one (and as an
/// unknown name), on /v2 and at the token service: the answer does not confirm a password.
#[tokio::test]
async fn a_deactivated_account_does_not_confirm_its_password() {
    let w = World::new(crate::app).await;
    let reader = user_named(&w, "reader").await;
    w.meta
        .user_update(
            reader.id,
            &berth_meta::identity::UserPatch {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for uri in ["/v2/", "/auth/token?service=berth"] {
        let mut answers = Vec::new();
        for auth in [
            basic_auth("reader", PASSWORD),
            basic_auth("reader", "wrong password"),
            basic_auth("nobody-at-all", PASSWORD),
        ] {
            let r = w.call("GET", uri, Some(&auth)).await;
            answers.push((r.status, r.body.clone()));
        }
        assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "{uri}: the answers differ: {answers:?}"
        );
    }
}

/// Issue 10: an organisation owner takes over a namespace that belongs to nobody. An
/// administrator pushed `library/base:1`; a user `carol` left `carol/app` and an
/// organisation `oldco` left `oldco/app` when they were deleted. The owner of `acme`
/// creates a service account of acme named after each namespace, to push into it with
/// the account's token, overwrite `library/base:1` and make it public. Every name is
/// refused with 409 CONFLICT (the namespace holds repositories no account owns), so there
/// is no account to act as, and the owner's own attempts are refused as before; only a
/// system administrator may claim the name, explicitly and audited.
#[tokio::test]
async fn an_org_owner_cannot_take_over_an_ownerless_namespace() {
    let w = World::new(crate::app).await;
    let root = w.root();
    let owner = w.creds["org-owner"].as_deref();
    let json = [("content-type", "application/json")];
    let (base, _) = w.manifest("library/base", Some("1"), "base").await;
    // A user's and an organisation's repositories, left behind by their deletion.
    for (create, body, repo, delete) in [
        (
            "/api/v0/users",
            r#"{"name": "carol", "password": "a-long-password"}"#,
            "carol/app",
            "/api/v0/users/carol",
        ),
        (
            "/api/v0/orgs",
            r#"{"name": "oldco"}"#,
            "oldco/app",
            "/api/v0/orgs/oldco",
        ),
    ] {
        let r = w.req("POST", create, root, &json, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{create}");
        w.manifest(repo, Some("1"), repo).await;
        let r = w.call("DELETE", delete, root).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{delete}");
    }

    for ns in ["library", "carol", "oldco"] {
        let body = format!(r#"{{"name": "{ns}", "org": "acme"}}"#);
        let r = w
            .req("POST", "/api/v0/service-accounts", owner, &json, body)
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::CONFLICT, "CONFLICT"),
            "service account {ns}: {:?}",
            r.body
        );
        let msg = r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains(ns) && msg.contains("claim"), "{msg}");
        // Claiming is for system administrators only.
        let body = format!(r#"{{"name": "{ns}", "org": "acme", "claim_namespace": true}}"#);
        let r = w
            .req("POST", "/api/v0/service-accounts", owner, &json, body)
            .await;
        r.assert_is(StatusCode::FORBIDDEN, "DENIED");
        // No account came to be: no token to act with.
        let r = w
            .req(
                "POST",
                &format!("/api/v0/users/{ns}/tokens"),
                owner,
                &json,
                r#"{"description": "ci"}"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "token for {ns}");
    }
    // The owner's own attempts: overwrite the tag, push into the namespace, make it public.
    let (_, m) = w.manifest("acme/private-app", None, "evil").await;
    let r = w
        .req(
            "PUT",
            "/v2/library/base/manifests/1",
            owner,
            &[("content-type", OCI_MANIFEST)],
            m,
        )
        .await;
    // A refused write is 403 whether the repository exists or not (issue 11).
    r.assert_is(StatusCode::FORBIDDEN, "DENIED");
    let r = w
        .call("POST", "/v2/library/new/blobs/uploads/", owner)
        .await;
    r.assert_is(StatusCode::FORBIDDEN, "DENIED");
    let r = w
        .req(
            "PATCH",
            "/api/v0/repositories/library%2Fbase",
            owner,
            &json,
            r#"{"visibility": "public"}"#,
        )
        .await;
    r.assert_is(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    // Unchanged: private, and the tag names the administrator's manifest.
    let r = w.call("GET", "/v2/library/base/manifests/1", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = w.call("HEAD", "/v2/library/base/manifests/1", root).await;
    assert_eq!(r.headers["docker-content-digest"], base.as_str());

    // A system administrator claims `library` explicitly: the account owns the namespace,
    // and the claim is audited.
    let r = w
        .req(
            "POST",
            "/api/v0/service-accounts",
            root,
            &json,
            r#"{"name": "library", "org": "acme", "claim_namespace": true}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = w
        .call("GET", "/api/v0/audit?action=namespace.claim", root)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let items = r.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["target"], "library");
    // The other names stay refused.
    let r = w
        .req(
            "POST",
            "/api/v0/users",
            root,
            &json,
            r#"{"name": "carol", "password": "a-long-password"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

/// The audit log cannot be flooded: anonymous token requests that grant nothing are not
/// audited, repeated failed logins are aggregated (the 1st, 2nd, 4th, 8th... with their
/// count), and the retention job deletes what is past the retention, nothing newer.
#[tokio::test]
async fn the_audit_log_is_bounded() {
    use berth_meta::identity::{AuditFilter, NewAuditEvent};
    let w = World::with(
        crate::app,
        AccessConfig {
            login_failures_per_account: 1_000,
            login_failures_per_source: 1_000,
            ..AccessConfig::default()
        },
    )
    .await;
    let count = |action: &'static str| {
        let meta = w.meta.clone();
        async move {
            meta.audit_query(&AuditFilter::default(), None, 1000)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.action == action)
                .collect::<Vec<_>>()
        }
    };
    let issued_before = count("token.issue").await.len();
    for _ in 0..20 {
        let r = w
            .call(
                "GET",
                "/auth/token?service=berth&scope=repository:acme/private-app:pull",
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(count("token.issue").await.len(), issued_before);

    let wrong = basic_auth("reader", "guess");
    for _ in 0..40 {
        let r = v2_from(&w, "10.1.0.1", Some(&wrong)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let failures = count("login.failure").await;
    let counts: Vec<u64> = failures
        .iter()
        .rev()
        .map(|e| e.detail["failures"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(counts, [1, 2, 4, 8, 16, 32], "{failures:?}");

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (age_days, target) in [(100, "old"), (10, "recent")] {
        w.meta
            .audit_append(&NewAuditEvent {
                at: now - age_days * 86_400_000,
                actor: None,
                source: None,
                action: "retention.probe".into(),
                target: target.into(),
                detail: serde_json::json!({}),
            })
            .await
            .unwrap();
    }
    let deleted =
        berth_core::audit_retention::prune(w.meta.as_ref(), Duration::from_secs(90 * 86_400), now)
            .await
            .unwrap();
    assert_eq!(deleted, 1);
    let left: Vec<String> = count("retention.probe")
        .await
        .into_iter()
        .map(|e| e.target)
        .collect();
    assert_eq!(left, ["recent"]);
}
