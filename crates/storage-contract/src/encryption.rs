//! Contract of end-to-end encryption's storage (issue 13): devices, a conversation's
//! encryption state, wrapped keys (versions, shares, refusals for non-members' devices),
//! the rotation flag a removal sets, and key backups. Everything stored is opaque text the
//! store keeps verbatim.

use crate::fixtures::{direct, group, later, now, user};
use crate::Store;
use domain::encryption::Device;
use domain::encryption::{
    DeviceName, DevicePublicKey, EncryptionState, InsertDeviceOutcome, KeyBackup, KeyIntent,
    KeyUpload, NewDevice, PutKeysOutcome, WrappedKey, BACKUP_KDF,
};
use domain::user::User;
use domain::{ConversationId, DeviceId};

/// A valid public key: `0x04` then 64 bytes of `fill` (the store never checks the curve).
fn public_key(fill: u8) -> DevicePublicKey {
    // base64url of [0x04, fill x 64]: built by the domain's own checker's inverse.
    let mut bytes = vec![0x04];
    bytes.extend(std::iter::repeat_n(fill, 64));
    DevicePublicKey::parse(&encode(&bytes)).unwrap()
}

/// base64url without padding.
pub fn encode(bytes: &[u8]) -> String {
    domain::encryption::encode_base64url(bytes)
}

async fn device(store: &Store, owner: &User, name: &str, secs: i64) -> Device {
    let new = NewDevice {
        id: DeviceId::new(),
        user_id: owner.id,
        public_key: public_key(name.len() as u8),
        name: DeviceName::parse(name).unwrap(),
        created_at: later(secs),
    };
    match store.insert_device(&new, 10).await.unwrap() {
        InsertDeviceOutcome::Inserted(d) => d,
        InsertDeviceOutcome::TooMany => panic!("too many devices"),
    }
}

fn wrap(device: &Device, blob: &str) -> WrappedKey {
    WrappedKey::parse(device.id, &encode(blob.as_bytes())).unwrap()
}

/// A new version `version` (the first key, or a rotation).
fn upload(
    conversation: ConversationId,
    version: i64,
    from: &Device,
    wraps: Vec<WrappedKey>,
) -> KeyUpload {
    KeyUpload {
        conversation_id: conversation,
        version,
        intent: KeyIntent::New,
        from_device_id: from.id,
        from_user_id: from.user_id,
        wraps,
        created_at: now(),
    }
}

/// A share of the existing version `version`.
fn share(
    conversation: ConversationId,
    version: i64,
    from: &Device,
    wraps: Vec<WrappedKey>,
) -> KeyUpload {
    KeyUpload {
        intent: KeyIntent::Share,
        ..upload(conversation, version, from, wraps)
    }
}

async fn state(store: &Store, conversation: ConversationId) -> EncryptionState {
    store.encryption_state(conversation).await.unwrap().unwrap()
}

/// Registered devices read back exactly, live ones oldest first; an 11th live device is
/// refused and stores nothing; a revoked one no longer counts nor lists, keeps its row.
pub async fn devices_register_list_count_and_revoke(store: Store) {
    let alice = user(&store, "Alice").await;
    let bob = user(&store, "Bob").await;
    let first = device(&store, &alice, "laptop", 0).await;
    assert_eq!(store.device(first.id).await.unwrap(), Some(first.clone()));
    assert!(first.is_live());
    assert_eq!(first.user_id, alice.id);
    assert_eq!(first.name.as_str(), "laptop");
    let mut all = vec![first.clone()];
    for i in 1..10 {
        all.push(device(&store, &alice, &format!("device {i}"), i).await);
    }
    assert_eq!(store.live_devices(alice.id).await.unwrap(), all);
    let eleventh = NewDevice {
        id: DeviceId::new(),
        user_id: alice.id,
        public_key: public_key(1),
        name: DeviceName::parse("one too many").unwrap(),
        created_at: later(20),
    };
    assert_eq!(
        store.insert_device(&eleventh, 10).await.unwrap(),
        InsertDeviceOutcome::TooMany
    );
    assert_eq!(store.device(eleventh.id).await.unwrap(), None);
    assert!(store.live_devices(bob.id).await.unwrap().is_empty());

    // Only the owner revokes, once.
    let at = later(30);
    assert!(!store.revoke_device(bob.id, first.id, at).await.unwrap());
    assert!(store.revoke_device(alice.id, first.id, at).await.unwrap());
    assert!(!store
        .revoke_device(alice.id, first.id, later(31))
        .await
        .unwrap());
    let revoked = store.device(first.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(at));
    assert_eq!(
        store.live_devices(alice.id).await.unwrap(),
        all[1..].to_vec()
    );
    assert!(matches!(
        store.insert_device(&eleventh, 10).await.unwrap(),
        InsertDeviceOutcome::Inserted(_)
    ));
    assert_eq!(store.device(DeviceId::new()).await.unwrap(), None);
}

/// Encryption is off until turned on; turning it on again changes nothing.
pub async fn encryption_turns_on_once_with_key_version_zero(store: Store) {
    let alice = user(&store, "Alice").await;
    let bob = user(&store, "Bob").await;
    let chat = direct(&store, &alice, &bob).await.conversation.id;
    let other = group(&store, &alice, &[&bob], "plain")
        .await
        .conversation
        .id;
    assert_eq!(store.encryption_state(chat).await.unwrap(), None);
    let at = later(5);
    let (on, turned) = store.enable_encryption(chat, at).await.unwrap();
    assert!(turned);
    let expected = EncryptionState {
        conversation_id: chat,
        key_version: 0,
        rotation_needed: false,
        enabled_at: at,
    };
    assert_eq!(on, expected);
    let (again, turned) = store.enable_encryption(chat, later(9)).await.unwrap();
    assert!(!turned);
    assert_eq!(again, expected);
    assert_eq!(state(&store, chat).await, expected);
    assert_eq!(store.encryption_state(other).await.unwrap(), None);
    assert_eq!(
        store
            .encryption_states(&[chat, other, ConversationId::new()])
            .await
            .unwrap(),
        vec![expected]
    );
    assert!(store.encryption_states(&[]).await.unwrap().is_empty());
    assert_eq!(store.missing_keys(other).await.unwrap(), None);
}

/// Keys: the first version, shares of the current one, idempotent per device, refusals
/// (wrong version, a non-member's device, a revoked device, a plain conversation) storing
/// nothing; reads per device oldest first; what is missing.
pub async fn keys_move_one_version_at_a_time_and_only_for_member_devices(store: Store) {
    let alice = user(&store, "Alice").await;
    let bob = user(&store, "Bob").await;
    let carol = user(&store, "Carol").await;
    let chat = group(&store, &alice, &[&bob], "secret")
        .await
        .conversation
        .id;
    let plain = direct(&store, &alice, &bob).await.conversation.id;
    let a1 = device(&store, &alice, "a1", 0).await;
    let b1 = device(&store, &bob, "b1", 1).await;
    let b2 = device(&store, &bob, "b2", 2).await;
    let c1 = device(&store, &carol, "c1", 3).await;

    assert_eq!(
        store
            .put_keys(&upload(plain, 1, &a1, vec![wrap(&a1, "k")]))
            .await
            .unwrap(),
        PutKeysOutcome::NotEncrypted
    );
    store.enable_encryption(chat, now()).await.unwrap();
    let missing = store.missing_keys(chat).await.unwrap().unwrap();
    assert_eq!(missing.key_version, 0);
    assert_eq!(missing.devices, vec![a1.clone(), b1.clone(), b2.clone()]);

    for version in [0, 2] {
        assert_eq!(
            store
                .put_keys(&upload(chat, version, &a1, vec![wrap(&a1, "k")]))
                .await
                .unwrap(),
            PutKeysOutcome::WrongVersion { key_version: 0 }
        );
    }
    // Carol is no member: nothing of the upload is stored.
    assert_eq!(
        store
            .put_keys(&upload(
                chat,
                1,
                &a1,
                vec![wrap(&a1, "k1a"), wrap(&c1, "k1c")]
            ))
            .await
            .unwrap(),
        PutKeysOutcome::NotMemberDevices(vec![c1.id])
    );
    assert_eq!(state(&store, chat).await.key_version, 0);
    assert!(store.keys_for_device(chat, a1.id).await.unwrap().is_empty());

    assert_eq!(
        store
            .put_keys(&upload(
                chat,
                1,
                &a1,
                vec![wrap(&a1, "k1a"), wrap(&b1, "k1b")]
            ))
            .await
            .unwrap(),
        PutKeysOutcome::Stored {
            key_version: 1,
            rotated: true
        }
    );
    assert_eq!(state(&store, chat).await.key_version, 1);
    let missing = store.missing_keys(chat).await.unwrap().unwrap();
    assert_eq!(
        (missing.key_version, missing.devices),
        (1, vec![b2.clone()])
    );
    // Version 1 exists: making it again is refused, and nothing of it is stored (Bob's
    // second device would otherwise hold a different key under the same version).
    assert_eq!(
        store
            .put_keys(&upload(chat, 1, &b1, vec![wrap(&b2, "other key")]))
            .await
            .unwrap(),
        PutKeysOutcome::VersionExists { key_version: 1 }
    );
    // Only the current version is shared, never one that does not exist yet.
    for version in [0, 2] {
        assert_eq!(
            store
                .put_keys(&share(chat, version, &b1, vec![wrap(&b2, "k")]))
                .await
                .unwrap(),
            PutKeysOutcome::WrongVersion { key_version: 1 }
        );
    }
    assert!(store.keys_for_device(chat, b2.id).await.unwrap().is_empty());

    // A share of version 1 by Bob's first device for his second; a repeat for b1 keeps
    // the first wrap.
    let shared = share(chat, 1, &b1, vec![wrap(&b2, "k1b2"), wrap(&b1, "other")]);
    assert_eq!(
        store.put_keys(&shared).await.unwrap(),
        PutKeysOutcome::Stored {
            key_version: 1,
            rotated: false
        }
    );
    assert!(store
        .missing_keys(chat)
        .await
        .unwrap()
        .unwrap()
        .devices
        .is_empty());
    let b1_keys = store.keys_for_device(chat, b1.id).await.unwrap();
    assert_eq!(b1_keys.len(), 1);
    assert_eq!(b1_keys[0].wrapped_key, encode(b"k1b"));
    assert_eq!(b1_keys[0].from_device_id, a1.id);
    assert_eq!(b1_keys[0].from_user_id, alice.id);
    let b2_keys = store.keys_for_device(chat, b2.id).await.unwrap();
    assert_eq!(b2_keys.len(), 1);
    assert_eq!(
        (b2_keys[0].from_device_id, b2_keys[0].from_user_id),
        (b1.id, bob.id)
    );
    assert_eq!(b2_keys[0].created_at, shared.created_at);

    // Version 2; the key list of a device is oldest first.
    store
        .put_keys(&upload(
            chat,
            2,
            &b2,
            vec![wrap(&a1, "k2a"), wrap(&b1, "k2b")],
        ))
        .await
        .unwrap();
    let versions: Vec<i64> = store
        .keys_for_device(chat, b1.id)
        .await
        .unwrap()
        .iter()
        .map(|k| k.version)
        .collect();
    assert_eq!(versions, vec![1, 2]);
    assert_eq!(
        store.missing_keys(chat).await.unwrap().unwrap().devices,
        vec![b2.clone()]
    );

    // A revoked device gets nothing more and loses what it had; keys it wrapped for
    // others stay, and it no longer counts as missing.
    assert!(store.revoke_device(bob.id, b2.id, now()).await.unwrap());
    assert_eq!(
        store
            .put_keys(&share(chat, 2, &a1, vec![wrap(&b2, "late")]))
            .await
            .unwrap(),
        PutKeysOutcome::NotMemberDevices(vec![b2.id])
    );
    assert!(store.keys_for_device(chat, b2.id).await.unwrap().is_empty());
    assert_eq!(store.keys_for_device(chat, a1.id).await.unwrap().len(), 2);
    assert!(store
        .missing_keys(chat)
        .await
        .unwrap()
        .unwrap()
        .devices
        .is_empty());
}

/// Removing a member flags the conversation for rotation once a key exists; the next
/// version clears it and can never be wrapped for the removed member's devices.
pub async fn a_removal_needs_a_rotation_the_removed_member_never_gets(store: Store) {
    let alice = user(&store, "Alice").await;
    let bob = user(&store, "Bob").await;
    let carol = user(&store, "Carol").await;
    let chat = group(&store, &alice, &[&bob, &carol], "secret")
        .await
        .conversation
        .id;
    let a1 = device(&store, &alice, "a1", 0).await;
    let b1 = device(&store, &bob, "b1", 1).await;
    let c1 = device(&store, &carol, "c1", 2).await;
    store.enable_encryption(chat, now()).await.unwrap();

    // No key yet: a removal needs no rotation.
    assert!(store.remove_participant(chat, carol.id).await.unwrap());
    assert!(!state(&store, chat).await.rotation_needed);
    store
        .add_participant(chat, carol.id, domain::conversation::Role::Member, now())
        .await
        .unwrap();

    store
        .put_keys(&upload(
            chat,
            1,
            &a1,
            vec![wrap(&a1, "1a"), wrap(&b1, "1b"), wrap(&c1, "1c")],
        ))
        .await
        .unwrap();
    assert!(store.remove_participant(chat, bob.id).await.unwrap());
    let flagged = state(&store, chat).await;
    assert!(flagged.rotation_needed);
    assert_eq!(flagged.key_version, 1);
    let missing = store.missing_keys(chat).await.unwrap().unwrap();
    assert_eq!(missing.devices, Vec::<Device>::new());
    assert!(missing.rotation_needed, "read with the version it is about");
    assert_eq!(
        store
            .put_keys(&upload(
                chat,
                2,
                &a1,
                vec![wrap(&a1, "2a"), wrap(&b1, "2b")]
            ))
            .await
            .unwrap(),
        PutKeysOutcome::NotMemberDevices(vec![b1.id])
    );
    assert!(state(&store, chat).await.rotation_needed);
    store
        .put_keys(&upload(
            chat,
            2,
            &a1,
            vec![wrap(&a1, "2a"), wrap(&c1, "2c")],
        ))
        .await
        .unwrap();
    let rotated = state(&store, chat).await;
    assert_eq!((rotated.key_version, rotated.rotation_needed), (2, false));
    assert!(
        !store
            .missing_keys(chat)
            .await
            .unwrap()
            .unwrap()
            .rotation_needed
    );
    // Bob keeps what he had before his removal and nothing after.
    let bobs: Vec<i64> = store
        .keys_for_device(chat, b1.id)
        .await
        .unwrap()
        .iter()
        .map(|k| k.version)
        .collect();
    assert_eq!(bobs, vec![1]);
    // A removal that removed no one flags nothing.
    assert!(!store.remove_participant(chat, bob.id).await.unwrap());
    assert!(!state(&store, chat).await.rotation_needed);
}

/// Concurrent first-key uploads: exactly one makes version 1, the others are told it
/// exists and store nothing.
pub async fn concurrent_uploads_of_one_version_make_it_once(store: Store) {
    let alice = user(&store, "Alice").await;
    let bob = user(&store, "Bob").await;
    let chat = direct(&store, &alice, &bob).await.conversation.id;
    let a1 = device(&store, &alice, "a1", 0).await;
    let b1 = device(&store, &bob, "b1", 1).await;
    store.enable_encryption(chat, now()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let from = if i % 2 == 0 { a1.clone() } else { b1.clone() };
        let wraps = vec![wrap(&a1, &format!("a{i}")), wrap(&b1, &format!("b{i}"))];
        tasks.push(tokio::spawn(async move {
            store
                .put_keys(&upload(chat, 1, &from, wraps))
                .await
                .unwrap()
        }));
    }
    let mut rotations = 0;
    for task in tasks {
        match task.await.unwrap() {
            PutKeysOutcome::Stored {
                key_version: 1,
                rotated: true,
            } => rotations += 1,
            PutKeysOutcome::VersionExists { key_version: 1 } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(rotations, 1);
    let of_a = store.keys_for_device(chat, a1.id).await.unwrap();
    let of_b = store.keys_for_device(chat, b1.id).await.unwrap();
    assert_eq!((of_a.len(), of_b.len()), (1, 1));
    // Both devices hold the winner's key: the same upload wrapped both.
    let winner = (0..8)
        .find(|i| of_a[0].wrapped_key == encode(format!("a{i}").as_bytes()))
        .expect("a1's wrap is one of the uploads'");
    assert_eq!(of_b[0].wrapped_key, encode(format!("b{winner}").as_bytes()));
    assert_eq!(state(&store, chat).await.key_version, 1);
}

/// Backups are stored verbatim, replaced, read and deleted per user.
pub async fn key_backups_are_replaced_read_and_deleted(store: Store) {
    let alice = user(&store, "Alice").await;
    let bob = user(&store, "Bob").await;
    let backup = |ct: &[u8]| {
        KeyBackup::parse(
            1,
            BACKUP_KDF,
            600_000,
            &encode(&[9; 16]),
            &encode(&[8; 12]),
            &encode(ct),
        )
        .unwrap()
    };
    assert_eq!(store.key_backup(alice.id).await.unwrap(), None);
    assert!(!store.delete_key_backup(alice.id).await.unwrap());
    let first = backup(&[1; 40]);
    store.put_key_backup(alice.id, &first).await.unwrap();
    assert_eq!(store.key_backup(alice.id).await.unwrap(), Some(first));
    let big = backup(&vec![7; 200_000]);
    store.put_key_backup(alice.id, &big).await.unwrap();
    assert_eq!(store.key_backup(alice.id).await.unwrap(), Some(big));
    assert_eq!(store.key_backup(bob.id).await.unwrap(), None);
    assert!(store.delete_key_backup(alice.id).await.unwrap());
    assert_eq!(store.key_backup(alice.id).await.unwrap(), None);
}

/// A stored key names the public key of the device that wrapped it, read from that
/// device's row, also once it is revoked (members still unwrap with it).
pub async fn keys_name_the_public_key_of_the_wrapping_device_even_revoked(store: Store) {
    let alice = user(&store, "Alice").await;
    let bob = user(&store, "Bob").await;
    let chat = direct(&store, &alice, &bob).await.conversation.id;
    let a1 = device(&store, &alice, "a1", 0).await;
    let b1 = device(&store, &bob, "bob's", 1).await;
    assert_ne!(a1.public_key, b1.public_key);
    store.enable_encryption(chat, now()).await.unwrap();
    store
        .put_keys(&upload(
            chat,
            1,
            &a1,
            vec![wrap(&a1, "ka"), wrap(&b1, "kb")],
        ))
        .await
        .unwrap();
    let keys = store.keys_for_device(chat, b1.id).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].from_public_key, a1.public_key);
    assert!(store
        .revoke_device(alice.id, a1.id, later(5))
        .await
        .unwrap());
    let keys = store.keys_for_device(chat, b1.id).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].from_device_id, keys[0].from_user_id),
        (a1.id, alice.id)
    );
    assert_eq!(keys[0].from_public_key, a1.public_key);
}

/// The session snapshot names, among the user's conversations, exactly the encrypted ones.
pub async fn a_session_snapshot_names_the_encrypted_conversations(store: Store) {
    let alice = user(&store, "Alice").await;
    let bob = user(&store, "Bob").await;
    let carol = user(&store, "Carol").await;
    let secret = direct(&store, &alice, &bob).await.conversation.id;
    let plain = group(&store, &alice, &[&bob], "plain")
        .await
        .conversation
        .id;
    let foreign = direct(&store, &bob, &carol).await.conversation.id;
    let snapshot = store.session_snapshot(alice.id).await.unwrap().unwrap();
    assert!(snapshot.encrypted.is_empty());
    store.enable_encryption(secret, now()).await.unwrap();
    store.enable_encryption(foreign, now()).await.unwrap();
    let snapshot = store.session_snapshot(alice.id).await.unwrap().unwrap();
    assert_eq!(snapshot.encrypted, vec![secret]);
    assert_eq!(snapshot.conversations.len(), 2);
    assert!(snapshot
        .conversations
        .iter()
        .any(|c| c.conversation_id == plain));
    let lonely = user(&store, "Dave").await;
    let snapshot = store.session_snapshot(lonely.id).await.unwrap().unwrap();
    assert!(snapshot.encrypted.is_empty() && snapshot.conversations.is_empty());
}

/// An `encrypted` message's envelope (a tag of 16 zero bytes after `ct_bytes - 16` bytes of
/// ciphertext), as a client would send it.
fn envelope(kid: i64, ct_bytes: usize) -> String {
    format!(
        r#"{{"v":1,"kid":{kid},"iv":"{}","ct":"{}"}}"#,
        encode(&[3; 12]),
        encode(&vec![5; ct_bytes])
    )
}

/// The server's contract for the envelope: an `encrypted` message is stored and read back
/// byte for byte with its content type wherever messages are read (the message itself,
/// both history directions, the conversation list's last message, the changed-message
/// page), an edit stores its new envelope verbatim, and a deletion leaves the same
/// tombstone as for text.
pub async fn an_encrypted_message_keeps_its_envelope_verbatim_everywhere(store: Store) {
    use domain::message::{parse_envelope, ContentType, DeleteOutcome};
    let alice = user(&store, "Alice").await;
    let bob = user(&store, "Bob").await;
    let chat = direct(&store, &alice, &bob).await.conversation.id;
    store.enable_encryption(chat, now()).await.unwrap();
    let first = envelope(1, 40);
    // Near the default limit, with a large `kid`: nothing is cut or re-encoded.
    let big = envelope(i64::MAX, 18_000);
    let mut sent = Vec::new();
    for raw in [&first, &big] {
        let mut new = crate::fixtures::message(chat, alice.id, None, "placeholder");
        new.content = parse_envelope(raw, 24_576).unwrap();
        new.content_type = ContentType::Encrypted;
        match store.append_messages(&[new]).await.unwrap().pop().unwrap() {
            Ok(domain::message::AppendOutcome::Created(m)) => sent.push(m),
            other => panic!("expected a new message, got {other:?}"),
        }
    }
    let same = |m: &domain::message::Message, raw: &str| {
        assert_eq!(
            (m.content.as_str(), m.content_type),
            (raw, ContentType::Encrypted)
        );
    };
    same(&sent[0], &first);
    same(&sent[1], &big);
    same(
        &store.message(chat, sent[1].id).await.unwrap().unwrap(),
        &big,
    );
    let after = store.messages_after(chat, 0, 10).await.unwrap();
    same(&after[0], &first);
    same(&after[1], &big);
    let before = store.messages_before(chat, None, 10).await.unwrap();
    same(&before[0], &big);
    let listed = store.list_conversations(bob.id, None, 0, 10).await.unwrap();
    same(listed[0].last_message.as_ref().unwrap(), &big);

    let edited_raw = envelope(2, 64);
    let edited = store
        .edit_message(
            chat,
            sent[0].id,
            &parse_envelope(&edited_raw, 24_576).unwrap(),
            later(1),
        )
        .await
        .unwrap()
        .unwrap();
    same(&edited, &edited_raw);
    let changed = store.changes_after(chat, 0, 10).await.unwrap();
    same(&changed[0], &edited_raw);

    assert!(matches!(
        store
            .delete_message(chat, sent[1].id, alice.id, later(2))
            .await
            .unwrap(),
        Some(DeleteOutcome::Deleted(_))
    ));
    let tombstone = store.message(chat, sent[1].id).await.unwrap().unwrap();
    assert_eq!(tombstone.content, "");
    assert!(tombstone.deleted_at.is_some());
}
