//! One contract test suite that every storage adapter must pass, so the embedded (SQLite)
//! and scale-out (PostgreSQL) stores behave the same.
//!
//! An adapter's `tests/contract.rs` names an async fn that returns a fresh, empty, migrated
//! store, and expands the suite:
//!
//! ```ignore
//! async fn fresh_store() -> std::sync::Arc<dyn domain::ports::Storage> { /* ... */ }
//! storage_contract::storage_contract_tests!(fresh_store);
//! ```
//!
//! Each case is a public async fn taking the store, so an adapter can also call one alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod attachments;
pub mod concurrency;
pub mod conversations;
pub mod encryption;
pub mod fixtures;
pub mod lifecycle;
pub mod messages;
pub mod receipts;
pub mod tokens;
pub mod users;

/// The store under test.
pub type Store = std::sync::Arc<dyn domain::ports::Storage>;

/// Expands to one `#[tokio::test]` per contract case, each on a store from `$fresh().await`.
#[macro_export]
macro_rules! storage_contract_tests {
    ($fresh:path) => {
        $crate::storage_contract_tests!(@cases $fresh;
            users::an_inserted_user_is_found_by_email_and_by_id,
            users::a_second_account_with_the_same_email_is_a_duplicate,
            users::concurrent_registrations_of_one_email_make_one_account,
            users::users_by_ids_returns_only_those_that_exist,
            users::search_matches_names_and_email_prefixes_case_insensitively_but_never_the_caller,
            users::search_treats_percent_and_underscore_literally,
            users::search_orders_by_display_name_and_respects_the_limit,
            users::last_seen_is_recorded_and_never_moves_backwards,
            tokens::a_live_refresh_token_is_consumed_once_then_reported_used,
            tokens::of_concurrent_consumes_of_one_token_exactly_one_succeeds,
            tokens::an_expired_refresh_token_is_reported_expired,
            tokens::an_unknown_refresh_token_is_reported_unknown,
            tokens::revoking_a_family_stops_its_live_tokens,
            conversations::a_direct_conversation_makes_both_users_members,
            conversations::asking_for_b_to_a_after_a_to_b_returns_the_same_conversation,
            conversations::concurrent_a_to_b_and_b_to_a_end_in_one_conversation,
            conversations::a_group_has_its_creator_as_owner_and_the_others_as_members,
            conversations::an_unknown_conversation_is_none,
            conversations::conversations_are_listed_newest_activity_first_with_their_last_message,
            conversations::the_list_filters_by_kind_and_pages,
            conversations::a_new_member_starts_with_nothing_unread_and_cannot_be_added_twice,
            conversations::members_can_be_removed_and_promoted_and_groups_renamed,
            conversations::unread_counts_are_last_seq_minus_read_seq,
            conversations::conversation_ids_are_every_membership_of_the_user,
            conversations::the_session_snapshot_is_the_users_state_in_each_of_its_conversations,
            messages::appended_messages_get_consecutive_seqs,
            messages::appending_moves_the_senders_own_watermarks,
            messages::timestamps_and_fields_read_back_exactly,
            messages::a_replayed_key_returns_the_original_and_uses_no_seq,
            messages::a_key_reused_for_other_content_or_another_conversation_is_rejected,
            messages::a_key_repeated_inside_one_batch_is_a_replay,
            messages::a_batch_spanning_conversations_keeps_each_sequence,
            messages::appending_to_a_missing_conversation_rejects_only_that_message,
            messages::history_before_pages_newest_first,
            messages::history_after_pages_oldest_first,
            messages::a_message_is_only_found_in_its_own_conversation,
            lifecycle::an_edit_sets_content_and_edited_at_and_takes_the_next_change_number,
            lifecycle::editing_a_deleted_foreign_or_unknown_message_is_none_and_changes_nothing,
            lifecycle::a_deletion_erases_content_and_reactions_and_leaves_a_tombstone,
            lifecycle::deleting_twice_is_already_deleted_and_unknown_is_none,
            lifecycle::reactions_go_on_and_off_and_only_a_change_takes_a_number,
            lifecycle::reactions_of_orders_counts_and_bounds_but_me_sees_every_reactor,
            lifecycle::changes_after_gives_each_changed_message_once_in_change_order,
            lifecycle::concurrent_changes_of_one_conversation_get_distinct_consecutive_numbers,
            lifecycle::history_lists_and_snapshots_show_edits_deletions_and_change_numbers,
            lifecycle::messages_by_ids_answers_those_of_the_conversation_as_they_are_now,
            encryption::devices_register_list_count_and_revoke,
            encryption::encryption_turns_on_once_with_key_version_zero,
            encryption::keys_move_one_version_at_a_time_and_only_for_member_devices,
            encryption::a_removal_needs_a_rotation_the_removed_member_never_gets,
            encryption::concurrent_uploads_of_one_version_make_it_once,
            encryption::key_backups_are_replaced_read_and_deleted,
            encryption::keys_name_the_public_key_of_the_wrapping_device_even_revoked,
            encryption::a_session_snapshot_names_the_encrypted_conversations,
            encryption::an_encrypted_message_keeps_its_envelope_verbatim_everywhere,
            attachments::an_attachment_is_recorded_read_and_confirmed_once,
            attachments::attachments_by_ids_answers_those_that_exist,
            attachments::a_send_binds_its_attachments_and_every_read_shows_them_in_order,
            attachments::a_second_send_of_an_attachment_is_refused_while_its_batch_commits,
            attachments::anothers_another_conversations_or_an_unconfirmed_attachment_is_refused,
            attachments::a_replay_returns_the_original_with_its_attachments_and_binds_nothing,
            attachments::concurrent_sends_of_one_attachment_bind_it_once,
            attachments::a_deleted_messages_attachments_leave_it_and_expire,
            attachments::unsent_attachments_expire_oldest_first_and_recent_or_sent_ones_do_not,
            concurrency::fifty_concurrent_sends_get_seqs_one_to_fifty,
            concurrency::concurrent_retries_of_one_key_give_one_message_and_burn_no_seq,
            receipts::watermarks_only_move_forward,
            receipts::read_implies_delivered,
            receipts::a_batch_of_updates_applies_each_and_reports_non_members_as_none,
            receipts::the_store_answers_a_ping,
        );
    };
    (@cases $fresh:path; $($module:ident :: $case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store = $fresh().await;
                $crate::$module::$case(store).await;
            }
        )+
    };
}
