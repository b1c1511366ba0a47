//! The real server on an embedded SQLite database in a temporary directory, over real HTTP:
//! what `Application::build` promises the end-to-end suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use server::config::Settings;
use server::startup::Application;

struct Running {
    base: String,
    client: reqwest::Client,
    _data: tempfile::TempDir,
}

async fn spawn_app(configure: impl FnOnce(&mut Settings)) -> Running {
    let data = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_tests(data.path());
    configure(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("the server builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    Running {
        base,
        client: reqwest::Client::new(),
        _data: data,
    }
}

#[tokio::test]
async fn a_server_on_port_zero_answers_on_the_port_it_reports() {
    let app = spawn_app(|_| {}).await;
    let health = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_registered_user_can_log_in_and_see_themselves() {
    let app = spawn_app(|_| {}).await;
    let register = app
        .client
        .post(format!("{}/api/v1/auth/register", app.base))
        .json(&json!({"email": "alice@example.com", "password": "correct horse", "display_name": "Alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), StatusCode::CREATED);

    let login: Value = app
        .client
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"email": "ALICE@example.com", "password": "correct horse"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap();

    let me: Value = app
        .client
        .get(format!("{}/api/v1/users/me", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["display_name"], "Alice");
}

#[tokio::test]
async fn the_generated_jwt_secret_outlives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let settings = || {
        let mut s = Settings::for_tests(data.path());
        s.auth.jwt_secret = None;
        s
    };
    let first = Application::build(settings()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", first.port());
    let handle = first.handle();
    tokio::spawn(first.run_until_stopped());
    let client = reqwest::Client::new();
    let session: Value = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": "bob@example.com", "password": "correct horse", "display_name": "Bob"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    handle.stop(true).await;

    let second = Application::build(settings()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", second.port());
    tokio::spawn(second.run_until_stopped());
    let me = client
        .get(format!("{base}/api/v1/users/me"))
        .bearer_auth(session["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_port_already_taken_is_a_clear_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_tests(data.path());
    settings.http.addr = taken.local_addr().unwrap();
    let err = Application::build(settings)
        .await
        .err()
        .expect("start-up fails");
    assert!(err.to_string().starts_with("cannot listen on"), "{err}");
}
