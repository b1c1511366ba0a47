//! Conversations: the direct pair rule, groups and who may change them.

use super::errors::ChatError;
use crate::conversation::{
    ConversationDetails, ConversationKind, ConversationSummary, GroupTitle, NewDirectConversation,
    NewGroupConversation, Role, SessionSnapshot,
};
use crate::ids::{ConversationId, UserId};
use crate::limits::Limits;
use crate::ports::{Clock, ConversationStore, UserStore};
use crate::user::InvalidField;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Conversations listed per page.
pub const CONVERSATION_PAGE_SIZE: u32 = 50;

/// Create, list and manage conversations.
#[derive(Clone)]
pub struct ConversationService {
    store: Arc<dyn ConversationStore>,
    users: Arc<dyn UserStore>,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

impl ConversationService {
    /// Wires the service to its ports.
    pub fn new(
        store: Arc<dyn ConversationStore>,
        users: Arc<dyn UserStore>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Self {
        Self {
            store,
            users,
            clock,
            limits,
        }
    }

    /// Creates a conversation. `direct` needs exactly one other user and returns the
    /// existing conversation of the pair if there is one (`false`); `group` needs a title.
    /// The caller may or may not list itself among `participant_ids`.
    pub async fn create(
        &self,
        me: UserId,
        kind: ConversationKind,
        participant_ids: &[UserId],
        title: Option<&str>,
    ) -> Result<(ConversationDetails, bool), ChatError> {
        let others: BTreeSet<UserId> = participant_ids
            .iter()
            .copied()
            .filter(|id| *id != me)
            .collect();
        match kind {
            ConversationKind::Direct => {
                let mut others = others.into_iter();
                let (Some(other), None) = (others.next(), others.next()) else {
                    return Err(InvalidField::new(
                        "participant_ids",
                        "a direct conversation needs exactly one other user",
                    )
                    .into());
                };
                self.require_users(&[other]).await?;
                let new = NewDirectConversation {
                    id: ConversationId::new(),
                    created_by: me,
                    other,
                    created_at: self.clock.now(),
                };
                Ok(self.store.create_direct(&new).await?)
            }
            ConversationKind::Group => {
                let title = GroupTitle::parse(title.unwrap_or_default())?;
                if others.len() + 1 > self.limits.max_group_members {
                    return Err(ChatError::GroupFull(self.limits.max_group_members));
                }
                let members: Vec<UserId> = others.into_iter().collect();
                self.require_users(&members).await?;
                let new = NewGroupConversation {
                    id: ConversationId::new(),
                    created_by: me,
                    title,
                    members,
                    created_at: self.clock.now(),
                };
                Ok((self.store.create_group(&new).await?, true))
            }
        }
    }

    /// A conversation the caller belongs to.
    pub async fn get(
        &self,
        me: UserId,
        id: ConversationId,
    ) -> Result<ConversationDetails, ChatError> {
        let details = self
            .store
            .conversation(id)
            .await?
            .ok_or(ChatError::NotParticipant)?;
        if details.participant(me).is_none() {
            return Err(ChatError::NotParticipant);
        }
        Ok(details)
    }

    /// One page (from 1) of the caller's conversations, newest activity first.
    pub async fn list(
        &self,
        me: UserId,
        kind: Option<ConversationKind>,
        page: u32,
    ) -> Result<Vec<ConversationSummary>, ChatError> {
        if page == 0 {
            return Err(InvalidField::new("page", "pages are numbered from 1").into());
        }
        let offset = (page - 1).saturating_mul(CONVERSATION_PAGE_SIZE);
        Ok(self
            .store
            .list_conversations(me, kind, offset, CONVERSATION_PAGE_SIZE)
            .await?)
    }

    /// Adds `user` to a group as a member. Owner and admins only.
    pub async fn add_member(
        &self,
        me: UserId,
        id: ConversationId,
        user: UserId,
    ) -> Result<ConversationDetails, ChatError> {
        let details = self.managed_group(me, id).await?;
        if details.participant(user).is_some() {
            return Err(ChatError::AlreadyMember);
        }
        if details.participants.len() + 1 > self.limits.max_group_members {
            return Err(ChatError::GroupFull(self.limits.max_group_members));
        }
        self.require_users(&[user]).await?;
        if !self
            .store
            .add_participant(id, user, Role::Member, self.clock.now())
            .await?
        {
            return Err(ChatError::AlreadyMember);
        }
        self.get(me, id).await
    }

    /// Removes `user` from a group. The owner removes anyone; an admin removes members only.
    /// Removing oneself is leaving.
    pub async fn remove_member(
        &self,
        me: UserId,
        id: ConversationId,
        user: UserId,
    ) -> Result<(), ChatError> {
        if user == me {
            return self.leave(me, id).await;
        }
        let details = self.managed_group(me, id).await?;
        let my_role = details.participant(me).map(|p| p.role);
        let target = details.participant(user).ok_or(ChatError::NotAMember)?;
        let allowed = match (my_role, target.role) {
            (_, Role::Owner) => false,
            (Some(Role::Owner), _) => true,
            (Some(Role::Admin), Role::Member) => true,
            _ => false,
        };
        if !allowed {
            return Err(ChatError::Forbidden(
                "admins may remove members only; nobody may remove the owner",
            ));
        }
        self.store.remove_participant(id, user).await?;
        Ok(())
    }

    /// Leaves a group. An owner who leaves hands ownership to the longest-standing admin,
    /// or else the longest-standing member, so a group never lacks an owner while it has members.
    pub async fn leave(&self, me: UserId, id: ConversationId) -> Result<(), ChatError> {
        let details = self.get(me, id).await?;
        if details.conversation.kind != ConversationKind::Group {
            return Err(ChatError::NotAGroup);
        }
        let leaving_owner = details.participant(me).map(|p| p.role) == Some(Role::Owner);
        self.store.remove_participant(id, me).await?;
        if leaving_owner {
            let successor = details
                .participants
                .iter()
                .map(|p| &p.participant)
                .filter(|p| p.user_id != me)
                .min_by_key(|p| (p.role, p.joined_at));
            if let Some(successor) = successor {
                self.store
                    .set_role(id, successor.user_id, Role::Owner)
                    .await?;
            }
        }
        Ok(())
    }

    /// Renames a group. Owner and admins only.
    pub async fn rename(
        &self,
        me: UserId,
        id: ConversationId,
        title: &str,
    ) -> Result<ConversationDetails, ChatError> {
        let title = GroupTitle::parse(title)?;
        self.managed_group(me, id).await?;
        self.store.rename_conversation(id, &title).await?;
        self.get(me, id).await
    }

    /// What a WebSocket session of the caller opens with, in one storage read: its account
    /// and, for each conversation it is a member of (no other), the conversation's
    /// `last_seq`, the caller's watermarks and the lowest of the other members'.
    /// `None` when the account no longer exists.
    pub async fn session_snapshot(&self, me: UserId) -> Result<Option<SessionSnapshot>, ChatError> {
        Ok(self.store.session_snapshot(me).await?)
    }

    /// The caller's unread count per conversation and in total.
    pub async fn unread(&self, me: UserId) -> Result<(i64, Vec<(ConversationId, i64)>), ChatError> {
        let counts = self.store.unread_counts(me).await?;
        Ok((counts.iter().map(|(_, n)| n).sum(), counts))
    }

    /// A group the caller may manage (owner or admin).
    async fn managed_group(
        &self,
        me: UserId,
        id: ConversationId,
    ) -> Result<ConversationDetails, ChatError> {
        let details = self.get(me, id).await?;
        if details.conversation.kind != ConversationKind::Group {
            return Err(ChatError::NotAGroup);
        }
        let role = details.participant(me).map(|p| p.role);
        if !role.is_some_and(Role::can_manage) {
            return Err(ChatError::Forbidden(
                "only the owner and admins may do this",
            ));
        }
        Ok(details)
    }

    async fn require_users(&self, ids: &[UserId]) -> Result<(), ChatError> {
        if ids.is_empty() {
            return Ok(());
        }
        let found = self.users.users_by_ids(ids).await?;
        if found.len() != ids.len() {
            return Err(ChatError::UserNotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{Conversation, Participant, ParticipantProfile};
    use crate::ports::{MockClock, MockConversationStore, MockUserStore};
    use crate::user::{DisplayName, EmailAddress, User};
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use mockall::predicate::eq;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn user(id: UserId) -> User {
        User {
            id,
            email: EmailAddress::parse(&format!("{id}@example.com")).unwrap(),
            display_name: DisplayName::parse("U").unwrap(),
            avatar_url: None,
            created_at: t0(),
            last_seen_at: None,
        }
    }

    fn group(id: ConversationId, members: &[(UserId, Role)]) -> ConversationDetails {
        ConversationDetails {
            conversation: Conversation {
                id,
                kind: ConversationKind::Group,
                title: Some("Team".into()),
                created_by: members[0].0,
                created_at: t0(),
                last_seq: 0,
                last_message_at: None,
                last_change: 0,
            },
            participants: members
                .iter()
                .enumerate()
                .map(|(i, (user_id, role))| ParticipantProfile {
                    participant: Participant {
                        conversation_id: id,
                        user_id: *user_id,
                        role: *role,
                        joined_at: t0() + Duration::seconds(i as i64),
                        delivered_seq: 0,
                        read_seq: 0,
                    },
                    display_name: "U".into(),
                    email: format!("{user_id}@example.com"),
                    avatar_url: None,
                    last_seen_at: None,
                })
                .collect(),
        }
    }

    fn service(store: MockConversationStore, users: MockUserStore) -> ConversationService {
        let mut clock = MockClock::new();
        clock.expect_now().returning(t0);
        ConversationService::new(
            Arc::new(store),
            Arc::new(users),
            Arc::new(clock),
            Limits {
                max_group_members: 4,
                ..Limits::default()
            },
        )
    }

    fn users_exist() -> MockUserStore {
        let mut users = MockUserStore::new();
        users
            .expect_users_by_ids()
            .returning(|ids| Ok(ids.iter().copied().map(user).collect()));
        users
    }

    #[tokio::test]
    async fn a_direct_conversation_needs_exactly_one_other_user() {
        let me = UserId::new();
        let mut store = MockConversationStore::new();
        store.expect_create_direct().never();
        let svc = service(store, users_exist());
        for ids in [vec![], vec![me], vec![UserId::new(), UserId::new()]] {
            let err = svc
                .create(me, ConversationKind::Direct, &ids, None)
                .await
                .unwrap_err();
            assert!(matches!(err, ChatError::Invalid(f) if f.field == "participant_ids"));
        }
    }

    #[tokio::test]
    async fn a_direct_conversation_with_an_unknown_user_is_not_found() {
        let mut users = MockUserStore::new();
        users.expect_users_by_ids().returning(|_| Ok(vec![]));
        let mut store = MockConversationStore::new();
        store.expect_create_direct().never();
        let err = service(store, users)
            .create(
                UserId::new(),
                ConversationKind::Direct,
                &[UserId::new()],
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ChatError::UserNotFound));
    }

    #[tokio::test]
    async fn a_group_gets_its_members_without_duplicates_or_the_creator() {
        let (me, b, c) = (UserId::new(), UserId::new(), UserId::new());
        let mut store = MockConversationStore::new();
        store
            .expect_create_group()
            .withf(move |g| {
                let mut want = vec![b, c];
                want.sort();
                g.members == want && g.created_by == me && g.title.as_str() == "Team"
            })
            .returning(|g| Ok(group(g.id, &[(g.created_by, Role::Owner)])));
        let (_, created) = service(store, users_exist())
            .create(me, ConversationKind::Group, &[b, c, b, me], Some(" Team "))
            .await
            .unwrap();
        assert!(created);
    }

    #[tokio::test]
    async fn a_group_over_the_member_limit_is_refused() {
        let mut store = MockConversationStore::new();
        store.expect_create_group().never();
        let ids: Vec<UserId> = (0..4).map(|_| UserId::new()).collect();
        let err = service(store, users_exist())
            .create(UserId::new(), ConversationKind::Group, &ids, Some("Big"))
            .await
            .unwrap_err();
        assert!(matches!(err, ChatError::GroupFull(4)));
    }

    #[tokio::test]
    async fn outsiders_get_not_participant_whether_or_not_the_conversation_exists() {
        let id = ConversationId::new();
        let owner = UserId::new();
        let mut store = MockConversationStore::new();
        store
            .expect_conversation()
            .with(eq(id))
            .returning(move |id| Ok(Some(group(id, &[(owner, Role::Owner)]))));
        store.expect_conversation().returning(|_| Ok(None));
        let svc = service(store, users_exist());
        assert!(matches!(
            svc.get(UserId::new(), id).await,
            Err(ChatError::NotParticipant)
        ));
        assert!(matches!(
            svc.get(owner, ConversationId::new()).await,
            Err(ChatError::NotParticipant)
        ));
    }

    #[tokio::test]
    async fn plain_members_may_not_add_or_rename() {
        let id = ConversationId::new();
        let (owner, member) = (UserId::new(), UserId::new());
        let mut store = MockConversationStore::new();
        store.expect_conversation().returning(move |id| {
            Ok(Some(group(
                id,
                &[(owner, Role::Owner), (member, Role::Member)],
            )))
        });
        store.expect_add_participant().never();
        store.expect_rename_conversation().never();
        let svc = service(store, users_exist());
        let add = svc.add_member(member, id, UserId::new()).await;
        let rename = svc.rename(member, id, "New").await;
        assert!(matches!(add, Err(ChatError::Forbidden(_))));
        assert!(matches!(rename, Err(ChatError::Forbidden(_))));
    }

    #[tokio::test]
    async fn adding_an_existing_member_is_a_conflict() {
        let id = ConversationId::new();
        let (owner, member) = (UserId::new(), UserId::new());
        let mut store = MockConversationStore::new();
        store.expect_conversation().returning(move |id| {
            Ok(Some(group(
                id,
                &[(owner, Role::Owner), (member, Role::Member)],
            )))
        });
        store.expect_add_participant().never();
        let err = service(store, users_exist())
            .add_member(owner, id, member)
            .await
            .unwrap_err();
        assert!(matches!(err, ChatError::AlreadyMember));
    }

    #[tokio::test]
    async fn admins_remove_members_but_not_other_admins_or_the_owner() {
        let id = ConversationId::new();
        let (owner, admin, admin2, member) =
            (UserId::new(), UserId::new(), UserId::new(), UserId::new());
        let mut store = MockConversationStore::new();
        store.expect_conversation().returning(move |id| {
            Ok(Some(group(
                id,
                &[
                    (owner, Role::Owner),
                    (admin, Role::Admin),
                    (admin2, Role::Admin),
                    (member, Role::Member),
                ],
            )))
        });
        store
            .expect_remove_participant()
            .with(eq(id), eq(member))
            .times(1)
            .returning(|_, _| Ok(true));
        let svc = service(store, users_exist());
        assert!(matches!(
            svc.remove_member(admin, id, owner).await,
            Err(ChatError::Forbidden(_))
        ));
        assert!(matches!(
            svc.remove_member(admin, id, admin2).await,
            Err(ChatError::Forbidden(_))
        ));
        svc.remove_member(admin, id, member).await.unwrap();
    }

    #[tokio::test]
    async fn removing_a_non_member_is_not_found() {
        let id = ConversationId::new();
        let owner = UserId::new();
        let mut store = MockConversationStore::new();
        store
            .expect_conversation()
            .returning(move |id| Ok(Some(group(id, &[(owner, Role::Owner)]))));
        let err = service(store, users_exist())
            .remove_member(owner, id, UserId::new())
            .await
            .unwrap_err();
        assert!(matches!(err, ChatError::NotAMember));
    }

    #[tokio::test]
    async fn an_owner_who_leaves_hands_the_group_to_the_oldest_admin() {
        let id = ConversationId::new();
        let (owner, member, admin) = (UserId::new(), UserId::new(), UserId::new());
        let mut store = MockConversationStore::new();
        store.expect_conversation().returning(move |id| {
            Ok(Some(group(
                id,
                &[
                    (owner, Role::Owner),
                    (member, Role::Member),
                    (admin, Role::Admin),
                ],
            )))
        });
        store
            .expect_remove_participant()
            .with(eq(id), eq(owner))
            .times(1)
            .returning(|_, _| Ok(true));
        store
            .expect_set_role()
            .with(eq(id), eq(admin), eq(Role::Owner))
            .times(1)
            .returning(|_, _, _| Ok(()));
        service(store, users_exist())
            .leave(owner, id)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn nobody_leaves_a_direct_conversation() {
        let id = ConversationId::new();
        let me = UserId::new();
        let mut store = MockConversationStore::new();
        store.expect_conversation().returning(move |id| {
            let mut d = group(id, &[(me, Role::Member), (UserId::new(), Role::Member)]);
            d.conversation.kind = ConversationKind::Direct;
            Ok(Some(d))
        });
        store.expect_remove_participant().never();
        let err = service(store, users_exist())
            .leave(me, id)
            .await
            .unwrap_err();
        assert!(matches!(err, ChatError::NotAGroup));
    }

    #[tokio::test]
    async fn page_zero_is_invalid_and_page_two_skips_fifty() {
        let me = UserId::new();
        let mut store = MockConversationStore::new();
        store
            .expect_list_conversations()
            .with(eq(me), eq(None), eq(50), eq(50))
            .times(1)
            .returning(|_, _, _, _| Ok(vec![]));
        let svc = service(store, users_exist());
        assert!(matches!(
            svc.list(me, None, 0).await,
            Err(ChatError::Invalid(_))
        ));
        svc.list(me, None, 2).await.unwrap();
    }

    #[tokio::test]
    async fn a_session_snapshot_is_one_store_read_for_the_caller() {
        let me = UserId::new();
        let state = crate::conversation::ConversationState {
            conversation_id: ConversationId::new(),
            last_seq: 5,
            delivered_seq: 5,
            read_seq: 3,
            peer_delivered_seq: 4,
            peer_read_seq: 2,
            last_change: 0,
        };
        let mut store = MockConversationStore::new();
        store
            .expect_session_snapshot()
            .with(eq(me))
            .times(1)
            .returning(move |id| {
                Ok(Some(SessionSnapshot {
                    user: user(id),
                    conversations: vec![state],
                    encrypted: Vec::new(),
                }))
            });
        store
            .expect_session_snapshot()
            .returning(|_| Err(crate::StorageError::msg("down")));
        let mut users = MockUserStore::new();
        users.expect_user_by_id().never();
        let svc = service(store, users);
        let snapshot = svc.session_snapshot(me).await.unwrap().unwrap();
        assert_eq!(snapshot.user.id, me);
        assert_eq!(snapshot.conversations, vec![state]);
        assert!(matches!(
            svc.session_snapshot(UserId::new()).await,
            Err(ChatError::Storage(_))
        ));
    }

    #[tokio::test]
    async fn a_session_snapshot_of_a_deleted_account_is_none() {
        let mut store = MockConversationStore::new();
        store.expect_session_snapshot().returning(|_| Ok(None));
        let svc = service(store, MockUserStore::new());
        assert!(svc.session_snapshot(UserId::new()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_unread_total_is_the_sum_of_the_conversations() {
        let me = UserId::new();
        let mut store = MockConversationStore::new();
        store
            .expect_unread_counts()
            .returning(|_| Ok(vec![(ConversationId::new(), 3), (ConversationId::new(), 4)]));
        let (total, per) = service(store, users_exist()).unread(me).await.unwrap();
        assert_eq!(total, 7);
        assert_eq!(per.len(), 2);
    }
}
