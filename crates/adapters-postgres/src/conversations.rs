//! Conversations and membership.

use crate::attachments::{attachments_of, message_with};
use crate::rows::{profile, ConversationRow, MessageRow, ParticipantRow, UserRow};
use crate::schema::{conversation_encryption, conversations, messages, participants, users};
use crate::{bigint, db, prepared, PostgresStorage};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::conversation::{
    direct_key, Conversation, ConversationDetails, ConversationKind, ConversationState,
    ConversationSummary, GroupTitle, NewDirectConversation, NewGroupConversation, Participant,
    ParticipantProfile, Role, SessionSnapshot,
};
use domain::ports::ConversationStore;
use domain::user::{DisplayName, EmailAddress, User};
use domain::{ConversationId, StorageError, UserId};
use std::collections::HashMap;
use uuid::Uuid;

/// Adds a member whose watermarks start at the conversation's `last_seq`. `FOR SHARE`
/// waits for an append in flight (it holds the row `FOR NO KEY UPDATE`), so the newcomer
/// starts after every message committed before it joined.
const ADD_PARTICIPANT: &str = "\
INSERT INTO participants (conversation_id, user_id, role, joined_at, delivered_seq, read_seq)
SELECT c.id, $2, $3, $4, c.last_seq, c.last_seq
FROM conversations c
WHERE c.id = $1
FOR SHARE
ON CONFLICT (conversation_id, user_id) DO NOTHING";

/// Newest activity first: the newest message, else creation.
const ACTIVITY: &str = "COALESCE(conversations.last_message_at, conversations.created_at)";

/// A row of [`SessionSnapshot`](crate::prepared::SessionSnapshot).
type SnapshotRow = (
    Uuid,
    String,
    String,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<Uuid>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    bool,
);

#[async_trait]
impl ConversationStore for PostgresStorage {
    async fn create_direct(
        &self,
        new: &NewDirectConversation,
    ) -> Result<(ConversationDetails, bool), StorageError> {
        let key = direct_key(new.created_by, new.other);
        let mut conn = self.conn().await?;
        // Of two concurrent creations of one pair, the second INSERT waits on the unique
        // index until the first commits, then does nothing: both read the same row back.
        let created = conn
            .transaction(async |conn| {
                let made = diesel::insert_into(conversations::table)
                    .values((
                        conversations::id.eq(new.id.as_uuid()),
                        conversations::kind.eq(ConversationKind::Direct.as_str()),
                        conversations::created_by.eq(new.created_by.as_uuid()),
                        conversations::created_at.eq(new.created_at),
                        conversations::direct_key.eq(&key),
                    ))
                    .on_conflict(conversations::direct_key)
                    .do_nothing()
                    .execute(conn)
                    .await?
                    == 1;
                if made {
                    let members = [new.created_by, new.other]
                        .map(|user| member(new.id, user, Role::Member, new.created_at));
                    insert_members(conn, &members).await?;
                }
                Ok::<_, diesel::result::Error>(made)
            })
            .await
            .map_err(db)?;
        let id: Uuid = conversations::table
            .filter(conversations::direct_key.eq(&key))
            .select(conversations::id)
            .first(&mut conn)
            .await
            .map_err(db)?;
        let details = details(&mut conn, id)
            .await?
            .ok_or_else(|| StorageError::msg("the direct conversation vanished after creation"))?;
        Ok((details, created))
    }

    async fn create_group(
        &self,
        new: &NewGroupConversation,
    ) -> Result<ConversationDetails, StorageError> {
        let mut members = vec![member(new.id, new.created_by, Role::Owner, new.created_at)];
        members.extend(
            new.members
                .iter()
                .filter(|user| **user != new.created_by)
                .map(|user| member(new.id, *user, Role::Member, new.created_at)),
        );
        let mut conn = self.conn().await?;
        conn.transaction(async |conn| {
            diesel::insert_into(conversations::table)
                .values((
                    conversations::id.eq(new.id.as_uuid()),
                    conversations::kind.eq(ConversationKind::Group.as_str()),
                    conversations::title.eq(new.title.as_str()),
                    conversations::created_by.eq(new.created_by.as_uuid()),
                    conversations::created_at.eq(new.created_at),
                ))
                .execute(conn)
                .await?;
            insert_members(conn, &members).await
        })
        .await
        .map_err(db)?;
        details(&mut conn, new.id.as_uuid())
            .await?
            .ok_or_else(|| StorageError::msg("the group vanished after creation"))
    }

    async fn conversation(
        &self,
        id: ConversationId,
    ) -> Result<Option<ConversationDetails>, StorageError> {
        let mut conn = self.conn().await?;
        details(&mut conn, id.as_uuid()).await
    }

    async fn participant(
        &self,
        id: ConversationId,
        user: UserId,
    ) -> Result<Option<Participant>, StorageError> {
        let row = self
            .timed(async |conn| {
                participants::table
                    .find((id.as_uuid(), user.as_uuid()))
                    .select(ParticipantRow::as_select())
                    .first(&mut **conn)
                    .await
                    .optional()
                    .map_err(db)
            })
            .await?;
        row.map(Participant::try_from).transpose()
    }

    async fn list_conversations(
        &self,
        user: UserId,
        kind: Option<ConversationKind>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, StorageError> {
        let mut conn = self.conn().await?;
        // Two queries (the page with each newest message, then every member of the page),
        // and the newest messages' attachments if any has some, in one snapshot, so they
        // agree with each other.
        let (page, members, mut attachments) = conn
            .build_transaction()
            .repeatable_read()
            .read_only()
            .run(async |conn| {
                let mut query = conversations::table
                    .inner_join(participants::table)
                    .left_join(
                        messages::table.on(messages::conversation_id
                            .eq(conversations::id)
                            .and(messages::seq.eq(conversations::last_seq))),
                    )
                    .filter(participants::user_id.eq(user.as_uuid()))
                    .into_boxed();
                if let Some(kind) = kind {
                    query = query.filter(conversations::kind.eq(kind.as_str()));
                }
                let page: Vec<(ConversationRow, Option<MessageRow>)> = query
                    .order((
                        sql::<Timestamptz>(ACTIVITY).desc(),
                        conversations::id.desc(),
                    ))
                    .offset(bigint(offset))
                    .limit(bigint(limit))
                    .select((
                        ConversationRow::as_select(),
                        Option::<MessageRow>::as_select(),
                    ))
                    .load(conn)
                    .await?;
                let ids: Vec<Uuid> = page.iter().map(|(c, _)| c.id).collect();
                let members = members_of(conn, ids).await?;
                let attachments =
                    attachments_of(conn, page.iter().filter_map(|(_, m)| m.as_ref())).await?;
                Ok::<_, diesel::result::Error>((page, members, attachments))
            })
            .await
            .map_err(db)?;
        let mut members = group_members(members)?;
        page.into_iter()
            .map(|(conversation, last_message)| {
                let participants = members.remove(&conversation.id).unwrap_or_default();
                Ok(ConversationSummary {
                    details: ConversationDetails {
                        conversation: Conversation::try_from(conversation)?,
                        participants,
                    },
                    last_message: last_message
                        .map(|m| message_with(m, &mut attachments))
                        .transpose()
                        .map_err(db)?,
                })
            })
            .collect()
    }

    async fn add_participant(
        &self,
        id: ConversationId,
        user: UserId,
        role: Role,
        joined_at: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let mut conn = self.conn().await?;
        let added = diesel::sql_query(ADD_PARTICIPANT)
            .bind::<diesel::sql_types::Uuid, _>(id.as_uuid())
            .bind::<diesel::sql_types::Uuid, _>(user.as_uuid())
            .bind::<Text, _>(role.as_str())
            .bind::<Timestamptz, _>(joined_at)
            .execute(&mut conn)
            .await
            .map_err(db)?;
        Ok(added == 1)
    }

    async fn remove_participant(
        &self,
        id: ConversationId,
        user: UserId,
    ) -> Result<bool, StorageError> {
        let mut conn = self.conn().await?;
        conn.transaction(async |conn| {
            let removed = diesel::delete(participants::table.find((id.as_uuid(), user.as_uuid())))
                .execute(conn)
                .await?;
            if removed == 1 {
                // The removed member's devices hold the current key: the next one must be
                // made without them (issue 13). Always updating the row (not only when a
                // key exists) takes its lock, so a key upload racing this removal either
                // commits first (and is flagged here) or reads the members after it.
                diesel::update(conversation_encryption::table.find(id.as_uuid()))
                    .set(
                        conversation_encryption::rotation_needed
                            .eq(conversation_encryption::rotation_needed
                                .or(conversation_encryption::key_version.gt(0))),
                    )
                    .execute(conn)
                    .await?;
            }
            Ok::<_, diesel::result::Error>(removed == 1)
        })
        .await
        .map_err(db)
    }

    async fn set_role(
        &self,
        id: ConversationId,
        user: UserId,
        role: Role,
    ) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        diesel::update(participants::table.find((id.as_uuid(), user.as_uuid())))
            .set(participants::role.eq(role.as_str()))
            .execute(&mut conn)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn rename_conversation(
        &self,
        id: ConversationId,
        title: &GroupTitle,
    ) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        diesel::update(conversations::table.find(id.as_uuid()))
            .set(conversations::title.eq(title.as_str()))
            .execute(&mut conn)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn unread_counts(
        &self,
        user: UserId,
    ) -> Result<Vec<(ConversationId, i64)>, StorageError> {
        let rows: Vec<(Uuid, i64)> = self
            .timed(async |conn| {
                prepared::UnreadCounts {
                    user: &user.as_uuid(),
                }
                .load(&mut **conn)
                .await
                .map_err(db)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, unread)| (ConversationId::from_uuid(id), unread.max(0)))
            .collect())
    }

    async fn conversation_ids(&self, user: UserId) -> Result<Vec<ConversationId>, StorageError> {
        let mut conn = self.conn().await?;
        let ids: Vec<Uuid> = participants::table
            .filter(participants::user_id.eq(user.as_uuid()))
            .select(participants::conversation_id)
            .load(&mut conn)
            .await
            .map_err(db)?;
        Ok(ids.into_iter().map(ConversationId::from_uuid).collect())
    }

    async fn session_snapshot(
        &self,
        user: UserId,
    ) -> Result<Option<SessionSnapshot>, StorageError> {
        let rows: Vec<SnapshotRow> = self
            .timed(async |conn| {
                prepared::SessionSnapshot {
                    user: &user.as_uuid(),
                }
                .load(&mut **conn)
                .await
                .map_err(db)
            })
            .await?;
        let mut account = None;
        let mut conversations = Vec::with_capacity(rows.len());
        let mut encrypted = Vec::new();
        for row in rows {
            let (id, email, display_name, avatar_url, created_at, last_seen_at) =
                (row.0, row.1, row.2, row.3, row.4, row.5);
            account.get_or_insert_with(|| User {
                id: UserId::from_uuid(id),
                email: EmailAddress::from_trusted(email),
                display_name: DisplayName::from_trusted(display_name),
                avatar_url,
                created_at,
                last_seen_at,
            });
            let Some(conversation) = row.6 else {
                continue; // a user in no conversation
            };
            let (Some(last_seq), Some(last_change), Some(delivered_seq), Some(read_seq)) =
                (row.7, row.8, row.9, row.10)
            else {
                return Err(StorageError::msg(format!(
                    "membership of {conversation} without its conversation"
                )));
            };
            conversations.push(ConversationState {
                conversation_id: ConversationId::from_uuid(conversation),
                last_seq,
                delivered_seq,
                read_seq,
                peer_delivered_seq: row.11,
                peer_read_seq: row.12,
                last_change,
            });
            if row.13 {
                encrypted.push(ConversationId::from_uuid(conversation));
            }
        }
        Ok(account.map(|user| SessionSnapshot {
            user,
            conversations,
            encrypted,
        }))
    }
}

/// A new member row with watermarks at 0 (a conversation being created has no messages).
fn member(
    id: ConversationId,
    user: UserId,
    role: Role,
    joined_at: DateTime<Utc>,
) -> ParticipantRow {
    ParticipantRow {
        conversation_id: id.as_uuid(),
        user_id: user.as_uuid(),
        role: role.as_str().to_owned(),
        joined_at,
        delivered_seq: 0,
        read_seq: 0,
    }
}

async fn insert_members(
    conn: &mut AsyncPgConnection,
    members: &[ParticipantRow],
) -> QueryResult<()> {
    diesel::insert_into(participants::table)
        .values(members)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// A row of [`ConversationDetails`](crate::prepared::ConversationDetails): the
/// conversation, and one member with its profile (all NULL when it has none).
#[derive(QueryableByName)]
pub(crate) struct DetailsRow {
    #[diesel(embed)]
    conversation: ConversationRow,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    user_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    role: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    joined_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<BigInt>)]
    delivered_seq: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    read_seq: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    display_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    email: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    avatar_url: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_seen_at: Option<DateTime<Utc>>,
}

impl DetailsRow {
    /// The member of this row, if any; an error when the row has a member half missing.
    fn member(&self) -> Result<Option<ParticipantProfile>, StorageError> {
        let Some(user_id) = self.user_id else {
            return Ok(None);
        };
        let (Some(role), Some(joined_at), Some(delivered_seq), Some(read_seq)) = (
            self.role.clone(),
            self.joined_at,
            self.delivered_seq,
            self.read_seq,
        ) else {
            return Err(StorageError::msg(format!(
                "member {user_id} of {} with its row incomplete",
                self.conversation.id
            )));
        };
        let (Some(display_name), Some(email)) = (self.display_name.clone(), self.email.clone())
        else {
            return Err(StorageError::msg(format!(
                "member {user_id} of {} without its account",
                self.conversation.id
            )));
        };
        let participant = ParticipantRow {
            conversation_id: self.conversation.id,
            user_id,
            role,
            joined_at,
            delivered_seq,
            read_seq,
        };
        Ok(Some(ParticipantProfile {
            participant: participant.try_into()?,
            display_name,
            email,
            avatar_url: self.avatar_url.clone(),
            last_seen_at: self.last_seen_at,
        }))
    }
}

/// The conversation `id` with its members, oldest first, in one query.
async fn details(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<ConversationDetails>, StorageError> {
    let rows: Vec<DetailsRow> = prepared::ConversationDetails { id: &id }
        .load(conn)
        .await
        .map_err(db)?;
    let Some(first) = <[DetailsRow]>::first(&rows) else {
        return Ok(None);
    };
    let conversation = Conversation::try_from(first.conversation.clone())?;
    let mut participants = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(member) = row.member()? {
            participants.push(member);
        }
    }
    Ok(Some(ConversationDetails {
        conversation,
        participants,
    }))
}

/// Every member of the conversations `ids`, with their profiles, oldest first.
async fn members_of(
    conn: &mut AsyncPgConnection,
    ids: Vec<Uuid>,
) -> QueryResult<Vec<(ParticipantRow, UserRow)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    participants::table
        .inner_join(users::table)
        .filter(participants::conversation_id.eq_any(ids))
        .order((
            participants::conversation_id,
            participants::joined_at,
            participants::user_id,
        ))
        .select((ParticipantRow::as_select(), UserRow::as_select()))
        .load(conn)
        .await
}

fn group_members(
    rows: Vec<(ParticipantRow, UserRow)>,
) -> Result<HashMap<Uuid, Vec<ParticipantProfile>>, StorageError> {
    let mut grouped: HashMap<Uuid, Vec<ParticipantProfile>> = HashMap::new();
    for row in rows {
        let conversation = row.0.conversation_id;
        grouped.entry(conversation).or_default().push(profile(row)?);
    }
    Ok(grouped)
}
