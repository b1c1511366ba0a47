//! A sending session never gets its own messages back, also when the other side's next
//! message overtakes our ack (the hole is our own send, filled by its ack, not fetched and
//! echoed from storage). Both sides pipeline their sends without waiting for acks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, quick, Deployment, Mode};
use e2e::ws::{frame_type, WsConnect};
use std::time::Duration;

async fn a_sending_session_never_gets_its_own_messages_back(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let (mut ws_b, _) = WsConnect::all(&d.base(d.other(0)), &b.token)
        .open_ready("B")
        .await;
    const N: usize = 60;
    for i in 0..N {
        ws_a.send_message(&conv, &format!("a{i}"), &format!("a-{i}"))
            .await;
        ws_b.send_message(&conv, &format!("b{i}"), &format!("b-{i}"))
            .await;
    }
    for (ws, me, label) in [(&mut ws_a, &a.id, "A"), (&mut ws_b, &b.id, "B")] {
        let mut acks = 0;
        let mut seqs = Vec::new();
        let mut own = Vec::new();
        for _ in 0..400 {
            let Some(f) = ws.next_frame(Duration::from_secs(3)).await else {
                break;
            };
            match frame_type(&f) {
                "message_sent" => {
                    acks += 1;
                    seqs.push(f["seq"].as_i64().unwrap());
                }
                "message" => {
                    let m = &f["message"];
                    if m["sender_id"] == me.as_str() {
                        own.push(m["seq"].as_i64().unwrap());
                    }
                    seqs.push(m["seq"].as_i64().unwrap());
                }
                "error" => panic!("{label}: {f}"),
                _ => {}
            }
            if seqs.len() == 2 * N && acks == N {
                break;
            }
        }
        assert!(
            own.is_empty(),
            "{label} got its own messages back: seqs {own:?}"
        );
        assert_eq!(acks, N, "{label}: every send acked");
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=2 * N as i64).collect::<Vec<_>>(),
            "{label}: each seq once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sending_session_never_gets_its_own_messages_back_embedded() {
    a_sending_session_never_gets_its_own_messages_back(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sending_session_never_gets_its_own_messages_back_on_a_cluster() {
    a_sending_session_never_gets_its_own_messages_back(Mode::ScaleOut).await;
}
