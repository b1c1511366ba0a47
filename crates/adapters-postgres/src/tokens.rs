//! Rotating refresh tokens, stored by hash.

use crate::rows::NewRefreshTokenRow;
use crate::schema::refresh_tokens;
use crate::{db, PostgresStorage};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::auth::{ConsumeOutcome, NewRefreshToken};
use domain::ports::RefreshTokenStore;
use domain::{StorageError, TokenFamilyId, UserId};
use uuid::Uuid;

#[async_trait]
impl RefreshTokenStore for PostgresStorage {
    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        diesel::insert_into(refresh_tokens::table)
            .values(NewRefreshTokenRow {
                token_hash: &token.token_hash,
                family_id: token.family_id.as_uuid(),
                user_id: token.user_id.as_uuid(),
                created_at: token.created_at,
                expires_at: token.expires_at,
            })
            .execute(&mut conn)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn consume_refresh_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<ConsumeOutcome, StorageError> {
        use refresh_tokens::dsl as t;
        let mut conn = self.conn().await?;
        // One conditional UPDATE: of concurrent consumers, the row lock lets exactly one
        // see the token live; the others re-check the condition after it commits and miss.
        let consumed: Option<(Uuid, Uuid)> = diesel::update(
            t::refresh_tokens
                .filter(t::token_hash.eq(token_hash))
                .filter(t::used_at.is_null())
                .filter(t::revoked_at.is_null())
                .filter(t::expires_at.gt(now)),
        )
        .set(t::used_at.eq(now))
        .returning((t::user_id, t::family_id))
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(db)?;
        if let Some((user_id, family_id)) = consumed {
            return Ok(ConsumeOutcome::Consumed {
                user_id: UserId::from_uuid(user_id),
                family_id: TokenFamilyId::from_uuid(family_id),
            });
        }
        // Not consumed: tell why.
        type Why = (Uuid, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
        let found: Option<Why> = t::refresh_tokens
            .find(token_hash)
            .select((t::family_id, t::used_at, t::revoked_at))
            .first(&mut conn)
            .await
            .optional()
            .map_err(db)?;
        Ok(match found {
            None => ConsumeOutcome::Unknown,
            Some((family_id, used_at, revoked_at)) if used_at.is_some() || revoked_at.is_some() => {
                ConsumeOutcome::AlreadyUsed {
                    family_id: TokenFamilyId::from_uuid(family_id),
                }
            }
            Some(_) => ConsumeOutcome::Expired,
        })
    }

    async fn revoke_token_family(
        &self,
        family_id: TokenFamilyId,
        now: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        use refresh_tokens::dsl as t;
        let mut conn = self.conn().await?;
        diesel::update(
            t::refresh_tokens
                .filter(t::family_id.eq(family_id.as_uuid()))
                .filter(t::revoked_at.is_null()),
        )
        .set(t::revoked_at.eq(now))
        .execute(&mut conn)
        .await
        .map_err(db)?;
        Ok(())
    }
}
