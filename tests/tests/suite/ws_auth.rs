//! Who may open a socket and for how long: tokens in the query or a Bearer header, bad
//! tokens (4001), foreign or unknown conversations (4003), the Origin rule, expiry
//! mid-session (4001) and in-band `auth` renewal; tokens not valid yet (`nbf` or `iat` in
//! the future) are refused at the upgrade and in `auth`; tokens never reach the logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, keys, quick, Deployment, Mode};
use e2e::tokens::{self, forge};
use e2e::ws::{Refused, WsConnect, WAIT};
use e2e::{NodeProcess, TestStore};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_query_and_one_in_a_bearer_header_both_open_a_session() {
    let d = Deployment::start(Mode::Embedded, &quick(&[])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;

    let (_q, hello) = WsConnect::all(&d.base(0), &a.token)
        .open_ready("query token")
        .await;
    assert_eq!(hello["user"]["id"], a.id.as_str());
    let (_h, hello) = WsConnect::path(&d.base(0), "/ws")
        .bearer(&a.token)
        .open_ready("bearer token")
        .await;
    assert_eq!(hello["user"]["id"], a.id.as_str());
    let (mut chat, hello) = WsConnect::path(&d.base(0), &format!("/ws/chat/{conv}"))
        .bearer(&b.token)
        .open_ready("bearer token on /ws/chat")
        .await;
    assert_eq!(hello["user"]["id"], b.id.as_str());
    // The scoped endpoint's snapshot is that one conversation, and frames may omit its id.
    let convs = hello["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 1, "{hello}");
    assert_eq!(convs[0]["conversation_id"], conv.as_str());
    chat.send_json(&json!({"type": "message", "content": "scoped", "temp_id": "s-1"}))
        .await;
    let ack = chat.ack("s-1").await;
    assert_eq!(ack["seq"], 1, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bad_or_tampered_token_closes_with_4001() {
    let d = Deployment::start(Mode::Embedded, &quick(&[])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    // One signature character changed (not the last: its low bits may be padding).
    let mut chars: Vec<char> = a.token.chars().collect();
    let at = chars.len() - 5;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    for (what, connect) in [
        ("no token", WsConnect::path(&d.base(0), "/ws")),
        ("garbage", WsConnect::all(&d.base(0), "garbage")),
        ("tampered", WsConnect::all(&d.base(0), &tampered)),
        (
            "tampered bearer",
            WsConnect::path(&d.base(0), "/ws").bearer(&tampered),
        ),
        (
            "a refresh token",
            WsConnect::all(&d.base(0), &a.refresh_token),
        ),
    ] {
        let mut ws = connect.open(what).await;
        ws.expect_close(4001, WAIT).await;
        assert!(
            !ws.kept().any(|f| f["type"] == "hello"),
            "{what}: got a hello before the close"
        );
    }
}

/// Tokens of `user` that are signed right but not valid now: `nbf` an hour ahead, `nbf` a
/// few seconds ahead, `iat` an hour ahead (beyond the default 30 s leeway).
fn not_yet_valid(user: &str) -> [(&'static str, String); 3] {
    let now = tokens::now();
    [
        ("nbf in an hour", forge(user, json!({ "nbf": now + 3600 }))),
        ("nbf in 5 s", forge(user, json!({ "nbf": now + 5 }))),
        ("iat in an hour", forge(user, json!({ "iat": now + 3600 }))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_valid_yet_closes_the_upgrade_with_4001() {
    let d = Deployment::start(Mode::Embedded, &quick(&[])).await;
    let a = d.api(0).register("Alice").await;
    // The forging is right: the same token with a past nbf opens a session.
    let fine = forge(
        &a.id,
        json!({ "nbf": tokens::now() - 60, "iat": tokens::now() + 5 }),
    );
    let (_ws, hello) = WsConnect::all(&d.base(0), &fine).open_ready("fine").await;
    assert_eq!(hello["user"]["id"], a.id.as_str());
    for (what, token) in not_yet_valid(&a.id) {
        for (how, connect) in [
            ("query", WsConnect::all(&d.base(0), &token)),
            ("bearer", WsConnect::path(&d.base(0), "/ws").bearer(&token)),
        ] {
            let label = format!("{what} ({how})");
            let mut ws = connect.open(&label).await;
            ws.expect_close(4001, WAIT).await;
            assert!(
                !ws.kept().any(|f| f["type"] == "hello"),
                "{label}: got a hello before the close"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_frame_with_a_token_not_valid_yet_is_refused_and_changes_nothing() {
    let ttl = TTL_SECS.to_string();
    let d = Deployment::start(Mode::Embedded, &quick(&[(keys::ACCESS_TTL_SECS, &ttl)])).await;
    // Before the registration: the token's `iat` is the issuing second, rounded down, so
    // its expiry may come up to a second (plus the answer's delay) before `now + TTL`.
    let issued = Instant::now();
    let a = d.api(0).register("Alice").await;
    let (mut ws, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    for (what, token) in not_yet_valid(&a.id) {
        ws.send_json(&json!({"type": "auth", "token": token})).await;
        let error = ws.recv_frame("error", WAIT).await;
        assert_eq!(error["code"], "unauthorized", "{what}: {error}");
    }
    // None of them renewed the session: it still ends at the first token's expiry.
    ws.expect_close(4001, Duration::from_secs(TTL_SECS + 5))
        .await;
    assert!(issued.elapsed() >= Duration::from_secs(TTL_SECS - 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_or_unknown_conversation_closes_with_4003() {
    let d = Deployment::start(Mode::Embedded, &quick(&[])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let c = api.register("Cat").await;
    let foreign = cluster::direct(&api, &b, &c).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    for (what, conv) in [("foreign", &foreign), ("unknown", &unknown)] {
        let mut ws = WsConnect::chat(&d.base(0), conv, &a.token).open(what).await;
        ws.expect_close(4003, WAIT).await;
        assert!(!ws.kept().any(|f| f["type"] == "hello"), "{what}: hello");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_not_allowed_is_refused_and_allowed_or_absent_origins_are_accepted() {
    let d = Deployment::start(
        Mode::Embedded,
        &quick(&[(keys::ALLOWED_ORIGINS, "https://app.example.com")]),
    )
    .await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let refused = WsConnect::all(&d.base(0), &a.token)
        .origin("https://evil.example.com")
        .try_open("evil origin")
        .await;
    match refused {
        Err(Refused::Status(403)) => {}
        Err(other) => panic!("evil origin: expected HTTP 403, got {other:?}"),
        Ok(mut ws) => panic!(
            "evil origin was upgraded; first frame: {:?}",
            ws.next_frame(Duration::from_secs(1)).await
        ),
    }
    let own = d.base(0);
    for origin in ["https://app.example.com", own.as_str()] {
        let (_ws, hello) = WsConnect::all(&d.base(0), &a.token)
            .origin(origin)
            .open_ready(origin)
            .await;
        assert_eq!(hello["user"]["id"], a.id.as_str());
    }
    let (_ws, hello) = WsConnect::all(&d.base(0), &a.token)
        .open_ready("no origin")
        .await;
    assert_eq!(hello["user"]["id"], a.id.as_str());
}

const TTL_SECS: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_mid_session_closes_it_with_4001() {
    let ttl = TTL_SECS.to_string();
    let d = Deployment::start(Mode::Embedded, &quick(&[(keys::ACCESS_TTL_SECS, &ttl)])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let issued = Instant::now();
    let (mut ws, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let closed = ws
        .expect_close(4001, Duration::from_secs(TTL_SECS + 5))
        .await;
    // Not before the token could have expired (exp has a one-second resolution).
    let after = issued.elapsed();
    assert!(
        after >= Duration::from_secs(TTL_SECS - 1),
        "closed {after:?} after issue: {closed:?}"
    );
}

/// Long enough that a renewal two seconds in comes before the first token's earliest expiry
/// with a second to spare (with 3 s it raced that expiry under load).
const RENEWAL_TTL_SECS: u64 = 4;

async fn an_auth_renewal_extends_the_session(mode: Mode) {
    let ttl = RENEWAL_TTL_SECS.to_string();
    let d = Deployment::start(mode, &quick(&[(keys::ACCESS_TTL_SECS, &ttl)])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let issued = Instant::now();
    let (mut ws, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;

    // Renew two seconds in, before the first token expires: `exp` has a one-second
    // resolution, so it expires between RENEWAL_TTL_SECS - 1 and RENEWAL_TTL_SECS after its
    // issue, and the renewed one at least RENEWAL_TTL_SECS - 1 after the renewal, past the
    // first's latest expiry checked below.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fresh = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": a.refresh_token}),
        )
        .await;
    assert!(fresh.status.is_success(), "refresh: {:?}", fresh.body);
    let token = fresh.body["access_token"].as_str().unwrap();
    ws.send_json(&json!({"type": "auth", "token": token})).await;
    let ok = ws.recv_frame("auth_ok", WAIT).await;
    assert!(ok["expires_at"].is_string(), "{ok}");

    // Past the first token's expiry the session lives on and works.
    let first_expiry = Duration::from_secs(RENEWAL_TTL_SECS) + Duration::from_millis(700);
    let left = first_expiry.saturating_sub(issued.elapsed());
    assert_eq!(
        ws.still_open_after(left).await,
        None,
        "closed at the old expiry despite the renewal"
    );
    ws.send_acked(&conv, "still here", "renewed").await;
    // The renewed session ends at the new expiry, not never.
    ws.expect_close(4001, Duration::from_secs(RENEWAL_TTL_SECS + 5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_renewal_extends_the_session_past_the_old_expiry_embedded() {
    an_auth_renewal_extends_the_session(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_renewal_extends_the_session_past_the_old_expiry_on_a_cluster() {
    an_auth_renewal_extends_the_session(Mode::ScaleOut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_appear_in_the_debug_logs_of_a_session() {
    let store = TestStore::new(e2e::Backend::Sqlite).await;
    let node = NodeProcess::start_logging(
        &store,
        &[
            ("CHAT_LOG__LEVEL", "debug".to_owned()),
            ("CHAT_LOG__FORMAT", "json".to_owned()),
        ],
    )
    .await;
    let api = node.api();
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;

    // A session with the token in the query, renewed in band, sending and syncing.
    let (mut ws, _) = WsConnect::all(&node.address, &a.token)
        .open_ready("query token")
        .await;
    let renewed = api
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": a.refresh_token}),
        )
        .await;
    let renewed_token = renewed.body["access_token"].as_str().unwrap().to_owned();
    let renewed_refresh = renewed.body["refresh_token"].as_str().unwrap().to_owned();
    ws.send_json(&json!({"type": "auth", "token": renewed_token}))
        .await;
    ws.recv_frame("auth_ok", WAIT).await;
    ws.send_acked(&conv, "hello", "t-1").await;
    ws.sync(&[(conv.as_str(), 0)]).await;
    ws.send_json(&json!({"type": "auth", "token": "bad.token.value"}))
        .await;
    ws.recv_frame("error", WAIT).await;
    ws.close().await;
    // A session with a Bearer header, one on /ws/chat, and one with a tampered token.
    let (bearer, _) = WsConnect::path(&node.address, "/ws")
        .bearer(&b.token)
        .open_ready("bearer")
        .await;
    bearer.close().await;
    let (chat, _) = WsConnect::chat(&node.address, &conv, &b.token)
        .open_ready("chat")
        .await;
    chat.close().await;
    let tampered = format!("{}x", b.token);
    let mut bad = WsConnect::all(&node.address, &tampered).open("bad").await;
    bad.expect_close(4001, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let logs = node.logs();
    assert!(
        logs.contains("/ws"),
        "the debug log shows no WebSocket request at all: is it captured? {} bytes",
        logs.len()
    );
    for (what, secret) in [
        ("A's access token", a.token.as_str()),
        ("A's renewed token", renewed_token.as_str()),
        ("A's refresh token", a.refresh_token.as_str()),
        ("A's renewed refresh token", renewed_refresh.as_str()),
        ("B's access token", b.token.as_str()),
        ("the tampered token", tampered.as_str()),
    ] {
        // The signature part alone must not leak either.
        let signature = secret.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(secret) && !logs.contains(signature),
            "{what} appears in the logs"
        );
    }
}
