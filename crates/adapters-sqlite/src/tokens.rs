//! `RefreshTokenStore`: rotating refresh tokens, by hash.

use crate::rows::{id, micros, RefreshTokenRow};
use crate::schema::refresh_tokens;
use crate::SqliteStorage;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use domain::auth::{ConsumeOutcome, NewRefreshToken};
use domain::ports::RefreshTokenStore;
use domain::{StorageError, TokenFamilyId};

#[async_trait]
impl RefreshTokenStore for SqliteStorage {
    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StorageError> {
        let row = RefreshTokenRow {
            token_hash: token.token_hash.clone(),
            family_id: token.family_id.to_string(),
            user_id: token.user_id.to_string(),
            created_at: micros(token.created_at),
            expires_at: micros(token.expires_at),
            used_at: None,
            revoked_at: None,
        };
        self.write(move |conn| {
            diesel::insert_into(refresh_tokens::table)
                .values(&row)
                .execute(conn)
                .map(drop)
        })
        .await
    }

    async fn consume_refresh_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<ConsumeOutcome, StorageError> {
        let hash = token_hash.to_owned();
        let now = micros(now);
        // The single writer serialises consumers: of two racing, the second sees `used_at`.
        self.write(move |conn| {
            let Some(token) = refresh_tokens::table
                .find(&hash)
                .select(RefreshTokenRow::as_select())
                .first(conn)
                .optional()?
            else {
                return Ok(ConsumeOutcome::Unknown);
            };
            let family_id: TokenFamilyId = id(&token.family_id)?;
            if token.used_at.is_some() || token.revoked_at.is_some() {
                return Ok(ConsumeOutcome::AlreadyUsed { family_id });
            }
            // `expires_at` is the first instant the token is refused, as with a JWT's `exp`.
            if now >= token.expires_at {
                return Ok(ConsumeOutcome::Expired);
            }
            diesel::update(refresh_tokens::table.find(&hash))
                .set(refresh_tokens::used_at.eq(now))
                .execute(conn)?;
            Ok(ConsumeOutcome::Consumed {
                user_id: id(&token.user_id)?,
                family_id,
            })
        })
        .await
    }

    async fn revoke_token_family(
        &self,
        family_id: TokenFamilyId,
        now: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        let family_id = family_id.to_string();
        let now = micros(now);
        self.write(move |conn| {
            diesel::update(
                refresh_tokens::table
                    .filter(refresh_tokens::family_id.eq(&family_id))
                    .filter(refresh_tokens::revoked_at.is_null()),
            )
            .set(refresh_tokens::revoked_at.eq(now))
            .execute(conn)
            .map(drop)
        })
        .await
    }
}
