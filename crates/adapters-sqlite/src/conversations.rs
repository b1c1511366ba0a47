//! `ConversationStore`: conversations and membership.

use crate::attachments::{attachments_of, message_with};
use crate::connection::coalesce;
use crate::hot;
use crate::rows::{
    convert, corrupt, id, micros, ConversationRow, MessageRow, NewConversationRow, ParticipantRow,
    UserRow,
};
use crate::schema::{conversation_encryption, conversations, messages, participants, users};
use crate::SqliteStorage;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel::sqlite::SqliteConnection;
use domain::conversation::{
    direct_key, ConversationDetails, ConversationKind, ConversationState, ConversationSummary,
    GroupTitle, NewDirectConversation, NewGroupConversation, Participant, ParticipantProfile, Role,
    SessionSnapshot,
};
use domain::ports::ConversationStore;
use domain::{ConversationId, StorageError, UserId};
use std::collections::HashMap;

#[async_trait]
impl ConversationStore for SqliteStorage {
    async fn create_direct(
        &self,
        new: &NewDirectConversation,
    ) -> Result<(ConversationDetails, bool), StorageError> {
        let new = new.clone();
        let key = direct_key(new.created_by, new.other);
        // The single writer serialises A->B and B->A: the second finds the first's row.
        self.write(move |conn| {
            let existing = conversations::table
                .filter(conversations::direct_key.eq(&key))
                .select(ConversationRow::as_select())
                .first(conn)
                .optional()?;
            if let Some(row) = existing {
                return Ok((details_of_one(conn, row)?, false));
            }
            let mut members = vec![(new.created_by, Role::Member), (new.other, Role::Member)];
            members.dedup_by_key(|(user, _)| *user);
            let row = NewConversationRow {
                id: new.id.to_string(),
                kind: ConversationKind::Direct.as_str(),
                title: None,
                created_by: new.created_by.to_string(),
                created_at: micros(new.created_at),
                direct_key: Some(key.clone()),
            };
            let created = insert_conversation(conn, &row, &members)?;
            Ok((created, true))
        })
        .await
    }

    async fn create_group(
        &self,
        new: &NewGroupConversation,
    ) -> Result<ConversationDetails, StorageError> {
        let row = NewConversationRow {
            id: new.id.to_string(),
            kind: ConversationKind::Group.as_str(),
            title: Some(new.title.as_str().to_owned()),
            created_by: new.created_by.to_string(),
            created_at: micros(new.created_at),
            direct_key: None,
        };
        // Owner first: members who joined in the same instant are listed in insertion order.
        let mut members = vec![(new.created_by, Role::Owner)];
        members.extend(
            new.members
                .iter()
                .filter(|user| **user != new.created_by)
                .map(|user| (*user, Role::Member)),
        );
        self.write(move |conn| insert_conversation(conn, &row, &members))
            .await
    }

    async fn conversation(
        &self,
        id: ConversationId,
    ) -> Result<Option<ConversationDetails>, StorageError> {
        self.read(move |conn| {
            let row = conversations::table
                .find(id.to_string())
                .select(ConversationRow::as_select())
                .first(conn)
                .optional()?;
            row.map(|row| details_of_one(conn, row)).transpose()
        })
        .await
    }

    async fn participant(
        &self,
        id: ConversationId,
        user: UserId,
    ) -> Result<Option<Participant>, StorageError> {
        self.read(move |conn| {
            participants::table
                .find((id.to_string(), user.to_string()))
                .select(ParticipantRow::as_select())
                .first(conn)
                .optional()?
                .map(ParticipantRow::into_participant)
                .transpose()
        })
        .await
    }

    async fn list_conversations(
        &self,
        user: UserId,
        kind: Option<ConversationKind>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, StorageError> {
        self.read(move |conn| {
            let mut page = conversations::table
                .inner_join(participants::table)
                .filter(participants::user_id.eq(user.to_string()))
                .select(ConversationRow::as_select())
                .order((
                    coalesce(conversations::last_message_at, conversations::created_at).desc(),
                    conversations::id.desc(),
                ))
                .offset(i64::from(offset))
                .limit(i64::from(limit))
                .into_boxed();
            if let Some(kind) = kind {
                page = page.filter(conversations::kind.eq(kind.as_str()));
            }
            let rows = page.load(conn)?;
            let ids: Vec<String> = rows.iter().map(|row| row.id.clone()).collect();
            let mut last_messages: HashMap<String, MessageRow> = messages::table
                .inner_join(conversations::table)
                .filter(messages::conversation_id.eq_any(&ids))
                .filter(messages::seq.eq(conversations::last_seq))
                .select(MessageRow::as_select())
                .load(conn)?
                .into_iter()
                .map(|m| (m.conversation_id.clone(), m))
                .collect();
            let mut attachments = attachments_of(conn, last_messages.values())?;
            details_of(conn, rows)?
                .into_iter()
                .zip(ids)
                .map(|(details, id)| {
                    Ok(ConversationSummary {
                        details,
                        last_message: last_messages
                            .remove(&id)
                            .map(|m| message_with(m, &mut attachments))
                            .transpose()?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn add_participant(
        &self,
        id: ConversationId,
        user: UserId,
        role: Role,
        joined_at: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let (id, user, joined_at) = (id.to_string(), user.to_string(), micros(joined_at));
        self.write(move |conn| {
            let Some(last_seq) = conversations::table
                .find(&id)
                .select(conversations::last_seq)
                .first::<i64>(conn)
                .optional()?
            else {
                return Ok(false);
            };
            // Nothing from before joining counts as unread, nor as undelivered.
            let added = diesel::insert_into(participants::table)
                .values(&ParticipantRow {
                    conversation_id: id.clone(),
                    user_id: user.clone(),
                    role: role.as_str().to_owned(),
                    joined_at,
                    delivered_seq: last_seq,
                    read_seq: last_seq,
                })
                .on_conflict_do_nothing()
                .execute(conn)?;
            Ok(added == 1)
        })
        .await
    }

    async fn remove_participant(
        &self,
        id: ConversationId,
        user: UserId,
    ) -> Result<bool, StorageError> {
        let key = (id.to_string(), user.to_string());
        self.write(move |conn| {
            let removed =
                diesel::delete(participants::table.find((&key.0, &key.1))).execute(conn)?;
            if removed > 0 {
                // The removed member's devices hold the current key: the next one must be
                // made without them (issue 13).
                diesel::update(
                    conversation_encryption::table
                        .find(&key.0)
                        .filter(conversation_encryption::key_version.gt(0)),
                )
                .set(conversation_encryption::rotation_needed.eq(true))
                .execute(conn)?;
            }
            Ok(removed > 0)
        })
        .await
    }

    async fn set_role(
        &self,
        id: ConversationId,
        user: UserId,
        role: Role,
    ) -> Result<(), StorageError> {
        let key = (id.to_string(), user.to_string());
        self.write(move |conn| {
            diesel::update(participants::table.find((&key.0, &key.1)))
                .set(participants::role.eq(role.as_str()))
                .execute(conn)
                .map(drop)
        })
        .await
    }

    async fn rename_conversation(
        &self,
        id: ConversationId,
        title: &GroupTitle,
    ) -> Result<(), StorageError> {
        let (id, title) = (id.to_string(), title.as_str().to_owned());
        self.write(move |conn| {
            // Only groups have titles; a direct conversation keeps none.
            diesel::update(
                conversations::table
                    .find(&id)
                    .filter(conversations::kind.eq(ConversationKind::Group.as_str())),
            )
            .set(conversations::title.eq(&title))
            .execute(conn)
            .map(drop)
        })
        .await
    }

    async fn unread_counts(
        &self,
        user: UserId,
    ) -> Result<Vec<(ConversationId, i64)>, StorageError> {
        self.read(move |conn| {
            let rows: Vec<(String, i64, i64)> = participants::table
                .inner_join(conversations::table)
                .filter(participants::user_id.eq(user.to_string()))
                .select((
                    conversations::id,
                    conversations::last_seq,
                    participants::read_seq,
                ))
                .order(conversations::id.asc())
                .load(conn)?;
            convert(rows, |(conversation, last_seq, read_seq)| {
                Ok((id(&conversation)?, (last_seq - read_seq).max(0)))
            })
        })
        .await
    }

    async fn conversation_ids(&self, user: UserId) -> Result<Vec<ConversationId>, StorageError> {
        let user = user.to_string();
        self.read(move |conn| {
            let rows: Vec<String> = participants::table
                .filter(participants::user_id.eq(&user))
                .select(participants::conversation_id)
                .load(conn)?;
            convert(rows, |conversation| id(&conversation))
        })
        .await
    }

    async fn session_snapshot(
        &self,
        user: UserId,
    ) -> Result<Option<SessionSnapshot>, StorageError> {
        let user = user.to_string();
        self.read(move |conn| {
            let rows: Vec<hot::SessionSnapshotRow> =
                hot::SessionSnapshot { user: &user }.load(conn)?;
            let mut account = None;
            let mut conversations = Vec::with_capacity(rows.len());
            let mut encrypted = Vec::new();
            for (
                user_row,
                conversation,
                last_seq,
                last_change,
                delivered,
                read,
                peer_delivered,
                peer_read,
                is_encrypted,
            ) in rows
            {
                if account.is_none() {
                    account = Some(user_row.into_user()?);
                }
                let Some(conversation) = conversation else {
                    continue; // a user in no conversation
                };
                let (Some(last_seq), Some(last_change), Some(delivered_seq), Some(read_seq)) =
                    (last_seq, last_change, delivered, read)
                else {
                    return Err(corrupt(format!(
                        "membership of {conversation} without its conversation"
                    )));
                };
                if is_encrypted {
                    encrypted.push(id(&conversation)?);
                }
                conversations.push(ConversationState {
                    conversation_id: id(&conversation)?,
                    last_seq,
                    delivered_seq,
                    read_seq,
                    peer_delivered_seq: peer_delivered,
                    peer_read_seq: peer_read,
                    last_change,
                });
            }
            Ok(account.map(|user| SessionSnapshot {
                user,
                conversations,
                encrypted,
            }))
        })
        .await
    }
}

/// Inserts a conversation and its first members (all joining at its creation, with
/// nothing delivered or read) and reads it back.
fn insert_conversation(
    conn: &mut SqliteConnection,
    row: &NewConversationRow,
    members: &[(UserId, Role)],
) -> QueryResult<ConversationDetails> {
    diesel::insert_into(conversations::table)
        .values(row)
        .execute(conn)?;
    let participants: Vec<ParticipantRow> = members
        .iter()
        .map(|(user, role)| ParticipantRow {
            conversation_id: row.id.clone(),
            user_id: user.to_string(),
            role: role.as_str().to_owned(),
            joined_at: row.created_at,
            delivered_seq: 0,
            read_seq: 0,
        })
        .collect();
    // Rows are inserted in order, so rowid order (the tie-break between equal
    // `joined_at`s) lists the owner first.
    diesel::insert_into(participants::table)
        .values(&participants)
        .execute(conn)?;
    let created = conversations::table
        .find(&row.id)
        .select(ConversationRow::as_select())
        .first(conn)?;
    details_of_one(conn, created)
}

fn details_of_one(
    conn: &mut SqliteConnection,
    row: ConversationRow,
) -> QueryResult<ConversationDetails> {
    let mut details = details_of(conn, vec![row])?;
    details
        .pop()
        .ok_or_else(|| crate::rows::corrupt("a conversation vanished while read".into()))
}

/// The conversations of `rows`, in that order, each with its members (oldest first) and
/// their profiles, in one query for all.
fn details_of(
    conn: &mut SqliteConnection,
    rows: Vec<ConversationRow>,
) -> QueryResult<Vec<ConversationDetails>> {
    let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    let members: Vec<(ParticipantRow, UserRow)> = participants::table
        .inner_join(users::table)
        .filter(participants::conversation_id.eq_any(&ids))
        .order((participants::joined_at.asc(), participants::rowid.asc()))
        .select((ParticipantRow::as_select(), UserRow::as_select()))
        .load(conn)?;
    let mut by_conversation: HashMap<String, Vec<ParticipantProfile>> = HashMap::new();
    for (participant, user) in members {
        by_conversation
            .entry(participant.conversation_id.clone())
            .or_default()
            .push(participant.into_profile(user)?);
    }
    rows.into_iter()
        .map(|row| {
            let participants = by_conversation.remove(&row.id).unwrap_or_default();
            Ok(ConversationDetails {
                conversation: row.into_conversation()?,
                participants,
            })
        })
        .collect()
}
