//! Contract of `AttachmentStore`, and of attachments sent with messages (bound by
//! `append_messages`, read back with every message that carries them).

use crate::fixtures::{direct, group, later, message, now, user};
use crate::Store;
use chrono::{DateTime, Utc};
use domain::attachment::{Attachment, AttachmentConfirmation, NewAttachment};
use domain::message::{
    AppendOutcome, AppendRejection, DeleteOutcome, Emoji, Message, MessageContent, NewMessage,
};
use domain::{AttachmentId, ConversationId, UserId};

/// An upload of `uploader` to `conversation` announced at `created_at`.
pub fn new_attachment(
    conversation: ConversationId,
    uploader: UserId,
    filename: &str,
    created_at: DateTime<Utc>,
) -> NewAttachment {
    NewAttachment {
        id: AttachmentId::new(),
        conversation_id: conversation,
        uploader_id: uploader,
        filename: filename.to_owned(),
        mime_type: "image/png".to_owned(),
        size: 4_321,
        encrypted: false,
        created_at,
    }
}

/// What confirming an image records.
pub fn image_confirmation() -> AttachmentConfirmation {
    AttachmentConfirmation {
        mime_type: "image/jpeg".to_owned(),
        size: 1_234,
        width: Some(640),
        height: Some(480),
        has_thumbnail: true,
        confirmed_at: now(),
    }
}

/// An upload announced at `created_at`, not confirmed.
pub async fn announced_at(
    store: &Store,
    conversation: ConversationId,
    uploader: UserId,
    filename: &str,
    created_at: DateTime<Utc>,
) -> Attachment {
    store
        .insert_attachment(&new_attachment(
            conversation,
            uploader,
            filename,
            created_at,
        ))
        .await
        .expect("insert attachment")
}

/// A confirmed upload, announced now: sendable.
pub async fn uploaded(
    store: &Store,
    conversation: ConversationId,
    uploader: UserId,
    filename: &str,
) -> Attachment {
    let announced = announced_at(store, conversation, uploader, filename, now()).await;
    store
        .confirm_attachment(announced.id, &image_confirmation())
        .await
        .expect("confirm")
        .expect("not confirmed before")
}

/// `new` sending `attachments`, in this order.
pub fn with(mut new: NewMessage, attachments: &[&Attachment]) -> NewMessage {
    new.attachments = attachments.iter().map(|a| (*a).clone()).collect();
    new
}

/// `attachments` as a message `m` carries them.
fn sent_with(m: &Message, attachments: &[&Attachment]) -> Vec<Attachment> {
    attachments
        .iter()
        .map(|a| Attachment {
            message_id: Some(m.id),
            ..(*a).clone()
        })
        .collect()
}

async fn append_one(store: &Store, new: NewMessage) -> Result<AppendOutcome, AppendRejection> {
    let mut results = store.append_messages(&[new]).await.unwrap();
    assert_eq!(results.len(), 1);
    results.pop().unwrap()
}

async fn created(store: &Store, new: NewMessage) -> Message {
    match append_one(store, new).await {
        Ok(AppendOutcome::Created(m)) => m,
        other => panic!("expected a new message, got {other:?}"),
    }
}

async fn last_seq(store: &Store, id: ConversationId) -> i64 {
    store
        .conversation(id)
        .await
        .unwrap()
        .unwrap()
        .conversation
        .last_seq
}

/// An announced upload reads back as stored; confirming sets the checked fields once.
pub async fn an_attachment_is_recorded_read_and_confirmed_once(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let new = new_attachment(id, a.id, "cat photo.png", now());
    let stored = store.insert_attachment(&new).await.unwrap();
    assert_eq!(stored, new.stored());
    assert_eq!(store.attachment(new.id).await.unwrap(), Some(new.stored()));
    assert_eq!(store.attachment(AttachmentId::new()).await.unwrap(), None);

    let confirmation = image_confirmation();
    let confirmed = store
        .confirm_attachment(new.id, &confirmation)
        .await
        .unwrap()
        .expect("the first confirmation applies");
    let want = Attachment {
        mime_type: "image/jpeg".to_owned(),
        size: 1_234,
        width: Some(640),
        height: Some(480),
        has_thumbnail: true,
        confirmed_at: Some(confirmation.confirmed_at),
        ..new.stored()
    };
    assert_eq!(confirmed, want);
    assert_eq!(store.attachment(new.id).await.unwrap(), Some(want.clone()));

    // A second confirmation changes nothing.
    let again = AttachmentConfirmation {
        mime_type: "application/pdf".to_owned(),
        size: 9,
        width: None,
        height: None,
        has_thumbnail: false,
        confirmed_at: later(60),
    };
    assert_eq!(
        store.confirm_attachment(new.id, &again).await.unwrap(),
        None
    );
    assert_eq!(store.attachment(new.id).await.unwrap(), Some(want));
    assert_eq!(
        store
            .confirm_attachment(AttachmentId::new(), &again)
            .await
            .unwrap(),
        None
    );

    // An encrypted one keeps its flag and declared type.
    let mut secret = new_attachment(id, b.id, "secret.bin", now());
    secret.encrypted = true;
    secret.mime_type = "application/octet-stream".to_owned();
    assert_eq!(
        store.insert_attachment(&secret).await.unwrap(),
        secret.stored()
    );
}

/// `attachments_by_ids` answers those that exist, whatever their state.
pub async fn attachments_by_ids_answers_those_that_exist(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let pending = announced_at(&store, id, a.id, "a.png", now()).await;
    let confirmed = uploaded(&store, id, b.id, "b.png").await;
    let mut found = store
        .attachments_by_ids(&[confirmed.id, AttachmentId::new(), pending.id])
        .await
        .unwrap();
    found.sort_by_key(|a| a.id);
    let mut want = vec![pending.clone(), confirmed.clone()];
    want.sort_by_key(|a| a.id);
    assert_eq!(found, want);
    assert!(store.attachments_by_ids(&[]).await.unwrap().is_empty());
    assert!(store
        .attachments_by_ids(&[AttachmentId::new()])
        .await
        .unwrap()
        .is_empty());
}

/// A send binds its attachments in the order given; the message carries them in every
/// read: history both ways, by id, by ids, its changes, the conversation list.
pub async fn a_send_binds_its_attachments_and_every_read_shows_them_in_order(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let first = uploaded(&store, id, a.id, "first.png").await;
    let second = uploaded(&store, id, a.id, "second.png").await;
    let plain = created(&store, message(id, b.id, None, "plain")).await;
    assert!(plain.attachments.is_empty());
    // The second listed first: the order is the sender's, not the ids'.
    let sent = created(
        &store,
        with(message(id, a.id, None, "look"), &[&second, &first]),
    )
    .await;
    let carried = sent_with(&sent, &[&second, &first]);
    assert_eq!(sent.seq, 2);
    assert_eq!(sent.attachments, carried);
    let after = created(&store, message(id, b.id, None, "nice")).await;

    for a in [&first, &second] {
        let now = store.attachment(a.id).await.unwrap().unwrap();
        assert_eq!(now.message_id, Some(sent.id), "bound");
    }
    assert_eq!(
        store.messages_before(id, None, 10).await.unwrap(),
        vec![after.clone(), sent.clone(), plain.clone()]
    );
    assert_eq!(
        store.messages_after(id, 0, 10).await.unwrap(),
        vec![plain.clone(), sent.clone(), after.clone()]
    );
    assert_eq!(
        store.messages_after(id, 1, 1).await.unwrap(),
        vec![sent.clone()]
    );
    assert_eq!(
        store.message(id, sent.id).await.unwrap(),
        Some(sent.clone())
    );
    let mut by_ids = store
        .messages_by_ids(id, &[sent.id, plain.id])
        .await
        .unwrap();
    by_ids.sort_by_key(|m| m.seq);
    assert_eq!(by_ids, vec![plain.clone(), sent.clone()]);

    // Changes keep them: an edit, a reaction, and what recovery reads.
    let text = MessageContent::parse("look at these", 4_000).unwrap();
    let edited = store
        .edit_message(id, sent.id, &text, later(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited.attachments, carried);
    let reacted = store
        .set_reaction(
            id,
            sent.id,
            b.id,
            &Emoji::parse("👍").unwrap(),
            true,
            later(2),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(reacted.changed);
    assert_eq!(reacted.message.attachments, carried);
    let changes = store.changes_after(id, 0, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].attachments, carried);
    assert_eq!(changes[0].change_seq, 2);

    // The conversation list's newest message carries its own (none here), and then some.
    let list = store.list_conversations(a.id, None, 0, 10).await.unwrap();
    assert_eq!(list[0].last_message.as_ref(), Some(&after));
    let third = uploaded(&store, id, b.id, "third.png").await;
    let newest = created(&store, with(message(id, b.id, None, "mine"), &[&third])).await;
    assert_eq!(newest.attachments, sent_with(&newest, &[&third]));
    let list = store.list_conversations(a.id, None, 0, 10).await.unwrap();
    assert_eq!(list[0].last_message.as_ref(), Some(&newest));
}

/// An attachment is sent once: a second send of it is refused and writes nothing, while
/// the other messages of its batch commit.
pub async fn a_second_send_of_an_attachment_is_refused_while_its_batch_commits(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let photo = uploaded(&store, id, a.id, "photo.png").await;
    let other = uploaded(&store, id, a.id, "other.png").await;
    let batch = vec![
        with(message(id, a.id, None, "one"), &[&photo]),
        with(message(id, a.id, Some("k2"), "two"), &[&other, &photo]),
        message(id, a.id, None, "three"),
    ];
    let results = store.append_messages(&batch).await.unwrap();
    assert_eq!(results.len(), 3);
    let one = match &results[0] {
        Ok(AppendOutcome::Created(m)) => m.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(one.seq, 1);
    assert_eq!(one.attachments, sent_with(&one, &[&photo]));
    assert_eq!(results[1], Err(AppendRejection::AttachmentUnavailable));
    assert!(matches!(&results[2], Ok(AppendOutcome::Created(m)) if m.seq == 2));
    assert_eq!(last_seq(&store, id).await, 2, "the refused one took no seq");
    assert_eq!(store.message(id, batch[1].id).await.unwrap(), None);
    // Nothing of the refused message was bound: its other attachment is still free...
    assert_eq!(
        store
            .attachment(other.id)
            .await
            .unwrap()
            .unwrap()
            .message_id,
        None
    );
    // ...and its key was not used: a retry without the taken attachment goes through.
    let retry = with(message(id, a.id, Some("k2"), "two"), &[&other]);
    let two = created(&store, retry).await;
    assert_eq!((two.seq, two.attachments.len()), (3, 1));

    // In a later batch too.
    assert_eq!(
        append_one(&store, with(message(id, a.id, None, "again"), &[&photo])).await,
        Err(AppendRejection::AttachmentUnavailable)
    );
    assert_eq!(last_seq(&store, id).await, 3);
    assert_eq!(
        store
            .attachment(photo.id)
            .await
            .unwrap()
            .unwrap()
            .message_id,
        Some(one.id)
    );
}

/// Only the sender's own confirmed uploads to the same conversation can be sent.
pub async fn anothers_another_conversations_or_an_unconfirmed_attachment_is_refused(store: Store) {
    let (a, b, c) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
    );
    let ab = direct(&store, &a, &b).await.conversation.id;
    let team = group(&store, &a, &[&b, &c], "team").await.conversation.id;
    let bobs = uploaded(&store, ab, b.id, "bobs.png").await;
    let elsewhere = uploaded(&store, team, a.id, "elsewhere.png").await;
    let pending = announced_at(&store, ab, a.id, "pending.png", now()).await;
    let mine = uploaded(&store, ab, a.id, "mine.png").await;
    let unknown = Attachment {
        id: AttachmentId::new(),
        ..mine.clone()
    };
    for refused in [&bobs, &elsewhere, &pending, &unknown] {
        assert_eq!(
            append_one(
                &store,
                with(message(ab, a.id, None, "x"), &[&mine, refused])
            )
            .await,
            Err(AppendRejection::AttachmentUnavailable),
            "{}",
            refused.filename
        );
    }
    // The same attachment twice in one message is refused too.
    assert_eq!(
        append_one(&store, with(message(ab, a.id, None, "x"), &[&mine, &mine])).await,
        Err(AppendRejection::AttachmentUnavailable)
    );
    assert_eq!(last_seq(&store, ab).await, 0, "no seq was taken");
    for a in [&bobs, &elsewhere, &pending, &mine] {
        assert_eq!(
            store.attachment(a.id).await.unwrap().unwrap().message_id,
            None
        );
    }
    // Each goes with its own sender and conversation.
    let sent = created(&store, with(message(ab, a.id, None, "x"), &[&mine])).await;
    assert_eq!(sent.seq, 1);
    created(&store, with(message(ab, b.id, None, "y"), &[&bobs])).await;
    created(&store, with(message(team, a.id, None, "z"), &[&elsewhere])).await;
    // A missing conversation is still said to be missing.
    let nowhere = ConversationId::new();
    assert_eq!(
        append_one(&store, with(message(nowhere, a.id, None, "x"), &[&pending])).await,
        Err(AppendRejection::ConversationNotFound)
    );
}

/// A retry of a send (same sender, same key) answers the original with its attachments
/// and binds nothing; the same key with other attachments is a reused key.
pub async fn a_replay_returns_the_original_with_its_attachments_and_binds_nothing(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let photo = uploaded(&store, id, a.id, "photo.png").await;
    let spare = uploaded(&store, id, a.id, "spare.png").await;
    let original = created(
        &store,
        with(message(id, a.id, Some("temp-1"), "here"), &[&photo]),
    )
    .await;
    let retry = append_one(
        &store,
        with(message(id, a.id, Some("temp-1"), "here"), &[&photo]),
    )
    .await;
    assert_eq!(retry, Ok(AppendOutcome::Replayed(original.clone())));
    assert_eq!(original.attachments, sent_with(&original, &[&photo]));
    // Repeated in one batch: the first is created, the second replays it.
    let third = uploaded(&store, id, a.id, "third.png").await;
    let twice = with(message(id, a.id, Some("temp-2"), "twice"), &[&third]);
    let results = store
        .append_messages(&[twice.clone(), twice])
        .await
        .unwrap();
    let Ok(AppendOutcome::Created(first)) = &results[0] else {
        panic!("{results:?}")
    };
    assert_eq!(results[1], Ok(AppendOutcome::Replayed(first.clone())));
    assert_eq!(first.attachments, sent_with(first, &[&third]));

    let reused = append_one(
        &store,
        with(message(id, a.id, Some("temp-1"), "here"), &[&spare]),
    )
    .await;
    assert_eq!(reused, Err(AppendRejection::KeyReused));
    assert_eq!(last_seq(&store, id).await, 2);
    assert_eq!(
        store
            .attachment(spare.id)
            .await
            .unwrap()
            .unwrap()
            .message_id,
        None
    );
    assert_eq!(
        store.message(id, original.id).await.unwrap(),
        Some(original)
    );
}

/// Of concurrent sends of one attachment, exactly one takes it.
pub async fn concurrent_sends_of_one_attachment_bind_it_once(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let photo = uploaded(&store, id, a.id, "photo.png").await;
    let sends: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let new = with(message(id, a.id, None, &format!("send {i}")), &[&photo]);
            tokio::spawn(async move { append_one(&store, new).await })
        })
        .collect();
    let mut winners = Vec::new();
    for send in sends {
        match send.await.unwrap() {
            Ok(AppendOutcome::Created(m)) => winners.push(m),
            Err(AppendRejection::AttachmentUnavailable) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(winners[0].seq, 1);
    assert_eq!(last_seq(&store, id).await, 1);
    assert_eq!(
        store
            .attachment(photo.id)
            .await
            .unwrap()
            .unwrap()
            .message_id,
        Some(winners[0].id)
    );
}

/// A tombstone shows no attachments; they are the sweeper's, and once their records are
/// deleted they are gone from it.
pub async fn a_deleted_messages_attachments_leave_it_and_expire(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let first = uploaded(&store, id, a.id, "first.png").await;
    let second = uploaded(&store, id, a.id, "second.png").await;
    let kept = uploaded(&store, id, a.id, "kept.png").await;
    let sent = created(
        &store,
        with(message(id, a.id, None, "doomed"), &[&first, &second]),
    )
    .await;
    let stays = created(&store, with(message(id, a.id, None, "stays"), &[&kept])).await;
    let long_ago = now() - chrono::Duration::days(1);
    assert!(store
        .expired_attachments(long_ago, 10)
        .await
        .unwrap()
        .is_empty());

    let Some(DeleteOutcome::Deleted(tombstone)) = store
        .delete_message(id, sent.id, a.id, later(1))
        .await
        .unwrap()
    else {
        panic!("deleted")
    };
    assert!(tombstone.attachments.is_empty());
    assert_eq!(
        store.message(id, sent.id).await.unwrap(),
        Some(tombstone.clone())
    );
    assert_eq!(
        store.messages_after(id, 0, 10).await.unwrap(),
        vec![tombstone.clone(), stays.clone()]
    );
    assert_eq!(
        store.changes_after(id, 0, 10).await.unwrap(),
        vec![tombstone.clone()]
    );
    let Some(DeleteOutcome::AlreadyDeleted(again)) = store
        .delete_message(id, sent.id, a.id, later(2))
        .await
        .unwrap()
    else {
        panic!("deleted before")
    };
    assert!(again.attachments.is_empty());

    let mut expired = store.expired_attachments(long_ago, 10).await.unwrap();
    expired.sort_by_key(|a| a.id);
    let mut want = sent.attachments.clone();
    want.sort_by_key(|a| a.id);
    assert_eq!(expired, want, "the deleted message's, not the live one's");
    assert_eq!(
        store.expired_attachments(long_ago, 1).await.unwrap().len(),
        1
    );

    assert_eq!(
        store
            .delete_attachments(&[first.id, second.id])
            .await
            .unwrap(),
        2
    );
    assert!(store
        .expired_attachments(long_ago, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.attachment(first.id).await.unwrap(), None);
    assert_eq!(store.message(id, sent.id).await.unwrap(), Some(tombstone));
    assert_eq!(store.message(id, stays.id).await.unwrap(), Some(stays));
}

/// Unsent uploads announced before the cutoff expire, oldest first, confirmed or not;
/// recent and sent ones do not. Deleting records answers how many there were.
pub async fn unsent_attachments_expire_oldest_first_and_recent_or_sent_ones_do_not(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let hours_ago = |h: i64| now() - chrono::Duration::hours(h);
    let older = announced_at(&store, id, a.id, "older.png", hours_ago(3)).await;
    let oldest = announced_at(&store, id, b.id, "oldest.png", hours_ago(4)).await;
    let old_confirmed = store
        .confirm_attachment(
            older.id,
            &AttachmentConfirmation {
                confirmed_at: hours_ago(3),
                ..image_confirmation()
            },
        )
        .await
        .unwrap()
        .unwrap();
    let recent = announced_at(&store, id, a.id, "recent.png", now()).await;
    let sent_old = announced_at(&store, id, a.id, "sent.png", hours_ago(5)).await;
    let sent_old = store
        .confirm_attachment(sent_old.id, &image_confirmation())
        .await
        .unwrap()
        .unwrap();
    created(&store, with(message(id, a.id, None, "old"), &[&sent_old])).await;

    let cutoff = hours_ago(1);
    assert_eq!(
        store.expired_attachments(cutoff, 10).await.unwrap(),
        vec![oldest.clone(), old_confirmed.clone()]
    );
    assert_eq!(
        store.expired_attachments(cutoff, 1).await.unwrap(),
        vec![oldest.clone()]
    );
    assert_eq!(
        store
            .expired_attachments(hours_ago(2) - chrono::Duration::minutes(90), 10)
            .await
            .unwrap(),
        vec![oldest.clone()]
    );

    assert_eq!(
        store
            .delete_attachments(&[oldest.id, old_confirmed.id, AttachmentId::new()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.delete_attachments(&[]).await.unwrap(), 0);
    assert!(store
        .expired_attachments(cutoff, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.attachment(recent.id).await.unwrap(), Some(recent));
    assert!(store.attachment(sent_old.id).await.unwrap().is_some());
}
