//! Accounts.

use crate::prepared::TouchLastSeen;
use crate::rows::UserRow;
use crate::schema::users;
use crate::{bigint, db, violates, PostgresStorage};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use domain::ports::{InsertUserError, UserStore};
use domain::user::{EmailAddress, NewUser, User, UserCredentials};
use domain::{StorageError, UserId};
use uuid::Uuid;

/// Search results come alphabetically, case-insensitively, comparing code points (not the
/// database's locale), so the order is the same on every server and in every adapter.
const BY_NAME: &str = r#"lower(users.display_name) COLLATE "C""#;

#[async_trait]
impl UserStore for PostgresStorage {
    async fn insert_user(&self, user: &NewUser) -> Result<User, InsertUserError> {
        let row = UserRow {
            id: user.id.as_uuid(),
            email: user.email.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
            password_hash: user.password_hash.clone(),
            avatar_url: None,
            created_at: user.created_at,
            last_seen_at: None,
        };
        let mut conn = self.conn().await?;
        // Reading back what was stored keeps timestamps exactly as later reads see them.
        diesel::insert_into(users::table)
            .values(&row)
            .returning(UserRow::as_returning())
            .get_result(&mut conn)
            .await
            .map(User::from)
            .map_err(|err| {
                if violates(&err, "users_email_key") {
                    InsertUserError::DuplicateEmail
                } else {
                    InsertUserError::Storage(db(err))
                }
            })
    }

    async fn credentials_by_email(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<UserCredentials>, StorageError> {
        let mut conn = self.conn().await?;
        let row = users::table
            .filter(users::email.eq(email.as_str()))
            .select(UserRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db)?;
        Ok(row.map(UserRow::into_credentials))
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StorageError> {
        let mut conn = self.conn().await?;
        let row = users::table
            .find(id.as_uuid())
            .select(UserRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db)?;
        Ok(row.map(User::from))
    }

    async fn users_by_ids(&self, ids: &[UserId]) -> Result<Vec<User>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = ids.iter().map(UserId::as_uuid).collect();
        let mut conn = self.conn().await?;
        let rows = users::table
            .filter(users::id.eq_any(ids))
            .select(UserRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(User::from).collect())
    }

    async fn search_users(
        &self,
        query: &str,
        limit: u32,
        exclude: UserId,
    ) -> Result<Vec<User>, StorageError> {
        let literal = escape_like(query);
        let mut conn = self.conn().await?;
        let rows = users::table
            .filter(users::id.ne(exclude.as_uuid()))
            .filter(
                users::display_name
                    .ilike(format!("%{literal}%"))
                    .escape('\\')
                    .or(users::email.ilike(format!("{literal}%")).escape('\\')),
            )
            .order((sql::<Text>(BY_NAME), users::id))
            .limit(bigint(limit))
            .select(UserRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(User::from).collect())
    }

    async fn touch_last_seen(&self, user: UserId, at: DateTime<Utc>) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        TouchLastSeen {
            at: &at,
            user: &user.as_uuid(),
            newer_than: &at,
        }
        .execute(&mut conn)
        .await
        .map(drop)
        .map_err(db)
    }
}

/// `raw` as a LIKE pattern that matches it literally: `%`, `_` and the escape character
/// itself lose their special meaning.
fn escape_like(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for c in raw.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_and_the_escape_character_are_escaped() {
        assert_eq!(escape_like(r"50%_off\now"), r"50\%\_off\\now");
        assert_eq!(escape_like("plain"), "plain");
    }
}
