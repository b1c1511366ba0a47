//! The ports: what the domain needs from the outside world. Each adapter of a port
//! passes the shared contract suite (`storage-contract` for the storage ports).
//!
//! All storage methods return [`StorageError`] only when the backing service failed;
//! "not found" and "already exists" are ordinary results, named in each contract.

use crate::attachment::{Attachment, AttachmentConfirmation, NewAttachment};
use crate::auth::{AccessToken, ConsumeOutcome, NewRefreshToken};
use crate::blob::{BlobData, BlobError, BlobMeta, ByteRange};
use crate::conversation::{
    ConversationDetails, ConversationKind, ConversationSummary, GroupTitle, NewDirectConversation,
    NewGroupConversation, Participant, Role, SessionSnapshot,
};
use crate::encryption::{
    Device, EncryptionState, InsertDeviceOutcome, KeyBackup, KeyUpload, MissingKeys, NewDevice,
    PutKeysOutcome, StoredKey,
};
use crate::error::StorageError;
use crate::ids::{AttachmentId, ConversationId, DeviceId, MessageId, TokenFamilyId, UserId};
use crate::message::{
    AppendOutcome, AppendRejection, DeleteOutcome, Emoji, Message, MessageContent, NewMessage,
    ReactionCount, ReactionOutcome,
};
use crate::user::{EmailAddress, NewUser, Password, User, UserCredentials};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Why an account could not be inserted.
#[derive(Debug, thiserror::Error)]
pub enum InsertUserError {
    /// Another account has this email (emails arrive lower-cased, so this is case-insensitive).
    #[error("email already registered")]
    DuplicateEmail,
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Accounts.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Inserts an account. MUST return [`InsertUserError::DuplicateEmail`] when the email is
    /// taken, also when two inserts race, and then change nothing.
    async fn insert_user(&self, user: &NewUser) -> Result<User, InsertUserError>;

    /// The account with this (normalised) email and its password hash, if any.
    async fn credentials_by_email(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<UserCredentials>, StorageError>;

    /// The account with this id, if any.
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StorageError>;

    /// The accounts among `ids` that exist, in any order.
    async fn users_by_ids(&self, ids: &[UserId]) -> Result<Vec<User>, StorageError>;

    /// Accounts whose display name contains `query` or whose email starts with it,
    /// case-insensitively, never `exclude`, ordered by display name then id, at most `limit`.
    /// `query` is matched literally: `%` and `_` are not wildcards.
    async fn search_users(
        &self,
        query: &str,
        limit: u32,
        exclude: UserId,
    ) -> Result<Vec<User>, StorageError>;

    /// Records that `user` was last seen online at `at` (presence going offline). Never moves
    /// `last_seen_at` backwards: an older `at` than the stored one changes nothing, so nodes
    /// racing to record one user's departures keep the latest. An unknown user is no error.
    async fn touch_last_seen(&self, user: UserId, at: DateTime<Utc>) -> Result<(), StorageError>;
}

/// Rotating refresh tokens, stored by hash.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RefreshTokenStore: Send + Sync + 'static {
    /// Stores a new live token.
    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StorageError>;

    /// Atomically marks the token with this hash used, if it is live at `now`.
    /// Of several concurrent calls with one hash exactly one gets
    /// [`ConsumeOutcome::Consumed`]; the others get [`ConsumeOutcome::AlreadyUsed`].
    /// A used or revoked token gives `AlreadyUsed`; a live one past `expires_at`, `Expired`;
    /// an unknown hash, `Unknown`.
    async fn consume_refresh_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<ConsumeOutcome, StorageError>;

    /// Revokes every token of the family: none of them is `Consumed` afterwards.
    async fn revoke_token_family(
        &self,
        family_id: TokenFamilyId,
        now: DateTime<Utc>,
    ) -> Result<(), StorageError>;
}

/// Conversations and membership.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// The direct conversation between `created_by` and `other`, made if the pair has none
    /// (both as members); `true` when made now. Concurrent calls for A->B and B->A MUST end
    /// with one conversation that both callers get.
    async fn create_direct(
        &self,
        new: &NewDirectConversation,
    ) -> Result<(ConversationDetails, bool), StorageError>;

    /// Makes a group: the creator as owner, the others as members.
    async fn create_group(
        &self,
        new: &NewGroupConversation,
    ) -> Result<ConversationDetails, StorageError>;

    /// The conversation with its members (oldest member first), if it exists.
    async fn conversation(
        &self,
        id: ConversationId,
    ) -> Result<Option<ConversationDetails>, StorageError>;

    /// The membership of `user` in `id`, if a member.
    async fn participant(
        &self,
        id: ConversationId,
        user: UserId,
    ) -> Result<Option<Participant>, StorageError>;

    /// `user`'s conversations, newest activity first (`last_message_at`, else `created_at`;
    /// ties by id, descending), only those of `kind` if given, `limit` from `offset`,
    /// each with its newest message.
    async fn list_conversations(
        &self,
        user: UserId,
        kind: Option<ConversationKind>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, StorageError>;

    /// Adds `user` with `role`; its watermarks start at the conversation's `last_seq`
    /// (nothing from before joining counts as unread). `false`, and no change, if already a member.
    async fn add_participant(
        &self,
        id: ConversationId,
        user: UserId,
        role: Role,
        joined_at: DateTime<Utc>,
    ) -> Result<bool, StorageError>;

    /// Removes `user`; `false` if not a member. When the conversation is encrypted with a
    /// key already made (`key_version > 0`), marks it `rotation_needed` in the same
    /// transaction: the removed member's devices hold that key.
    async fn remove_participant(
        &self,
        id: ConversationId,
        user: UserId,
    ) -> Result<bool, StorageError>;

    /// Changes a member's role (no effect for a non-member).
    async fn set_role(
        &self,
        id: ConversationId,
        user: UserId,
        role: Role,
    ) -> Result<(), StorageError>;

    /// Sets a group's title.
    async fn rename_conversation(
        &self,
        id: ConversationId,
        title: &GroupTitle,
    ) -> Result<(), StorageError>;

    /// `(conversation, last_seq - read_seq)` for every conversation of `user`.
    async fn unread_counts(&self, user: UserId)
        -> Result<Vec<(ConversationId, i64)>, StorageError>;

    /// The ids of every conversation `user` is a member of, in any order, each once (empty
    /// for an unknown user). Presence events go to exactly these conversations.
    async fn conversation_ids(&self, user: UserId) -> Result<Vec<ConversationId>, StorageError>;

    /// What a WebSocket session of `user` opens with, in ONE statement (it runs on every
    /// connect): the account, and for every conversation `user` is a member of (in any
    /// order, each once) the state [`ConversationDetails::state_of`] gives for `user` from
    /// the same data. `None` when the account does not exist.
    async fn session_snapshot(&self, user: UserId)
        -> Result<Option<SessionSnapshot>, StorageError>;
}

/// Messages.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Appends the batch in one transaction, results in input order. Each new message gets
    /// its conversation's `last_seq + 1` (gap-free, also under concurrent batches and across
    /// nodes), `last_seq`/`last_message_at` move, and the sender's delivered and read
    /// watermarks move to it. A (sender, `client_msg_id`) already stored, or earlier in the
    /// batch, gives [`AppendOutcome::Replayed`] with the original when
    /// [`NewMessage::is_replayed_by`] holds, else [`AppendRejection::KeyReused`]; either way
    /// nothing is written for it and no seq is used. On `Err`, nothing of the batch was committed.
    async fn append_messages(
        &self,
        batch: &[NewMessage],
    ) -> Result<Vec<Result<AppendOutcome, AppendRejection>>, StorageError>;

    /// Messages of `id` with `seq < before_seq` (all if `None`), newest first, at most `limit`.
    async fn messages_before(
        &self,
        id: ConversationId,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, StorageError>;

    /// Messages of `id` with `seq > after_seq`, oldest first, at most `limit`.
    async fn messages_after(
        &self,
        id: ConversationId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StorageError>;

    /// The message `message` if it belongs to `id`.
    async fn message(
        &self,
        id: ConversationId,
        message: MessageId,
    ) -> Result<Option<Message>, StorageError>;

    /// The messages of `conversation` among `ids` (deleted or not), in no particular order;
    /// ids of no message of that conversation are left out. One statement, whatever the
    /// number of ids: what a page of history reads the originals of its replies by.
    async fn messages_by_ids(
        &self,
        conversation: ConversationId,
        ids: &[MessageId],
    ) -> Result<Vec<Message>, StorageError>;

    /// Sets the content of `message` in `conversation` unless it is deleted, stamps
    /// `edited_at = at`, and gives it the conversation's next change number
    /// (`conversations.last_change + 1`, stored on both rows), in one transaction. `None`
    /// when there is no such message in that conversation or it is deleted: nothing changes.
    /// Who may edit, and within which window, is the domain's to decide before calling.
    async fn edit_message(
        &self,
        conversation: ConversationId,
        message: MessageId,
        content: &MessageContent,
        at: DateTime<Utc>,
    ) -> Result<Option<Message>, StorageError>;

    /// Erases the content of `message` (to `""`) and every reaction to it, keeping the row
    /// as a tombstone with `deleted_at = at`, `deleted_by = by` and the conversation's next
    /// change number, in one transaction. A message deleted before is returned as it is
    /// ([`DeleteOutcome::AlreadyDeleted`]) and nothing changes. `None` when there is no such
    /// message in that conversation.
    async fn delete_message(
        &self,
        conversation: ConversationId,
        message: MessageId,
        by: UserId,
        at: DateTime<Utc>,
    ) -> Result<Option<DeleteOutcome>, StorageError>;

    /// Adds (`on`) or removes `user`'s reaction `emoji` to `message` (one per emoji per user
    /// per message). When that changed anything, the message takes the conversation's next
    /// change number, in the same transaction. `None` when there is no such message in that
    /// conversation or it is deleted: nothing changes.
    async fn set_reaction(
        &self,
        conversation: ConversationId,
        message: MessageId,
        user: UserId,
        emoji: &Emoji,
        on: bool,
        at: DateTime<Utc>,
    ) -> Result<Option<ReactionOutcome>, StorageError>;

    /// The reactions to `messages` (of `conversation`), as `viewer` sees them: for each
    /// message that has any, its emoji in the order they were first used, each with its
    /// count, up to `user_bound` user ids (earliest first) and whether `viewer` is one of
    /// them. One statement, whatever the number of messages.
    async fn reactions_of(
        &self,
        conversation: ConversationId,
        messages: &[MessageId],
        viewer: UserId,
        user_bound: u32,
    ) -> Result<Vec<(MessageId, Vec<ReactionCount>)>, StorageError>;

    /// The messages of `conversation` whose latest change is after `after_change`, in
    /// change order, at most `limit`: each once, as it is now (an edit followed by a
    /// deletion is one tombstone). What recovery replays after the messages themselves.
    async fn changes_after(
        &self,
        conversation: ConversationId,
        after_change: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StorageError>;
}

/// Moves one member's receipt watermarks forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkUpdate {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Member.
    pub user_id: UserId,
    /// New delivered watermark, if it moves.
    pub delivered_seq: Option<i64>,
    /// New read watermark, if it moves; read implies delivered.
    pub read_seq: Option<i64>,
}

/// Receipt watermarks.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ReceiptStore: Send + Sync + 'static {
    /// Applies every update in one transaction: `delivered_seq = max(delivered_seq,
    /// delivered, read)`, `read_seq = max(read_seq, read)`; never backwards. Returns each
    /// member's watermarks afterwards in input order, `None` for a non-member.
    async fn advance_watermarks(
        &self,
        updates: &[WatermarkUpdate],
    ) -> Result<Vec<Option<Participant>>, StorageError>;
}

/// End-to-end encryption (issue 13): devices and their public keys, conversations'
/// encryption state, wrapped conversation keys, key backups. The store holds nothing it
/// could decrypt; the domain checks who may do what before calling.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait EncryptionStore: Send + Sync + 'static {
    /// Registers a device, unless its user already has `max_live` live devices
    /// ([`InsertDeviceOutcome::TooMany`], nothing stored); counted and inserted atomically,
    /// so racing registrations never exceed `max_live`.
    async fn insert_device(
        &self,
        device: &NewDevice,
        max_live: usize,
    ) -> Result<InsertDeviceOutcome, StorageError>;

    /// The device with this id, live or revoked, if any.
    async fn device(&self, id: DeviceId) -> Result<Option<Device>, StorageError>;

    /// `user`'s live devices, oldest first (ties by id).
    async fn live_devices(&self, user: UserId) -> Result<Vec<Device>, StorageError>;

    /// Revokes `user`'s live device `id` (sets `revoked_at = at`) and deletes every key
    /// wrapped for it, in one transaction. `false`, and no change, when `user` has no such
    /// live device.
    async fn revoke_device(
        &self,
        user: UserId,
        id: DeviceId,
        at: DateTime<Utc>,
    ) -> Result<bool, StorageError>;

    /// Turns encryption on for `conversation` (key version 0), if it was not; the state
    /// afterwards and `true` when turned on now. There is no turning it off.
    async fn enable_encryption(
        &self,
        conversation: ConversationId,
        at: DateTime<Utc>,
    ) -> Result<(EncryptionState, bool), StorageError>;

    /// `conversation`'s encryption state; `None` when it is not encrypted.
    async fn encryption_state(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<EncryptionState>, StorageError>;

    /// The encryption states of those of `conversations` that are encrypted, in any order.
    async fn encryption_states(
        &self,
        conversations: &[ConversationId],
    ) -> Result<Vec<EncryptionState>, StorageError>;

    /// Stores an upload in one transaction, checking against the state at that moment:
    /// the conversation is encrypted, `upload.version` is its `key_version` (a share: wraps
    /// for devices that lack them) or `key_version + 1` (a new key: `key_version` moves to
    /// it and `rotation_needed` clears), and every wrapped-for device is a live device of a
    /// current member. Wraps already stored for (conversation, version, device) are kept
    /// as they were (idempotent). On any refusal nothing is stored.
    async fn put_keys(&self, upload: &KeyUpload) -> Result<PutKeysOutcome, StorageError>;

    /// Every key version of `conversation` wrapped for `device`, oldest version first.
    async fn keys_for_device(
        &self,
        conversation: ConversationId,
        device: DeviceId,
    ) -> Result<Vec<StoredKey>, StorageError>;

    /// The live devices of `conversation`'s current members that have no wrap of its
    /// current key version (every such device while the version is 0), oldest first;
    /// `None` when it is not encrypted.
    async fn missing_keys(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<MissingKeys>, StorageError>;

    /// Stores `user`'s key backup, replacing any former one.
    async fn put_key_backup(&self, user: UserId, backup: &KeyBackup) -> Result<(), StorageError>;

    /// `user`'s key backup, if any.
    async fn key_backup(&self, user: UserId) -> Result<Option<KeyBackup>, StorageError>;

    /// Deletes `user`'s key backup; `false` when there was none.
    async fn delete_key_backup(&self, user: UserId) -> Result<bool, StorageError>;
}

/// Readiness of the store.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait StoreHealth: Send + Sync + 'static {
    /// Succeeds when the store answers a trivial query.
    async fn ping(&self) -> Result<(), StorageError>;
}

/// Attachments' records (issue 14); their bytes are a [`BlobStore`]'s. Sending binds them
/// to a message inside [`MessageStore::append_messages`].
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AttachmentStore: Send + Sync + 'static {
    /// Records an announced upload (not confirmed, not sent).
    async fn insert_attachment(&self, new: &NewAttachment) -> Result<Attachment, StorageError>;

    /// The attachment `id`, whatever its state.
    async fn attachment(&self, id: AttachmentId) -> Result<Option<Attachment>, StorageError>;

    /// The attachments among `ids`, in no particular order; unknown ids are left out. One
    /// statement, whatever the number of ids: what a page of history reads them by.
    async fn attachments_by_ids(
        &self,
        ids: &[AttachmentId],
    ) -> Result<Vec<Attachment>, StorageError>;

    /// Records that the bytes of `id` were checked: sets the fields of `confirmation`, only
    /// if it is not confirmed yet (`None` otherwise, or when there is no such attachment:
    /// nothing changes).
    async fn confirm_attachment(
        &self,
        id: AttachmentId,
        confirmation: &AttachmentConfirmation,
    ) -> Result<Option<Attachment>, StorageError>;

    /// What must go, oldest first, at most `limit`: attachments never sent that were
    /// announced before `unsent_before` (confirmed or not), and attachments of a message
    /// that is deleted. Never one a message still shows.
    async fn expired_attachments(
        &self,
        unsent_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Attachment>, StorageError>;

    /// Deletes the records of `ids` (their blobs are deleted before); how many were.
    async fn delete_attachments(&self, ids: &[AttachmentId]) -> Result<u64, StorageError>;
}

/// Everything a storage adapter implements.
pub trait Storage:
    UserStore
    + RefreshTokenStore
    + ConversationStore
    + MessageStore
    + ReceiptStore
    + EncryptionStore
    + AttachmentStore
    + StoreHealth
{
}

impl<T> Storage for T where
    T: UserStore
        + RefreshTokenStore
        + ConversationStore
        + MessageStore
        + ReceiptStore
        + EncryptionStore
        + AttachmentStore
        + StoreHealth
{
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    /// Every hashing slot stayed taken for as long as a caller may wait: the node is
    /// saturated with hashing work. Nothing was done; retry after `retry_after`.
    #[error("password hashing is saturated")]
    Saturated {
        /// A sensible wait before trying again.
        retry_after: std::time::Duration,
    },
    /// Hashing itself failed.
    #[error(transparent)]
    Failed(#[from] StorageError),
}

/// Password hashing (argon2id in production). Hashing is memory- and CPU-hard on purpose,
/// so an implementation MUST bound how many hashes run at once and answer
/// [`HashingError::Saturated`] rather than queue without limit.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync + 'static {
    /// A PHC-format hash of `password` with a fresh salt.
    async fn hash(&self, password: &Password) -> Result<String, HashingError>;
    /// Whether `password` matches `hash`; `Ok(false)` for a malformed hash.
    async fn verify(&self, password: &Password, hash: &str) -> Result<bool, HashingError>;
    /// Spends the work of one [`PasswordHasher::verify`] against a hash of the configured
    /// cost, matching nothing: what a login with an unknown email does, so that neither its
    /// answer nor its timing tells the email is unknown.
    async fn verify_dummy(&self, password: &Password) -> Result<(), HashingError>;
}

/// Signs access tokens.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait AccessTokenIssuer: Send + Sync + 'static {
    /// A signed access token for `user`, valid from `now`.
    fn issue(&self, user: UserId, now: DateTime<Utc>) -> Result<AccessToken, StorageError>;
}

/// The time, so tests can fix it.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock, to the microsecond (what every store keeps, so a value read back
/// equals the value written).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        use chrono::SubsecRound;
        Utc::now().trunc_subsecs(6)
    }
}

/// Where the bytes of attachments live: a local directory (embedded mode) or an
/// S3-compatible object store (scale-out). Keys are made by the domain (see
/// [`crate::blob`]); an adapter refuses any other with [`BlobError::InvalidKey`].
///
/// Never-confirmed uploads expire by listing: the sweeper lists the uploads' prefix with
/// [`BlobStore::list`] and deletes what is older than the time limit and not confirmed in
/// the database, so an object the server never saw (a presigned PUT) is found too.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Writes the object whole, replacing any with this key. `content_type` is kept where
    /// the store can keep it.
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<(), BlobError>;

    /// The object's bytes, all or `range` of them. [`BlobError::NotFound`] if there is none,
    /// [`BlobError::RangeNotSatisfiable`] if the range starts at or past its end.
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<BlobData, BlobError>;

    /// The object's size and modification time, or `None` if there is none.
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError>;

    /// Deletes the object; deleting one that is not there is no error.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;

    /// Copies object `from` to `to` within the store (server-side on S3: the bytes never
    /// pass through this process), replacing any object at `to`. [`BlobError::NotFound`]
    /// if `from` is not there.
    async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError>;

    /// The objects whose key starts with `prefix` (a whole-segment prefix such as
    /// `attachments`, without the trailing `/`), in any order.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError>;

    /// A URL a client may PUT the object's bytes to for `expires_in`, without other
    /// credentials; `None` for stores that cannot presign (the server's own endpoint then).
    async fn presign_put(
        &self,
        key: &str,
        expires_in: std::time::Duration,
    ) -> Result<Option<String>, BlobError>;

    /// A URL a client may GET the object from (Range headers included) for `expires_in`;
    /// `None` for stores that cannot presign.
    async fn presign_get(
        &self,
        key: &str,
        expires_in: std::time::Duration,
    ) -> Result<Option<String>, BlobError>;
}
