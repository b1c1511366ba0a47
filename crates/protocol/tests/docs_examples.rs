//! Every frame example of `docs/protocol.md` parses into the protocol's types and serialises
//! back to the same bytes, so the page and the wire cannot drift apart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use protocol::{ClientFrame, ServerFrame};
use std::collections::BTreeSet;

const PAGE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/protocol.md"
));

/// The ```json blocks of the section under `heading`, each joined into one line.
fn examples(heading: &str) -> Vec<String> {
    let start = PAGE.find(heading).expect("section");
    let section = &PAGE[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .split("```json\n")
        .skip(1)
        .map(|block| {
            let block = &block[..block.find("```").expect("closed block")];
            block.lines().map(str::trim_start).collect::<String>()
        })
        .collect()
}

#[test]
fn every_client_frame_example_round_trips_byte_for_byte() {
    let mut kinds = BTreeSet::new();
    for text in examples("## Client -> server") {
        let frame: ClientFrame =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(frame.to_json(), text);
        kinds.insert(frame.kind());
    }
    let all = [
        "auth",
        "delete",
        "delivered",
        "edit",
        "message",
        "ping",
        "presence",
        "react",
        "read",
        "sync",
        "typing",
    ];
    assert_eq!(kinds, BTreeSet::from(all), "one example per client frame");
}

#[test]
fn every_server_frame_example_round_trips_byte_for_byte() {
    let mut kinds = BTreeSet::new();
    for text in examples("## Server -> client") {
        let frame: ServerFrame =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(serde_json::to_string(&frame).unwrap(), text);
        kinds.insert(frame.kind());
    }
    let all = [
        "auth_ok",
        "conversation",
        "delivered",
        "error",
        "hello",
        "key_request",
        "key_shared",
        "message",
        "message_deleted",
        "message_sent",
        "message_updated",
        "pong",
        "presence",
        "reaction",
        "read_receipt",
        "sync_done",
        "typing",
        "unread",
    ];
    assert_eq!(kinds, BTreeSet::from(all), "one example per server frame");
}
