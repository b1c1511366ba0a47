//! The message lifecycle of `MessageStore`: edits, deletions (tombstones), reactions, and
//! the reads recovery and history make of them.
//!
//! Every change runs on the single writer, so nothing else writes between reading a
//! message's state and changing it, and the conversation's change counter is taken
//! (`last_change = last_change + 1 ... RETURNING`) only once the change is sure to happen:
//! a change that changes nothing takes no number.

use crate::attachments::{message_of, messages_of};
use crate::rows::{convert, id, MessageRow};
use crate::schema::{conversations, messages, reactions};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use domain::message::{DeleteOutcome, Message, ReactionCount, ReactionOutcome};
use domain::MessageId;
use std::collections::HashMap;

/// The message `message` of `conversation` as stored (deleted or not), if any.
fn stored(
    conn: &mut SqliteConnection,
    conversation: &str,
    message: &str,
) -> QueryResult<Option<MessageRow>> {
    messages::table
        .find(message)
        .filter(messages::conversation_id.eq(conversation))
        .select(MessageRow::as_select())
        .first(conn)
        .optional()
}

/// Takes the conversation's next change number. Only on the writer, where nobody can take
/// it between this statement and the commit.
fn take_change(conn: &mut SqliteConnection, conversation: &str) -> QueryResult<i64> {
    diesel::update(conversations::table.find(conversation))
        .set(conversations::last_change.eq(conversations::last_change + 1))
        .returning(conversations::last_change)
        .get_result(conn)
}

/// What `MessageStore::edit_message` does, inside the writer's transaction.
pub(crate) fn edit(
    conn: &mut SqliteConnection,
    conversation: &str,
    message: &str,
    content: &str,
    at: i64,
) -> QueryResult<Option<Message>> {
    match stored(conn, conversation, message)? {
        Some(row) if row.deleted_at.is_none() => {}
        _ => return Ok(None),
    }
    let change = take_change(conn, conversation)?;
    diesel::update(messages::table.find(message))
        .set((
            messages::content.eq(content),
            messages::edited_at.eq(at),
            messages::change_seq.eq(change),
        ))
        .returning(MessageRow::as_returning())
        .get_result(conn)
        .and_then(|row| message_of(conn, row))
        .map(Some)
}

/// What `MessageStore::delete_message` does, inside the writer's transaction.
pub(crate) fn delete(
    conn: &mut SqliteConnection,
    conversation: &str,
    message: &str,
    by: &str,
    at: i64,
) -> QueryResult<Option<DeleteOutcome>> {
    let Some(row) = stored(conn, conversation, message)? else {
        return Ok(None);
    };
    if row.deleted_at.is_some() {
        return row
            .into_message()
            .map(|m| Some(DeleteOutcome::AlreadyDeleted(m)));
    }
    let change = take_change(conn, conversation)?;
    diesel::delete(reactions::table.filter(reactions::message_id.eq(message))).execute(conn)?;
    diesel::update(messages::table.find(message))
        .set((
            messages::content.eq(""),
            messages::deleted_at.eq(at),
            messages::deleted_by.eq(by),
            messages::change_seq.eq(change),
        ))
        .returning(MessageRow::as_returning())
        .get_result(conn)?
        .into_message()
        .map(|m| Some(DeleteOutcome::Deleted(m)))
}

/// One reaction to set or clear.
pub(crate) struct Reaction {
    pub(crate) conversation: String,
    pub(crate) message: String,
    pub(crate) user: String,
    pub(crate) emoji: String,
    pub(crate) on: bool,
    pub(crate) at: i64,
}

/// What `MessageStore::set_reaction` does, inside the writer's transaction.
pub(crate) fn react(
    conn: &mut SqliteConnection,
    r: &Reaction,
) -> QueryResult<Option<ReactionOutcome>> {
    let row = match stored(conn, &r.conversation, &r.message)? {
        Some(row) if row.deleted_at.is_none() => row,
        _ => return Ok(None),
    };
    let key = || reactions::table.find((&r.message, &r.user, &r.emoji));
    let there = diesel::select(diesel::dsl::exists(key())).get_result::<bool>(conn)?;
    if there == r.on {
        // Adding what is there, or removing what is not: nothing changes.
        return Ok(Some(ReactionOutcome {
            message: message_of(conn, row)?,
            changed: false,
        }));
    }
    let change = take_change(conn, &r.conversation)?;
    if r.on {
        diesel::insert_into(reactions::table)
            .values((
                reactions::conversation_id.eq(&r.conversation),
                reactions::message_id.eq(&r.message),
                reactions::user_id.eq(&r.user),
                reactions::emoji.eq(&r.emoji),
                reactions::change_seq.eq(change),
                reactions::created_at.eq(r.at),
            ))
            .execute(conn)?;
    } else {
        diesel::delete(key()).execute(conn)?;
    }
    let row = diesel::update(messages::table.find(&r.message))
        .set(messages::change_seq.eq(change))
        .returning(MessageRow::as_returning())
        .get_result(conn)?;
    let message = message_of(conn, row)?;
    Ok(Some(ReactionOutcome {
        message,
        changed: true,
    }))
}

/// What `MessageStore::changes_after` reads: the conversation's changed messages after
/// `after`, in change order. The literal `change_seq > 0` lets SQLite use the partial
/// index (a bound value never proves a partial index's condition).
pub(crate) fn changes_after(
    conn: &mut SqliteConnection,
    conversation: &str,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<Message>> {
    let rows = messages::table
        .filter(messages::conversation_id.eq(conversation))
        .filter(sql::<Bool>("messages.change_seq > 0"))
        .filter(messages::change_seq.gt(after))
        .order(messages::change_seq.asc())
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)?;
    messages_of(conn, rows)
}

/// Every reaction to a set of messages of one conversation, one row per (message, emoji):
/// how many, the first `bound` users (earliest first, comma-separated; NULL when `bound`
/// is 0), whether `viewer` is among all of them, and the change number of the emoji's
/// first use, rows of a message in that order. The messages come as a JSON array, so this
/// is one statement (compiled once per connection) for any number of them.
pub(crate) struct ReactionsOf<'a> {
    pub(crate) bound: i64,
    pub(crate) viewer: &'a str,
    pub(crate) conversation: &'a str,
    pub(crate) messages_json: &'a str,
}

/// A row of [`ReactionsOf`], in its column order.
pub(crate) type ReactionsRow = (String, String, i64, Option<String>, bool, i64);

impl QueryId for ReactionsOf<'_> {
    type QueryId = ReactionsOf<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for ReactionsOf<'_> {
    type SqlType = (Text, Text, BigInt, Nullable<Text>, Bool, BigInt);
}

impl RunQueryDsl<SqliteConnection> for ReactionsOf<'_> {}

impl QueryFragment<Sqlite> for ReactionsOf<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql(
            "SELECT message_id, emoji, count(*), \
             group_concat(CASE WHEN turn <= ",
        );
        out.push_bind_param::<BigInt, _>(&self.bound)?;
        out.push_sql(" THEN user_id END, ',' ORDER BY change_seq), max(user_id = ");
        out.push_bind_param::<Text, _>(self.viewer)?;
        out.push_sql(
            "), min(change_seq) AS first_use \
             FROM (SELECT message_id, emoji, user_id, change_seq, row_number() OVER \
             (PARTITION BY message_id, emoji ORDER BY change_seq) AS turn \
             FROM reactions WHERE conversation_id = ",
        );
        out.push_bind_param::<Text, _>(self.conversation)?;
        out.push_sql(" AND message_id IN (SELECT value FROM json_each(");
        out.push_bind_param::<Text, _>(self.messages_json)?;
        out.push_sql(
            "))) \
             GROUP BY message_id, emoji ORDER BY message_id, first_use",
        );
        Ok(())
    }
}

/// What `MessageStore::reactions_of` reads, per message in the order of `messages` (each
/// once, only those with reactions).
pub(crate) fn reactions_of(
    conn: &mut SqliteConnection,
    conversation: &str,
    messages: &[MessageId],
    viewer: &str,
    bound: u32,
) -> QueryResult<Vec<(MessageId, Vec<ReactionCount>)>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    // UUIDs need no escaping in JSON.
    let ids: Vec<String> = messages.iter().map(|m| format!("\"{m}\"")).collect();
    let messages_json = format!("[{}]", ids.join(","));
    let rows: Vec<ReactionsRow> = ReactionsOf {
        bound: i64::from(bound),
        viewer,
        conversation,
        messages_json: &messages_json,
    }
    .load(conn)?;
    let mut by_message: HashMap<String, Vec<ReactionCount>> = HashMap::new();
    for (message, emoji, count, users, me, _first_use) in rows {
        let user_ids = match users {
            Some(users) => convert(users.split(',').collect(), id)?,
            None => Vec::new(),
        };
        by_message.entry(message).or_default().push(ReactionCount {
            emoji,
            count: u32::try_from(count)
                .map_err(|_| crate::rows::corrupt(format!("{count} reactions")))?,
            user_ids,
            me,
        });
    }
    Ok(messages
        .iter()
        .filter_map(|m| by_message.remove(&m.to_string()).map(|r| (*m, r)))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[derive(QueryableByName)]
    struct PlanLine {
        #[diesel(sql_type = Text)]
        detail: String,
    }

    use crate::hot::tests::connection;

    /// SQLite's plan of `sql` (its marks left unbound, which SQLite reads as NULL).
    fn plan(conn: &mut SqliteConnection, sql: &str) -> Vec<String> {
        diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
            .load::<PlanLine>(conn)
            .unwrap()
            .into_iter()
            .map(|line| line.detail)
            .collect()
    }

    #[test]
    fn changes_are_read_through_the_partial_index_in_change_order() {
        let (mut conn, _) = connection();
        let query = messages::table
            .filter(messages::conversation_id.eq("c"))
            .filter(sql::<Bool>("messages.change_seq > 0"))
            .filter(messages::change_seq.gt(3))
            .order(messages::change_seq.asc())
            .limit(10)
            .select(MessageRow::as_select());
        let sql = diesel::debug_query::<Sqlite, _>(&query).to_string();
        let sql = sql.split(" -- binds").next().unwrap().to_owned();
        let plan = plan(&mut conn, &sql);
        assert!(
            plan.iter()
                .any(|l| l.contains("USING INDEX messages_conversation_id_change_seq")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{plan:?}");
    }

    #[test]
    fn reactions_of_probes_the_primary_key_and_is_compiled_once() {
        let (mut conn, cached) = connection();
        let query = ReactionsOf {
            bound: 3,
            viewer: "u",
            conversation: "c",
            messages_json: "[]",
        };
        let sql = diesel::debug_query::<Sqlite, _>(&query).to_string();
        let sql = sql.split(" -- binds").next().unwrap().to_owned();
        let plan = plan(&mut conn, &sql);
        assert!(
            plan.iter()
                .any(|l| l.contains("SEARCH reactions USING INDEX sqlite_autoindex_reactions_1")),
            "{plan:?}"
        );

        for _ in 0..2 {
            let ids = [MessageId::new(), MessageId::new()];
            assert!(reactions_of(&mut conn, "c", &ids, "u", 3)
                .unwrap()
                .is_empty());
        }
        assert_eq!(cached.lock().unwrap().len(), 1);
    }
}
