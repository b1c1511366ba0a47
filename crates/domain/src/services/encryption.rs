//! End-to-end encryption's rules (issue 13): who registers, sees and revokes devices, who
//! turns a conversation's encryption on, who uploads and reads wrapped keys and for which
//! devices, key requests, and key backups. The cryptography is the clients'; this checks
//! shapes and permissions, and the stores check what must hold at the moment of writing
//! (versions, current members' live devices).

use super::errors::ChatError;
use super::lookups::require_member;
use crate::conversation::{ConversationKind, Role};
use crate::encryption::{
    Device, DeviceName, DevicePublicKey, EncryptionState, InsertDeviceOutcome, KeyBackup,
    KeyIntent, KeyUpload, MissingKeys, NewDevice, PutKeysOutcome, StoredKey, WrappedKey,
    MAX_DEVICES_PER_USER, MAX_WRAPS_PER_UPLOAD,
};
use crate::ids::{ConversationId, DeviceId, UserId};
use crate::ports::{Clock, ConversationStore, EncryptionStore};
use crate::user::InvalidField;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What turning encryption on did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnableOutcome {
    /// The conversation's encryption afterwards.
    pub state: EncryptionState,
    /// Whether it was turned on now (announce it) rather than before.
    pub turned_on: bool,
}

/// What a key upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysStored {
    /// The conversation's key version afterwards.
    pub key_version: i64,
    /// Whether this upload made a new version.
    pub rotated: bool,
    /// The devices wrapped for (what `key_shared` announces).
    pub device_ids: Vec<DeviceId>,
}

/// What a key request announces: `device` of `user` lacks version `key_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRequest {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The requesting user.
    pub user_id: UserId,
    /// Their device that lacks the key.
    pub device_id: DeviceId,
    /// The conversation's current key version.
    pub key_version: i64,
}

/// Devices, encryption state, keys and backups.
#[derive(Clone)]
pub struct EncryptionService {
    store: Arc<dyn EncryptionStore>,
    conversations: Arc<dyn ConversationStore>,
    clock: Arc<dyn Clock>,
}

impl EncryptionService {
    /// Wires the service to its ports.
    pub fn new(
        store: Arc<dyn EncryptionStore>,
        conversations: Arc<dyn ConversationStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            conversations,
            clock,
        }
    }

    /// Registers a device of `user` with its public key. Refused: a malformed key or name
    /// (`Invalid`), [`MAX_DEVICES_PER_USER`] live devices already (`TooManyDevices`).
    pub async fn register_device(
        &self,
        user: UserId,
        public_key: &str,
        name: &str,
    ) -> Result<Device, ChatError> {
        let device = NewDevice {
            id: DeviceId::new(),
            user_id: user,
            public_key: DevicePublicKey::parse(public_key)?,
            name: DeviceName::parse(name)?,
            created_at: self.clock.now(),
        };
        match self
            .store
            .insert_device(&device, MAX_DEVICES_PER_USER)
            .await?
        {
            InsertDeviceOutcome::Inserted(device) => Ok(device),
            InsertDeviceOutcome::TooMany => Err(ChatError::TooManyDevices(MAX_DEVICES_PER_USER)),
        }
    }

    /// `user`'s live devices as `viewer` may see them: their own, or those of someone they
    /// share a conversation with. Anyone else's is `UserNotFound`, the answer for an
    /// unknown user, so the lookup reveals nothing.
    pub async fn devices_of(&self, viewer: UserId, user: UserId) -> Result<Vec<Device>, ChatError> {
        if viewer != user && !self.share_a_conversation(viewer, user).await? {
            return Err(ChatError::UserNotFound);
        }
        Ok(self.store.live_devices(user).await?)
    }

    async fn share_a_conversation(&self, a: UserId, b: UserId) -> Result<bool, ChatError> {
        let (of_a, of_b) = tokio::join!(
            self.conversations.conversation_ids(a),
            self.conversations.conversation_ids(b)
        );
        let of_a: HashSet<ConversationId> = of_a?.into_iter().collect();
        Ok(of_b?.iter().any(|c| of_a.contains(c)))
    }

    /// Revokes `user`'s own live device; its wrapped keys are deleted. Another's, a revoked
    /// or an unknown device: `NotFound`.
    pub async fn revoke_device(&self, user: UserId, device: DeviceId) -> Result<(), ChatError> {
        if self
            .store
            .revoke_device(user, device, self.clock.now())
            .await?
        {
            Ok(())
        } else {
            Err(ChatError::NotFound("device not found"))
        }
    }

    /// Turns `conversation`'s encryption on: any member of a direct conversation, an owner
    /// or admin of a group (`Forbidden` for a plain member, `NotParticipant` for others).
    /// Turning it on again changes nothing; there is no turning it off.
    pub async fn enable(
        &self,
        by: UserId,
        conversation: ConversationId,
    ) -> Result<EnableOutcome, ChatError> {
        let details = self
            .conversations
            .conversation(conversation)
            .await?
            .ok_or(ChatError::NotParticipant)?;
        let member = details.participant(by).ok_or(ChatError::NotParticipant)?;
        if details.conversation.kind == ConversationKind::Group && member.role == Role::Member {
            return Err(ChatError::Forbidden(
                "only the group's owner or an admin may turn encryption on",
            ));
        }
        let (state, turned_on) = self
            .store
            .enable_encryption(conversation, self.clock.now())
            .await?;
        Ok(EnableOutcome { state, turned_on })
    }

    /// `conversation`'s encryption for one of its members (`None`: not encrypted).
    pub async fn state(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<Option<EncryptionState>, ChatError> {
        require_member(&*self.conversations, conversation, user).await?;
        Ok(self.store.encryption_state(conversation).await?)
    }

    /// `conversation`'s encryption, for a caller that already checked who asks (`None`:
    /// not encrypted).
    pub async fn state_of(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<EncryptionState>, ChatError> {
        Ok(self.store.encryption_state(conversation).await?)
    }

    /// The encryption of each of `conversations` that is encrypted, in one store call, for
    /// a caller that already checked who asks (a user's conversation list).
    pub async fn states_of(
        &self,
        conversations: &[ConversationId],
    ) -> Result<HashMap<ConversationId, EncryptionState>, ChatError> {
        if conversations.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(self
            .store
            .encryption_states(conversations)
            .await?
            .into_iter()
            .map(|s| (s.conversation_id, s))
            .collect())
    }

    /// A member's device `from_device` uploads version `version` of the key wrapped for
    /// `wraps` (device id, base64url wrapped key). `version` is `key_version + 1` for a new
    /// key ([`KeyIntent::New`]) or `key_version` for a share; every wrapped-for device a
    /// live device of a current member, each once, 1 to [`MAX_WRAPS_PER_UPLOAD`]. Refusals
    /// are `Invalid` (422) and store nothing; a new version another upload made first is
    /// `KeyVersionExists` (409); a conversation that is not encrypted is `NotEncrypted` (409).
    pub async fn put_keys(
        &self,
        by: UserId,
        conversation: ConversationId,
        version: i64,
        intent: KeyIntent,
        from_device: DeviceId,
        wraps: &[(DeviceId, String)],
    ) -> Result<KeysStored, ChatError> {
        require_member(&*self.conversations, conversation, by).await?;
        if version < 1 {
            return Err(InvalidField::new("version", "must be at least 1").into());
        }
        if wraps.is_empty() || wraps.len() > MAX_WRAPS_PER_UPLOAD {
            return Err(InvalidField::new(
                "wrapped",
                format!("must hold 1 to {MAX_WRAPS_PER_UPLOAD} keys"),
            )
            .into());
        }
        let mut seen = HashSet::new();
        let mut parsed = Vec::with_capacity(wraps.len());
        for (device, wrapped) in wraps {
            if !seen.insert(*device) {
                return Err(InvalidField::new("wrapped", "names a device twice").into());
            }
            parsed.push(WrappedKey::parse(*device, wrapped)?);
        }
        self.require_own_device(by, from_device, "from_device_id")
            .await?;
        let upload = KeyUpload {
            conversation_id: conversation,
            version,
            intent,
            from_device_id: from_device,
            from_user_id: by,
            wraps: parsed,
            created_at: self.clock.now(),
        };
        match self.store.put_keys(&upload).await? {
            PutKeysOutcome::Stored {
                key_version,
                rotated,
            } => Ok(KeysStored {
                key_version,
                rotated,
                device_ids: upload.wraps.iter().map(|w| w.device_id).collect(),
            }),
            PutKeysOutcome::NotEncrypted => Err(not_encrypted()),
            PutKeysOutcome::VersionExists { key_version } => {
                Err(ChatError::KeyVersionExists(key_version))
            }
            PutKeysOutcome::WrongVersion { key_version } => Err(InvalidField::new(
                "version",
                match intent {
                    KeyIntent::New => format!("a new version must be {}", key_version + 1),
                    KeyIntent::Share => format!("only the current version {key_version} is shared"),
                },
            )
            .into()),
            PutKeysOutcome::NotMemberDevices(devices) => Err(InvalidField::new(
                "wrapped",
                format!(
                    "{} is not a live device of a current member",
                    devices.first().map(ToString::to_string).unwrap_or_default()
                ),
            )
            .into()),
        }
    }

    /// Every key version of `conversation` wrapped for `device`, one of the member `by`'s
    /// live devices, oldest first, with the conversation's encryption read before them. A
    /// conversation that is not encrypted is `NotEncrypted`.
    pub async fn keys_for(
        &self,
        by: UserId,
        conversation: ConversationId,
        device: DeviceId,
    ) -> Result<(EncryptionState, Vec<StoredKey>), ChatError> {
        require_member(&*self.conversations, conversation, by).await?;
        let state = self
            .store
            .encryption_state(conversation)
            .await?
            .ok_or_else(not_encrypted)?;
        self.require_own_device(by, device, "device_id").await?;
        Ok((
            state,
            self.store.keys_for_device(conversation, device).await?,
        ))
    }

    /// The live devices of current members without the current key, for a member to wrap it
    /// for. A conversation that is not encrypted is `NotEncrypted`.
    pub async fn missing_keys(
        &self,
        by: UserId,
        conversation: ConversationId,
    ) -> Result<MissingKeys, ChatError> {
        require_member(&*self.conversations, conversation, by).await?;
        self.store
            .missing_keys(conversation)
            .await?
            .ok_or_else(not_encrypted)
    }

    /// The member `by`'s live `device` asks the other members' clients for the current
    /// key: what the `key_request` frame announces. Rate limits are the caller's.
    pub async fn request_key(
        &self,
        by: UserId,
        conversation: ConversationId,
        device: DeviceId,
    ) -> Result<KeyRequest, ChatError> {
        require_member(&*self.conversations, conversation, by).await?;
        let state = self
            .store
            .encryption_state(conversation)
            .await?
            .ok_or_else(not_encrypted)?;
        self.require_own_device(by, device, "device_id").await?;
        Ok(KeyRequest {
            conversation_id: conversation,
            user_id: by,
            device_id: device,
            key_version: state.key_version,
        })
    }

    /// Stores `user`'s key backup, replacing theirs.
    pub async fn put_backup(&self, user: UserId, backup: &KeyBackup) -> Result<(), ChatError> {
        Ok(self.store.put_key_backup(user, backup).await?)
    }

    /// `user`'s key backup; `NotFound` when there is none.
    pub async fn backup(&self, user: UserId) -> Result<KeyBackup, ChatError> {
        self.store
            .key_backup(user)
            .await?
            .ok_or(ChatError::NotFound("no key backup"))
    }

    /// Deletes `user`'s key backup (no error when there was none).
    pub async fn delete_backup(&self, user: UserId) -> Result<(), ChatError> {
        self.store.delete_key_backup(user).await?;
        Ok(())
    }

    async fn require_own_device(
        &self,
        user: UserId,
        device: DeviceId,
        field: &'static str,
    ) -> Result<Device, ChatError> {
        match self.store.device(device).await? {
            Some(d) if d.user_id == user && d.is_live() => Ok(d),
            _ => Err(InvalidField::new(field, "must be one of your live devices").into()),
        }
    }
}

fn not_encrypted() -> ChatError {
    ChatError::NotEncrypted
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::conversation::{Conversation, ConversationDetails, Participant, ParticipantProfile};
    use crate::ports::{MockClock, MockConversationStore, MockEncryptionStore};
    use chrono::{DateTime, TimeZone, Utc};

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap()
    }

    fn key() -> String {
        // base64url of 0x04 followed by 64 zero bytes.
        format!("BA{}", "A".repeat(85))
    }

    fn clock() -> Arc<MockClock> {
        let mut clock = MockClock::new();
        clock.expect_now().returning(at);
        Arc::new(clock)
    }

    fn device(owner: UserId) -> Device {
        Device {
            id: DeviceId::new(),
            user_id: owner,
            public_key: DevicePublicKey::parse(&key()).unwrap(),
            name: DeviceName::parse("laptop").unwrap(),
            created_at: at(),
            revoked_at: None,
        }
    }

    fn participant(c: ConversationId, user: UserId, role: Role) -> Participant {
        Participant {
            conversation_id: c,
            user_id: user,
            role,
            joined_at: at(),
            delivered_seq: 0,
            read_seq: 0,
        }
    }

    fn details(
        c: ConversationId,
        kind: ConversationKind,
        members: &[(UserId, Role)],
    ) -> ConversationDetails {
        ConversationDetails {
            conversation: Conversation {
                id: c,
                kind,
                title: None,
                created_by: members[0].0,
                created_at: at(),
                last_seq: 0,
                last_message_at: None,
                last_change: 0,
            },
            participants: members
                .iter()
                .map(|(u, r)| ParticipantProfile {
                    participant: participant(c, *u, *r),
                    display_name: "X".into(),
                    email: "x@example.com".into(),
                    avatar_url: None,
                    last_seen_at: None,
                })
                .collect(),
        }
    }

    fn member_of(conversations: &mut MockConversationStore, c: ConversationId, user: UserId) {
        conversations
            .expect_participant()
            .returning(move |_, u| Ok((u == user).then(|| participant(c, user, Role::Member))));
    }

    fn service(
        store: MockEncryptionStore,
        conversations: MockConversationStore,
    ) -> EncryptionService {
        EncryptionService::new(Arc::new(store), Arc::new(conversations), clock())
    }

    fn state(c: ConversationId, key_version: i64) -> EncryptionState {
        EncryptionState {
            conversation_id: c,
            key_version,
            rotation_needed: false,
            enabled_at: at(),
        }
    }

    #[tokio::test]
    async fn a_device_is_registered_with_its_validated_key_up_to_the_limit() {
        let user = UserId::new();
        let mut store = MockEncryptionStore::new();
        store
            .expect_insert_device()
            .withf(move |d, max| {
                d.user_id == user && *max == MAX_DEVICES_PER_USER && d.created_at == at()
            })
            .times(1)
            .returning(|d, _| {
                Ok(InsertDeviceOutcome::Inserted(Device {
                    id: d.id,
                    user_id: d.user_id,
                    public_key: d.public_key.clone(),
                    name: d.name.clone(),
                    created_at: d.created_at,
                    revoked_at: None,
                }))
            });
        let service = service(store, MockConversationStore::new());
        let device = service
            .register_device(user, &key(), "laptop")
            .await
            .unwrap();
        assert_eq!(device.name.as_str(), "laptop");
        // Invalid input never reaches the store (times(1) above).
        let bad = service
            .register_device(user, "AAAA", "laptop")
            .await
            .unwrap_err();
        assert!(matches!(bad, ChatError::Invalid(f) if f.field == "public_key"));
        let bad = service
            .register_device(user, &key(), " ")
            .await
            .unwrap_err();
        assert!(matches!(bad, ChatError::Invalid(f) if f.field == "name"));

        let mut full = MockEncryptionStore::new();
        full.expect_insert_device()
            .returning(|_, _| Ok(InsertDeviceOutcome::TooMany));
        let service = EncryptionService::new(
            Arc::new(full),
            Arc::new(MockConversationStore::new()),
            clock(),
        );
        assert!(matches!(
            service.register_device(user, &key(), "laptop").await,
            Err(ChatError::TooManyDevices(10))
        ));
    }

    #[tokio::test]
    async fn devices_are_visible_to_oneself_and_to_who_shares_a_conversation_only() {
        let (me, friend, stranger) = (UserId::new(), UserId::new(), UserId::new());
        let shared = ConversationId::new();
        let mut conversations = MockConversationStore::new();
        conversations.expect_conversation_ids().returning(move |u| {
            Ok(if u == stranger {
                vec![ConversationId::new()]
            } else {
                vec![shared]
            })
        });
        let mut store = MockEncryptionStore::new();
        store
            .expect_live_devices()
            .returning(|u| Ok(vec![device(u)]));
        let service = service(store, conversations);
        assert_eq!(service.devices_of(me, me).await.unwrap()[0].user_id, me);
        assert_eq!(
            service.devices_of(me, friend).await.unwrap()[0].user_id,
            friend
        );
        assert!(matches!(
            service.devices_of(me, stranger).await,
            Err(ChatError::UserNotFound)
        ));
    }

    #[tokio::test]
    async fn revoking_what_is_not_ones_live_device_is_not_found() {
        let user = UserId::new();
        let mut store = MockEncryptionStore::new();
        let mine = DeviceId::new();
        store
            .expect_revoke_device()
            .returning(move |u, d, when| Ok(u == user && d == mine && when == at()));
        let service = service(store, MockConversationStore::new());
        service.revoke_device(user, mine).await.unwrap();
        assert!(matches!(
            service.revoke_device(user, DeviceId::new()).await,
            Err(ChatError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn encryption_is_turned_on_by_direct_members_and_group_moderators() {
        let (owner, admin, member, outsider) =
            (UserId::new(), UserId::new(), UserId::new(), UserId::new());
        let (dm, grp) = (ConversationId::new(), ConversationId::new());
        let mut conversations = MockConversationStore::new();
        conversations.expect_conversation().returning(move |c| {
            Ok(Some(if c == dm {
                details(
                    c,
                    ConversationKind::Direct,
                    &[(owner, Role::Member), (member, Role::Member)],
                )
            } else {
                details(
                    c,
                    ConversationKind::Group,
                    &[
                        (owner, Role::Owner),
                        (admin, Role::Admin),
                        (member, Role::Member),
                    ],
                )
            }))
        });
        let mut store = MockEncryptionStore::new();
        store
            .expect_enable_encryption()
            .times(3)
            .returning(|c, _| Ok((state(c, 0), true)));
        let service = service(store, conversations);
        assert!(service.enable(member, dm).await.unwrap().turned_on);
        service.enable(owner, grp).await.unwrap();
        service.enable(admin, grp).await.unwrap();
        assert!(matches!(
            service.enable(member, grp).await,
            Err(ChatError::Forbidden(_))
        ));
        assert!(matches!(
            service.enable(outsider, grp).await,
            Err(ChatError::NotParticipant)
        ));
    }

    #[tokio::test]
    async fn key_uploads_are_checked_before_the_store_and_its_refusals_mapped() {
        let user = UserId::new();
        let c = ConversationId::new();
        let mine = device(user);
        let foreign = device(UserId::new());
        let mut conversations = MockConversationStore::new();
        member_of(&mut conversations, c, user);
        let mut store = MockEncryptionStore::new();
        let (mine_id, known) = (mine.id, [mine.clone(), foreign.clone()]);
        store
            .expect_device()
            .returning(move |id| Ok(known.iter().find(|d| d.id == id).cloned()));
        store.expect_put_keys().returning(|upload| {
            Ok(match upload.version {
                1 => PutKeysOutcome::Stored {
                    key_version: 1,
                    rotated: true,
                },
                2 => PutKeysOutcome::NotMemberDevices(vec![upload.wraps[0].device_id]),
                3 => PutKeysOutcome::NotEncrypted,
                4 => PutKeysOutcome::VersionExists { key_version: 4 },
                _ => PutKeysOutcome::WrongVersion { key_version: 1 },
            })
        });
        let service = service(store, conversations);
        let target = DeviceId::new();
        let wraps = vec![(target, "AQ".to_owned())];
        let stored = service
            .put_keys(user, c, 1, KeyIntent::New, mine_id, &wraps)
            .await
            .unwrap();
        assert_eq!(
            stored,
            KeysStored {
                key_version: 1,
                rotated: true,
                device_ids: vec![target]
            }
        );

        let field = |r: Result<KeysStored, ChatError>| match r {
            Err(ChatError::Invalid(f)) => f.field,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(
            field(
                service
                    .put_keys(user, c, 2, KeyIntent::New, mine_id, &wraps)
                    .await
            ),
            "wrapped"
        );
        assert!(matches!(
            service
                .put_keys(user, c, 3, KeyIntent::New, mine_id, &wraps)
                .await,
            Err(ChatError::NotEncrypted)
        ));
        assert!(matches!(
            service
                .put_keys(user, c, 4, KeyIntent::New, mine_id, &wraps)
                .await,
            Err(ChatError::KeyVersionExists(4))
        ));
        assert_eq!(
            field(
                service
                    .put_keys(user, c, 9, KeyIntent::New, mine_id, &wraps)
                    .await
            ),
            "version"
        );
        assert_eq!(
            field(
                service
                    .put_keys(user, c, 0, KeyIntent::New, mine_id, &wraps)
                    .await
            ),
            "version"
        );
        assert_eq!(
            field(
                service
                    .put_keys(user, c, 1, KeyIntent::New, mine_id, &[])
                    .await
            ),
            "wrapped"
        );
        let too_many: Vec<(DeviceId, String)> = (0..=MAX_WRAPS_PER_UPLOAD)
            .map(|_| (DeviceId::new(), "AQ".to_owned()))
            .collect();
        assert_eq!(MAX_WRAPS_PER_UPLOAD, 500);
        assert_eq!(
            field(
                service
                    .put_keys(user, c, 1, KeyIntent::New, mine_id, &too_many)
                    .await
            ),
            "wrapped"
        );
        let twice = vec![(target, "AQ".to_owned()), (target, "Ag".to_owned())];
        assert_eq!(
            field(
                service
                    .put_keys(user, c, 1, KeyIntent::New, mine_id, &twice)
                    .await
            ),
            "wrapped"
        );
        let not_b64 = vec![(target, "A=".to_owned())];
        assert_eq!(
            field(
                service
                    .put_keys(user, c, 1, KeyIntent::New, mine_id, &not_b64)
                    .await
            ),
            "wrapped_key"
        );
        assert_eq!(
            field(
                service
                    .put_keys(user, c, 1, KeyIntent::New, foreign.id, &wraps)
                    .await
            ),
            "from_device_id"
        );
        assert_eq!(
            field(
                service
                    .put_keys(user, c, 1, KeyIntent::New, DeviceId::new(), &wraps)
                    .await
            ),
            "from_device_id"
        );
        assert!(matches!(
            service
                .put_keys(UserId::new(), c, 1, KeyIntent::New, mine_id, &wraps)
                .await,
            Err(ChatError::NotParticipant)
        ));
    }

    #[tokio::test]
    async fn keys_are_read_and_requested_only_for_ones_own_live_device() {
        let user = UserId::new();
        let c = ConversationId::new();
        let mine = device(user);
        let mut revoked = device(user);
        revoked.revoked_at = Some(at());
        let mut conversations = MockConversationStore::new();
        member_of(&mut conversations, c, user);
        let mut store = MockEncryptionStore::new();
        let known = [mine.clone(), revoked.clone()];
        store
            .expect_device()
            .returning(move |id| Ok(known.iter().find(|d| d.id == id).cloned()));
        store
            .expect_keys_for_device()
            .times(1)
            .returning(|_, _| Ok(Vec::new()));
        store
            .expect_encryption_state()
            .returning(move |c| Ok(Some(state(c, 4))));
        let service = service(store, conversations);
        let (state_read, keys) = service.keys_for(user, c, mine.id).await.unwrap();
        assert!(keys.is_empty());
        assert_eq!(state_read.key_version, 4);
        assert!(matches!(
            service.keys_for(user, c, revoked.id).await,
            Err(ChatError::Invalid(_))
        ));
        let request = service.request_key(user, c, mine.id).await.unwrap();
        assert_eq!(
            request,
            KeyRequest {
                conversation_id: c,
                user_id: user,
                device_id: mine.id,
                key_version: 4
            }
        );
        assert!(matches!(
            service.request_key(user, c, revoked.id).await,
            Err(ChatError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn missing_keys_and_backups_answer_not_encrypted_and_not_found() {
        let user = UserId::new();
        let c = ConversationId::new();
        let mut conversations = MockConversationStore::new();
        member_of(&mut conversations, c, user);
        let mut store = MockEncryptionStore::new();
        store.expect_missing_keys().returning(|_| Ok(None));
        store.expect_encryption_state().returning(|_| Ok(None));
        store.expect_device().never();
        store.expect_key_backup().returning(|_| Ok(None));
        store.expect_delete_key_backup().returning(|_| Ok(false));
        let service = service(store, conversations);
        assert!(matches!(
            service.missing_keys(user, c).await,
            Err(ChatError::NotEncrypted)
        ));
        // Before the device is even looked at: the conversation is the first refusal.
        let device = DeviceId::new();
        assert!(matches!(
            service.keys_for(user, c, device).await,
            Err(ChatError::NotEncrypted)
        ));
        assert!(matches!(
            service.request_key(user, c, device).await,
            Err(ChatError::NotEncrypted)
        ));
        assert!(matches!(
            service.backup(user).await,
            Err(ChatError::NotFound(_))
        ));
        service.delete_backup(user).await.unwrap();
    }
}
