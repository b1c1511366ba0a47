//! Contract of the message lifecycle: `edit_message`, `delete_message`, `set_reaction`,
//! `reactions_of`, `changes_after`, and how history, the conversation list and the session
//! snapshot show what they did.

use crate::fixtures::{direct, group, later, send, user};
use crate::Store;
use domain::conversation::ConversationState;
use domain::message::{
    DeleteOutcome, Emoji, Message, MessageContent, ReactionCount, ReactionOutcome,
};
use domain::user::User;
use domain::{ConversationId, MessageId};
use std::collections::{BTreeSet, HashMap};

const THUMBS: &str = "\u{1F44D}";
const HEART: &str = "\u{2764}\u{FE0F}";
const TEARS: &str = "\u{1F602}";

fn emoji(raw: &str) -> Emoji {
    Emoji::parse(raw).unwrap()
}

fn content(raw: &str) -> MessageContent {
    MessageContent::parse(raw, 4_000).unwrap()
}

/// The conversation's change counter as the store reads it back.
async fn last_change(store: &Store, id: ConversationId) -> i64 {
    store
        .conversation(id)
        .await
        .unwrap()
        .unwrap()
        .conversation
        .last_change
}

/// The message as stored now.
async fn stored(store: &Store, id: ConversationId, message: MessageId) -> Message {
    store.message(id, message).await.unwrap().unwrap()
}

async fn edit(store: &Store, m: &Message, text: &str, secs: i64) -> Option<Message> {
    store
        .edit_message(m.conversation_id, m.id, &content(text), later(secs))
        .await
        .unwrap()
}

async fn react(
    store: &Store,
    m: &Message,
    by: &User,
    raw: &str,
    on: bool,
    secs: i64,
) -> Option<ReactionOutcome> {
    store
        .set_reaction(m.conversation_id, m.id, by.id, &emoji(raw), on, later(secs))
        .await
        .unwrap()
}

/// A reaction that must change something; the message after.
async fn react_changing(store: &Store, m: &Message, by: &User, raw: &str, secs: i64) -> Message {
    let outcome = react(store, m, by, raw, true, secs).await.unwrap();
    assert!(
        outcome.changed,
        "{raw} by {} was new",
        by.display_name.as_str()
    );
    outcome.message
}

async fn delete(store: &Store, m: &Message, by: &User, secs: i64) -> Option<DeleteOutcome> {
    store
        .delete_message(m.conversation_id, m.id, by.id, later(secs))
        .await
        .unwrap()
}

fn count(emoji: &str, users: &[&User], me: bool) -> ReactionCount {
    ReactionCount {
        emoji: emoji.to_owned(),
        count: u32::try_from(users.len()).unwrap(),
        user_ids: users.iter().map(|u| u.id).collect(),
        me,
    }
}

/// `reactions_of` for one message, as `viewer` sees them with `bound`.
async fn reactions(
    store: &Store,
    m: &Message,
    viewer: &User,
    bound: u32,
) -> Option<Vec<ReactionCount>> {
    let mut all = store
        .reactions_of(m.conversation_id, &[m.id], viewer.id, bound)
        .await
        .unwrap();
    assert!(all.len() <= 1, "one message asked: {all:?}");
    let (id, counts) = all.pop()?;
    assert_eq!(id, m.id);
    Some(counts)
}

/// An edit sets the content and `edited_at`, keeps everything else, and takes the
/// conversation's next change number, stored on both the message and the conversation.
/// Editing to the same content is still an edit (whether to allow it is the domain's call).
pub async fn an_edit_sets_content_and_edited_at_and_takes_the_next_change_number(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let first = send(&store, id, a.id, "first").await;
    let second = send(&store, id, b.id, "second").await;
    assert_eq!(last_change(&store, id).await, 0);

    let at = later(1);
    let edited = store
        .edit_message(id, first.id, &content("first, edited"), at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        edited,
        Message {
            content: "first, edited".into(),
            edited_at: Some(at),
            change_seq: 1,
            attachments: Vec::new(),
            ..first.clone()
        }
    );
    assert_eq!(stored(&store, id, first.id).await, edited);
    assert_eq!(last_change(&store, id).await, 1);

    let at = later(2);
    let edited_second = store
        .edit_message(id, second.id, &content("second, edited"), at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited_second.edited_at, Some(at));
    assert_eq!(edited_second.change_seq, 2);
    let again = edit(&store, &first, "first, edited", 3).await.unwrap();
    assert_eq!(again.change_seq, 3, "the same content is still written");
    assert_eq!(
        (again.content.as_str(), again.seq, again.deleted_at),
        ("first, edited", 1, None)
    );
    assert_eq!(last_change(&store, id).await, 3);
    // Appends neither use nor move the change counter.
    let third = send(&store, id, a.id, "third").await;
    assert_eq!((third.seq, third.change_seq), (3, 0));
    assert_eq!(last_change(&store, id).await, 3);
}

/// Editing a deleted message, a message under another conversation, an unknown message or
/// in an unknown conversation is `None` and changes nothing anywhere.
pub async fn editing_a_deleted_foreign_or_unknown_message_is_none_and_changes_nothing(
    store: Store,
) {
    let (a, b, c) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
    );
    let ab = direct(&store, &a, &b).await.conversation.id;
    let ac = direct(&store, &a, &c).await.conversation.id;
    let gone = send(&store, ab, a.id, "soon gone").await;
    let kept = send(&store, ab, a.id, "kept").await;
    let elsewhere = send(&store, ac, a.id, "elsewhere").await;
    let DeleteOutcome::Deleted(tombstone) = delete(&store, &gone, &a, 1).await.unwrap() else {
        panic!("a live message is deleted");
    };
    assert_eq!(last_change(&store, ab).await, 1);

    assert_eq!(edit(&store, &gone, "back from the dead", 2).await, None);
    assert_eq!(stored(&store, ab, gone.id).await, tombstone);
    // `kept` asked for under the other conversation, and the other way round.
    let text = content("moved");
    assert_eq!(
        store
            .edit_message(ac, kept.id, &text, later(3))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .edit_message(ab, elsewhere.id, &text, later(3))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .edit_message(ab, MessageId::new(), &text, later(3))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .edit_message(ConversationId::new(), kept.id, &text, later(3))
            .await
            .unwrap(),
        None
    );
    assert_eq!(stored(&store, ab, kept.id).await, kept);
    assert_eq!(stored(&store, ac, elsewhere.id).await, elsewhere);
    assert_eq!(last_change(&store, ab).await, 1);
    assert_eq!(last_change(&store, ac).await, 0);
    // The next change takes the next number: none was used up by the refusals.
    assert_eq!(
        edit(&store, &kept, "edited", 4).await.unwrap().change_seq,
        2
    );
}

/// A deletion erases the content and every reaction, and keeps the row as a tombstone
/// that says when and by whom, with the next change number.
pub async fn a_deletion_erases_content_and_reactions_and_leaves_a_tombstone(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = group(&store, &a, &[&b], "Team").await.conversation.id;
    let m = send(&store, id, a.id, "regrettable").await;
    let other = send(&store, id, b.id, "unrelated").await;
    react_changing(&store, &m, &a, THUMBS, 1).await;
    react_changing(&store, &m, &b, HEART, 2).await;
    react_changing(&store, &other, &a, THUMBS, 3).await;
    let edited = edit(&store, &m, "regrettable, edited", 4).await.unwrap();
    assert_eq!(edited.change_seq, 4);

    let at = later(5);
    let outcome = store.delete_message(id, m.id, b.id, at).await.unwrap();
    let want = Message {
        content: String::new(),
        deleted_at: Some(at),
        deleted_by: Some(b.id),
        change_seq: 5,
        attachments: Vec::new(),
        ..edited.clone()
    };
    assert_eq!(outcome, Some(DeleteOutcome::Deleted(want.clone())));
    assert_eq!(stored(&store, id, m.id).await, want);
    assert_eq!(last_change(&store, id).await, 5);
    // Its reactions are gone; the other message's stay.
    assert_eq!(reactions(&store, &m, &a, 10).await, None);
    assert_eq!(
        reactions(&store, &other, &a, 10).await,
        Some(vec![count(THUMBS, &[&a], true)])
    );
    // And a tombstone takes no new reactions.
    assert_eq!(react(&store, &m, &a, TEARS, true, 6).await, None);
    assert_eq!(react(&store, &m, &a, THUMBS, false, 6).await, None);
    assert_eq!(reactions(&store, &m, &a, 10).await, None);
    assert_eq!(last_change(&store, id).await, 5);
}

/// Deleting a deleted message answers the tombstone as it is, and nothing changes (no
/// new number, the first deleter and time stay). An unknown message, or one under another
/// conversation, is `None`.
pub async fn deleting_twice_is_already_deleted_and_unknown_is_none(store: Store) {
    let (a, b, c) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
    );
    let ab = direct(&store, &a, &b).await.conversation.id;
    let ac = direct(&store, &a, &c).await.conversation.id;
    let m = send(&store, ab, a.id, "once").await;
    let elsewhere = send(&store, ac, c.id, "elsewhere").await;
    let Some(DeleteOutcome::Deleted(tombstone)) = delete(&store, &m, &a, 1).await else {
        panic!("a live message is deleted");
    };
    assert_eq!(
        (tombstone.deleted_by, tombstone.change_seq),
        (Some(a.id), 1)
    );

    assert_eq!(
        delete(&store, &m, &b, 2).await,
        Some(DeleteOutcome::AlreadyDeleted(tombstone.clone()))
    );
    assert_eq!(stored(&store, ab, m.id).await, tombstone);
    assert_eq!(last_change(&store, ab).await, 1);

    for (conversation, message) in [
        (ab, MessageId::new()),
        (ab, elsewhere.id),
        (ac, m.id),
        (ConversationId::new(), m.id),
    ] {
        assert_eq!(
            store
                .delete_message(conversation, message, a.id, later(3))
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(stored(&store, ac, elsewhere.id).await, elsewhere);
    assert_eq!(stored(&store, ab, m.id).await, tombstone);
    assert_eq!(last_change(&store, ab).await, 1);
    assert_eq!(last_change(&store, ac).await, 0);
}

/// A reaction is one per (user, emoji, message): adding it again or removing one that is
/// not there changes nothing (`changed: false`, no number, the message as it is); every
/// real change takes the next number.
pub async fn reactions_go_on_and_off_and_only_a_change_takes_a_number(store: Store) {
    let (a, b, c) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
    );
    let id = group(&store, &a, &[&b], "Team").await.conversation.id;
    let elsewhere = direct(&store, &a, &c).await.conversation.id;
    let m = send(&store, id, a.id, "react to me").await;

    let on = react(&store, &m, &b, THUMBS, true, 1).await.unwrap();
    assert_eq!(
        on,
        ReactionOutcome {
            message: Message {
                change_seq: 1,
                attachments: Vec::new(),
                ..m.clone()
            },
            changed: true,
        }
    );
    let twice = react(&store, &m, &b, THUMBS, true, 2).await.unwrap();
    assert_eq!(
        twice,
        ReactionOutcome {
            message: on.message.clone(),
            changed: false,
        }
    );
    assert_eq!(last_change(&store, id).await, 1);
    assert_eq!(react_changing(&store, &m, &b, HEART, 3).await.change_seq, 2);
    assert_eq!(
        react_changing(&store, &m, &a, THUMBS, 4).await.change_seq,
        3
    );
    assert_eq!(
        reactions(&store, &m, &a, 10).await,
        Some(vec![
            count(THUMBS, &[&b, &a], true),
            count(HEART, &[&b], false)
        ])
    );

    let off = react(&store, &m, &b, THUMBS, false, 5).await.unwrap();
    assert!(off.changed);
    assert_eq!(off.message.change_seq, 4);
    let off_again = react(&store, &m, &b, THUMBS, false, 6).await.unwrap();
    assert_eq!(
        off_again,
        ReactionOutcome {
            message: off.message.clone(),
            changed: false,
        }
    );
    // Never there at all: nothing either.
    assert!(
        !react(&store, &m, &c, TEARS, false, 6)
            .await
            .unwrap()
            .changed
    );
    assert_eq!(last_change(&store, id).await, 4);
    assert_eq!(stored(&store, id, m.id).await, off.message);
    // "First used" counts the reactions there now: THUMBS's first is a's (3), after HEART (2).
    assert_eq!(
        reactions(&store, &m, &b, 10).await,
        Some(vec![count(HEART, &[&b], true), count(THUMBS, &[&a], false)])
    );

    // An unknown message, one asked for under another conversation, an unknown conversation.
    let e = emoji(TEARS);
    for (conversation, message) in [
        (id, MessageId::new()),
        (elsewhere, m.id),
        (ConversationId::new(), m.id),
    ] {
        for on in [true, false] {
            assert_eq!(
                store
                    .set_reaction(conversation, message, a.id, &e, on, later(7))
                    .await
                    .unwrap(),
                None
            );
        }
    }
    assert_eq!(last_change(&store, id).await, 4);
    assert_eq!(last_change(&store, elsewhere).await, 0);
    // The content and the rest never move with reactions.
    let now = stored(&store, id, m.id).await;
    assert_eq!(
        now,
        Message {
            change_seq: 4,
            attachments: Vec::new(),
            ..m.clone()
        }
    );
}

/// `reactions_of`: per message that has any, its emoji in the order of first use, each
/// with its count, the first `user_bound` users (earliest first) and whether the viewer
/// reacted, even beyond the bound. Only the messages asked for, only in that conversation.
pub async fn reactions_of_orders_counts_and_bounds_but_me_sees_every_reactor(store: Store) {
    let owner = user(&store, "Owner").await;
    let mut people = Vec::new();
    for i in 0..5 {
        people.push(user(&store, &format!("P{i}")).await);
    }
    let members: Vec<&User> = people.iter().collect();
    let id = group(&store, &owner, &members, "Many")
        .await
        .conversation
        .id;
    let first = send(&store, id, owner.id, "first").await;
    let second = send(&store, id, owner.id, "second").await;
    let quiet = send(&store, id, owner.id, "no reactions").await;
    let unasked = send(&store, id, owner.id, "not asked for").await;
    let [p0, p1, p2, p3, p4] = [&people[0], &people[1], &people[2], &people[3], &people[4]];

    // first: HEART first used, then THUMBS by four people, then TEARS.
    react_changing(&store, &first, p0, HEART, 1).await;
    for (i, p) in [p1, p2, p3, p4].into_iter().enumerate() {
        react_changing(&store, &first, p, THUMBS, 2 + i64::try_from(i).unwrap()).await;
    }
    react_changing(&store, &first, p4, HEART, 6).await;
    react_changing(&store, &first, p0, TEARS, 7).await;
    // second: TEARS then THUMBS.
    react_changing(&store, &second, p3, TEARS, 8).await;
    react_changing(&store, &second, p2, THUMBS, 9).await;
    react_changing(&store, &unasked, p0, THUMBS, 10).await;

    let asked = [first.id, second.id, quiet.id];
    let sorted = |mut all: Vec<(MessageId, Vec<ReactionCount>)>| {
        all.sort_by_key(|(m, _)| *m);
        all
    };
    // p4 is the last of four THUMBS: beyond a bound of two, still `me`.
    let seen = store.reactions_of(id, &asked, p4.id, 2).await.unwrap();
    let mut want = vec![
        (
            first.id,
            vec![
                count(HEART, &[p0, p4], true),
                ReactionCount {
                    emoji: THUMBS.into(),
                    count: 4,
                    user_ids: vec![p1.id, p2.id],
                    me: true,
                },
                count(TEARS, &[p0], false),
            ],
        ),
        (
            second.id,
            vec![count(TEARS, &[p3], false), count(THUMBS, &[p2], false)],
        ),
    ];
    want.sort_by_key(|(m, _)| *m);
    assert_eq!(sorted(seen), want, "viewer p4, bound 2");

    // The owner reacted to nothing; a larger bound lists every user.
    let seen = store.reactions_of(id, &asked, owner.id, 10).await.unwrap();
    let mut want = vec![
        (
            first.id,
            vec![
                count(HEART, &[p0, p4], false),
                count(THUMBS, &[p1, p2, p3, p4], false),
                count(TEARS, &[p0], false),
            ],
        ),
        (
            second.id,
            vec![count(TEARS, &[p3], false), count(THUMBS, &[p2], false)],
        ),
    ];
    want.sort_by_key(|(m, _)| *m);
    assert_eq!(sorted(seen), want, "viewer owner, bound 10");

    // A bound of 0: counts and `me` only.
    let seen = store
        .reactions_of(id, &[second.id], p2.id, 0)
        .await
        .unwrap();
    assert_eq!(
        seen,
        vec![(
            second.id,
            vec![
                ReactionCount {
                    emoji: TEARS.into(),
                    count: 1,
                    user_ids: vec![],
                    me: false,
                },
                ReactionCount {
                    emoji: THUMBS.into(),
                    count: 1,
                    user_ids: vec![],
                    me: true,
                },
            ],
        )]
    );

    // Removing a reaction and adding it again makes it the latest.
    assert!(
        react(&store, &first, p1, THUMBS, false, 11)
            .await
            .unwrap()
            .changed
    );
    react_changing(&store, &first, p1, THUMBS, 12).await;
    let thumbs = reactions(&store, &first, p1, 10).await.unwrap();
    assert_eq!(thumbs[1], count(THUMBS, &[p2, p3, p4, p1], true));

    // Nothing for messages without reactions, unknown ones, none asked, or another
    // conversation's view of these messages.
    assert!(store
        .reactions_of(id, &[quiet.id, MessageId::new()], p0.id, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .reactions_of(id, &[], p0.id, 10)
        .await
        .unwrap()
        .is_empty());
    let other = direct(&store, &owner, p0).await.conversation.id;
    assert!(store
        .reactions_of(other, &asked, p0.id, 10)
        .await
        .unwrap()
        .is_empty());
}

/// `changes_after`: the messages whose latest change is after the cursor, in change order,
/// each once as it is now, at most `limit`; never a message that did not change, never
/// another conversation's.
pub async fn changes_after_gives_each_changed_message_once_in_change_order(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let other = group(&store, &a, &[&b], "Other").await.conversation.id;
    let m: Vec<Message> = {
        let mut sent = Vec::new();
        for i in 0..4 {
            sent.push(send(&store, id, a.id, &format!("m{i}")).await);
        }
        sent
    };
    let unrelated = send(&store, other, b.id, "elsewhere").await;
    assert!(store.changes_after(id, 0, 10).await.unwrap().is_empty());

    edit(&store, &m[0], "m0 edited", 1).await.unwrap(); // 1
    react_changing(&store, &m[1], &b, THUMBS, 2).await; // 2
    edit(&store, &m[2], "m2 edited", 3).await.unwrap(); // 3
    delete(&store, &m[0], &a, 4).await.unwrap(); // 4: m0 edited, then deleted
    edit(&store, &unrelated, "other edited", 5).await.unwrap(); // other's 1

    let now = |i: usize| {
        let store = store.clone();
        let message = m[i].id;
        async move { stored(&store, id, message).await }
    };
    let all = store.changes_after(id, 0, 10).await.unwrap();
    assert_eq!(all, vec![now(1).await, now(2).await, now(0).await]);
    assert_eq!(
        all.iter().map(|m| m.change_seq).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(all[2].content, "", "the latest state: a tombstone");
    assert_eq!(all[2].deleted_by, Some(a.id));
    assert_eq!(
        store.changes_after(id, 0, 2).await.unwrap(),
        vec![now(1).await, now(2).await]
    );
    assert_eq!(
        store.changes_after(id, 2, 10).await.unwrap(),
        vec![now(2).await, now(0).await]
    );
    assert_eq!(
        store.changes_after(id, 3, 10).await.unwrap(),
        vec![now(0).await]
    );
    assert!(store.changes_after(id, 4, 10).await.unwrap().is_empty());
    // A message changed again moves to its latest change.
    react_changing(&store, &m[1], &a, HEART, 6).await; // 5
    let ids: Vec<(MessageId, i64)> = store
        .changes_after(id, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| (m.id, m.change_seq))
        .collect();
    assert_eq!(ids, vec![(m[2].id, 3), (m[0].id, 4), (m[1].id, 5)]);
    // The other conversation counts its own changes.
    let theirs = store.changes_after(other, 0, 10).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!((theirs[0].id, theirs[0].change_seq), (unrelated.id, 1));
    assert!(store
        .changes_after(ConversationId::new(), 0, 10)
        .await
        .unwrap()
        .is_empty());
}

/// Edits, deletions and reactions of one conversation started all at once each get their
/// own number: 1 to n, no gap, none twice, and `last_change` ends at n.
pub async fn concurrent_changes_of_one_conversation_get_distinct_consecutive_numbers(store: Store) {
    concurrent_changes(&[store]).await;
}

/// The same through two stores on one database (two nodes, two pools).
/// Not in the macro: only adapters with a shared database can run it; call it directly.
pub async fn concurrent_changes_through_two_stores_get_distinct_consecutive_numbers(
    a_store: Store,
    b_store: Store,
) {
    concurrent_changes(&[a_store, b_store]).await;
}

/// Messages 0..8 of a conversation are each edited and reacted to twice (by different
/// users) at once, messages 8..12 deleted, the tasks spread over `stores`: every one of
/// these changes something whatever order they run in, so 28 numbers are taken.
async fn concurrent_changes(stores: &[Store]) {
    let store = &stores[0];
    let (a, b) = (user(store, "A").await, user(store, "B").await);
    let id = group(store, &a, &[&b], "Busy").await.conversation.id;
    let mut sent = Vec::new();
    for i in 0..12 {
        sent.push(send(store, id, a.id, &format!("m{i}")).await);
    }
    let mut tasks = Vec::new();
    for (i, m) in sent.iter().enumerate() {
        let on = |k: usize| stores[(i + k) % stores.len()].clone();
        let (first, second, third) = (on(0), on(1), on(2));
        let (m, a, b) = (m.clone(), a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let mut numbers = Vec::new();
            if i < 8 {
                let (edited, by_a, by_b) = tokio::join!(
                    edit(&first, &m, "edited", 1),
                    react(&second, &m, &a, THUMBS, true, 1),
                    react(&third, &m, &b, THUMBS, true, 1),
                );
                numbers.push(edited.unwrap().change_seq);
                for outcome in [by_a.unwrap(), by_b.unwrap()] {
                    assert!(outcome.changed);
                    numbers.push(outcome.message.change_seq);
                }
            } else {
                let Some(DeleteOutcome::Deleted(tombstone)) = delete(&first, &m, &a, 1).await
                else {
                    panic!("{} was live", m.id);
                };
                numbers.push(tombstone.change_seq);
            }
            (m.id, numbers)
        }));
    }
    let mut latest = HashMap::new();
    let mut numbers = Vec::new();
    for task in tasks {
        let (message, taken) = task.await.unwrap();
        latest.insert(message, taken.iter().copied().max().unwrap());
        numbers.extend(taken);
    }
    numbers.sort_unstable();
    let n = i64::try_from(numbers.len()).unwrap();
    assert_eq!(n, 8 * 3 + 4);
    assert_eq!(numbers, (1..=n).collect::<Vec<_>>());
    for store in stores {
        assert_eq!(last_change(store, id).await, n);
    }

    // Each message is listed once, at its latest change, in change order.
    let changes = store.changes_after(id, 0, 100).await.unwrap();
    assert_eq!(changes.len(), sent.len());
    let listed: BTreeSet<MessageId> = changes.iter().map(|m| m.id).collect();
    assert_eq!(listed.len(), sent.len());
    assert!(changes
        .windows(2)
        .all(|w| w[0].change_seq < w[1].change_seq));
    for m in &changes[..] {
        assert_eq!(Some(&m.change_seq), latest.get(&m.id), "{m:?}");
        let reacted = store.reactions_of(id, &[m.id], a.id, 10).await.unwrap();
        if m.seq <= 8 {
            assert_eq!(m.content, "edited");
            // Both reactions, in whichever order they ran.
            let [(_, counts)] = &reacted[..] else {
                panic!("one reacted message: {reacted:?}");
            };
            let [thumbs] = &counts[..] else {
                panic!("one emoji: {counts:?}");
            };
            let mut users = thumbs.user_ids.clone();
            users.sort();
            let mut both = vec![a.id, b.id];
            both.sort();
            assert_eq!(
                (thumbs.emoji.as_str(), thumbs.count, users, thumbs.me),
                (THUMBS, 2, both, true)
            );
        } else {
            assert_eq!((m.content.as_str(), m.deleted_by), ("", Some(a.id)));
            assert!(reacted.is_empty());
        }
    }
}

/// What changed shows wherever messages and conversations are read: history both ways,
/// one message, the conversation, the conversation list (its last message a tombstone)
/// and the session snapshot.
pub async fn history_lists_and_snapshots_show_edits_deletions_and_change_numbers(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let m1 = send(&store, id, a.id, "one").await;
    let m2 = send(&store, id, b.id, "two").await;
    let m3 = send(&store, id, a.id, "three").await;
    let edited = edit(&store, &m1, "one, edited", 1).await.unwrap();
    let reacted = react_changing(&store, &m2, &a, HEART, 2).await;
    let Some(DeleteOutcome::Deleted(tombstone)) = delete(&store, &m3, &b, 3).await else {
        panic!("a live message is deleted");
    };
    assert_eq!(
        (edited.change_seq, reacted.change_seq, tombstone.change_seq),
        (1, 2, 3)
    );
    let history = vec![edited.clone(), reacted.clone(), tombstone.clone()];

    assert_eq!(store.messages_after(id, 0, 10).await.unwrap(), history);
    let mut newest_first = history.clone();
    newest_first.reverse();
    assert_eq!(
        store.messages_before(id, None, 10).await.unwrap(),
        newest_first
    );
    assert_eq!(
        store.messages_before(id, Some(3), 1).await.unwrap(),
        vec![reacted.clone()]
    );
    assert_eq!(stored(&store, id, m1.id).await, edited);
    assert_eq!(stored(&store, id, m3.id).await, tombstone);

    let details = store.conversation(id).await.unwrap().unwrap();
    assert_eq!(details.conversation.last_change, 3);
    assert_eq!(details.conversation.last_seq, 3);

    let list = store.list_conversations(a.id, None, 0, 10).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].details, details);
    assert_eq!(list[0].last_message.as_ref(), Some(&tombstone));

    let snapshot = store.session_snapshot(b.id).await.unwrap().unwrap();
    assert_eq!(
        snapshot.conversations,
        vec![ConversationState {
            conversation_id: id,
            last_seq: 3,
            delivered_seq: 2,
            read_seq: 2,
            peer_delivered_seq: 3,
            peer_read_seq: 3,
            last_change: 3,
        }]
    );
    assert_eq!(Some(snapshot.conversations[0]), details.state_of(b.id));
}

/// `messages_by_ids` answers the messages of the conversation among the ids, each once and
/// as it is now (a tombstone too); ids of nothing, or of another conversation's message,
/// are left out; no ids, no messages.
pub async fn messages_by_ids_answers_those_of_the_conversation_as_they_are_now(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let elsewhere = group(&store, &a, &[&b], "Elsewhere").await.conversation.id;
    let first = send(&store, id, a.id, "first").await;
    let second = send(&store, id, b.id, "second").await;
    let third = send(&store, id, a.id, "third").await;
    let foreign = send(&store, elsewhere, a.id, "foreign").await;
    let edited = edit(&store, &first, "first, edited", 1).await.unwrap();
    let Some(DeleteOutcome::Deleted(tombstone)) = delete(&store, &second, &b, 2).await else {
        panic!("second was live");
    };

    let mut found = store
        .messages_by_ids(
            id,
            &[second.id, first.id, MessageId::new(), foreign.id, first.id],
        )
        .await
        .unwrap();
    found.sort_by_key(|m| m.seq);
    assert_eq!(found, vec![edited, tombstone]);
    assert_eq!(
        store.messages_by_ids(id, &[third.id]).await.unwrap(),
        vec![third]
    );
    assert!(store.messages_by_ids(id, &[]).await.unwrap().is_empty());
    assert!(store
        .messages_by_ids(elsewhere, &[first.id])
        .await
        .unwrap()
        .is_empty());
}
