//! `EncryptionStore`: devices, conversations' encryption, wrapped keys, key backups.
//! Nothing here is hot: every operation is a few short statements in one transaction
//! (writes on the single writer, so each check-then-write is atomic).

use crate::rows::{id, micros, time};
use crate::schema::{
    conversation_encryption, conversation_keys, devices, key_backups, participants,
};
use crate::SqliteStorage;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel::sqlite::{Sqlite, SqliteConnection};
use domain::encryption::{
    Device, DeviceName, DevicePublicKey, EncryptionState, InsertDeviceOutcome, KeyBackup,
    KeyUpload, MissingKeys, NewDevice, PutKeysOutcome, StoredKey,
};
use domain::ports::EncryptionStore;
use domain::{ConversationId, DeviceId, StorageError, UserId};
use std::collections::HashSet;

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = devices, check_for_backend(Sqlite))]
struct DeviceRow {
    id: String,
    user_id: String,
    public_key: String,
    name: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl DeviceRow {
    fn into_device(self) -> QueryResult<Device> {
        Ok(Device {
            id: id(&self.id)?,
            user_id: id(&self.user_id)?,
            public_key: DevicePublicKey::from_trusted(self.public_key),
            name: DeviceName::from_trusted(self.name),
            created_at: time(self.created_at)?,
            revoked_at: self.revoked_at.map(time).transpose()?,
        })
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = conversation_encryption, check_for_backend(Sqlite))]
struct EncryptionRow {
    conversation_id: String,
    key_version: i64,
    rotation_needed: bool,
    enabled_at: i64,
}

impl EncryptionRow {
    fn into_state(self) -> QueryResult<EncryptionState> {
        Ok(EncryptionState {
            conversation_id: id(&self.conversation_id)?,
            key_version: self.key_version,
            rotation_needed: self.rotation_needed,
            enabled_at: time(self.enabled_at)?,
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = key_backups, check_for_backend(Sqlite))]
struct BackupRow {
    user_id: String,
    version: i32,
    kdf: String,
    iterations: i32,
    salt: String,
    iv: String,
    ct: String,
    updated_at: i64,
}

fn state_of(
    conn: &mut SqliteConnection,
    conversation: &str,
) -> QueryResult<Option<EncryptionState>> {
    conversation_encryption::table
        .find(conversation)
        .select(EncryptionRow::as_select())
        .first(conn)
        .optional()?
        .map(EncryptionRow::into_state)
        .transpose()
}

/// The live devices of `conversation`'s current members, oldest first (ties by id).
fn member_devices(conn: &mut SqliteConnection, conversation: &str) -> QueryResult<Vec<DeviceRow>> {
    let members = participants::table
        .filter(participants::conversation_id.eq(conversation))
        .select(participants::user_id);
    devices::table
        .filter(devices::user_id.eq_any(members))
        .filter(devices::revoked_at.is_null())
        .order((devices::created_at.asc(), devices::id.asc()))
        .select(DeviceRow::as_select())
        .load(conn)
}

#[async_trait]
impl EncryptionStore for SqliteStorage {
    async fn insert_device(
        &self,
        device: &NewDevice,
        max_live: usize,
    ) -> Result<InsertDeviceOutcome, StorageError> {
        let row = DeviceRow {
            id: device.id.to_string(),
            user_id: device.user_id.to_string(),
            public_key: device.public_key.as_str().to_owned(),
            name: device.name.as_str().to_owned(),
            created_at: micros(device.created_at),
            revoked_at: None,
        };
        let max_live = i64::try_from(max_live).unwrap_or(i64::MAX);
        self.write(move |conn| {
            let live: i64 = devices::table
                .filter(devices::user_id.eq(&row.user_id))
                .filter(devices::revoked_at.is_null())
                .count()
                .get_result(conn)?;
            if live >= max_live {
                return Ok(InsertDeviceOutcome::TooMany);
            }
            let stored = diesel::insert_into(devices::table)
                .values(&row)
                .returning(DeviceRow::as_select())
                .get_result(conn)?;
            stored.into_device().map(InsertDeviceOutcome::Inserted)
        })
        .await
    }

    async fn device(&self, device: DeviceId) -> Result<Option<Device>, StorageError> {
        self.read(move |conn| {
            devices::table
                .find(device.to_string())
                .select(DeviceRow::as_select())
                .first(conn)
                .optional()?
                .map(DeviceRow::into_device)
                .transpose()
        })
        .await
    }

    async fn live_devices(&self, user: UserId) -> Result<Vec<Device>, StorageError> {
        self.read(move |conn| {
            devices::table
                .filter(devices::user_id.eq(user.to_string()))
                .filter(devices::revoked_at.is_null())
                .order((devices::created_at.asc(), devices::id.asc()))
                .select(DeviceRow::as_select())
                .load(conn)?
                .into_iter()
                .map(DeviceRow::into_device)
                .collect()
        })
        .await
    }

    async fn revoke_device(
        &self,
        user: UserId,
        device: DeviceId,
        at: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let (user, device, at) = (user.to_string(), device.to_string(), micros(at));
        self.write(move |conn| {
            let revoked = diesel::update(
                devices::table
                    .filter(devices::id.eq(&device))
                    .filter(devices::user_id.eq(&user))
                    .filter(devices::revoked_at.is_null()),
            )
            .set(devices::revoked_at.eq(at))
            .execute(conn)?;
            if revoked == 0 {
                return Ok(false);
            }
            diesel::delete(
                conversation_keys::table.filter(conversation_keys::device_id.eq(&device)),
            )
            .execute(conn)?;
            Ok(true)
        })
        .await
    }

    async fn enable_encryption(
        &self,
        conversation: ConversationId,
        at: DateTime<Utc>,
    ) -> Result<(EncryptionState, bool), StorageError> {
        let (conversation, at) = (conversation.to_string(), micros(at));
        self.write(move |conn| {
            let inserted = diesel::insert_into(conversation_encryption::table)
                .values((
                    conversation_encryption::conversation_id.eq(&conversation),
                    conversation_encryption::key_version.eq(0),
                    conversation_encryption::rotation_needed.eq(false),
                    conversation_encryption::enabled_at.eq(at),
                ))
                .on_conflict_do_nothing()
                .execute(conn)?;
            let state = state_of(conn, &conversation)?.ok_or_else(|| {
                diesel::result::Error::DeserializationError(
                    "encryption state missing after insert".into(),
                )
            })?;
            Ok((state, inserted > 0))
        })
        .await
    }

    async fn encryption_state(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<EncryptionState>, StorageError> {
        self.read(move |conn| state_of(conn, &conversation.to_string()))
            .await
    }

    async fn encryption_states(
        &self,
        conversations: &[ConversationId],
    ) -> Result<Vec<EncryptionState>, StorageError> {
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = conversations.iter().map(ToString::to_string).collect();
        self.read(move |conn| {
            conversation_encryption::table
                .filter(conversation_encryption::conversation_id.eq_any(&ids))
                .select(EncryptionRow::as_select())
                .load(conn)?
                .into_iter()
                .map(EncryptionRow::into_state)
                .collect()
        })
        .await
    }

    async fn put_keys(&self, upload: &KeyUpload) -> Result<PutKeysOutcome, StorageError> {
        let upload = upload.clone();
        let conversation = upload.conversation_id.to_string();
        self.write(move |conn| {
            let Some(state) = state_of(conn, &conversation)? else {
                return Ok(PutKeysOutcome::NotEncrypted);
            };
            let rotated = match upload.version_verdict(state.key_version) {
                Ok(rotated) => rotated,
                Err(refusal) => return Ok(refusal),
            };
            let allowed: HashSet<String> = member_devices(conn, &conversation)?
                .into_iter()
                .map(|d| d.id)
                .collect();
            let strangers: Vec<DeviceId> = upload
                .wraps
                .iter()
                .filter(|w| !allowed.contains(&w.device_id.to_string()))
                .map(|w| w.device_id)
                .collect();
            if !strangers.is_empty() {
                return Ok(PutKeysOutcome::NotMemberDevices(strangers));
            }
            let created_at = micros(upload.created_at);
            for wrap in &upload.wraps {
                diesel::insert_into(conversation_keys::table)
                    .values((
                        conversation_keys::conversation_id.eq(&conversation),
                        conversation_keys::version.eq(upload.version),
                        conversation_keys::device_id.eq(wrap.device_id.to_string()),
                        conversation_keys::wrapped_key.eq(&wrap.wrapped_key),
                        conversation_keys::from_device_id.eq(upload.from_device_id.to_string()),
                        conversation_keys::created_at.eq(created_at),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)?;
            }
            if rotated {
                diesel::update(conversation_encryption::table.find(&conversation))
                    .set((
                        conversation_encryption::key_version.eq(upload.version),
                        conversation_encryption::rotation_needed.eq(false),
                    ))
                    .execute(conn)?;
            }
            Ok(PutKeysOutcome::Stored {
                key_version: upload.version,
                rotated,
            })
        })
        .await
    }

    async fn keys_for_device(
        &self,
        conversation: ConversationId,
        device: DeviceId,
    ) -> Result<Vec<StoredKey>, StorageError> {
        let (conversation, device) = (conversation.to_string(), device.to_string());
        self.read(move |conn| {
            // Joined on the wrapping device, live or revoked: its public key unwraps the key.
            let rows: Vec<(i64, String, String, String, String, i64)> = conversation_keys::table
                .inner_join(devices::table.on(devices::id.eq(conversation_keys::from_device_id)))
                .filter(conversation_keys::conversation_id.eq(&conversation))
                .filter(conversation_keys::device_id.eq(&device))
                .order(conversation_keys::version.asc())
                .select((
                    conversation_keys::version,
                    conversation_keys::wrapped_key,
                    conversation_keys::from_device_id,
                    devices::user_id,
                    devices::public_key,
                    conversation_keys::created_at,
                ))
                .load(conn)?;
            rows.into_iter()
                .map(
                    |(version, wrapped_key, from, owner, public_key, created_at)| {
                        Ok(StoredKey {
                            version,
                            wrapped_key,
                            from_device_id: id(&from)?,
                            from_user_id: id(&owner)?,
                            from_public_key: DevicePublicKey::from_trusted(public_key),
                            created_at: time(created_at)?,
                        })
                    },
                )
                .collect()
        })
        .await
    }

    async fn missing_keys(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<MissingKeys>, StorageError> {
        let conversation = conversation.to_string();
        self.read(move |conn| {
            let Some(state) = state_of(conn, &conversation)? else {
                return Ok(None);
            };
            let holders: HashSet<String> = conversation_keys::table
                .filter(conversation_keys::conversation_id.eq(&conversation))
                .filter(conversation_keys::version.eq(state.key_version))
                .select(conversation_keys::device_id)
                .load::<String>(conn)?
                .into_iter()
                .collect();
            let devices = member_devices(conn, &conversation)?
                .into_iter()
                .filter(|d| !holders.contains(&d.id))
                .map(DeviceRow::into_device)
                .collect::<QueryResult<Vec<_>>>()?;
            Ok(Some(MissingKeys {
                key_version: state.key_version,
                rotation_needed: state.rotation_needed,
                devices,
            }))
        })
        .await
    }

    async fn put_key_backup(&self, user: UserId, backup: &KeyBackup) -> Result<(), StorageError> {
        let row = BackupRow {
            user_id: user.to_string(),
            version: i32::try_from(backup.version).map_err(StorageError::new)?,
            kdf: backup.kdf.clone(),
            iterations: i32::try_from(backup.iterations).map_err(StorageError::new)?,
            salt: backup.salt.clone(),
            iv: backup.iv.clone(),
            ct: backup.ct.clone(),
            updated_at: micros(Utc::now()),
        };
        self.write(move |conn| {
            diesel::insert_into(key_backups::table)
                .values(&row)
                .on_conflict(key_backups::user_id)
                .do_update()
                .set(&row)
                .execute(conn)
                .map(drop)
        })
        .await
    }

    async fn key_backup(&self, user: UserId) -> Result<Option<KeyBackup>, StorageError> {
        self.read(move |conn| {
            let row = key_backups::table
                .find(user.to_string())
                .select(BackupRow::as_select())
                .first(conn)
                .optional()?;
            row.map(|r| {
                let number = |n: i32| {
                    u32::try_from(n)
                        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
                };
                Ok(KeyBackup {
                    version: number(r.version)?,
                    kdf: r.kdf,
                    iterations: number(r.iterations)?,
                    salt: r.salt,
                    iv: r.iv,
                    ct: r.ct,
                })
            })
            .transpose()
        })
        .await
    }

    async fn delete_key_backup(&self, user: UserId) -> Result<bool, StorageError> {
        let user = user.to_string();
        self.write(move |conn| {
            let deleted = diesel::delete(key_backups::table.find(&user)).execute(conn)?;
            Ok(deleted > 0)
        })
        .await
    }
}
