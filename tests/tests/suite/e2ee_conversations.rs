//! End-to-end encrypted conversations over real HTTP and WebSocket, on one node and across
//! two (issue 13): turning encryption on (at creation and later, who may, once), the
//! `encryption_enabled` event, the `encrypted` content type and its envelope checks on
//! REST and WS sends and edits, reply previews, and the key routes with their `key_shared`
//! and `key_request` frames, rotation after a removal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, keys, quick, Deployment, Mode};
use e2e::ws::{frame_type, WsClient, WsConnect, WAIT};
use e2e::{Api, Reply, TestUser};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(500);

/// base64url without padding.
fn b64(bytes: &[u8]) -> String {
    domain::encryption::encode_base64url(bytes)
}

/// An envelope of key version `kid` whose ciphertext is `ct_bytes` bytes of `fill`.
fn envelope(kid: i64, fill: u8, ct_bytes: usize) -> String {
    format!(
        r#"{{"v":1,"kid":{kid},"iv":"{}","ct":"{}"}}"#,
        b64(&[fill; 12]),
        b64(&vec![fill; ct_bytes])
    )
}

fn refused(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.error_code(), code, "{:?}", reply.body);
}

fn messages_path(conv: &str) -> String {
    format!("/api/v1/conversations/{conv}/messages")
}

async fn send(api: &Api, user: &TestUser, conv: &str, content: &str, ty: &str) -> Reply {
    api.post(
        &messages_path(conv),
        user.t(),
        json!({"content": content, "content_type": ty}),
    )
    .await
}

async fn enable(api: &Api, user: &TestUser, conv: &str) -> Reply {
    api.post(
        &format!("/api/v1/conversations/{conv}/encryption"),
        user.t(),
        json!({}),
    )
    .await
}

async fn create(api: &Api, user: &TestUser, kind: &str, others: &[&TestUser]) -> Reply {
    let ids: Vec<&str> = others.iter().map(|u| u.id.as_str()).collect();
    api.post(
        "/api/v1/conversations",
        user.t(),
        json!({"type": kind, "participant_ids": ids, "title": "Secret", "encrypted": true}),
    )
    .await
}

async fn device(api: &Api, user: &TestUser, fill: u8) -> Value {
    let mut point = vec![0x04];
    point.extend(std::iter::repeat_n(fill, 64));
    let reply = api
        .post(
            "/api/v1/devices",
            user.t(),
            json!({"public_key": b64(&point), "name": format!("device {fill}")}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

/// A share of the existing `version`, wrapped by `from` for `to`.
async fn put_keys(
    api: &Api,
    user: &TestUser,
    conv: &str,
    version: i64,
    from: &Value,
    to: &[&Value],
) -> Reply {
    upload_keys(api, user, conv, version, false, from, to).await
}

/// A new `version` (the first key, or a rotation), wrapped by `from` for `to`.
async fn new_key(
    api: &Api,
    user: &TestUser,
    conv: &str,
    version: i64,
    from: &Value,
    to: &[&Value],
) -> Reply {
    upload_keys(api, user, conv, version, true, from, to).await
}

async fn upload_keys(
    api: &Api,
    user: &TestUser,
    conv: &str,
    version: i64,
    new_version: bool,
    from: &Value,
    to: &[&Value],
) -> Reply {
    let wrapped: Vec<Value> = to
        .iter()
        .map(|d| json!({"device_id": id(d), "wrapped_key": b64(&[7; 60])}))
        .collect();
    let body = json!({"from_device_id": id(from), "wrapped": wrapped, "new_version": new_version});
    api.send(
        Method::PUT,
        &format!("/api/v1/conversations/{conv}/keys/{version}"),
        user.t(),
        Some(body.to_string().into_bytes()),
    )
    .await
}

async fn history(api: &Api, user: &TestUser, conv: &str) -> Vec<Value> {
    cluster::history(api, user, conv).await
}

/// The next `conversation` frame of `conv` with `event`.
async fn conversation_event(ws: &mut WsClient, conv: &str, event: &str) -> Value {
    ws.recv_where(&format!("{event} of {conv}"), WAIT, |f| {
        frame_type(f) == "conversation" && f["event"] == event && f["conversation"]["id"] == conv
    })
    .await
}

async fn error_of(ws: &mut WsClient, reference: &str) -> Value {
    ws.recv_where(&format!("the error of {reference}"), WAIT, |f| {
        frame_type(f) == "error" && f["ref"] == reference
    })
    .await
}

async fn ws_send(ws: &mut WsClient, conv: &str, content: &str, ty: &str, temp_id: &str) {
    ws.send_json(
        &json!({"type": "message", "conversation_id": conv, "content": content,
        "content_type": ty, "temp_id": temp_id}),
    )
    .await;
}

async fn turning_on_and_the_encrypted_content_type(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let far = d.other(0);
    let (a, b, c, outsider) = (
        api.register("Alice").await,
        api.register("Bob").await,
        api.register("Cleo").await,
        api.register("Oscar").await,
    );
    let chat = cluster::direct(&api, &a, &b).await;
    let team = cluster::group(&api, &a, &[&b, &c]).await;
    let before = send(&api, &a, &chat, "from before", "text").await;
    assert_eq!(before.status, StatusCode::CREATED, "{:?}", before.body);
    let before_id = before.body["id"].as_str().unwrap().to_owned();
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let (mut ws_b, _) = WsConnect::all(&d.base(far), &b.token).open_ready("B").await;

    // A plain conversation: no envelopes, no keys.
    let got = api
        .get(&format!("/api/v1/conversations/{chat}"), a.t())
        .await;
    assert_eq!(
        (
            &got.body["encrypted"],
            &got.body["key_version"],
            &got.body["rotation_needed"]
        ),
        (&json!(false), &json!(0), &json!(false))
    );
    refused(
        &send(&api, &a, &chat, &envelope(1, 1, 20), "encrypted").await,
        StatusCode::CONFLICT,
        "not_encrypted",
    );
    ws_send(
        &mut ws_a,
        &chat,
        &envelope(1, 1, 20),
        "encrypted",
        "plain-1",
    )
    .await;
    assert_eq!(
        error_of(&mut ws_a, "plain-1").await["code"],
        "not_encrypted"
    );
    refused(
        &api.get(&format!("/api/v1/conversations/{chat}/keys/missing"), a.t())
            .await,
        StatusCode::CONFLICT,
        "not_encrypted",
    );

    // Who turns a group's encryption on: its owner or an admin, not a plain member, not
    // an outsider. Once; the second call answers the same and announces nothing.
    refused(
        &enable(&api, &b, &team).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    refused(
        &enable(&api, &outsider, &team).await,
        StatusCode::FORBIDDEN,
        "not_participant",
    );
    let on = enable(&api, &a, &team).await;
    assert_eq!(on.status, StatusCode::OK, "{:?}", on.body);
    assert_eq!(
        (
            &on.body["id"],
            &on.body["encrypted"],
            &on.body["key_version"]
        ),
        (&json!(team), &json!(true), &json!(0))
    );
    let frame = conversation_event(&mut ws_b, &team, "encryption_enabled").await;
    assert_eq!(frame["conversation"]["encrypted"], true);
    let again = enable(&api, &a, &team).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["encrypted"], true);
    let repeats = ws_b.collect_for(QUIET).await;
    assert!(
        !repeats
            .iter()
            .any(|f| frame_type(f) == "conversation" && f["event"] == "encryption_enabled"),
        "announced twice: {repeats:?}"
    );

    // Any member of a direct conversation turns it on; the other hears of it on the other
    // node, and so does the turning member's own session.
    assert_eq!(enable(&api, &b, &chat).await.status, StatusCode::OK);
    conversation_event(&mut ws_a, &chat, "encryption_enabled").await;

    // Text is refused there (REST and WS, the session stays usable), envelopes taken.
    refused(
        &send(&api, &a, &chat, "plain text", "text").await,
        StatusCode::CONFLICT,
        "encryption_required",
    );
    ws_send(&mut ws_a, &chat, "plain over ws", "text", "t-1").await;
    assert_eq!(
        error_of(&mut ws_a, "t-1").await["code"],
        "encryption_required"
    );
    let sealed = envelope(1, 2, 40);
    ws_send(&mut ws_a, &chat, &sealed, "encrypted", "e-1").await;
    let sent = ws_a.ack("e-1").await;
    let sealed_id = sent["message_id"].as_str().unwrap().to_owned();
    let live = ws_b
        .recv_where("the envelope", WAIT, |f| {
            frame_type(f) == "message" && f["message"]["id"] == sealed_id.as_str()
        })
        .await;
    assert_eq!(live["message"]["content"], sealed.as_str());
    assert_eq!(live["message"]["content_type"], "encrypted");
    // One refused send of a pipelined batch leaves the others committed.
    let frame = |content: &str, ty: &str, temp_id: &str| {
        json!({"type": "message", "conversation_id": chat, "content": content,
            "content_type": ty, "temp_id": temp_id})
        .to_string()
    };
    ws_a.pipeline(vec![
        frame(&envelope(1, 10, 16), "encrypted", "p-1"),
        frame("plain in a batch", "text", "p-2"),
        frame(&envelope(1, 11, 16), "encrypted", "p-3"),
    ])
    .await;
    ws_a.ack("p-1").await;
    assert_eq!(
        error_of(&mut ws_a, "p-2").await["code"],
        "encryption_required"
    );
    ws_a.ack("p-3").await;
    let rest_sealed = send(&api, &b, &chat, &envelope(1, 3, 16), "encrypted").await;
    assert_eq!(
        rest_sealed.status,
        StatusCode::CREATED,
        "{:?}",
        rest_sealed.body
    );

    // Malformed and oversized envelopes: 422 naming what is wrong, nothing stored.
    let stored = history(&api, &a, &chat).await.len();
    let iv = b64(&[1; 12]);
    let ct = b64(&[1; 16]);
    for (bad, field) in [
        ("not json".to_owned(), "content"),
        (format!(r#"{{"v":1,"kid":1,"iv":"{iv}"}}"#), "content"),
        (
            format!(r#"{{"v":2,"kid":1,"iv":"{iv}","ct":"{ct}"}}"#),
            "content.v",
        ),
        (
            format!(r#"{{"v":1,"kid":0,"iv":"{iv}","ct":"{ct}"}}"#),
            "content.kid",
        ),
        (
            format!(r#"{{"v":1,"kid":1,"iv":"{}","ct":"{ct}"}}"#, b64(&[1; 11])),
            "content.iv",
        ),
        (
            format!(r#"{{"v":1,"kid":1,"iv":"{iv}=","ct":"{ct}"}}"#),
            "content.iv",
        ),
        (
            format!(r#"{{"v":1,"kid":1,"iv":"{iv}","ct":"{}"}}"#, b64(&[1; 15])),
            "content.ct",
        ),
        (envelope(1, 1, 24_000), "content"),
    ] {
        let reply = send(&api, &a, &chat, &bad, "encrypted").await;
        refused(
            &reply,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}:")),
            "{bad}: {:?}",
            reply.body
        );
    }
    ws_send(&mut ws_a, &chat, "{}", "encrypted", "bad-1").await;
    assert_eq!(
        error_of(&mut ws_a, "bad-1").await["code"],
        "validation_failed"
    );
    assert_eq!(
        history(&api, &a, &chat).await.len(),
        stored,
        "nothing stored"
    );
    send_acked_encrypted(&mut ws_a, &chat, &envelope(1, 4, 16), "e-2").await;

    // Edits: envelopes into envelopes; a text message from before is no longer editable.
    let patch = |m: &str| format!("/api/v1/conversations/{chat}/messages/{m}");
    refused(
        &api.patch(&patch(&sealed_id), a.t(), json!({"content": "now plain"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let resealed = envelope(1, 5, 44);
    let edited = api
        .patch(&patch(&sealed_id), a.t(), json!({"content": resealed}))
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{:?}", edited.body);
    assert_eq!(edited.body["content"], resealed.as_str());
    assert_eq!(edited.body["content_type"], "encrypted");
    refused(
        &api.patch(
            &patch(&before_id),
            a.t(),
            json!({"content": envelope(1, 6, 16)}),
        )
        .await,
        StatusCode::CONFLICT,
        "encryption_required",
    );
    ws_a.send_json(
        &json!({"type": "edit", "conversation_id": chat, "message_id": before_id,
        "content": "fixed", "request_id": "edit-1"}),
    )
    .await;
    assert_eq!(
        error_of(&mut ws_a, "edit-1").await["code"],
        "encryption_required"
    );

    // Replies: the server's preview of an envelope says so and never cuts it.
    let reply = api
        .post(
            &messages_path(&chat),
            b.t(),
            json!({"content": envelope(1, 7, 16), "content_type": "encrypted",
                "reply_to": sealed_id}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(
        reply.body["reply_preview"],
        json!({"id": sealed_id, "sender_id": a.id, "content": "Encrypted message",
            "content_type": "encrypted", "deleted": false})
    );
    let quoting_old = api
        .post(
            &messages_path(&chat),
            b.t(),
            json!({"content": envelope(1, 8, 16), "content_type": "encrypted",
                "reply_to": before_id}),
        )
        .await;
    assert_eq!(quoting_old.body["reply_preview"]["content"], "from before");
    assert_eq!(quoting_old.body["reply_preview"]["content_type"], "text");

    // The list: real values, one read for the page, the last message whole.
    let list = api.get("/api/v1/conversations", a.t()).await;
    let entry = |conv: &str| {
        list.body
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == conv)
            .cloned()
            .unwrap()
    };
    assert_eq!(entry(&chat)["encrypted"], true);
    assert_eq!(entry(&team)["encrypted"], true);
    assert_eq!(
        entry(&chat)["last_message"]["content"],
        envelope(1, 8, 16).as_str()
    );

    // Encrypted from the start: one `created`, already encrypted; the joining session
    // knows it at once and refuses text there.
    let made = create(&api, &a, "group", &[&b]).await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    assert_eq!(made.body["encrypted"], true);
    let fresh = made.body["id"].as_str().unwrap().to_owned();
    let created = conversation_event(&mut ws_b, &fresh, "created").await;
    assert_eq!(created["conversation"]["encrypted"], true);
    ws_send(&mut ws_b, &fresh, "hello", "text", "b-1").await;
    assert_eq!(
        error_of(&mut ws_b, "b-1").await["code"],
        "encryption_required"
    );
    send_acked_encrypted(&mut ws_b, &fresh, &envelope(1, 9, 16), "b-2").await;
    // Asking for an encrypted direct conversation the pair already has turns it on.
    let pair = cluster::direct(&api, &a, &c).await;
    let existing = create(&api, &a, "direct", &[&c]).await;
    assert_eq!(existing.status, StatusCode::OK, "{:?}", existing.body);
    assert_eq!(
        (&existing.body["id"], &existing.body["encrypted"]),
        (&json!(pair), &json!(true))
    );
    // Over /ws/chat/{id} too, from that conversation's own read.
    let (mut scoped, _) = WsConnect::chat(&d.base(far), &chat, &b.token)
        .open_ready("B on the chat")
        .await;
    scoped
        .send_json(&json!({"type": "message", "content": "plain", "temp_id": "s-1"}))
        .await;
    assert_eq!(
        error_of(&mut scoped, "s-1").await["code"],
        "encryption_required"
    );
}

async fn keys_rotation_and_requests(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let far = d.other(0);
    let (a, b, c, outsider) = (
        api.register("Alice").await,
        api.register("Bob").await,
        api.register("Cleo").await,
        api.register("Oscar").await,
    );
    let made = create(&api, &a, "group", &[&b, &c]).await;
    let conv = made.body["id"].as_str().unwrap().to_owned();
    let (a1, b1, c1) = (
        device(&api, &a, 1).await,
        device(&api, &b, 2).await,
        device(&api, &c, 3).await,
    );
    let (mut ws_b, _) = WsConnect::all(&d.base(far), &b.token).open_ready("B").await;
    let (mut ws_b_chat, _) = WsConnect::chat(&d.base(0), &conv, &b.token)
        .open_ready("B on the group")
        .await;
    let keys_path = format!("/api/v1/conversations/{conv}/keys");
    let missing_path = format!("{keys_path}/missing");

    // No key yet: every live device of every member lacks it.
    let missing = api.get(&missing_path, a.t()).await;
    assert_eq!(missing.status, StatusCode::OK, "{:?}", missing.body);
    assert_eq!(missing.body["key_version"], 0);
    let ids: Vec<&str> = missing.body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    assert_eq!(ids, vec![id(&a1), id(&b1), id(&c1)]);

    // The first key: stored, announced to every session of every member.
    refused(
        &put_keys(&api, &a, &conv, 1, &a1, &[&a1, &b1, &c1]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let stored = new_key(&api, &a, &conv, 1, &a1, &[&a1, &b1, &c1]).await;
    assert_eq!(stored.status, StatusCode::OK, "{:?}", stored.body);
    assert_eq!(stored.body, json!({"key_version": 1, "rotated": true}));
    for ws in [&mut ws_b, &mut ws_b_chat] {
        let shared = ws.recv_frame("key_shared", WAIT).await;
        assert_eq!(
            shared,
            json!({"type": "key_shared", "conversation_id": conv, "key_version": 1,
                "rotated": true, "from_user_id": a.id, "from_device_id": id(&a1),
                "device_ids": [id(&a1), id(&b1), id(&c1)]})
        );
    }
    // Bob's client, racing to make version 1 too, is told it exists: no device gets a second
    // key under the same version.
    refused(
        &new_key(&api, &b, &conv, 1, &b1, &[&a1, &b1, &c1]).await,
        StatusCode::CONFLICT,
        "key_version_exists",
    );
    // Refusals store nothing: a wrong version, an outsider's device, a device twice, none,
    // a malformed wrap, someone else's device as the wrapper.
    let stranger = device(&api, &outsider, 9).await;
    for (reply, what) in [
        (put_keys(&api, &a, &conv, 5, &a1, &[&b1]).await, "version"),
        (
            put_keys(&api, &a, &conv, 1, &a1, &[&stranger]).await,
            "outsider",
        ),
        (
            put_keys(&api, &a, &conv, 1, &a1, &[&b1, &b1]).await,
            "twice",
        ),
        (put_keys(&api, &a, &conv, 1, &a1, &[]).await, "none"),
        (put_keys(&api, &a, &conv, 1, &b1, &[&a1]).await, "not mine"),
    ] {
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {:?}",
            reply.body
        );
    }
    refused(
        &put_keys(&api, &outsider, &conv, 1, &stranger, &[&a1]).await,
        StatusCode::FORBIDDEN,
        "not_participant",
    );

    // Bob reads his key with the wrapper's public key, also once that device is revoked.
    let read = api
        .get(&format!("{keys_path}?device_id={}", id(&b1)), b.t())
        .await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.body["key_version"], 1);
    let keys = read.body["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["version"], 1);
    assert_eq!(keys[0]["from_device_id"], id(&a1));
    assert_eq!(keys[0]["from_user_id"], a.id.as_str());
    assert_eq!(keys[0]["from_public_key"], a1["public_key"]);
    let revoked = api
        .delete(&format!("/api/v1/devices/{}", id(&a1)), a.t())
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = api
        .get(&format!("{keys_path}?device_id={}", id(&b1)), b.t())
        .await;
    assert_eq!(after.body["keys"][0]["from_public_key"], a1["public_key"]);
    for path in [
        keys_path.clone(),
        format!("{keys_path}?device_id="),
        format!("{keys_path}?device_id=nonsense"),
        format!("{keys_path}?device_id={}", id(&a1)),
    ] {
        refused(
            &api.get(&path, b.t()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    }
    refused(
        &api.get(
            &format!("{keys_path}?device_id={}", id(&stranger)),
            outsider.t(),
        )
        .await,
        StatusCode::FORBIDDEN,
        "not_participant",
    );

    // Alice's new device lacks the key and asks for it: the other members hear it.
    let a2 = device(&api, &a, 4).await;
    let missing = api.get(&missing_path, b.t()).await;
    assert_eq!(missing.body["devices"].as_array().unwrap().len(), 1);
    assert_eq!(missing.body["devices"][0]["id"], id(&a2));
    let asked = api
        .post(
            &format!("{keys_path}/requests"),
            a.t(),
            json!({"device_id": id(&a2)}),
        )
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{:?}", asked.body);
    let expected = json!({"conversation_id": conv, "user_id": a.id, "device_id": id(&a2),
        "key_version": 1});
    assert_eq!(asked.body, expected);
    let request = ws_b.recv_frame("key_request", WAIT).await;
    let mut wanted = expected.clone();
    wanted["type"] = json!("key_request");
    assert_eq!(request, wanted);
    refused(
        &api.post(
            &format!("{keys_path}/requests"),
            a.t(),
            json!({"device_id": id(&b1)}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    // Bob shares version 1 with it (a share, not a new version).
    let share = put_keys(&api, &b, &conv, 1, &b1, &[&a2]).await;
    assert_eq!(share.body, json!({"key_version": 1, "rotated": false}));

    // Cleo is removed: the conversation needs a rotation, which her devices never get.
    let removed = api
        .delete(
            &format!("/api/v1/conversations/{conv}/members/{}", c.id),
            a.t(),
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let frame = conversation_event(&mut ws_b, &conv, "member_removed").await;
    assert_eq!(frame["conversation"]["rotation_needed"], true);
    assert_eq!(frame["conversation"]["key_version"], 1);
    refused(
        &new_key(&api, &a, &conv, 2, &a2, &[&a2, &b1, &c1]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let rotated = new_key(&api, &a, &conv, 2, &a2, &[&a2, &b1]).await;
    assert_eq!(rotated.body, json!({"key_version": 2, "rotated": true}));
    let shared = ws_b
        .recv_where("the rotation", WAIT, |f| {
            frame_type(f) == "key_shared" && f["key_version"] == 2
        })
        .await;
    assert_eq!(shared["rotated"], true);
    let now = api
        .get(&format!("/api/v1/conversations/{conv}"), b.t())
        .await;
    assert_eq!(
        (&now.body["key_version"], &now.body["rotation_needed"]),
        (&json!(2), &json!(false))
    );
    let versions: Vec<i64> = api
        .get(&format!("{keys_path}?device_id={}", id(&b1)), b.t())
        .await
        .body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2]);
    refused(
        &api.get(&format!("{keys_path}?device_id={}", id(&c1)), c.t())
            .await,
        StatusCode::FORBIDDEN,
        "not_participant",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_on_and_the_encrypted_content_type_embedded() {
    turning_on_and_the_encrypted_content_type(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_on_and_the_encrypted_content_type_across_two_nodes() {
    turning_on_and_the_encrypted_content_type(Mode::ScaleOut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotation_and_requests_embedded() {
    keys_rotation_and_requests(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotation_and_requests_across_two_nodes() {
    keys_rotation_and_requests(Mode::ScaleOut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_requests_are_rate_limited_per_user() {
    let d = Deployment::start(
        Mode::Embedded,
        &quick(&[(keys::CHANGES_PER_SECOND, "1"), (keys::CHANGE_BURST, "2")]),
    )
    .await;
    let api = d.api(0);
    let (a, b) = (api.register("Alice").await, api.register("Bob").await);
    let made = create(&api, &a, "direct", &[&b]).await;
    let conv = made.body["id"].as_str().unwrap().to_owned();
    let a1 = device(&api, &a, 1).await;
    let path = format!("/api/v1/conversations/{conv}/keys/requests");
    let ask = || api.post(&path, a.t(), json!({"device_id": id(&a1)}));
    assert_eq!(ask().await.status, StatusCode::ACCEPTED);
    assert_eq!(ask().await.status, StatusCode::ACCEPTED);
    let limited = ask().await;
    refused(&limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(limited.headers.get("retry-after").is_some());
    // Per user: Bob still may.
    let b1 = device(&api, &b, 2).await;
    let theirs = api.post(&path, b.t(), json!({"device_id": id(&b1)})).await;
    assert_eq!(theirs.status, StatusCode::ACCEPTED);
}

/// Sends an envelope over the WebSocket and waits for its acknowledgement.
async fn send_acked_encrypted(
    ws: &mut WsClient,
    conv: &str,
    content: &str,
    temp_id: &str,
) -> Value {
    ws_send(ws, conv, content, "encrypted", temp_id).await;
    ws.ack(temp_id).await
}
