//! Accounts and tokens over real HTTP: registration and login (throttled per client IP,
//! login also per account), refresh rotation, tokens not valid yet, bounded password
//! hashing (503 with `Retry-After` when saturated) and login timing that does not tell
//! whether an email exists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::tokens::{self, forge};
use e2e::{Api, Backend, Reply, TestApp};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_login_answer_tokens_and_the_user() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let api = app.api();
    let reply = api
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "  Alice@Example.COM ", "password": "correct horse", "display_name": "Alice"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["token_type"], "bearer");
    assert!(reply.body["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(reply.body["user"]["email"], "alice@example.com");
    assert!(reply.body["user"]["avatar_url"].is_null());
    assert!(reply.body["user"].get("password_hash").is_none());

    let login = api.login("ALICE@example.com", "correct horse").await;
    let me = api.get("/api/v1/users/me", login.t()).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["id"], reply.body["user"]["id"]);
    assert_eq!(me.body["display_name"], "Alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_failures_answer_alike_whatever_the_cause() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let api = app.api();
    let alice = api.register("Alice").await;
    let wrong_password = api
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": alice.email, "password": "wrong password"}),
        )
        .await;
    let unknown_email = api
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "nobody@example.com", "password": "wrong password"}),
        )
        .await;
    let malformed_email = api
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "nobody", "password": "x"}),
        )
        .await;
    for r in [&wrong_password, &unknown_email, &malformed_email] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body, wrong_password.body);
    }
    assert_eq!(wrong_password.error_code(), "invalid_credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let api = app.api();
    let alice = api.register("Alice").await;

    let first = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": alice.refresh_token}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let rotated = first.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, alice.refresh_token);
    let new_access = first.body["access_token"].as_str().unwrap();
    assert_eq!(
        api.get("/api/v1/users/me", Some(new_access)).await.status,
        StatusCode::OK
    );

    // The old token presented again: refused, and the whole family dies with it.
    let reuse = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": alice.refresh_token}),
        )
        .await;
    assert_eq!(
        (reuse.status, reuse.error_code()),
        (StatusCode::UNAUTHORIZED, "invalid_refresh_token")
    );
    let after = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": rotated}),
        )
        .await;
    assert_eq!(
        after.status,
        StatusCode::UNAUTHORIZED,
        "the rotated token was revoked with its family"
    );

    // Another login is another family, untouched.
    let again = api.login(&alice.email, &alice.password).await;
    let ok = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": again.refresh_token}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_refresh_token_but_not_issued_access_tokens() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let api = app.api();
    let alice = api.register("Alice").await;
    let out = api
        .post(
            "/api/v1/auth/logout",
            alice.t(),
            json!({"refresh_token": alice.refresh_token}),
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{:?}", out.body);
    let refresh = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": alice.refresh_token}),
        )
        .await;
    assert_eq!(refresh.status, StatusCode::UNAUTHORIZED);
    // Access tokens live until their short expiry.
    assert_eq!(
        api.get("/api/v1/users/me", alice.t()).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_are_rate_limited_with_retry_after() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.auth.login_attempts_per_minute = server::config::nonzero::u32(3);
        s.auth.login_burst = server::config::nonzero::u32(3);
    })
    .await;
    let api = app.api();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = api
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": "victim@example.com", "password": "guess guess"}),
            )
            .await;
        statuses.push(r.status);
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.error_code(), "rate_limited");
            let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry >= 1);
        }
    }
    assert_eq!(&statuses[..3], &[StatusCode::UNAUTHORIZED; 3]);
    assert_eq!(&statuses[3..], &[StatusCode::TOO_MANY_REQUESTS; 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_found_by_search_but_never_the_caller() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let api = app.api();
    let alice = api.register("Alice Walker").await;
    let bob = api.register("Bob Walker").await;
    let found = api
        .get("/api/v1/users/search?q=walker&limit=10", alice.t())
        .await;
    assert_eq!(found.status, StatusCode::OK);
    let ids: Vec<&str> = found
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![bob.id.as_str()]);
    let user = api
        .get(&format!("/api/v1/users/{}", bob.id), alice.t())
        .await;
    assert_eq!(user.body["display_name"], "Bob Walker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_the_openapi_document_are_served() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let api = app.api();
    assert_eq!(api.get("/healthz", None).await.status, StatusCode::OK);
    assert_eq!(api.get("/readyz", None).await.status, StatusCode::OK);
    let doc = api.get("/api/v1/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/conversations",
        "/api/v1/conversations/{id}/messages",
        "/api/v1/conversations/{id}/read",
        "/api/v1/unread",
    ] {
        assert!(paths.contains_key(p), "OpenAPI lists {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_valid_yet_is_refused_like_any_invalid_token() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let api = app.api();
    let alice = api.register("Alice").await;
    let now = tokens::now();
    // Forged right: past nbf and iat a little ahead (within the default 30 s leeway) pass.
    let fine = forge(&alice.id, json!({ "nbf": now - 60, "iat": now + 5 }));
    let me = api.get("/api/v1/users/me", Some(&fine)).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    let invalid = api.get("/api/v1/users/me", Some("not.a.jwt")).await;
    for (what, token) in [
        (
            "nbf in an hour",
            forge(&alice.id, json!({ "nbf": now + 3600 })),
        ),
        ("nbf in 5 s", forge(&alice.id, json!({ "nbf": now + 5 }))),
        (
            "iat in an hour",
            forge(&alice.id, json!({ "iat": now + 3600 })),
        ),
        (
            "iat in 2 min",
            forge(&alice.id, json!({ "iat": now + 120 })),
        ),
    ] {
        let r = api.get("/api/v1/users/me", Some(&token)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {:?}", r.body);
        assert_eq!(
            r.body, invalid.body,
            "{what}: answered unlike an invalid token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_iat_leeway_is_configurable() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.auth.iat_leeway = std::time::Duration::from_secs(300)
    })
    .await;
    let api = app.api();
    let alice = api.register("Alice").await;
    let ahead = forge(&alice.id, json!({ "iat": tokens::now() + 120 }));
    let r = api.get("/api/v1/users/me", Some(&ahead)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "2 min ahead, 5 min leeway: {:?}",
        r.body
    );
}

/// Registers a fresh email through `api`, as the client `forwarded_for` behind the proxy.
async fn register_from(api: &Api, forwarded_for: &str) -> Reply {
    let email = format!("u-{}@example.com", uuid::Uuid::new_v4().simple());
    let resp = api
        .client
        .post(format!("{}/api/v1/auth/register", api.base))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": email, "password": "correct horse", "display_name": "U"}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

fn retry_after(reply: &Reply) -> u64 {
    reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_registrations_from_one_address_is_refused_after_the_burst() {
    // The default limits; a trusted proxy in front, so the test can be two clients.
    let defaults = server::config::AuthSettings::default();
    let (per_minute, burst) = (
        defaults.registrations_per_minute.get(),
        defaults.registration_burst.get(),
    );
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.http.trust_forwarded_for = true;
        s.auth.registrations_per_minute = server::config::nonzero::u32(per_minute);
        s.auth.registration_burst = server::config::nonzero::u32(burst);
    })
    .await;
    let api = app.api();
    let started = Instant::now();
    let mut created = 0;
    let mut refused = 0;
    let mut flood = futures_util::stream::iter(0..1_000)
        .map(|_| register_from(&api, "198.51.100.7"))
        .buffer_unordered(64);
    while let Some(reply) = flood.next().await {
        match reply.status {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(reply.error_code(), "rate_limited");
                let wait = retry_after(&reply);
                assert!((1..=60).contains(&wait), "Retry-After {wait}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    let elapsed = started.elapsed();
    // The burst, plus one per refill period the flood lasted.
    let refills = (elapsed.as_secs_f64() * f64::from(per_minute) / 60.0).ceil() as u32;
    println!(
        "1000 registrations from one address in {elapsed:?}: {created} created, {refused} refused"
    );
    assert!(
        created >= burst && created <= burst + refills,
        "{created} created (burst {burst}, {refills} refills)"
    );
    assert_eq!(created + refused, 1_000);
    assert_eq!(app.store.row_counts().await["users"], i64::from(created));

    // Another client behind the same proxy still registers.
    let other = register_from(&api, "198.51.100.8").await;
    assert_eq!(other.status, StatusCode::CREATED, "{:?}", other.body);
    // The entries a client wrote left of the proxy's prove nothing: still the flooder.
    let spoofed = register_from(&api, "203.0.113.1, 198.51.100.7").await;
    assert_eq!(spoofed.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_password_hashing_answers_503_with_retry_after() {
    // One hash at a time, no waiting, and a cost that takes some milliseconds.
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.auth.argon2_memory_kib = 8 * 1024;
        s.auth.argon2_iterations = 2;
        s.auth.hash_concurrency = 1;
        s.auth.hash_wait_timeout = std::time::Duration::from_millis(1);
    })
    .await;
    let api = app.api();
    let alice = api.register("Alice").await;
    let logins = (0..12).map(|_| {
        api.post(
            "/api/v1/auth/login",
            None,
            json!({"email": alice.email, "password": alice.password}),
        )
    });
    let replies = futures_util::future::join_all(logins).await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let busy: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    println!(
        "12 concurrent logins, 1 hashing slot: {ok} logged in, {} answered 503",
        busy.len()
    );
    assert_eq!(ok + busy.len(), 12, "{replies:?}");
    assert!(ok >= 1, "nobody logged in");
    assert!(
        !busy.is_empty(),
        "no login was refused with one slot and no wait"
    );
    for r in busy {
        assert_eq!(r.error_code(), "unavailable");
        assert!(retry_after(r) >= 1);
    }
    // Once the burst is over, hashing serves again.
    api.login(&alice.email, &alice.password).await;
}

/// The median of `samples`.
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_login_takes_as_long_for_an_unknown_email_as_for_a_known_one() {
    // A cost far from the built-in default (19 MiB, 2 passes), so that a dummy hash of a
    // fixed default cost would be about 3x faster than the real ones; and costly enough
    // that hashing, not the noise of a busy machine, makes up most of each login.
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.auth.argon2_memory_kib = 64 * 1024;
        s.auth.argon2_iterations = 2;
    })
    .await;
    let api = app.api();
    let alice = api.register("Alice").await;
    let attempt = |email: String| {
        let api = api.clone();
        async move {
            let started = Instant::now();
            let r = api
                .post(
                    "/api/v1/auth/login",
                    None,
                    json!({"email": email, "password": "wrong password"}),
                )
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
            started.elapsed()
        }
    };
    // Warm up, then interleave the two kinds so load on the machine hits both alike.
    attempt(alice.email.clone()).await;
    attempt("nobody@example.com".to_owned()).await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..15 {
        known.push(attempt(alice.email.clone()).await);
        unknown.push(attempt(format!("nobody-{i}@example.com")).await);
    }
    let (known, unknown) = (median(&mut known), median(&mut unknown));
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    println!(
        "median failed login: known email {known:?}, unknown email {unknown:?} (ratio {ratio:.2})"
    );
    assert!(
        (0.5..=2.0).contains(&ratio),
        "unknown {unknown:?} vs known {known:?}: timing tells them apart"
    );
}
