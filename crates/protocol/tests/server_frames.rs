//! Server frames serialise with their `type` and seed 000's field names (moved from the
//! server's `ws::frames` with the types).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use protocol::server::{PresenceStatus, SyncState, Watermarks};
use protocol::ServerFrame;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

trait Json {
    fn json(&self) -> String;
}

impl Json for ServerFrame {
    fn json(&self) -> String {
        serde_json::to_string(self).unwrap()
    }
}

#[test]
fn server_frames_serialise_with_their_type_and_seed_names() {
    let id = Uuid::nil();
    let at: DateTime<Utc> = "2026-11-21T12:00:01.250Z".parse().unwrap();
    let cases = [
        (ServerFrame::Pong.json(), json!({"type":"pong"})),
        (
            ServerFrame::MessageSent {
                conversation_id: id,
                message_id: id,
                temp_id: Some("t".into()),
                seq: 3,
                created_at: at,
            }
            .json(),
            json!({"type":"message_sent","conversation_id":id,"message_id":id,"temp_id":"t","seq":3,"created_at":at}),
        ),
        (
            ServerFrame::Delivered {
                conversation_id: id,
                message_id: id,
                seq: 4,
                user_id: id,
            }
            .json(),
            json!({"type":"delivered","conversation_id":id,"message_id":id,"seq":4,"user_id":id}),
        ),
        (
            ServerFrame::ReadReceipt {
                conversation_id: id,
                message_id: id,
                seq: 4,
                read_by: id,
                read_at: at,
            }
            .json(),
            json!({"type":"read_receipt","conversation_id":id,"message_id":id,"seq":4,"read_by":id,"read_at":at}),
        ),
        (
            ServerFrame::Typing {
                conversation_id: id,
                user_id: id,
                is_typing: false,
            }
            .json(),
            json!({"type":"typing","conversation_id":id,"user_id":id,"is_typing":false}),
        ),
        (
            ServerFrame::Presence {
                user_id: id,
                status: PresenceStatus::Offline,
                last_seen: Some(at),
            }
            .json(),
            json!({"type":"presence","user_id":id,"status":"offline","last_seen":at}),
        ),
        (
            ServerFrame::Unread {
                conversation_id: id,
                unread_count: 0,
                total: 3,
            }
            .json(),
            json!({"type":"unread","conversation_id":id,"unread_count":0,"total":3}),
        ),
        (
            ServerFrame::AuthOk { expires_at: at }.json(),
            json!({"type":"auth_ok","expires_at":at}),
        ),
    ];
    for (text, want) in cases {
        let got: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(got, want);
    }
}

#[test]
fn sync_done_flattens_the_watermarks_into_each_conversation() {
    let mut conversations = BTreeMap::new();
    conversations.insert(
        Uuid::nil(),
        SyncState {
            last_seq: 42,
            has_more: true,
            last_change: None,
            watermarks: Watermarks {
                delivered_seq: 42,
                read_seq: 41,
                peer_delivered_seq: 40,
                peer_read_seq: 39,
            },
        },
    );
    let got: Value = serde_json::from_str(&ServerFrame::SyncDone { conversations }.json()).unwrap();
    assert_eq!(
        got,
        json!({"type":"sync_done","conversations":{Uuid::nil().to_string():{
            "last_seq":42,"has_more":true,"delivered_seq":42,"read_seq":41,
            "peer_delivered_seq":40,"peer_read_seq":39}}})
    );
}
