//! The REST surface over mocked ports: routing, request shapes, status codes and bodies.
//! (The end-to-end suite in `tests/` runs the real server on real storage.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::app::{AppContext, AppState, Ports};
use crate::auth::{JwtIssuer, TokenVerifier};
use crate::config::Settings;
use actix_web::dev::ServiceResponse;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{test, App};
use chrono::{TimeZone, Utc};
use domain::conversation::{
    Conversation, ConversationDetails, ConversationKind, Participant, ParticipantProfile, Role,
};
use domain::message::{AppendOutcome, ContentType, Message};
use domain::ports::{
    AccessTokenIssuer, MockAttachmentStore, MockBlobStore, MockConversationStore,
    MockEncryptionStore, MockMessageStore, MockPasswordHasher, MockReceiptStore,
    MockRefreshTokenStore, MockStoreHealth, MockUserStore, SystemClock,
};
use domain::user::{DisplayName, EmailAddress, User};
use domain::{ConversationId, MessageId, StorageError, UserId};
use protocol::ErrorBody;
use std::sync::Arc;
use uuid::Uuid;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

#[derive(Default)]
struct Mocks {
    users: MockUserStore,
    tokens: MockRefreshTokenStore,
    conversations: MockConversationStore,
    messages: MockMessageStore,
    receipts: MockReceiptStore,
    encryption: MockEncryptionStore,
    attachments: MockAttachmentStore,
    blobs: MockBlobStore,
    health: MockStoreHealth,
    hasher: MockPasswordHasher,
}

impl Mocks {
    fn context(self, settings: &Settings) -> AppContext {
        let ports = Ports {
            users: Arc::new(self.users),
            tokens: Arc::new(self.tokens),
            conversations: Arc::new(self.conversations),
            messages: Arc::new(self.messages),
            receipts: Arc::new(self.receipts),
            encryption: Arc::new(self.encryption),
            attachments: Arc::new(self.attachments),
            blobs: Arc::new(self.blobs),
            health: Arc::new(self.health),
        };
        let auth = &settings.auth;
        let state = AppState::new(
            ports,
            Arc::new(self.hasher),
            Arc::new(JwtIssuer::new(SECRET, &auth.issuer, &auth.audience, 900)),
            Arc::new(SystemClock),
            settings,
        );
        let verifier = TokenVerifier::new(SECRET, &auth.issuer, &auth.audience);
        AppContext::new(state, verifier, settings)
    }
}

fn settings() -> Settings {
    Settings::for_tests("/nonexistent")
}

async fn call(mocks: Mocks, settings: &Settings, req: test::TestRequest) -> ServiceResponse {
    let context = mocks.context(settings);
    let app = test::init_service(App::new().configure(|cfg| context.configure(cfg))).await;
    test::call_service(
        &app,
        req.peer_addr("10.1.2.3:4000".parse().unwrap()).to_request(),
    )
    .await
}

async fn error_of(response: ServiceResponse) -> (StatusCode, String) {
    let status = response.status();
    let body: ErrorBody = test::read_body_json(response).await;
    (status, body.error.code.to_string())
}

fn bearer(user: UserId) -> (header::HeaderName, String) {
    let token = JwtIssuer::new(SECRET, "chat-server", "chat", 900)
        .issue(user, Utc::now())
        .unwrap()
        .token;
    (header::AUTHORIZATION, format!("Bearer {token}"))
}

fn user(id: UserId, email: &str) -> User {
    User {
        id,
        email: EmailAddress::parse(email).unwrap(),
        display_name: DisplayName::parse("Someone").unwrap(),
        avatar_url: None,
        created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        last_seen_at: None,
    }
}

fn direct_between(id: ConversationId, a: UserId, b: UserId, last_seq: i64) -> ConversationDetails {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let member = |user_id: UserId, read_seq: i64| ParticipantProfile {
        participant: Participant {
            conversation_id: id,
            user_id,
            role: Role::Member,
            joined_at: at,
            delivered_seq: read_seq,
            read_seq,
        },
        display_name: "Someone".into(),
        email: format!("{user_id}@example.com"),
        avatar_url: None,
        last_seen_at: None,
    };
    ConversationDetails {
        conversation: Conversation {
            id,
            kind: ConversationKind::Direct,
            title: None,
            created_by: a,
            created_at: at,
            last_seq,
            last_message_at: None,
            last_change: 0,
        },
        participants: vec![member(a, last_seq), member(b, last_seq)],
    }
}

fn message(conversation_id: ConversationId, sender_id: UserId, seq: i64) -> Message {
    Message {
        id: MessageId::new(),
        conversation_id,
        seq,
        sender_id,
        client_msg_id: Some("t-1".into()),
        content: "hello".into(),
        content_type: ContentType::Text,
        reply_to: None,
        created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap(),
        edited_at: None,
        deleted_at: None,
        change_seq: 0,
        deleted_by: None,
        attachments: Vec::new(),
    }
}

#[actix_web::test]
async fn an_unknown_route_is_a_json_404() {
    let response = call(
        Mocks::default(),
        &settings(),
        test::TestRequest::get().uri("/api/v1/nope"),
    )
    .await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
}

#[actix_web::test]
async fn a_wrong_method_is_a_json_405() {
    let req = test::TestRequest::delete().uri("/api/v1/auth/login");
    let response = call(Mocks::default(), &settings(), req).await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".into())
    );
}

#[actix_web::test]
async fn an_authenticated_route_without_a_token_is_a_401() {
    let response = call(
        Mocks::default(),
        &settings(),
        test::TestRequest::get().uri("/api/v1/users/me"),
    )
    .await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
}

#[actix_web::test]
async fn malformed_json_non_objects_and_missing_fields_get_400_400_and_422() {
    let cases = [
        ("{\"email\":", StatusCode::BAD_REQUEST, "malformed_json"),
        ("[1,2]", StatusCode::BAD_REQUEST, "invalid_body"),
        (
            "{\"email\":\"a@example.com\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ];
    for (body, status, code) in cases {
        let req = test::TestRequest::post()
            .uri("/api/v1/auth/register")
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload(body);
        let response = call(Mocks::default(), &settings(), req).await;
        assert_eq!(
            error_of(response).await,
            (status, code.to_owned()),
            "{body}"
        );
    }
}

#[actix_web::test]
async fn a_body_over_the_limit_is_a_413() {
    let mut settings = settings();
    settings.http.max_body_bytes = 32;
    let req = test::TestRequest::post()
        .uri("/api/v1/auth/login")
        .set_payload(format!("{{\"email\":\"{}\"}}", "a".repeat(64)));
    let response = call(Mocks::default(), &settings, req).await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
    );
}

#[actix_web::test]
async fn registering_answers_201_with_tokens_and_the_user() {
    let mut mocks = Mocks::default();
    mocks
        .hasher
        .expect_hash()
        .returning(|_| Ok("$argon2id$fake".into()));
    mocks.users.expect_insert_user().returning(|new| {
        let mut u = user(new.id, new.email.as_str());
        u.display_name = new.display_name.clone();
        Ok(u)
    });
    mocks
        .tokens
        .expect_insert_refresh_token()
        .returning(|_| Ok(()));
    let req = test::TestRequest::post().uri("/api/v1/auth/register").set_json(
        serde_json::json!({"email":"Alice@Example.com","password":"long enough","display_name":"Alice"}),
    );
    let response = call(mocks, &settings(), req).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: serde_json::Value = test::read_body_json(response).await;
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user"]["email"], "alice@example.com");
    assert_eq!(body["user"]["display_name"], "Alice");
    assert!(body["user"]["avatar_url"].is_null());
    assert_eq!(body["refresh_token"].as_str().unwrap().len(), 64);
    let access = body["access_token"].as_str().unwrap();
    let claims = TokenVerifier::new(SECRET, "chat-server", "chat")
        .verify(access)
        .unwrap();
    assert_eq!(claims.sub.to_string(), body["user"]["id"].as_str().unwrap());
}

#[actix_web::test]
async fn a_taken_email_is_a_409() {
    let mut mocks = Mocks::default();
    mocks.hasher.expect_hash().returning(|_| Ok("h".into()));
    mocks
        .users
        .expect_insert_user()
        .returning(|_| Err(domain::ports::InsertUserError::DuplicateEmail));
    let req = test::TestRequest::post().uri("/api/v1/auth/register").set_json(
        serde_json::json!({"email":"a@example.com","password":"long enough","display_name":"A"}),
    );
    let response = call(mocks, &settings(), req).await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::CONFLICT, "email_taken".into())
    );
}

#[actix_web::test]
async fn unknown_email_and_wrong_password_answer_one_identical_401() {
    let known = user(UserId::new(), "alice@example.com");
    let mut bodies = Vec::new();
    for email in ["nobody@example.com", "alice@example.com"] {
        let mut mocks = Mocks::default();
        let known = known.clone();
        mocks
            .users
            .expect_credentials_by_email()
            .returning(move |e| {
                Ok((e == &known.email).then(|| domain::user::UserCredentials {
                    user: known.clone(),
                    password_hash: "$argon2id$real".into(),
                }))
            });
        mocks.hasher.expect_verify().returning(|_, _| Ok(false));
        mocks.hasher.expect_verify_dummy().returning(|_| Ok(()));
        let req = test::TestRequest::post()
            .uri("/api/v1/auth/login")
            .set_json(serde_json::json!({"email": email, "password": "wrong password"}));
        let response = call(mocks, &settings(), req).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        bodies.push(test::read_body(response).await);
    }
    assert_eq!(bodies[0], bodies[1]);
    let body: ErrorBody = serde_json::from_slice(&bodies[0]).unwrap();
    assert_eq!(body.error.code, "invalid_credentials");
}

#[actix_web::test]
async fn too_many_logins_from_one_ip_are_a_429_with_retry_after() {
    let mut settings = settings();
    settings.auth.login_attempts_per_minute = crate::config::nonzero::u32(1);
    settings.auth.login_burst = crate::config::nonzero::u32(1);
    let mut mocks = Mocks::default();
    mocks
        .users
        .expect_credentials_by_email()
        .returning(|_| Ok(None));
    mocks.hasher.expect_verify_dummy().returning(|_| Ok(()));
    let context = mocks.context(&settings);
    let app = test::init_service(App::new().configure(|cfg| context.configure(cfg))).await;
    let attempt = |email: &str| {
        test::TestRequest::post()
            .uri("/api/v1/auth/login")
            .peer_addr("10.9.9.9:1234".parse().unwrap())
            .set_json(serde_json::json!({"email": email, "password": "x"}))
            .to_request()
    };
    let first = test::call_service(&app, attempt("a@example.com")).await;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    let second = test::call_service(&app, attempt("b@example.com")).await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = second
        .headers()
        .get(header::RETRY_AFTER)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(error_of(second).await.1, "rate_limited");
}

#[actix_web::test]
async fn registrations_beyond_the_burst_from_one_ip_are_a_429_before_any_hashing() {
    let mut settings = settings();
    settings.auth.registrations_per_minute = crate::config::nonzero::u32(1);
    settings.auth.registration_burst = crate::config::nonzero::u32(2);
    let mut mocks = Mocks::default();
    // Two registrations hash; the refused third never reaches the hasher.
    mocks
        .hasher
        .expect_hash()
        .times(2)
        .returning(|_| Ok("h".into()));
    mocks
        .users
        .expect_insert_user()
        .returning(|new| Ok(user(new.id, new.email.as_str())));
    mocks
        .tokens
        .expect_insert_refresh_token()
        .returning(|_| Ok(()));
    let context = mocks.context(&settings);
    let app = test::init_service(App::new().configure(|cfg| context.configure(cfg))).await;
    let attempt = |n: u32, peer: &str| {
        test::TestRequest::post()
            .uri("/api/v1/auth/register")
            .peer_addr(peer.parse().unwrap())
            .set_json(serde_json::json!({
                "email": format!("u{n}@example.com"),
                "password": "long enough",
                "display_name": "U",
            }))
            .to_request()
    };
    for n in 0..2 {
        let ok = test::call_service(&app, attempt(n, "10.9.9.9:1234")).await;
        assert_eq!(ok.status(), StatusCode::CREATED);
    }
    let refused = test::call_service(&app, attempt(2, "10.9.9.9:1235")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused
        .headers()
        .get(header::RETRY_AFTER)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(error_of(refused).await.1, "rate_limited");
}

#[actix_web::test]
async fn saturated_hashing_is_a_503_unavailable_with_retry_after() {
    let mut mocks = Mocks::default();
    mocks.hasher.expect_hash().returning(|_| {
        Err(domain::ports::HashingError::Saturated {
            retry_after: std::time::Duration::from_secs(3),
        })
    });
    mocks.users.expect_insert_user().never();
    let req = test::TestRequest::post().uri("/api/v1/auth/register").set_json(
        serde_json::json!({"email":"a@example.com","password":"long enough","display_name":"A"}),
    );
    let response = call(mocks, &settings(), req).await;
    assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "3");
    assert_eq!(
        error_of(response).await,
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
}

#[actix_web::test]
async fn a_malformed_conversation_id_is_answered_like_an_unknown_one() {
    let me = UserId::new();
    let mut mocks = Mocks::default();
    mocks
        .conversations
        .expect_conversation()
        .withf(|id| id.as_uuid() == Uuid::nil())
        .returning(|_| Ok(None));
    let req = test::TestRequest::get()
        .uri("/api/v1/conversations/not-a-uuid")
        .insert_header(bearer(me));
    let response = call(mocks, &settings(), req).await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::FORBIDDEN, "not_participant".into())
    );
}

#[actix_web::test]
async fn a_malformed_before_cursor_is_an_unknown_message() {
    let (me, other, id) = (UserId::new(), UserId::new(), ConversationId::new());
    let mut mocks = Mocks::default();
    mocks
        .conversations
        .expect_conversation()
        .returning(move |_| Ok(Some(direct_between(id, me, other, 3))));
    mocks.messages.expect_message().returning(|_, _| Ok(None));
    let req = test::TestRequest::get()
        .uri(&format!(
            "/api/v1/conversations/{id}/messages?before=garbage"
        ))
        .insert_header(bearer(me));
    let response = call(mocks, &settings(), req).await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::NOT_FOUND, "message_not_found".into())
    );
}

#[actix_web::test]
async fn a_non_numeric_limit_is_a_422_naming_it() {
    let req = test::TestRequest::get()
        .uri(&format!(
            "/api/v1/conversations/{}/messages?limit=lots",
            ConversationId::new()
        ))
        .insert_header(bearer(UserId::new()));
    let response = call(Mocks::default(), &settings(), req).await;
    let body: ErrorBody = test::read_body_json(response).await;
    assert_eq!(body.error.code, "validation_failed");
    assert!(
        body.error.message.starts_with("limit:"),
        "{}",
        body.error.message
    );
}

#[actix_web::test]
async fn a_new_message_is_a_201_and_a_replay_a_200_with_the_original() {
    let (me, other, id) = (UserId::new(), UserId::new(), ConversationId::new());
    let original = message(id, me, 4);
    for (outcome, status) in [
        (
            AppendOutcome::Created(original.clone()),
            StatusCode::CREATED,
        ),
        (AppendOutcome::Replayed(original.clone()), StatusCode::OK),
    ] {
        let mut mocks = Mocks::default();
        mocks
            .conversations
            .expect_participant()
            .returning(move |_, _| Ok(direct_between(id, me, other, 4).participant(me).cloned()));
        mocks
            .conversations
            .expect_conversation()
            .returning(move |_| Ok(Some(direct_between(id, me, other, 4))));
        let answer = outcome.clone();
        mocks
            .encryption
            .expect_encryption_state()
            .returning(|_| Ok(None));
        mocks
            .messages
            .expect_append_messages()
            .returning(move |_| Ok(vec![Ok(answer.clone())]));
        let req = test::TestRequest::post()
            .uri(&format!("/api/v1/conversations/{id}/messages"))
            .insert_header(bearer(me))
            .set_json(serde_json::json!({"content":"hello","temp_id":"t-1"}));
        let response = call(mocks, &settings(), req).await;
        assert_eq!(response.status(), status);
        let body: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(body["id"], original.id.to_string());
        assert_eq!(body["seq"], 4);
        assert_eq!(body["temp_id"], "t-1");
        assert_eq!(body["content_type"], "text");
        let expected_status = if status == StatusCode::CREATED {
            "sent"
        } else {
            "read"
        };
        assert_eq!(
            body["status"], expected_status,
            "the replay shows the status now"
        );
    }
}

#[actix_web::test]
async fn readiness_follows_storage_and_liveness_does_not() {
    for (ping_ok, status) in [
        (true, StatusCode::OK),
        (false, StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let mut mocks = Mocks::default();
        mocks.health.expect_ping().returning(move || {
            if ping_ok {
                Ok(())
            } else {
                Err(StorageError::msg("down"))
            }
        });
        let response = call(mocks, &settings(), test::TestRequest::get().uri("/readyz")).await;
        assert_eq!(response.status(), status);
        let response = call(
            Mocks::default(),
            &settings(),
            test::TestRequest::get().uri("/healthz"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[actix_web::test]
async fn a_storage_failure_is_a_503_unavailable() {
    let mut mocks = Mocks::default();
    mocks
        .users
        .expect_user_by_id()
        .returning(|_| Err(StorageError::msg("pool exhausted")));
    let context = mocks.context(&settings());
    let metrics = context.state.realtime.metrics.clone();
    let app = test::init_service(App::new().configure(|cfg| context.configure(cfg))).await;
    let storage_errors = || {
        metrics
            .render(Default::default())
            .lines()
            .find_map(|l| l.strip_prefix("chat_storage_errors_total "))
            .map(str::to_owned)
    };
    let req = test::TestRequest::get()
        .uri("/api/v1/users/me")
        .insert_header(bearer(UserId::new()))
        .to_request();
    let response = test::call_service(&app, req).await;
    assert_eq!(
        error_of(response).await,
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
    assert_eq!(
        storage_errors().as_deref(),
        Some("1"),
        "counted in /metrics"
    );
    // Other failures are not storage errors.
    let req = test::TestRequest::get()
        .uri("/api/v1/users/me")
        .to_request();
    let response = test::call_service(&app, req).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(storage_errors().as_deref(), Some("1"));
}

/// Every route the API serves, as OpenAPI spells it.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    ("get", "/api/v1/users/me"),
    ("get", "/api/v1/users/search"),
    ("get", "/api/v1/users/{id}"),
    ("post", "/api/v1/conversations"),
    ("get", "/api/v1/conversations"),
    ("get", "/api/v1/conversations/{id}"),
    ("patch", "/api/v1/conversations/{id}"),
    ("post", "/api/v1/conversations/{id}/members"),
    ("delete", "/api/v1/conversations/{id}/members/{user_id}"),
    ("post", "/api/v1/conversations/{id}/leave"),
    ("post", "/api/v1/conversations/{id}/messages"),
    ("get", "/api/v1/conversations/{id}/messages"),
    ("patch", "/api/v1/conversations/{id}/messages/{message_id}"),
    ("delete", "/api/v1/conversations/{id}/messages/{message_id}"),
    (
        "put",
        "/api/v1/conversations/{id}/messages/{message_id}/reactions/{emoji}",
    ),
    (
        "delete",
        "/api/v1/conversations/{id}/messages/{message_id}/reactions/{emoji}",
    ),
    ("post", "/api/v1/conversations/{id}/read"),
    ("get", "/api/v1/conversations/{id}/presence"),
    ("get", "/api/v1/unread"),
    ("post", "/api/v1/devices"),
    ("get", "/api/v1/users/{id}/devices"),
    ("delete", "/api/v1/devices/{id}"),
    ("put", "/api/v1/users/me/key_backup"),
    ("get", "/api/v1/users/me/key_backup"),
    ("delete", "/api/v1/users/me/key_backup"),
    ("post", "/api/v1/conversations/{id}/encryption"),
    ("put", "/api/v1/conversations/{id}/keys/{version}"),
    ("get", "/api/v1/conversations/{id}/keys"),
    ("get", "/api/v1/conversations/{id}/keys/missing"),
    ("post", "/api/v1/conversations/{id}/keys/requests"),
    ("post", "/api/v1/attachments/upload-url"),
    ("put", "/api/v1/attachments/{id}/content"),
    ("post", "/api/v1/attachments/{id}/confirm"),
    ("get", "/api/v1/attachments/{id}"),
    ("get", "/api/v1/attachments/{id}/file"),
    ("get", "/api/v1/attachments/{id}/thumbnail"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

#[actix_web::test]
async fn the_openapi_document_lists_every_route_and_only_those() {
    let response = call(
        Mocks::default(),
        &settings(),
        test::TestRequest::get().uri("/api/v1/openapi.json"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let doc: serde_json::Value = test::read_body_json(response).await;
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    documented.sort();
    expected.sort();
    assert_eq!(documented, expected);
}

#[actix_web::test]
async fn every_documented_route_is_served() {
    for (method, path) in ROUTES {
        let uri = path
            .replace("{id}", &Uuid::now_v7().to_string())
            .replace("{user_id}", &Uuid::now_v7().to_string())
            .replace("{message_id}", &Uuid::now_v7().to_string())
            .replace("{version}", "1")
            .replace("{emoji}", "%F0%9F%91%8D");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut mocks = Mocks::default();
        mocks.health.expect_ping().returning(|| Ok(()));
        // No token and no body: every route answers, none is unknown to the router.
        let response = call(
            mocks,
            &settings(),
            test::TestRequest::default()
                .method(method.clone())
                .uri(&uri),
        )
        .await;
        let status = response.status();
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri} answered {status}"
        );
    }
}
