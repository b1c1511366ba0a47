//! `EncryptionStore`: devices, conversations' encryption, wrapped keys, key backups.
//! Nothing here is hot: a few short statements per operation. Each check-then-write runs in
//! one transaction under a row lock: a device registration under its user's row (so the
//! count of live devices cannot be raced past), a key upload under the conversation's
//! `conversation_encryption` row (so versions move one at a time, and a member removal,
//! which updates that row too, is ordered before or after it).

use crate::schema::{
    conversation_encryption, conversation_keys, devices, key_backups, participants, users,
};
use crate::{db, PostgresStorage};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::encryption::{
    Device, DeviceName, DevicePublicKey, EncryptionState, InsertDeviceOutcome, KeyBackup,
    KeyUpload, MissingKeys, NewDevice, PutKeysOutcome, StoredKey,
};
use domain::ports::EncryptionStore;
use domain::{ConversationId, DeviceId, StorageError, UserId};
use std::collections::HashSet;
use uuid::Uuid;

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = devices, check_for_backend(diesel::pg::Pg))]
struct DeviceRow {
    id: Uuid,
    user_id: Uuid,
    public_key: String,
    name: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<DeviceRow> for Device {
    fn from(row: DeviceRow) -> Self {
        Self {
            id: row.id.into(),
            user_id: row.user_id.into(),
            public_key: DevicePublicKey::from_trusted(row.public_key),
            name: DeviceName::from_trusted(row.name),
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        }
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = conversation_encryption, check_for_backend(diesel::pg::Pg))]
struct EncryptionRow {
    conversation_id: Uuid,
    key_version: i64,
    rotation_needed: bool,
    enabled_at: DateTime<Utc>,
}

impl From<EncryptionRow> for EncryptionState {
    fn from(row: EncryptionRow) -> Self {
        Self {
            conversation_id: row.conversation_id.into(),
            key_version: row.key_version,
            rotation_needed: row.rotation_needed,
            enabled_at: row.enabled_at,
        }
    }
}

#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = key_backups, check_for_backend(diesel::pg::Pg))]
struct BackupRow {
    user_id: Uuid,
    version: i32,
    kdf: String,
    iterations: i32,
    salt: String,
    iv: String,
    ct: String,
    updated_at: DateTime<Utc>,
}

async fn state_of(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
    lock: bool,
) -> Result<Option<EncryptionState>, DieselError> {
    let query = conversation_encryption::table
        .find(conversation)
        .select(EncryptionRow::as_select());
    let row = if lock {
        query.for_update().first(conn).await.optional()?
    } else {
        query.first(conn).await.optional()?
    };
    Ok(row.map(EncryptionState::from))
}

/// The live devices of `conversation`'s current members, oldest first (ties by id).
async fn member_devices(
    conn: &mut AsyncPgConnection,
    conversation: Uuid,
) -> Result<Vec<DeviceRow>, DieselError> {
    let members = participants::table
        .filter(participants::conversation_id.eq(conversation))
        .select(participants::user_id);
    devices::table
        .filter(devices::user_id.eq_any(members))
        .filter(devices::revoked_at.is_null())
        .order((devices::created_at.asc(), devices::id.asc()))
        .select(DeviceRow::as_select())
        .load(conn)
        .await
}

#[async_trait]
impl EncryptionStore for PostgresStorage {
    async fn insert_device(
        &self,
        device: &NewDevice,
        max_live: usize,
    ) -> Result<InsertDeviceOutcome, StorageError> {
        let row = DeviceRow {
            id: device.id.as_uuid(),
            user_id: device.user_id.as_uuid(),
            public_key: device.public_key.as_str().to_owned(),
            name: device.name.as_str().to_owned(),
            created_at: device.created_at,
            revoked_at: None,
        };
        let max_live = i64::try_from(max_live).unwrap_or(i64::MAX);
        let mut conn = self.conn().await?;
        conn.transaction(async |conn| {
            // Serialises the user's registrations: the count below stays true until commit.
            users::table
                .find(row.user_id)
                .select(users::id)
                .for_update()
                .first::<Uuid>(conn)
                .await?;
            let live: i64 = devices::table
                .filter(devices::user_id.eq(row.user_id))
                .filter(devices::revoked_at.is_null())
                .count()
                .get_result(conn)
                .await?;
            if live >= max_live {
                return Ok(InsertDeviceOutcome::TooMany);
            }
            let stored: DeviceRow = diesel::insert_into(devices::table)
                .values(&row)
                .returning(DeviceRow::as_returning())
                .get_result(conn)
                .await?;
            Ok::<_, DieselError>(InsertDeviceOutcome::Inserted(stored.into()))
        })
        .await
        .map_err(db)
    }

    async fn device(&self, id: DeviceId) -> Result<Option<Device>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<DeviceRow> = devices::table
            .find(id.as_uuid())
            .select(DeviceRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db)?;
        Ok(row.map(Device::from))
    }

    async fn live_devices(&self, user: UserId) -> Result<Vec<Device>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<DeviceRow> = devices::table
            .filter(devices::user_id.eq(user.as_uuid()))
            .filter(devices::revoked_at.is_null())
            .order((devices::created_at.asc(), devices::id.asc()))
            .select(DeviceRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(Device::from).collect())
    }

    async fn revoke_device(
        &self,
        user: UserId,
        id: DeviceId,
        at: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let mut conn = self.conn().await?;
        conn.transaction(async |conn| {
            let revoked = diesel::update(
                devices::table
                    .filter(devices::id.eq(id.as_uuid()))
                    .filter(devices::user_id.eq(user.as_uuid()))
                    .filter(devices::revoked_at.is_null()),
            )
            .set(devices::revoked_at.eq(at))
            .execute(conn)
            .await?;
            if revoked == 0 {
                return Ok(false);
            }
            diesel::delete(
                conversation_keys::table.filter(conversation_keys::device_id.eq(id.as_uuid())),
            )
            .execute(conn)
            .await?;
            Ok::<_, DieselError>(true)
        })
        .await
        .map_err(db)
    }

    async fn enable_encryption(
        &self,
        conversation: ConversationId,
        at: DateTime<Utc>,
    ) -> Result<(EncryptionState, bool), StorageError> {
        let mut conn = self.conn().await?;
        conn.transaction(async |conn| {
            let inserted = diesel::insert_into(conversation_encryption::table)
                .values((
                    conversation_encryption::conversation_id.eq(conversation.as_uuid()),
                    conversation_encryption::enabled_at.eq(at),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            let state = state_of(conn, conversation.as_uuid(), false)
                .await?
                .ok_or_else(|| {
                    DieselError::DeserializationError(
                        "encryption state missing after insert".into(),
                    )
                })?;
            Ok::<_, DieselError>((state, inserted > 0))
        })
        .await
        .map_err(db)
    }

    async fn encryption_state(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<EncryptionState>, StorageError> {
        let mut conn = self.conn().await?;
        state_of(&mut conn, conversation.as_uuid(), false)
            .await
            .map_err(db)
    }

    async fn encryption_states(
        &self,
        conversations: &[ConversationId],
    ) -> Result<Vec<EncryptionState>, StorageError> {
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = conversations.iter().map(ConversationId::as_uuid).collect();
        let mut conn = self.conn().await?;
        let rows: Vec<EncryptionRow> = conversation_encryption::table
            .filter(conversation_encryption::conversation_id.eq_any(&ids))
            .select(EncryptionRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(EncryptionState::from).collect())
    }

    async fn put_keys(&self, upload: &KeyUpload) -> Result<PutKeysOutcome, StorageError> {
        let conversation = upload.conversation_id.as_uuid();
        let mut conn = self.conn().await?;
        conn.transaction(async |conn| {
            let Some(state) = state_of(conn, conversation, true).await? else {
                return Ok(PutKeysOutcome::NotEncrypted);
            };
            let rotated = match upload.version_verdict(state.key_version) {
                Ok(rotated) => rotated,
                Err(refusal) => return Ok(refusal),
            };
            let allowed: HashSet<Uuid> = member_devices(conn, conversation)
                .await?
                .into_iter()
                .map(|d| d.id)
                .collect();
            let strangers: Vec<DeviceId> = upload
                .wraps
                .iter()
                .filter(|w| !allowed.contains(&w.device_id.as_uuid()))
                .map(|w| w.device_id)
                .collect();
            if !strangers.is_empty() {
                return Ok(PutKeysOutcome::NotMemberDevices(strangers));
            }
            let rows: Vec<_> = upload
                .wraps
                .iter()
                .map(|wrap| {
                    (
                        conversation_keys::conversation_id.eq(conversation),
                        conversation_keys::version.eq(upload.version),
                        conversation_keys::device_id.eq(wrap.device_id.as_uuid()),
                        conversation_keys::wrapped_key.eq(wrap.wrapped_key.as_str()),
                        conversation_keys::from_device_id.eq(upload.from_device_id.as_uuid()),
                        conversation_keys::created_at.eq(upload.created_at),
                    )
                })
                .collect();
            if !rows.is_empty() {
                diesel::insert_into(conversation_keys::table)
                    .values(&rows)
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
            }
            if rotated {
                diesel::update(conversation_encryption::table.find(conversation))
                    .set((
                        conversation_encryption::key_version.eq(upload.version),
                        conversation_encryption::rotation_needed.eq(false),
                    ))
                    .execute(conn)
                    .await?;
            }
            Ok::<_, DieselError>(PutKeysOutcome::Stored {
                key_version: upload.version,
                rotated,
            })
        })
        .await
        .map_err(db)
    }

    async fn keys_for_device(
        &self,
        conversation: ConversationId,
        device: DeviceId,
    ) -> Result<Vec<StoredKey>, StorageError> {
        let mut conn = self.conn().await?;
        // Joined on the wrapping device, live or revoked: its public key unwraps the key.
        let rows: Vec<(i64, String, Uuid, Uuid, String, DateTime<Utc>)> = conversation_keys::table
            .inner_join(devices::table.on(devices::id.eq(conversation_keys::from_device_id)))
            .filter(conversation_keys::conversation_id.eq(conversation.as_uuid()))
            .filter(conversation_keys::device_id.eq(device.as_uuid()))
            .order(conversation_keys::version.asc())
            .select((
                conversation_keys::version,
                conversation_keys::wrapped_key,
                conversation_keys::from_device_id,
                devices::user_id,
                devices::public_key,
                conversation_keys::created_at,
            ))
            .load(&mut conn)
            .await
            .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(
                |(version, wrapped_key, from, owner, public_key, created_at)| StoredKey {
                    version,
                    wrapped_key,
                    from_device_id: from.into(),
                    from_user_id: owner.into(),
                    from_public_key: DevicePublicKey::from_trusted(public_key),
                    created_at,
                },
            )
            .collect())
    }

    async fn missing_keys(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<MissingKeys>, StorageError> {
        let conversation = conversation.as_uuid();
        let mut conn = self.conn().await?;
        conn.build_transaction()
            .read_only()
            .repeatable_read()
            .run(async |conn| {
                let Some(state) = state_of(conn, conversation, false).await? else {
                    return Ok(None);
                };
                let holders: HashSet<Uuid> = conversation_keys::table
                    .filter(conversation_keys::conversation_id.eq(conversation))
                    .filter(conversation_keys::version.eq(state.key_version))
                    .select(conversation_keys::device_id)
                    .load::<Uuid>(conn)
                    .await?
                    .into_iter()
                    .collect();
                let devices = member_devices(conn, conversation)
                    .await?
                    .into_iter()
                    .filter(|d| !holders.contains(&d.id))
                    .map(Device::from)
                    .collect();
                Ok::<_, DieselError>(Some(MissingKeys {
                    key_version: state.key_version,
                    rotation_needed: state.rotation_needed,
                    devices,
                }))
            })
            .await
            .map_err(db)
    }

    async fn put_key_backup(&self, user: UserId, backup: &KeyBackup) -> Result<(), StorageError> {
        let row = BackupRow {
            user_id: user.as_uuid(),
            version: i32::try_from(backup.version).map_err(StorageError::new)?,
            kdf: backup.kdf.clone(),
            iterations: i32::try_from(backup.iterations).map_err(StorageError::new)?,
            salt: backup.salt.clone(),
            iv: backup.iv.clone(),
            ct: backup.ct.clone(),
            updated_at: Utc::now(),
        };
        let mut conn = self.conn().await?;
        diesel::insert_into(key_backups::table)
            .values(&row)
            .on_conflict(key_backups::user_id)
            .do_update()
            .set(&row)
            .execute(&mut conn)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn key_backup(&self, user: UserId) -> Result<Option<KeyBackup>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<BackupRow> = key_backups::table
            .find(user.as_uuid())
            .select(BackupRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db)?;
        row.map(|r| {
            Ok(KeyBackup {
                version: u32::try_from(r.version).map_err(StorageError::new)?,
                kdf: r.kdf,
                iterations: u32::try_from(r.iterations).map_err(StorageError::new)?,
                salt: r.salt,
                iv: r.iv,
                ct: r.ct,
            })
        })
        .transpose()
    }

    async fn delete_key_backup(&self, user: UserId) -> Result<bool, StorageError> {
        let mut conn = self.conn().await?;
        let deleted = diesel::delete(key_backups::table.find(user.as_uuid()))
            .execute(&mut conn)
            .await
            .map_err(db)?;
        Ok(deleted > 0)
    }
}
