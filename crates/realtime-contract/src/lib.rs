#![doc = include_str!("../README.md")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod harness;
pub mod presence;
pub mod pubsub;
pub mod typing;

pub use harness::{Backend, RecordingSink, SharedBackend};

/// Expands to one `#[tokio::test]` per [`pubsub`] case, each on `$fresh().await`.
#[macro_export]
macro_rules! pubsub_contract_tests {
    ($fresh:path) => {
        $crate::realtime_contract_tests!(@cases $fresh;
            pubsub::an_event_reaches_every_subscribed_node_the_publisher_included_and_no_other,
            pubsub::payloads_arrive_byte_for_byte,
            pubsub::two_subscribes_and_one_unsubscribe_keep_the_topic_flowing,
            pubsub::unsubscribing_the_last_reference_stops_delivery,
            pubsub::a_topic_can_be_subscribed_again_after_the_last_unsubscribe,
            pubsub::events_of_one_publisher_on_one_topic_arrive_in_publish_order,
            pubsub::publish_all_delivers_each_payload_in_order,
            pubsub::a_node_receives_only_the_topics_it_subscribed,
            pubsub::concurrent_subscribes_and_unsubscribes_keep_an_exact_reference_count,
        );
    };
}

/// Expands to one `#[tokio::test]` per [`presence`] case, each on `$fresh().await`.
#[macro_export]
macro_rules! presence_contract_tests {
    ($fresh:path) => {
        $crate::realtime_contract_tests!(@cases $fresh;
            presence::sessions_on_two_nodes_add_up,
            presence::a_user_is_away_only_while_every_session_is_away,
            presence::counts_come_back_in_input_order_and_unknown_users_are_offline,
            presence::the_session_cap_counts_sessions_on_every_node,
            presence::twenty_concurrent_opens_admit_exactly_the_cap,
            presence::a_dead_nodes_sessions_stop_counting_and_stop_blocking_the_cap,
            presence::concurrent_reapers_get_each_dead_nodes_users_exactly_once,
            presence::a_user_on_several_dead_nodes_is_returned_once_per_reap,
            presence::a_node_never_reaps_itself_nor_a_live_node,
            presence::removing_a_node_drops_its_sessions_and_only_its_sessions,
            presence::closing_a_session_that_was_reaped_leaves_the_counts_at_zero,
            presence::a_renewal_tells_whether_the_lease_was_still_live,
            presence::restoring_a_node_sets_exactly_its_counts_and_reports_what_changed,
            presence::a_reaped_node_that_restores_counts_again,
        );
    };
}

/// Expands to one `#[tokio::test]` per [`typing`] case, each on `$fresh().await`.
#[macro_export]
macro_rules! typing_contract_tests {
    ($fresh:path) => {
        $crate::realtime_contract_tests!(@cases $fresh;
            typing::starting_returns_true_and_refreshing_returns_false,
            typing::stopping_returns_true_once,
            typing::leases_are_per_user_and_conversation,
            typing::a_lapsed_lease_is_not_live_so_starting_again_returns_true,
            typing::take_expired_returns_leases_due_at_or_before_now_and_never_a_live_one,
            typing::concurrent_take_expired_callers_get_each_lapsed_lease_exactly_once,
            typing::a_refreshed_lease_does_not_expire_at_its_old_deadline,
            typing::a_stopped_lease_is_never_taken_as_expired,
        );
    };
}

/// Expands every suite: [`pubsub_contract_tests`], [`presence_contract_tests`] and
/// [`typing_contract_tests`].
#[macro_export]
macro_rules! realtime_contract_tests {
    ($fresh:path) => {
        $crate::pubsub_contract_tests!($fresh);
        $crate::presence_contract_tests!($fresh);
        $crate::typing_contract_tests!($fresh);
    };
    (@cases $fresh:path; $($module:ident :: $case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let backend: $crate::SharedBackend = ::std::sync::Arc::new($fresh().await);
                $crate::$module::$case(backend).await;
            }
        )+
    };
}
