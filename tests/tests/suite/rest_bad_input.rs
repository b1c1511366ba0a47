//! Every kind of bad input gets its status and error code and changes nothing.
//! One table, run on both storage backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::ports::AccessTokenIssuer;
use e2e::{Api, Backend, TestApp, TestUser};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// Who sends a request.
#[derive(Clone, Copy)]
enum Caller {
    Anonymous,
    Alice,
    Carol,
    Garbage,
    Expired,
    WrongAudience,
}

/// The ids a case can refer to.
struct World {
    alice: TestUser,
    bob: TestUser,
    carol: TestUser,
    /// Alice and Bob's direct conversation.
    ab: String,
    /// Alice and Carol's direct conversation.
    ac: String,
    /// A message of `ab`.
    ab_message: String,
    /// An access token that expired an hour ago.
    expired: String,
    /// A token for another audience.
    wrong_audience: String,
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    caller: Caller,
    body: Option<Vec<u8>>,
    status: StatusCode,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: Method,
    path: String,
    caller: Caller,
    body: Option<Vec<u8>>,
    status: StatusCode,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path,
        caller,
        body,
        status,
        code,
    }
}

fn json_body(v: serde_json::Value) -> Option<Vec<u8>> {
    Some(v.to_string().into_bytes())
}

fn raw(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

fn cases(w: &World) -> Vec<Case> {
    use Caller::*;
    let msgs = format!("/api/v1/conversations/{}/messages", w.ab);
    let unknown = uuid::Uuid::new_v4();
    let long = "x".repeat(4_001);
    let huge = format!("{{\"content\":\"{}\"}}", "y".repeat(70 * 1024));
    vec![
        case(
            "malformed JSON",
            Method::POST,
            msgs.clone(),
            Alice,
            raw("{\"content\":"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        case(
            "an array body",
            Method::POST,
            msgs.clone(),
            Alice,
            raw("[1,2]"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        case(
            "a string body",
            Method::POST,
            msgs.clone(),
            Alice,
            raw("\"hello\""),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        case(
            "no body",
            Method::POST,
            msgs.clone(),
            Alice,
            None,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        case(
            "missing content",
            Method::POST,
            msgs.clone(),
            Alice,
            json_body(json!({"temp_id": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "content of the wrong type",
            Method::POST,
            msgs.clone(),
            Alice,
            json_body(json!({"content": 5})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "blank content",
            Method::POST,
            msgs.clone(),
            Alice,
            json_body(json!({"content": "  \n "})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "content over 4000 characters",
            Method::POST,
            msgs.clone(),
            Alice,
            json_body(json!({"content": long})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "an unsupported content_type",
            Method::POST,
            msgs.clone(),
            Alice,
            json_body(json!({"content": "hi", "content_type": "image"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "a temp_id over 64 characters",
            Method::POST,
            msgs.clone(),
            Alice,
            json_body(json!({"content": "hi", "temp_id": "t".repeat(65)})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "a body over 64 KiB",
            Method::POST,
            msgs.clone(),
            Alice,
            raw(&huge),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        case(
            "an unknown conversation",
            Method::POST,
            format!("/api/v1/conversations/{unknown}/messages"),
            Alice,
            json_body(json!({"content": "hi"})),
            StatusCode::FORBIDDEN,
            "not_participant",
        ),
        case(
            "a malformed conversation id",
            Method::POST,
            "/api/v1/conversations/not-a-uuid/messages".into(),
            Alice,
            json_body(json!({"content": "hi"})),
            StatusCode::FORBIDDEN,
            "not_participant",
        ),
        case(
            "someone else's conversation",
            Method::POST,
            msgs.clone(),
            Carol,
            json_body(json!({"content": "hi"})),
            StatusCode::FORBIDDEN,
            "not_participant",
        ),
        case(
            "someone else's history",
            Method::GET,
            msgs.clone(),
            Carol,
            None,
            StatusCode::FORBIDDEN,
            "not_participant",
        ),
        case(
            "someone else's conversation details",
            Method::GET,
            format!("/api/v1/conversations/{}", w.ab),
            Carol,
            None,
            StatusCode::FORBIDDEN,
            "not_participant",
        ),
        case(
            "a temp_id reused for other content",
            Method::POST,
            msgs.clone(),
            Alice,
            json_body(json!({"content": "different", "temp_id": "used-key"})),
            StatusCode::CONFLICT,
            "temp_id_conflict",
        ),
        case(
            "a temp_id reused in another conversation",
            Method::POST,
            format!("/api/v1/conversations/{}/messages", w.ac),
            Alice,
            json_body(json!({"content": "original", "temp_id": "used-key"})),
            StatusCode::CONFLICT,
            "temp_id_conflict",
        ),
        case(
            "history before an unknown message",
            Method::GET,
            format!("{msgs}?before={unknown}"),
            Alice,
            None,
            StatusCode::NOT_FOUND,
            "message_not_found",
        ),
        case(
            "history before a malformed message id",
            Method::GET,
            format!("{msgs}?before=nope"),
            Alice,
            None,
            StatusCode::NOT_FOUND,
            "message_not_found",
        ),
        case(
            "history with limit 0",
            Method::GET,
            format!("{msgs}?limit=0"),
            Alice,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "reading an unknown message",
            Method::POST,
            format!("/api/v1/conversations/{}/read", w.ab),
            Alice,
            json_body(json!({"last_read_message_id": unknown})),
            StatusCode::NOT_FOUND,
            "message_not_found",
        ),
        case(
            "reading a message of another conversation",
            Method::POST,
            format!("/api/v1/conversations/{}/read", w.ac),
            Alice,
            json_body(json!({"last_read_message_id": w.ab_message})),
            StatusCode::NOT_FOUND,
            "message_not_found",
        ),
        case(
            "an unknown user",
            Method::GET,
            format!("/api/v1/users/{unknown}"),
            Alice,
            None,
            StatusCode::NOT_FOUND,
            "user_not_found",
        ),
        case(
            "a direct conversation with an unknown user",
            Method::POST,
            "/api/v1/conversations".into(),
            Alice,
            json_body(json!({"type": "direct", "participant_ids": [unknown]})),
            StatusCode::NOT_FOUND,
            "user_not_found",
        ),
        case(
            "a direct conversation with oneself",
            Method::POST,
            "/api/v1/conversations".into(),
            Alice,
            json_body(json!({"type": "direct", "participant_ids": [w.alice.id]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "a conversation of an unknown type",
            Method::POST,
            "/api/v1/conversations".into(),
            Alice,
            json_body(json!({"type": "channel", "participant_ids": [w.bob.id]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "a group without a title",
            Method::POST,
            "/api/v1/conversations".into(),
            Alice,
            json_body(json!({"type": "group", "participant_ids": [w.bob.id]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "a duplicate email",
            Method::POST,
            "/api/v1/auth/register".into(),
            Anonymous,
            json_body(
                json!({"email": w.bob.email.to_uppercase(), "password": "long enough pw", "display_name": "Bob 2"}),
            ),
            StatusCode::CONFLICT,
            "email_taken",
        ),
        case(
            "a malformed email",
            Method::POST,
            "/api/v1/auth/register".into(),
            Anonymous,
            json_body(
                json!({"email": "not-an-email", "password": "long enough pw", "display_name": "X"}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "a short password",
            Method::POST,
            "/api/v1/auth/register".into(),
            Anonymous,
            json_body(
                json!({"email": "short@example.com", "password": "short", "display_name": "X"}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        case(
            "no token",
            Method::GET,
            "/api/v1/conversations".into(),
            Anonymous,
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "a garbage token",
            Method::GET,
            "/api/v1/conversations".into(),
            Garbage,
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "an expired token",
            Method::POST,
            msgs.clone(),
            Expired,
            json_body(json!({"content": "hi"})),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "a token for another audience",
            Method::GET,
            "/api/v1/users/me".into(),
            WrongAudience,
            None,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        case(
            "a refused refresh token",
            Method::POST,
            "/api/v1/auth/refresh".into(),
            Anonymous,
            json_body(json!({"refresh_token": "not-a-token"})),
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
        ),
        case(
            "an unknown route",
            Method::GET,
            "/api/v1/nothing-here".into(),
            Alice,
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ]
}

async fn world(api: &Api) -> World {
    let alice = api.register("Alice").await;
    let bob = api.register("Bob").await;
    let carol = api.register("Carol").await;
    let ab = api
        .post(
            "/api/v1/conversations",
            alice.t(),
            json!({"type": "direct", "participant_ids": [bob.id]}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ac = api
        .post(
            "/api/v1/conversations",
            alice.t(),
            json!({"type": "direct", "participant_ids": [carol.id]}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = api
        .post(
            &format!("/api/v1/conversations/{ab}/messages"),
            alice.t(),
            json!({"content": "original", "temp_id": "used-key"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED);
    let secret = b"test-secret-test-secret-test-secret!";
    let uid: domain::UserId = alice.id.parse().unwrap();
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let expired = server::auth::jwt::JwtIssuer::new(secret, "chat-server", "chat", 900)
        .issue(uid, hour_ago)
        .unwrap()
        .token;
    let wrong_audience = server::auth::jwt::JwtIssuer::new(secret, "chat-server", "other-app", 900)
        .issue(uid, chrono::Utc::now())
        .unwrap()
        .token;
    World {
        ab_message: sent.body["id"].as_str().unwrap().to_owned(),
        alice,
        bob,
        carol,
        ab,
        ac,
        expired,
        wrong_audience,
    }
}

async fn every_bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let api = app.api();
    let w = world(&api).await;
    let before = app.store.row_counts().await;
    let mut failures = Vec::new();
    for c in cases(&w) {
        let token = match c.caller {
            Caller::Anonymous => None,
            Caller::Alice => Some(w.alice.token.clone()),
            Caller::Carol => Some(w.carol.token.clone()),
            Caller::Garbage => Some("garbage.garbage.garbage".to_owned()),
            Caller::Expired => Some(w.expired.clone()),
            Caller::WrongAudience => Some(w.wrong_audience.clone()),
        };
        let reply = api
            .send(c.method.clone(), &c.path, token.as_deref(), c.body.clone())
            .await;
        if reply.status != c.status || reply.error_code() != c.code {
            failures.push(format!(
                "{}: expected {} {}, got {} {:?}",
                c.name, c.status, c.code, reply.status, reply.body
            ));
        } else if reply.body["error"]["message"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            failures.push(format!("{}: no error message", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        app.store.row_counts().await,
        before,
        "a refused request changed the database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_refused_and_changes_nothing_on_sqlite() {
    every_bad_input_is_refused_and_changes_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_refused_and_changes_nothing_on_postgres() {
    every_bad_input_is_refused_and_changes_nothing(Backend::Postgres).await;
}
