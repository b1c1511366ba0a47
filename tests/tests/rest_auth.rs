//! Accounts and tokens over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::json;

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
        s.auth.login_attempts_per_minute = 3;
        s.auth.login_burst = 3;
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
