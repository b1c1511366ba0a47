//! Contract of `ConversationStore`.

use crate::fixtures::{direct, group, later, now, send, user};
use crate::Store;
use domain::conversation::{ConversationKind, GroupTitle, NewDirectConversation, Role};
use domain::{ConversationId, UserId};

/// Both users are members with zero watermarks; the pair gets a conversation once.
pub async fn a_direct_conversation_makes_both_users_members(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let new = NewDirectConversation {
        id: ConversationId::new(),
        created_by: a.id,
        other: b.id,
        created_at: now(),
    };
    let (details, created) = store.create_direct(&new).await.unwrap();
    assert!(created);
    assert_eq!(details.conversation.id, new.id);
    assert_eq!(details.conversation.kind, ConversationKind::Direct);
    assert_eq!(details.conversation.title, None);
    assert_eq!(details.conversation.last_seq, 0);
    assert_eq!(details.conversation.created_at, new.created_at);
    let mut ids: Vec<UserId> = details
        .participants
        .iter()
        .map(|p| p.participant.user_id)
        .collect();
    ids.sort();
    let mut want = vec![a.id, b.id];
    want.sort();
    assert_eq!(ids, want);
    for p in &details.participants {
        assert_eq!(p.participant.role, Role::Member);
        assert_eq!(
            (p.participant.delivered_seq, p.participant.read_seq),
            (0, 0)
        );
    }
    let profile_b = details
        .participants
        .iter()
        .find(|p| p.participant.user_id == b.id)
        .unwrap();
    assert_eq!(profile_b.display_name, "B");
    assert_eq!(profile_b.email, b.email.as_str());
    assert_eq!(store.conversation(new.id).await.unwrap(), Some(details));
}

/// A->B then B->A: the second answer is the first conversation, not created.
pub async fn asking_for_b_to_a_after_a_to_b_returns_the_same_conversation(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let first = direct(&store, &a, &b).await;
    let (second, created) = store
        .create_direct(&NewDirectConversation {
            id: ConversationId::new(),
            created_by: b.id,
            other: a.id,
            created_at: now(),
        })
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(second.conversation.id, first.conversation.id);
    assert_eq!(second.participants.len(), 2);
}

/// Simultaneous A->B and B->A end with one conversation, which everyone gets.
pub async fn concurrent_a_to_b_and_b_to_a_end_in_one_conversation(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            let (me, other) = if i % 2 == 0 {
                (a.id, b.id)
            } else {
                (b.id, a.id)
            };
            tokio::spawn(async move {
                store
                    .create_direct(&NewDirectConversation {
                        id: ConversationId::new(),
                        created_by: me,
                        other,
                        created_at: now(),
                    })
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut created = 0;
    for t in tasks {
        let (details, was_created) = t.await.unwrap().unwrap();
        ids.push(details.conversation.id);
        created += usize::from(was_created);
        assert_eq!(details.participants.len(), 2);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one conversation for the pair");
    assert_eq!(created, 1);
    let listed = store.list_conversations(a.id, None, 0, 50).await.unwrap();
    assert_eq!(listed.len(), 1);
}

/// Creator is owner; others are members; the title is kept.
pub async fn a_group_has_its_creator_as_owner_and_the_others_as_members(store: Store) {
    let (a, b, c) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
    );
    let g = group(&store, &a, &[&b, &c], "Team").await;
    assert_eq!(g.conversation.kind, ConversationKind::Group);
    assert_eq!(g.conversation.title.as_deref(), Some("Team"));
    assert_eq!(g.conversation.created_by, a.id);
    assert_eq!(g.participants.len(), 3);
    assert_eq!(g.participant(a.id).unwrap().role, Role::Owner);
    assert_eq!(g.participant(b.id).unwrap().role, Role::Member);
    assert_eq!(g.participant(c.id).unwrap().role, Role::Member);
    assert_eq!(
        store
            .participant(g.conversation.id, b.id)
            .await
            .unwrap()
            .unwrap()
            .role,
        Role::Member
    );
    assert_eq!(
        store
            .participant(g.conversation.id, UserId::new())
            .await
            .unwrap(),
        None
    );
}

/// Unknown ids are `None`, not errors.
pub async fn an_unknown_conversation_is_none(store: Store) {
    assert_eq!(
        store.conversation(ConversationId::new()).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .participant(ConversationId::new(), UserId::new())
            .await
            .unwrap(),
        None
    );
}

/// A conversation with a new message moves to the top; the newest message rides along.
pub async fn conversations_are_listed_newest_activity_first_with_their_last_message(store: Store) {
    let (a, b, c) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
    );
    let ab = direct(&store, &a, &b).await;
    let ac = direct(&store, &a, &c).await;
    let team = group(&store, &a, &[&b], "Team").await;
    // Creation order: ab, ac, team. Activity: a message in ab makes it newest.
    send(&store, ab.conversation.id, b.id, "first").await;
    let last = send(&store, ab.conversation.id, a.id, "second").await;

    let list = store.list_conversations(a.id, None, 0, 50).await.unwrap();
    let ids: Vec<ConversationId> = list.iter().map(|s| s.details.conversation.id).collect();
    assert_eq!(
        ids,
        vec![ab.conversation.id, team.conversation.id, ac.conversation.id]
    );
    assert_eq!(list[0].last_message.as_ref(), Some(&last));
    assert_eq!(list[0].details.conversation.last_seq, 2);
    assert!(list[1].last_message.is_none());
    assert_eq!(list[0].details.participants.len(), 2);
    // Only the user's own conversations.
    let for_c = store.list_conversations(c.id, None, 0, 50).await.unwrap();
    assert_eq!(for_c.len(), 1);
    assert_eq!(for_c[0].details.conversation.id, ac.conversation.id);
}

/// `kind` filters; `offset`/`limit` page.
pub async fn the_list_filters_by_kind_and_pages(store: Store) {
    let a = user(&store, "A").await;
    let mut others = Vec::new();
    for i in 0..3 {
        others.push(user(&store, &format!("U{i}")).await);
    }
    for o in &others {
        direct(&store, &a, o).await;
    }
    group(&store, &a, &[&others[0]], "G").await;
    let groups = store
        .list_conversations(a.id, Some(ConversationKind::Group), 0, 50)
        .await
        .unwrap();
    assert_eq!(groups.len(), 1);
    let directs = store
        .list_conversations(a.id, Some(ConversationKind::Direct), 0, 50)
        .await
        .unwrap();
    assert_eq!(directs.len(), 3);
    let page1 = store.list_conversations(a.id, None, 0, 3).await.unwrap();
    let page2 = store.list_conversations(a.id, None, 3, 3).await.unwrap();
    assert_eq!(page1.len(), 3);
    assert_eq!(page2.len(), 1);
    assert!(page1
        .iter()
        .all(|s| s.details.conversation.id != page2[0].details.conversation.id));
}

/// Joining members start at `last_seq`; a second add is refused and changes nothing.
pub async fn a_new_member_starts_with_nothing_unread_and_cannot_be_added_twice(store: Store) {
    let (a, b, c) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
    );
    let g = group(&store, &a, &[&b], "G").await;
    let id = g.conversation.id;
    for i in 0..3 {
        send(&store, id, a.id, &format!("m{i}")).await;
    }
    assert!(store
        .add_participant(id, c.id, Role::Member, later(1))
        .await
        .unwrap());
    let joined = store.participant(id, c.id).await.unwrap().unwrap();
    assert_eq!((joined.delivered_seq, joined.read_seq), (3, 3));
    assert_eq!(joined.role, Role::Member);
    assert!(!store
        .add_participant(id, c.id, Role::Admin, later(2))
        .await
        .unwrap());
    assert_eq!(
        store.participant(id, c.id).await.unwrap().unwrap().role,
        Role::Member
    );
    let unread = store.unread_counts(c.id).await.unwrap();
    assert_eq!(unread, vec![(id, 0)]);
}

/// Remove, set_role and rename take effect; removing a non-member says so.
pub async fn members_can_be_removed_and_promoted_and_groups_renamed(store: Store) {
    let (a, b, c) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
    );
    let g = group(&store, &a, &[&b, &c], "Old").await;
    let id = g.conversation.id;
    assert!(store.remove_participant(id, c.id).await.unwrap());
    assert!(!store.remove_participant(id, c.id).await.unwrap());
    assert_eq!(store.participant(id, c.id).await.unwrap(), None);
    assert!(store
        .list_conversations(c.id, None, 0, 50)
        .await
        .unwrap()
        .is_empty());
    store.set_role(id, b.id, Role::Admin).await.unwrap();
    assert_eq!(
        store.participant(id, b.id).await.unwrap().unwrap().role,
        Role::Admin
    );
    store
        .rename_conversation(id, &GroupTitle::parse("New").unwrap())
        .await
        .unwrap();
    let details = store.conversation(id).await.unwrap().unwrap();
    assert_eq!(details.conversation.title.as_deref(), Some("New"));
    assert_eq!(details.participants.len(), 2);
}

/// Unread is `last_seq - read_seq`, per conversation of the user.
pub async fn unread_counts_are_last_seq_minus_read_seq(store: Store) {
    let (a, b, c) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
    );
    let ab = direct(&store, &a, &b).await.conversation.id;
    let ac = direct(&store, &a, &c).await.conversation.id;
    for _ in 0..4 {
        send(&store, ab, b.id, "hi").await;
    }
    send(&store, ac, c.id, "yo").await;
    send(&store, ac, a.id, "back").await;
    let mut counts = store.unread_counts(a.id).await.unwrap();
    counts.sort_by_key(|(id, _)| *id == ac);
    // a read nothing of ab (4 unread); sending in ac moved a's read watermark to 2.
    assert_eq!(counts, vec![(ab, 4), (ac, 0)]);
    let b_counts = store.unread_counts(b.id).await.unwrap();
    assert_eq!(b_counts, vec![(ab, 0)]);
}

/// Every conversation of a user, direct and group, each once; one left is gone.
pub async fn conversation_ids_are_every_membership_of_the_user(store: Store) {
    let (a, b, c) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
    );
    let ab = direct(&store, &a, &b).await.conversation.id;
    let team = group(&store, &b, &[&a, &c], "Team").await.conversation.id;
    let bc = direct(&store, &b, &c).await.conversation.id;
    let mut ids = store.conversation_ids(a.id).await.unwrap();
    ids.sort();
    let mut want = vec![ab, team];
    want.sort();
    assert_eq!(ids, want);
    assert!(!ids.contains(&bc));
    assert!(store.remove_participant(team, a.id).await.unwrap());
    assert_eq!(store.conversation_ids(a.id).await.unwrap(), vec![ab]);
    assert_eq!(store.conversation_ids(UserId::new()).await.unwrap(), vec![]);
}

/// A session's snapshot, in one read: the account, and for every conversation of the user
/// (only those, each once) its `last_seq`, the user's watermarks and the lowest of the other
/// members', exactly as `ConversationDetails::state_of` gives them from the same data.
pub async fn the_session_snapshot_is_the_users_state_in_each_of_its_conversations(store: Store) {
    use domain::conversation::{ConversationState, SessionSnapshot};
    use domain::ports::WatermarkUpdate;

    let (a, b, c, d) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
        user(&store, "D").await,
    );
    // ab: b sends 1-3, a sends 4 (sending moves the sender's own watermarks); b got 4.
    let ab = direct(&store, &a, &b).await.conversation.id;
    for _ in 0..3 {
        send(&store, ab, b.id, "hi").await;
    }
    send(&store, ab, a.id, "back").await;
    // team: c sends 1-2; a read 1; b nothing.
    let team = group(&store, &b, &[&a, &c], "Team").await.conversation.id;
    send(&store, team, c.id, "one").await;
    send(&store, team, c.id, "two").await;
    let mark = |conversation_id, user_id, delivered_seq, read_seq| WatermarkUpdate {
        conversation_id,
        user_id,
        delivered_seq,
        read_seq,
    };
    store
        .advance_watermarks(&[
            mark(ab, b.id, Some(4), None),
            mark(team, a.id, None, Some(1)),
        ])
        .await
        .unwrap();
    // solo: a alone; bc: not a's.
    let solo = group(&store, &a, &[], "Solo").await.conversation.id;
    let bc = direct(&store, &b, &c).await.conversation.id;

    let snapshot_of = |user: UserId| {
        let store = store.clone();
        async move {
            let mut snapshot = store.session_snapshot(user).await.unwrap().unwrap();
            snapshot.conversations.sort_by_key(|s| s.conversation_id);
            snapshot
        }
    };
    let state = |conversation_id, last_seq, own: (i64, i64), peers: (i64, i64)| ConversationState {
        conversation_id,
        last_seq,
        delivered_seq: own.0,
        read_seq: own.1,
        peer_delivered_seq: peers.0,
        peer_read_seq: peers.1,
        last_change: 0,
    };
    let mut want = vec![
        state(ab, 4, (4, 4), (4, 3)),
        state(team, 2, (1, 1), (0, 0)),
        state(solo, 0, (0, 0), (0, 0)),
    ];
    want.sort_by_key(|s| s.conversation_id);
    assert_eq!(
        snapshot_of(a.id).await,
        SessionSnapshot {
            user: store.user_by_id(a.id).await.unwrap().unwrap(),
            conversations: want,
            encrypted: vec![],
        }
    );
    assert_eq!(
        snapshot_of(a.id).await.conversations[..]
            .iter()
            .find(|s| s.conversation_id == team)
            .map(ConversationState::unread_count),
        Some(1)
    );

    // Whoever asks, each entry is what the conversation read whole says of them.
    for u in [&a, &b, &c] {
        let snapshot = snapshot_of(u.id).await;
        assert_eq!(
            snapshot.user,
            store.user_by_id(u.id).await.unwrap().unwrap()
        );
        let mut ids: Vec<ConversationId> = snapshot
            .conversations
            .iter()
            .map(|s| s.conversation_id)
            .collect();
        let mut memberships = store.conversation_ids(u.id).await.unwrap();
        memberships.sort();
        ids.sort();
        assert_eq!(
            ids,
            memberships,
            "{}: only and every membership",
            u.display_name.as_str()
        );
        for s in &snapshot.conversations {
            let details = store
                .conversation(s.conversation_id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(Some(*s), details.state_of(u.id));
            assert_eq!(s.unread_count(), details.unread_count(u.id));
        }
    }
    assert!(!snapshot_of(a.id)
        .await
        .conversations
        .iter()
        .any(|s| s.conversation_id == bc));

    // In no conversation: the account and nothing else. Unknown: none at all.
    assert_eq!(
        snapshot_of(d.id).await,
        SessionSnapshot {
            user: store.user_by_id(d.id).await.unwrap().unwrap(),
            conversations: vec![],
            encrypted: vec![],
        }
    );
    assert_eq!(store.session_snapshot(UserId::new()).await.unwrap(), None);

    // A conversation left is gone from the snapshot.
    assert!(store.remove_participant(team, a.id).await.unwrap());
    let left: Vec<ConversationId> = snapshot_of(a.id)
        .await
        .conversations
        .iter()
        .map(|s| s.conversation_id)
        .collect();
    let mut want = vec![ab, solo];
    want.sort();
    assert_eq!(left, want);
}
