//! Contract of `RefreshTokenStore`.

use crate::fixtures::{later, now, user};
use crate::Store;
use domain::auth::{ConsumeOutcome, NewRefreshToken, RefreshSecret};
use domain::{TokenFamilyId, UserId};

async fn token(store: &Store, user: UserId, family: TokenFamilyId, ttl_secs: i64) -> String {
    let secret = RefreshSecret::generate();
    store
        .insert_refresh_token(&NewRefreshToken {
            token_hash: secret.hash(),
            family_id: family,
            user_id: user,
            created_at: now(),
            expires_at: later(ttl_secs),
        })
        .await
        .unwrap();
    secret.hash()
}

/// First consume succeeds with owner and family; the second reports reuse.
pub async fn a_live_refresh_token_is_consumed_once_then_reported_used(store: Store) {
    let u = user(&store, "A").await;
    let family = TokenFamilyId::new();
    let hash = token(&store, u.id, family, 3600).await;
    assert_eq!(
        store.consume_refresh_token(&hash, now()).await.unwrap(),
        ConsumeOutcome::Consumed {
            user_id: u.id,
            family_id: family
        }
    );
    assert_eq!(
        store.consume_refresh_token(&hash, now()).await.unwrap(),
        ConsumeOutcome::AlreadyUsed { family_id: family }
    );
}

/// Rotation is race-free: one winner among concurrent consumers.
pub async fn of_concurrent_consumes_of_one_token_exactly_one_succeeds(store: Store) {
    let u = user(&store, "A").await;
    let hash = token(&store, u.id, TokenFamilyId::new(), 3600).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let hash = hash.clone();
            tokio::spawn(async move { store.consume_refresh_token(&hash, now()).await })
        })
        .collect();
    let mut consumed = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            ConsumeOutcome::Consumed { .. } => consumed += 1,
            ConsumeOutcome::AlreadyUsed { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(consumed, 1);
}

/// Past `expires_at` a live token is expired.
pub async fn an_expired_refresh_token_is_reported_expired(store: Store) {
    let u = user(&store, "A").await;
    let hash = token(&store, u.id, TokenFamilyId::new(), 60).await;
    assert_eq!(
        store.consume_refresh_token(&hash, later(61)).await.unwrap(),
        ConsumeOutcome::Expired
    );
}

/// A hash never stored is unknown.
pub async fn an_unknown_refresh_token_is_reported_unknown(store: Store) {
    let hash = RefreshSecret::generate().hash();
    assert_eq!(
        store.consume_refresh_token(&hash, now()).await.unwrap(),
        ConsumeOutcome::Unknown
    );
}

/// After revocation no token of the family can be consumed; other families are untouched.
pub async fn revoking_a_family_stops_its_live_tokens(store: Store) {
    let u = user(&store, "A").await;
    let family = TokenFamilyId::new();
    let other_family = TokenFamilyId::new();
    let a = token(&store, u.id, family, 3600).await;
    let b = token(&store, u.id, family, 3600).await;
    let c = token(&store, u.id, other_family, 3600).await;
    store.revoke_token_family(family, now()).await.unwrap();
    for hash in [a, b] {
        assert_eq!(
            store.consume_refresh_token(&hash, now()).await.unwrap(),
            ConsumeOutcome::AlreadyUsed { family_id: family }
        );
    }
    assert!(matches!(
        store.consume_refresh_token(&c, now()).await.unwrap(),
        ConsumeOutcome::Consumed { .. }
    ));
}
