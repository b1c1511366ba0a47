//! `UserStore`: accounts.

use crate::connection::unicode_lower;
use crate::rows::{convert, micros, NewUserRow, UserRow};
use crate::schema::users;
use crate::SqliteStorage;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use domain::ports::{InsertUserError, UserStore};
use domain::user::{EmailAddress, NewUser, User, UserCredentials};
use domain::{StorageError, UserId};

#[async_trait]
impl UserStore for SqliteStorage {
    async fn insert_user(&self, user: &NewUser) -> Result<User, InsertUserError> {
        let row = NewUserRow::from(user);
        let inserted = self
            .write(move |conn| {
                let result = diesel::insert_into(users::table)
                    .values(&row)
                    .returning(UserRow::as_select())
                    .get_result(conn);
                match result {
                    Ok(user) => user.into_user().map(Some),
                    // The constraint is the arbiter, so racing inserts cannot both win.
                    Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
                        if info.message().contains("users.email") =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        inserted.ok_or(InsertUserError::DuplicateEmail)
    }

    async fn credentials_by_email(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<UserCredentials>, StorageError> {
        let email = email.as_str().to_owned();
        self.read(move |conn| {
            let found = users::table
                .filter(users::email.eq(&email))
                .select((UserRow::as_select(), users::password_hash))
                .first::<(UserRow, String)>(conn)
                .optional()?;
            found
                .map(|(user, password_hash)| {
                    Ok(UserCredentials {
                        user: user.into_user()?,
                        password_hash,
                    })
                })
                .transpose()
        })
        .await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StorageError> {
        self.read(move |conn| {
            users::table
                .find(id.to_string())
                .select(UserRow::as_select())
                .first(conn)
                .optional()?
                .map(UserRow::into_user)
                .transpose()
        })
        .await
    }

    async fn users_by_ids(&self, ids: &[UserId]) -> Result<Vec<User>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(UserId::to_string).collect();
        self.read(move |conn| {
            let rows = users::table
                .filter(users::id.eq_any(&ids))
                .select(UserRow::as_select())
                .load(conn)?;
            convert(rows, UserRow::into_user)
        })
        .await
    }

    async fn search_users(
        &self,
        query: &str,
        limit: u32,
        exclude: UserId,
    ) -> Result<Vec<User>, StorageError> {
        // Both sides lower-cased by the same (Unicode) function, so case never matters.
        let needle = escape_like(&query.to_lowercase());
        let (contains, prefix) = (format!("%{needle}%"), format!("{needle}%"));
        self.read(move |conn| {
            let rows = users::table
                .filter(users::id.ne(exclude.to_string()))
                .filter(
                    unicode_lower(users::display_name)
                        .like(contains)
                        .escape('\\')
                        .or(unicode_lower(users::email).like(prefix).escape('\\')),
                )
                .order((unicode_lower(users::display_name).asc(), users::id.asc()))
                .limit(i64::from(limit))
                .select(UserRow::as_select())
                .load(conn)?;
            convert(rows, UserRow::into_user)
        })
        .await
    }

    async fn touch_last_seen(&self, user: UserId, at: DateTime<Utc>) -> Result<(), StorageError> {
        let (id, at) = (user.to_string(), micros(at));
        self.write(move |conn| {
            // The condition keeps the latest when several nodes record one user's departures.
            diesel::update(users::table.find(&id))
                .filter(users::last_seen_at.is_null().or(users::last_seen_at.lt(at)))
                .set(users::last_seen_at.eq(at))
                .execute(conn)
                .map(drop)
        })
        .await
    }
}

/// `text` as a LIKE pattern that matches only itself: `%`, `_` and the escape character
/// are escaped with `\`.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
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
        assert_eq!(escape_like(r"100%_a\b"), r"100\%\_a\\b");
        assert_eq!(escape_like("plain"), "plain");
    }
}
