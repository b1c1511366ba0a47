//! The statements every send, every receipt flush and every session open runs, as query
//! types diesel keeps prepared.
//!
//! diesel never caches `sql_query` text (nor some DSL forms: an `UPDATE`, a locking
//! `SELECT`), and diesel-async runs an uncached statement as a `Parse`/`Describe` round trip
//! of its own before the `Bind`/`Execute` one, then closes it: every call paid an extra round
//! trip, PostgreSQL's parse and plan, and the close. At 500 sends a second that was most of
//! PostgreSQL's CPU (`pg_stat_statements`: the receipt flush alone planned 3 s in 20 s). The
//! types below carry fixed SQL and a static query id, so each connection prepares each of
//! them once and reuses it.
//!
//! [`statement!`] declares one: its fields are its binds, in the order of the `?` marks in
//! its SQL (diesel writes `$1`, `$2`... there).
//!
//! Each connection plans each of them once (a generic plan, see `SESSION_SETUP` in
//! `lib.rs`), usually while the tables are still empty, and keeps that plan as they grow.
//! So their shapes leave the planner no choice that is only good on small tables: every
//! table is read by an index condition, either `= ANY` of a parameter array on a single
//! table, or in a subquery parameterized by the rows before it (`CROSS JOIN LATERAL`)
//! that the planner cannot pull up into a join it could reorder into a hash join or a walk
//! of a whole index (a `LIMIT`, `OFFSET 0` or `FOR NO KEY UPDATE` keeps it a subquery).
//! Sequential scans are disabled on the pooled connections, which leaves an index probe
//! as the only plan for each such read. `tests/plans.rs` checks every plan after growth.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::{Error, QueryResult};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz, Untyped};
use uuid::Uuid;

type SqlUuid = diesel::sql_types::Uuid;

/// The next piece of `sql` up to its next bind (`?`), or an error when the SQL has fewer
/// marks than the statement has binds.
fn piece<'s>(pieces: &mut std::str::Split<'s, char>, name: &str) -> QueryResult<&'s str> {
    pieces.next().ok_or_else(|| {
        Error::QueryBuilderError(format!("{name}: fewer `?` in its SQL than binds").into())
    })
}

/// Declares a prepared statement type: `statement! { Name<'a> { field: RustType => SqlType,
/// ... } -> RowSqlType = "SQL with ? for each bind"; }`.
macro_rules! statement {
    (
        $(#[$doc:meta])*
        $name:ident<$a:lifetime> { $($field:ident: $ty:ty => $sql_ty:ty),+ $(,)? }
        -> $row:ty = $sql:expr;
    ) => {
        $(#[$doc])*
        pub(crate) struct $name<$a> {
            $(pub(crate) $field: $ty,)+
        }

        impl QueryId for $name<'_> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl Query for $name<'_> {
            type SqlType = $row;
        }

        impl QueryFragment<Pg> for $name<'_> {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                let mut pieces = $sql.split('?');
                out.push_sql(piece(&mut pieces, stringify!($name))?);
                $(
                    out.push_bind_param::<$sql_ty, _>(&self.$field)?;
                    out.push_sql(piece(&mut pieces, stringify!($name))?);
                )+
                match pieces.next() {
                    None => Ok(()),
                    Some(_) => Err(Error::QueryBuilderError(
                        format!("{}: more `?` in its SQL than binds", stringify!($name)).into(),
                    )),
                }
            }
        }
    };
}

statement! {
    /// Locks the batch's conversation rows in the order of `ids` (the caller sorts them, so
    /// concurrent batches touching the same conversations queue instead of deadlocking) and
    /// answers each one's `last_seq`. `FOR NO KEY UPDATE` serialises appends without
    /// blocking foreign-key checks.
    ///
    /// One primary-key probe per id, by construction (see the module's doc): the locking
    /// subquery is never pulled up into a join, and a nested loop over `unnest` visits the
    /// ids, and so takes the locks, in array order. An `id = ANY(?) ORDER BY id` form let
    /// a generic plan made on a small table sort a sequential scan, or walk the whole
    /// primary key for its order.
    LockConversations<'a> { ids: &'a [Uuid] => Array<SqlUuid> }
    -> (SqlUuid, BigInt) = "\
SELECT c.id, c.last_seq
FROM unnest(?::uuid[]) AS k(id)
CROSS JOIN LATERAL (
    SELECT id, last_seq FROM conversations WHERE id = k.id FOR NO KEY UPDATE
) c";
}

statement! {
    /// The stored messages of the given (sender, key) pairs (`MessageRow`s): one lookup in
    /// the key's unique index per pair. The `LIMIT 1` keeps the subquery from being pulled
    /// up into a join the planner may turn into a hash join over a sequential scan: an
    /// `IN (SELECT unnest ...)` form kept such a plan, made while `messages` was small, as
    /// the connection's generic plan, and read 90 pages per send at 10,000 messages. What
    /// is left, a scan of `messages` by both key columns, is an index probe because
    /// sequential scans are disabled on the pooled connections: a plan made while
    /// `messages` was analyzed empty chose one otherwise, and read the whole table per key.
    ExistingKeys<'a> {
        senders: &'a [Uuid] => Array<SqlUuid>,
        keys: &'a [&'a str] => Array<Text>,
    }
    -> Untyped = "\
SELECT m.*
FROM unnest(?::uuid[], ?::text[]) AS k(sender_id, client_msg_id)
CROSS JOIN LATERAL (
    SELECT * FROM messages
    WHERE sender_id = k.sender_id AND client_msg_id = k.client_msg_id
    LIMIT 1
) m";
}

statement! {
    /// All new messages of a batch in one statement, whatever the batch size.
    InsertMessages<'a> {
        ids: Vec<Uuid> => Array<SqlUuid>,
        conversations: Vec<Uuid> => Array<SqlUuid>,
        seqs: Vec<i64> => Array<BigInt>,
        senders: Vec<Uuid> => Array<SqlUuid>,
        keys: Vec<Option<&'a str>> => Array<Nullable<Text>>,
        contents: Vec<&'a str> => Array<Text>,
        content_types: Vec<&'a str> => Array<Text>,
        replies: Vec<Option<Uuid>> => Array<Nullable<SqlUuid>>,
        times: Vec<chrono::DateTime<chrono::Utc>> => Array<Timestamptz>,
        attachment_counts: Vec<i32> => Array<Integer>,
    }
    -> Untyped = "\
INSERT INTO messages
    (id, conversation_id, seq, sender_id, client_msg_id, content, content_type, reply_to, created_at,
     attachment_count)
SELECT * FROM unnest(
    ?::uuid[], ?::uuid[], ?::int8[], ?::uuid[], ?::text[],
    ?::text[], ?::text[], ?::uuid[], ?::timestamptz[], ?::int4[]
)";
}

statement! {
    /// Locks the attachments a batch would bind (`AttachmentRow`s), in the order of `ids`
    /// (the caller sorts them), and answers each as it is now: after the lock is granted a
    /// row is read in its newest committed version, so of two sends of one attachment the
    /// second sees it bound by the first. One primary-key probe per id (see
    /// [`LockConversations`]); unknown ids have no row.
    LockAttachments<'a> { ids: &'a [Uuid] => Array<SqlUuid> }
    -> Untyped = "\
SELECT a.*
FROM unnest(?::uuid[]) AS k(id)
CROSS JOIN LATERAL (SELECT * FROM attachments WHERE id = k.id FOR UPDATE) a";
}

statement! {
    /// Binds attachments to the batch's new messages: `ids[i]` to message `messages[i]` at
    /// `positions[i]`, found by primary key (`= ANY`, each row finding its values by its
    /// position in `ids`, as in [`UpdateConversations`]). The rows are locked already
    /// ([`LockAttachments`]).
    BindAttachments<'a> {
        ids: &'a [Uuid] => Array<SqlUuid>,
        messages: &'a [Uuid] => Array<SqlUuid>,
        positions: &'a [i32] => Array<Integer>,
    }
    -> Untyped = "\
UPDATE attachments a
SET message_id = v.messages[array_position(v.ids, a.id)],
    position = v.positions[array_position(v.ids, a.id)]
FROM (SELECT ?::uuid[] AS ids, ?::uuid[] AS messages, ?::int4[] AS positions) v
WHERE a.id = ANY(v.ids)";
}

statement! {
    /// The attachments of some messages (`AttachmentRow`s), each message's in position
    /// order: one probe of `attachments_message_id_position_idx` per message (`= ANY` of the
    /// array). What a page of messages reads them by, when one of them has any.
    AttachmentsOfMessages<'a> { messages: &'a [Uuid] => Array<SqlUuid> }
    -> Untyped = "\
SELECT * FROM attachments WHERE message_id = ANY(?::uuid[]) ORDER BY message_id, position";
}

statement! {
    /// Each touched conversation's newest seq and time: `seqs[i]` and `times[i]` belong to
    /// `ids[i]`. No join (`v` is one row of parameters, which the planner folds into the
    /// statement), so nothing for a generic plan to get wrong: one scan of
    /// `conversations` by primary key (`id = ANY`), each row finding its values by its
    /// position in `ids` (a batch touches few conversations, so the linear
    /// `array_position` costs nothing). The `UPDATE ... FROM unnest(...)` form it replaces
    /// was planned, on a small table, as a hash join over a sequential scan of every
    /// conversation.
    UpdateConversations<'a> {
        ids: &'a [Uuid] => Array<SqlUuid>,
        seqs: &'a [i64] => Array<BigInt>,
        times: &'a [chrono::DateTime<chrono::Utc>] => Array<Timestamptz>,
    }
    -> Untyped = "\
UPDATE conversations c
SET last_seq = v.seqs[array_position(v.ids, c.id)],
    last_message_at = v.times[array_position(v.ids, c.id)]
FROM (SELECT ?::uuid[] AS ids, ?::int8[] AS seqs, ?::timestamptz[] AS times) v
WHERE c.id = ANY(v.ids)";
}

statement! {
    /// Moves every listed member's watermarks forward in one statement (`Advanced` rows).
    /// The member rows are locked in the order of the arrays first (the caller passes them
    /// sorted by (conversation, user), and appends take the same order), so two
    /// transactions touching overlapping members can never wait on each other in a cycle.
    /// Locking returns each row's newest version, which nobody can change until we commit:
    /// the watermarks as they were just before this update (`before_*`).
    ///
    /// Index access by construction: each member is one probe of the primary key (a
    /// locking subquery is never pulled up into a join, so the nested loop over `unnest`
    /// is the only plan), and the update finds each locked row again by its key. Not by
    /// the `ctid` the lock returned: when another transaction had updated the row first,
    /// the lock waits and returns the newest version, which the statement's own snapshot
    /// (taken before that commit) cannot see, so a TID scan updated nothing and the member
    /// read as absent (`not_participant` for a session whose fetch raced another's).
    /// The `IN (SELECT ...)` form before was planned, on a small table, as a hash join over
    /// a sequential scan of every member row.
    AdvanceWatermarks<'a> {
        conversations: &'a [Uuid] => Array<SqlUuid>,
        users: &'a [Uuid] => Array<SqlUuid>,
        delivered: &'a [Option<i64>] => Array<Nullable<BigInt>>,
        read: &'a [Option<i64>] => Array<Nullable<BigInt>>,
    }
    -> Untyped = "\
WITH locked AS MATERIALIZED (
    SELECT v.conversation_id, v.user_id, l.delivered_seq, l.read_seq,
        v.delivered_seq AS want_delivered, v.read_seq AS want_read
    FROM unnest(?::uuid[], ?::uuid[], ?::int8[], ?::int8[])
        AS v(conversation_id, user_id, delivered_seq, read_seq)
    CROSS JOIN LATERAL (
        SELECT p.delivered_seq, p.read_seq
        FROM participants p
        WHERE p.conversation_id = v.conversation_id AND p.user_id = v.user_id
        FOR NO KEY UPDATE
    ) l
)
UPDATE participants p
SET delivered_seq = GREATEST(p.delivered_seq, l.want_delivered, l.want_read),
    read_seq = GREATEST(p.read_seq, l.want_read)
FROM locked l
WHERE p.conversation_id = l.conversation_id AND p.user_id = l.user_id
RETURNING p.conversation_id, p.user_id, p.role, p.joined_at, p.delivered_seq, p.read_seq,
    l.delivered_seq AS before_delivered_seq, l.read_seq AS before_read_seq";
}

statement! {
    /// A session's snapshot: the account, then one row per conversation of the user with
    /// its `last_seq` and `last_change`, the user's watermarks (delivered at least read) and the lowest of the
    /// other members' (0 when alone). A user in no conversation gets one row whose
    /// membership columns are NULL; an unknown user, none.
    ///
    /// Each table is read in a subquery of its own (`OFFSET 0` keeps the planner from
    /// pulling it up into a join it may reorder), parameterized by the row before it: the
    /// account by primary key, its memberships by `user_id`, each conversation and its
    /// peers by key. A plain join form was planned, on small tables, as a nested loop
    /// walking the whole primary key of `conversations` per membership.
    SessionSnapshot<'a> { user: &'a Uuid => SqlUuid }
    -> (
        SqlUuid,
        Text,
        Text,
        Nullable<Text>,
        Timestamptz,
        Nullable<Timestamptz>,
        Nullable<SqlUuid>,
        Nullable<BigInt>,
        Nullable<BigInt>,
        Nullable<BigInt>,
        Nullable<BigInt>,
        BigInt,
        BigInt,
        Bool,
    ) = "\
SELECT u.id, u.email, u.display_name, u.avatar_url, u.created_at, u.last_seen_at,
    me.conversation_id, c.last_seq, c.last_change,
    GREATEST(me.delivered_seq, me.read_seq), me.read_seq,
    COALESCE(peers.delivered_seq, 0), COALESCE(peers.read_seq, 0),
    EXISTS (SELECT 1 FROM conversation_encryption e WHERE e.conversation_id = me.conversation_id)
FROM users u
LEFT JOIN LATERAL (
    SELECT p.conversation_id, p.user_id, p.delivered_seq, p.read_seq
    FROM participants p WHERE p.user_id = u.id OFFSET 0
) me ON true
LEFT JOIN LATERAL (
    SELECT last_seq, last_change FROM conversations WHERE id = me.conversation_id OFFSET 0
) c ON true
LEFT JOIN LATERAL (
    SELECT MIN(GREATEST(o.delivered_seq, o.read_seq)) AS delivered_seq,
        MIN(o.read_seq) AS read_seq
    FROM participants o
    WHERE o.conversation_id = me.conversation_id AND o.user_id <> me.user_id
) peers ON true
WHERE u.id = ?";
}

statement! {
    /// A conversation's row with each member's row and profile, oldest member first
    /// ([`DetailsRow`](crate::conversations::DetailsRow)s); one row with NULL member columns
    /// for a conversation without members, none for an unknown one. Every table in a
    /// parameterized subquery of its own, probed by key (see [`SessionSnapshot`]): a
    /// join of `participants` and `users` was planned, on small tables, as a nested loop
    /// walking the whole primary key of `users` per member.
    ConversationDetails<'a> { id: &'a Uuid => SqlUuid }
    -> Untyped = "\
SELECT c.id, c.kind, c.title, c.created_by, c.created_at, c.last_seq, c.last_message_at,
    c.last_change, m.user_id, m.role, m.joined_at, m.delivered_seq, m.read_seq,
    m.display_name, m.email, m.avatar_url, m.last_seen_at
FROM conversations c
LEFT JOIN LATERAL (
    SELECT p.user_id, p.role, p.joined_at, p.delivered_seq, p.read_seq,
        u.display_name, u.email, u.avatar_url, u.last_seen_at
    FROM participants p
    CROSS JOIN LATERAL (
        SELECT display_name, email, avatar_url, last_seen_at
        FROM users WHERE id = p.user_id OFFSET 0
    ) u
    WHERE p.conversation_id = c.id
    OFFSET 0
) m ON true
WHERE c.id = ?
ORDER BY m.joined_at, m.user_id";
}

statement! {
    /// Each conversation of a user with its unread count (`last_seq - read_seq`, may be
    /// negative only if the data is), read after every read receipt. The memberships by
    /// `user_id`, each conversation by primary key in a parameterized subquery of its own
    /// (see [`SessionSnapshot`]).
    UnreadCounts<'a> { user: &'a Uuid => SqlUuid }
    -> (SqlUuid, BigInt) = "\
SELECT p.conversation_id, c.last_seq - p.read_seq
FROM participants p
CROSS JOIN LATERAL (
    SELECT last_seq FROM conversations WHERE id = p.conversation_id OFFSET 0
) c
WHERE p.user_id = ?";
}

statement! {
    /// Records a departure; the condition keeps the latest when several nodes record one
    /// user's departures.
    TouchLastSeen<'a> {
        at: &'a chrono::DateTime<chrono::Utc> => Timestamptz,
        user: &'a Uuid => SqlUuid,
        newer_than: &'a chrono::DateTime<chrono::Utc> => Timestamptz,
    }
    -> Untyped = "\
UPDATE users SET last_seen_at = ?
WHERE id = ? AND (last_seen_at IS NULL OR last_seen_at < ?)";
}

statement! {
    /// Takes a conversation's next change number (`last_change + 1`) for an edit, deletion
    /// or reaction. The row stays locked (`FOR NO KEY UPDATE`, like an append's lock) until
    /// the transaction ends, so no other change of the conversation, on any node, takes a
    /// number in between; a transaction that then changes nothing rolls back and gives the
    /// number back. No row for an unknown conversation.
    TakeChange<'a> { id: &'a Uuid => SqlUuid }
    -> BigInt = "\
UPDATE conversations SET last_change = last_change + 1 WHERE id = ? RETURNING last_change";
}

statement! {
    /// Edits a message of the conversation unless it is deleted: the `MessageRow` after,
    /// or none.
    ///
    /// The message is found by its id alone, in a subquery of its own (`OFFSET 0`), and
    /// only then checked to be in the conversation: with `id = ? AND conversation_id = ?`
    /// side by side, a generic plan made on small tables took the `(conversation_id, seq)`
    /// index with `id` as a filter, reading the whole conversation to find one message. The
    /// same shape finds a message in every statement below; see [`MessageById`].
    EditMessage<'a> {
        content: &'a str => Text,
        at: &'a chrono::DateTime<chrono::Utc> => Timestamptz,
        change: &'a i64 => BigInt,
        id: &'a Uuid => SqlUuid,
        conversation: &'a Uuid => SqlUuid,
    }
    -> Untyped = "\
UPDATE messages SET content = ?, edited_at = ?, change_seq = ?
WHERE id = (
    SELECT id FROM (SELECT id, conversation_id FROM messages WHERE id = ? OFFSET 0) m
    WHERE conversation_id = ?
) AND deleted_at IS NULL
RETURNING *";
}

statement! {
    /// The message with this id if it is in this conversation (a `MessageRow`), deleted or
    /// not. Found by primary key alone, then checked (see [`EditMessage`]).
    MessageById<'a> {
        id: &'a Uuid => SqlUuid,
        conversation: &'a Uuid => SqlUuid,
    }
    -> Untyped = "\
SELECT * FROM (SELECT * FROM messages WHERE id = ? OFFSET 0) m WHERE conversation_id = ?";
}

statement! {
    /// The messages with these ids that are in this conversation (`MessageRow`s), deleted
    /// or not: one probe of the primary key per id (`= ANY` of the array), then checked to
    /// be in the conversation (see [`EditMessage`]). What a page's replies read their
    /// originals by.
    MessagesByIds<'a> {
        ids: &'a [Uuid] => Array<SqlUuid>,
        conversation: &'a Uuid => SqlUuid,
    }
    -> Untyped = "\
SELECT * FROM (SELECT * FROM messages WHERE id = ANY(?::uuid[]) OFFSET 0) m \
WHERE conversation_id = ?";
}

statement! {
    /// Deletes a message of the conversation unless it is deleted already: its content
    /// erased, its reactions removed, the tombstone (`MessageRow`) returned; none when
    /// there is no live message to delete. The reactions are found by the primary key's
    /// prefix, with the erased row's id as a one-time parameter (a scalar subquery, never
    /// a join a generic plan could get wrong).
    EraseMessage<'a> {
        at: &'a chrono::DateTime<chrono::Utc> => Timestamptz,
        by: &'a Uuid => SqlUuid,
        change: &'a i64 => BigInt,
        id: &'a Uuid => SqlUuid,
        conversation: &'a Uuid => SqlUuid,
    }
    -> Untyped = "\
WITH erased AS (
    UPDATE messages SET content = '', deleted_at = ?, deleted_by = ?, change_seq = ?
    WHERE id = (
        SELECT id FROM (SELECT id, conversation_id FROM messages WHERE id = ? OFFSET 0) m
        WHERE conversation_id = ?
    ) AND deleted_at IS NULL
    RETURNING *
), unreacted AS (
    DELETE FROM reactions WHERE message_id = (SELECT id FROM erased)
)
SELECT * FROM erased";
}

statement! {
    /// Adds a reaction to a live message of the conversation, stamping the change number on
    /// both: the message (`MessageRow`) after, or none when nothing was added (the reaction
    /// was there, or there is no live message).
    ReactOn<'a> {
        user: &'a Uuid => SqlUuid,
        emoji: &'a str => Text,
        change: &'a i64 => BigInt,
        at: &'a chrono::DateTime<chrono::Utc> => Timestamptz,
        id: &'a Uuid => SqlUuid,
        conversation: &'a Uuid => SqlUuid,
    }
    -> Untyped = "\
WITH added AS (
    INSERT INTO reactions (conversation_id, message_id, user_id, emoji, change_seq, created_at)
    SELECT m.conversation_id, m.id, ?, ?, ?, ?
    FROM (SELECT id, conversation_id, deleted_at FROM messages WHERE id = ? OFFSET 0) m
    WHERE m.conversation_id = ? AND m.deleted_at IS NULL
    ON CONFLICT (message_id, user_id, emoji) DO NOTHING
    RETURNING message_id, change_seq
)
UPDATE messages SET change_seq = (SELECT change_seq FROM added)
WHERE id = (SELECT message_id FROM added)
RETURNING *";
}

statement! {
    /// Removes a reaction from a message of the conversation, stamping the change number on
    /// the message: the message (`MessageRow`) after, or none when there was no such
    /// reaction (a deleted message has none).
    ReactOff<'a> {
        id: &'a Uuid => SqlUuid,
        user: &'a Uuid => SqlUuid,
        emoji: &'a str => Text,
        conversation: &'a Uuid => SqlUuid,
        change: &'a i64 => BigInt,
    }
    -> Untyped = "\
WITH removed AS (
    DELETE FROM reactions
    WHERE message_id = ? AND user_id = ? AND emoji = ? AND conversation_id = ?
    RETURNING message_id
)
UPDATE messages SET change_seq = ?
WHERE id = (SELECT message_id FROM removed) AND deleted_at IS NULL
RETURNING *";
}

statement! {
    /// The reactions to some messages of a conversation, one row per (message, emoji)
    /// ([`ReactionRow`](crate::lifecycle::ReactionRow)s), a message's rows in the order its
    /// emoji were first used: how many, the first `bound` users (by the change number that
    /// added each), whether `viewer` is among ALL of them. One probe of the primary key's
    /// prefix per message (`= ANY` of the array), whatever their number.
    ReactionsOf<'a> {
        bound: &'a i32 => Integer,
        viewer: &'a Uuid => SqlUuid,
        messages: &'a [Uuid] => Array<SqlUuid>,
        conversation: &'a Uuid => SqlUuid,
    }
    -> Untyped = "\
SELECT message_id, emoji, count(*) AS reactors,
    (array_agg(user_id ORDER BY change_seq))[1:?::int4] AS user_ids,
    bool_or(user_id = ?) AS me,
    min(change_seq) AS first_use
FROM reactions
WHERE message_id = ANY(?::uuid[]) AND conversation_id = ?
GROUP BY message_id, emoji
ORDER BY message_id, first_use";
}

statement! {
    /// The messages of a conversation changed after a change number, in change order
    /// (`MessageRow`s). The literal `change_seq > 0` is what lets a generic plan use the
    /// partial index `messages_conversation_id_change_seq_idx`: a parameter never proves
    /// the index's condition.
    ChangesAfter<'a> {
        conversation: &'a Uuid => SqlUuid,
        after: &'a i64 => BigInt,
        limit: &'a i64 => BigInt,
    }
    -> Untyped = "\
SELECT * FROM messages
WHERE conversation_id = ? AND change_seq > 0 AND change_seq > ?
ORDER BY change_seq
LIMIT ?";
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::query_builder::QueryBuilder;

    /// The SQL diesel sends for `query`, and whether it may keep it prepared.
    fn sql_of<Q: QueryFragment<Pg> + QueryId>(query: &Q) -> (String, bool) {
        let mut builder = diesel::pg::PgQueryBuilder::default();
        query
            .to_sql(&mut builder, &Pg)
            .unwrap_or_else(|e| panic!("{e}"));
        let cacheable = query.is_safe_to_cache_prepared(&Pg).unwrap_or(false);
        (builder.finish(), cacheable && Q::HAS_STATIC_QUERY_ID)
    }

    #[test]
    fn binds_land_on_the_marks_in_order_and_every_statement_is_cacheable() {
        let id = Uuid::nil();
        let at = chrono::Utc::now();
        let ids = [id];
        let keys = ["k"];
        let (sql, cached) = sql_of(&ExistingKeys {
            senders: &ids,
            keys: &keys,
        });
        assert!(cached);
        assert!(sql.contains("unnest($1::uuid[], $2::text[])"), "{sql}");
        assert!(!sql.contains('?'), "{sql}");

        let (sql, cached) = sql_of(&TouchLastSeen {
            at: &at,
            user: &id,
            newer_than: &at,
        });
        assert!(cached);
        assert!(sql.contains("last_seen_at = $1"), "{sql}");
        assert!(sql.contains("id = $2"), "{sql}");
        assert!(sql.ends_with("last_seen_at < $3)"), "{sql}");

        let (sql, cached) = sql_of(&InsertMessages {
            ids: vec![id],
            conversations: vec![id],
            seqs: vec![1],
            senders: vec![id],
            keys: vec![None],
            contents: vec!["x"],
            content_types: vec!["text"],
            replies: vec![None],
            times: vec![at],
            attachment_counts: vec![0],
        });
        assert!(cached);
        assert!(sql.contains("$9::timestamptz[]"), "{sql}");
        assert!(sql.contains("$10::int4[]"), "{sql}");

        for (sql, cached) in [
            sql_of(&LockConversations { ids: &ids }),
            sql_of(&UpdateConversations {
                ids: &ids,
                seqs: &[1],
                times: &[at],
            }),
            sql_of(&AdvanceWatermarks {
                conversations: &ids,
                users: &ids,
                delivered: &[Some(1)],
                read: &[None],
            }),
            sql_of(&SessionSnapshot { user: &id }),
            sql_of(&ConversationDetails { id: &id }),
            sql_of(&UnreadCounts { user: &id }),
            sql_of(&TakeChange { id: &id }),
            sql_of(&EditMessage {
                content: "x",
                at: &at,
                change: &1,
                id: &id,
                conversation: &id,
            }),
            sql_of(&EraseMessage {
                at: &at,
                by: &id,
                change: &1,
                id: &id,
                conversation: &id,
            }),
            sql_of(&ReactOn {
                user: &id,
                emoji: "x",
                change: &1,
                at: &at,
                id: &id,
                conversation: &id,
            }),
            sql_of(&ReactOff {
                id: &id,
                user: &id,
                emoji: "x",
                conversation: &id,
                change: &1,
            }),
            sql_of(&MessageById {
                id: &id,
                conversation: &id,
            }),
            sql_of(&MessagesByIds {
                ids: &ids,
                conversation: &id,
            }),
            sql_of(&ReactionsOf {
                bound: &3,
                viewer: &id,
                messages: &ids,
                conversation: &id,
            }),
            sql_of(&ChangesAfter {
                conversation: &id,
                after: &0,
                limit: &10,
            }),
            sql_of(&LockAttachments { ids: &ids }),
            sql_of(&BindAttachments {
                ids: &ids,
                messages: &ids,
                positions: &[0],
            }),
            sql_of(&AttachmentsOfMessages { messages: &ids }),
        ] {
            assert!(cached, "{sql}");
            assert!(sql.contains("$1"), "{sql}");
            assert!(!sql.contains('?'), "{sql}");
        }
    }

    statement! {
        /// Two marks, one bind: a declaration error.
        TooManyMarks<'a> { one: &'a i64 => BigInt } -> Untyped = "SELECT ?, ?";
    }

    statement! {
        /// No mark, one bind: a declaration error.
        TooFewMarks<'a> { one: &'a i64 => BigInt } -> Untyped = "SELECT 1";
    }

    #[test]
    fn a_statement_whose_marks_and_binds_differ_fails_to_build() {
        let mut builder = diesel::pg::PgQueryBuilder::default();
        let more = TooManyMarks { one: &1 }.to_sql(&mut builder, &Pg);
        assert!(matches!(more, Err(Error::QueryBuilderError(e)) if e.to_string().contains("more")));
        let mut builder = diesel::pg::PgQueryBuilder::default();
        let fewer = TooFewMarks { one: &1 }.to_sql(&mut builder, &Pg);
        assert!(
            matches!(fewer, Err(Error::QueryBuilderError(e)) if e.to_string().contains("fewer"))
        );
    }
}
