//! Shapes the page's examples do not show: optional fields a client leaves out, and a list
//! entry whose `last_message` is `null`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use protocol::rest::{ConversationDto, SendMessageRequest};
use protocol::ClientFrame;
use uuid::Uuid;

const C: &str = "0193a5b2-7c1e-7000-8000-00000000c001";

#[test]
fn a_client_frame_leaves_out_the_optional_fields_it_does_not_set() {
    let c: Uuid = C.parse().unwrap();
    assert_eq!(
        ClientFrame::message(c, "hi", "t-1").to_json(),
        format!(
            r#"{{"type":"message","conversation_id":"{C}","content":"hi","content_type":"text","temp_id":"t-1"}}"#
        )
    );
    assert_eq!(
        ClientFrame::sync([(c, 4)]).to_json(),
        format!(r#"{{"type":"sync","cursors":{{"{C}":4}}}}"#)
    );
    assert_eq!(ClientFrame::Ping.to_json(), r#"{"type":"ping"}"#);
}

#[test]
fn a_rest_request_leaves_out_the_optional_fields_it_does_not_set() {
    let body = SendMessageRequest {
        content: "hi".into(),
        content_type: None,
        temp_id: Some("t".into()),
        reply_to: None,
        attachment_ids: Vec::new(),
    };
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        r#"{"content":"hi","temp_id":"t"}"#
    );
}

#[test]
fn a_list_entry_keeps_a_null_last_message_and_a_single_conversation_has_none() {
    let entry = format!(
        r#"{{"id":"{C}","type":"direct","title":null,"created_by":"{C}","created_at":"2026-11-21T12:00:00Z","last_seq":0,"last_message_at":null,"unread_count":0,"last_message":null,"participants":[],"encrypted":true,"key_version":2,"rotation_needed":true}}"#
    );
    let dto: ConversationDto = serde_json::from_str(&entry).unwrap();
    assert_eq!(dto.last_message, Some(None));
    assert_eq!(serde_json::to_string(&dto).unwrap(), entry);
    let single = entry.replace(r#""last_message":null,"#, "");
    let dto: ConversationDto = serde_json::from_str(&single).unwrap();
    assert_eq!(dto.last_message, None);
    assert_eq!(serde_json::to_string(&dto).unwrap(), single);
    assert!(dto.encrypted && dto.rotation_needed);
    assert_eq!(dto.key_version, 2);
}
