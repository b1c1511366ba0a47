//! Ids taken from a path or a query string.
//!
//! An id that is not a UUID is read as the nil UUID, which no entity ever has (every id is
//! made by `Uuid::now_v7` or `new_v4`). The domain then gives exactly the answer it gives
//! for an unknown id, after the same checks in the same order: 403 `not_participant` for a
//! conversation, 404 `user_not_found`, `message_not_found` or `not_a_member` for the others.
//! So a malformed id can never reveal more than an unknown one, and no rule is duplicated here.

use uuid::Uuid;

/// The id in `raw`, or the id of nothing.
pub fn parse_or_nil<T: From<Uuid>>(raw: &str) -> T {
    T::from(Uuid::parse_str(raw.trim()).unwrap_or(Uuid::nil()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ConversationId;

    #[test]
    fn a_uuid_is_read_as_itself_and_anything_else_as_the_id_of_nothing() {
        let id = Uuid::now_v7();
        assert_eq!(
            parse_or_nil::<ConversationId>(&id.to_string()).as_uuid(),
            id
        );
        assert_eq!(parse_or_nil::<ConversationId>("42").as_uuid(), Uuid::nil());
        assert_eq!(parse_or_nil::<ConversationId>("").as_uuid(), Uuid::nil());
    }
}
