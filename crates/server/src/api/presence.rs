//! `GET /conversations/{id}/presence`: who of a conversation is online, away or offline.

use super::ids::parse_or_nil;
use crate::auth::AuthUser;
use crate::error::ApiError;
use actix_web::{web, HttpResponse};
use domain::services::PresenceService;
use domain::ConversationId;
use protocol::rest::ConversationPresenceDto;
use protocol::ErrorBody;
use realtime::wire;

/// The presence of every member of a conversation the caller belongs to.
#[utoipa::path(
    get, operation_id = "getConversationPresence", path = "/api/v1/conversations/{id}/presence", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ConversationPresenceDto),
        (status = 403, description = "`not_participant`: not a member, or no such conversation", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn conversation_presence(
    user: AuthUser,
    presence: web::Data<PresenceService>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_or_nil(&id);
    let participants = presence.presence_of(user.0, id).await?;
    Ok(HttpResponse::Ok().json(ConversationPresenceDto {
        conversation_id: id.as_uuid(),
        participants: participants
            .iter()
            .map(wire::participant_presence)
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::auth::{JwtIssuer, TokenVerifier};
    use actix_web::http::{header, StatusCode};
    use actix_web::{test, App};
    use chrono::{DateTime, TimeZone, Utc};
    use domain::conversation::{
        Conversation, ConversationDetails, ConversationKind, Participant, ParticipantProfile, Role,
    };
    use domain::ports::{AccessTokenIssuer, MockConversationStore, MockUserStore, SystemClock};
    use domain::realtime::{MockEventPublisher, MockPresenceStore, NodeId, SessionCounts};
    use domain::services::PresenceSettings;
    use domain::UserId;
    use std::sync::Arc;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, minute, 0).unwrap()
    }

    fn direct(
        id: ConversationId,
        a: UserId,
        b: UserId,
        b_seen: DateTime<Utc>,
    ) -> ConversationDetails {
        let member = |user_id: UserId, last_seen_at| ParticipantProfile {
            participant: Participant {
                conversation_id: id,
                user_id,
                role: Role::Member,
                joined_at: at(0),
                delivered_seq: 0,
                read_seq: 0,
            },
            display_name: "Someone".into(),
            email: format!("{user_id}@example.com"),
            avatar_url: None,
            last_seen_at,
        };
        ConversationDetails {
            conversation: Conversation {
                id,
                kind: ConversationKind::Direct,
                title: None,
                created_by: a,
                created_at: at(0),
                last_seq: 0,
                last_message_at: None,
                last_change: 0,
            },
            participants: vec![member(a, None), member(b, Some(b_seen))],
        }
    }

    /// GET the presence of `path_id` as `caller` (no token when `None`), with `b` offline
    /// since 12:05 and everyone else online.
    async fn get_presence(
        conversations: MockConversationStore,
        caller: Option<UserId>,
        path_id: &str,
        offline: UserId,
    ) -> actix_web::dev::ServiceResponse {
        let mut store = MockPresenceStore::new();
        store.expect_counts().returning(move |users| {
            Ok(users
                .iter()
                .map(|u| SessionCounts {
                    sessions: u32::from(*u != offline),
                    away: 0,
                })
                .collect())
        });
        let service = PresenceService::new(
            Arc::new(store),
            Arc::new(MockEventPublisher::new()),
            Arc::new(conversations),
            Arc::new(MockUserStore::new()),
            Arc::new(SystemClock),
            PresenceSettings::new(NodeId("test".into())),
        );
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(TokenVerifier::new(
                    SECRET,
                    "chat-server",
                    "chat",
                )))
                .app_data(web::Data::new(service))
                .configure(crate::api::routes),
        )
        .await;
        let mut req =
            test::TestRequest::get().uri(&format!("/api/v1/conversations/{path_id}/presence"));
        if let Some(user) = caller {
            let token = JwtIssuer::new(SECRET, "chat-server", "chat", 900)
                .issue(user, Utc::now())
                .unwrap()
                .token;
            req = req.insert_header((header::AUTHORIZATION, format!("Bearer {token}")));
        }
        test::call_service(&app, req.to_request()).await
    }

    #[actix_web::test]
    async fn a_member_gets_every_participants_status_and_last_seen() {
        let (me, other, id) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut conversations = MockConversationStore::new();
        conversations
            .expect_conversation()
            .returning(move |id| Ok(Some(direct(id, me, other, at(5)))));
        let response = get_presence(conversations, Some(me), &id.to_string(), other).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(
            body,
            serde_json::json!({
                "conversation_id": id.to_string(),
                "participants": [
                    {"user_id": me.to_string(), "status": "online", "last_seen": null},
                    {"user_id": other.to_string(), "status": "offline", "last_seen": "2026-01-01T12:05:00Z"},
                ]
            })
        );
    }

    #[actix_web::test]
    async fn a_non_member_is_refused_with_403_not_participant_like_for_an_unknown_or_malformed_id()
    {
        let (me, a, b, foreign) = (
            UserId::new(),
            UserId::new(),
            UserId::new(),
            ConversationId::new(),
        );
        for path_id in [
            foreign.to_string(),
            ConversationId::new().to_string(),
            "42".into(),
        ] {
            let mut conversations = MockConversationStore::new();
            conversations
                .expect_conversation()
                .returning(move |id| Ok((id == foreign).then(|| direct(id, a, b, at(5)))));
            let response = get_presence(conversations, Some(me), &path_id, b).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path_id}");
            let body: ErrorBody = test::read_body_json(response).await;
            assert_eq!(body.error.code, "not_participant");
        }
    }

    #[actix_web::test]
    async fn without_a_token_the_answer_is_401() {
        let mut conversations = MockConversationStore::new();
        conversations.expect_conversation().never();
        let response = get_presence(
            conversations,
            None,
            &ConversationId::new().to_string(),
            UserId::new(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}
