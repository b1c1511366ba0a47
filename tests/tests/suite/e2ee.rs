//! End-to-end encryption's server side over real HTTP, on both storage backends (issue 13):
//! devices, their public keys and fingerprints, who sees them, the device limit and
//! revocation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Api, Backend, Reply, TestApp, TestUser};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

/// base64url without padding.
fn b64(bytes: &[u8]) -> String {
    domain::encryption::encode_base64url(bytes)
}

/// A 65-byte uncompressed point, `0x04` then 64 bytes of `fill`.
fn point(fill: u8) -> Vec<u8> {
    let mut raw = vec![0x04];
    raw.extend(std::iter::repeat_n(fill, 64));
    raw
}

fn refused(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.error_code(), code, "{:?}", reply.body);
}

async fn register_device(api: &Api, user: &TestUser, fill: u8, name: &str) -> Reply {
    api.post(
        "/api/v1/devices",
        user.t(),
        json!({"public_key": b64(&point(fill)), "name": name}),
    )
    .await
}

fn devices_path(user: &TestUser) -> String {
    format!("/api/v1/users/{}/devices", user.id)
}

async fn devices_flow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let api = app.api();
    let (alice, bob, carol) = (
        api.register("Alice").await,
        api.register("Bob").await,
        api.register("Carol").await,
    );

    // A device and its fingerprint: SHA-256 of the raw 65 bytes, 16 groups of 4 hex digits.
    let made = register_device(&api, &alice, 7, "Alice's laptop").await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    let device = made.body.clone();
    assert_eq!(device["user_id"], alice.id.as_str());
    assert_eq!(device["public_key"], b64(&point(7)).as_str());
    assert_eq!(device["name"], "Alice's laptop");
    let digest: String = Sha256::digest(point(7))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let grouped: Vec<String> = digest
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    assert_eq!(device["fingerprint"], grouped.join(" ").as_str());
    assert!(device["created_at"].is_string());
    assert!(device["id"].is_string());

    // Malformed keys and names store nothing.
    for bad in [
        json!({"public_key": b64(&point(7)[..64]), "name": "short"}),
        json!({"public_key": b64(&[vec![0x02], vec![1; 64]].concat()), "name": "compressed"}),
        json!({"public_key": format!("{}=", b64(&point(7))), "name": "padded"}),
        json!({"public_key": "not base64!", "name": "garbage"}),
        json!({"public_key": b64(&point(7)), "name": "  "}),
        json!({"public_key": b64(&point(7)), "name": "x".repeat(65)}),
        json!({"public_key": b64(&point(7))}),
    ] {
        let reply = api.post("/api/v1/devices", alice.t(), bad.clone()).await;
        refused(
            &reply,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    }
    let none = api.post("/api/v1/devices", None, json!({})).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);

    // Alice sees her own; Bob and Carol share no conversation with her yet: 404, as for
    // an unknown user.
    let own = api.get(&devices_path(&alice), alice.t()).await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.body, json!([device]));
    refused(
        &api.get(&devices_path(&alice), bob.t()).await,
        StatusCode::NOT_FOUND,
        "user_not_found",
    );
    refused(
        &api.get(
            &format!("/api/v1/users/{}/devices", uuid::Uuid::now_v7()),
            alice.t(),
        )
        .await,
        StatusCode::NOT_FOUND,
        "user_not_found",
    );
    let chat = api
        .post(
            "/api/v1/conversations",
            alice.t(),
            json!({"type": "direct", "participant_ids": [bob.id]}),
        )
        .await;
    assert!(chat.status.is_success(), "{:?}", chat.body);
    let seen = api.get(&devices_path(&alice), bob.t()).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.body, json!([device]));
    refused(
        &api.get(&devices_path(&alice), carol.t()).await,
        StatusCode::NOT_FOUND,
        "user_not_found",
    );

    // Ten live devices at most; a revoked one makes room.
    let mut ids = vec![device["id"].as_str().unwrap().to_owned()];
    for i in 1..10u8 {
        let made = register_device(&api, &alice, i, &format!("device {i}")).await;
        assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
        ids.push(made.body["id"].as_str().unwrap().to_owned());
    }
    refused(
        &register_device(&api, &alice, 11, "eleventh").await,
        StatusCode::CONFLICT,
        "too_many_devices",
    );
    let listed = api.get(&devices_path(&alice), alice.t()).await;
    let listed: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids, "oldest first");

    // Only the owner revokes, once.
    let first = format!("/api/v1/devices/{}", ids[0]);
    refused(
        &api.delete(&first, bob.t()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        api.delete(&first, alice.t()).await.status,
        StatusCode::NO_CONTENT
    );
    refused(
        &api.delete(&first, alice.t()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        &api.delete("/api/v1/devices/not-a-uuid", alice.t()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let after = api.get(&devices_path(&alice), bob.t()).await;
    assert_eq!(after.body.as_array().unwrap().len(), 9);
    assert!(after
        .body
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["id"] != ids[0].as_str()));
    let made = register_device(&api, &alice, 11, "eleventh").await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_register_list_and_revoke_on_sqlite() {
    devices_flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_register_list_and_revoke_on_postgres() {
    devices_flow(Backend::Postgres).await;
}

fn backup(ct_bytes: usize) -> serde_json::Value {
    json!({
        "version": 1,
        "kdf": "PBKDF2-SHA256",
        "iterations": 310_000,
        "salt": b64(&[5; 16]),
        "iv": b64(&[6; 12]),
        "ct": b64(&vec![7; ct_bytes]),
    })
}

const BACKUP: &str = "/api/v1/users/me/key_backup";

async fn put_json(api: &Api, token: Option<&str>, body: &serde_json::Value) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap();
    api.send(reqwest::Method::PUT, BACKUP, token, Some(bytes))
        .await
}

async fn backup_flow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let api = app.api();
    let (alice, bob) = (api.register("Alice").await, api.register("Bob").await);
    refused(
        &api.get(BACKUP, alice.t()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let first = backup(48);
    let put = put_json(&api, alice.t(), &first).await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{:?}", put.body);
    let read = api.get(BACKUP, alice.t()).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, first, "stored verbatim");
    refused(
        &api.get(BACKUP, bob.t()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // The largest ciphertext, 1 MiB (1.33 MiB of JSON, over http.max_body_bytes), replaces it.
    let largest = backup(1024 * 1024);
    let put = put_json(&api, alice.t(), &largest).await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{:?}", put.body);
    assert_eq!(api.get(BACKUP, alice.t()).await.body, largest);

    // Refusals keep what was stored.
    let mut bad = Vec::new();
    for (field, value) in [
        ("version", json!(2)),
        ("kdf", json!("scrypt")),
        ("iterations", json!(309_999)),
        ("iterations", json!(100_000_001)),
        ("iterations", json!(4_000_000_000u32)),
        ("salt", json!(b64(&[1; 15]))),
        ("salt", json!(b64(&[1; 65]))),
        ("iv", json!(b64(&[1; 16]))),
        ("ct", json!(b64(&[1; 16]))),
        ("ct", json!("with padding==")),
    ] {
        let mut body = backup(48);
        body[field] = value;
        bad.push(body);
    }
    bad.push(backup(1024 * 1024 + 1));
    for body in bad {
        let reply = put_json(&api, alice.t(), &body).await;
        refused(
            &reply,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    }
    // Past the route's own limit (1.5 MiB): 413.
    let huge = json!({"ct": "A".repeat(1600 * 1024)});
    let reply = put_json(&api, alice.t(), &huge).await;
    refused(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Without a token the body is never read: 401, even above the general limit.
    let reply = put_json(&api, None, &backup(80 * 1024)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // Elsewhere the general limit still holds.
    let reply = api
        .post(
            "/api/v1/devices",
            alice.t(),
            json!({"name": "x".repeat(100 * 1024)}),
        )
        .await;
    refused(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(api.get(BACKUP, alice.t()).await.body, largest);

    assert_eq!(
        api.delete(BACKUP, alice.t()).await.status,
        StatusCode::NO_CONTENT
    );
    refused(
        &api.get(BACKUP, alice.t()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        api.delete(BACKUP, alice.t()).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_backups_put_get_delete_on_sqlite() {
    backup_flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_backups_put_get_delete_on_postgres() {
    backup_flow(Backend::Postgres).await;
}
