//! Every key and channel name, all under the configured prefix, so several deployments (or
//! test runs) share one Redis without seeing each other.

use domain::realtime::{NodeId, Topic};
use domain::UserId;
use std::sync::Arc;

/// Names keys and channels under one prefix (e.g. `chat:`).
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: Arc<str>,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: Arc::from(prefix),
        }
    }

    /// The prefix itself, for Lua scripts that name keys of nodes and users they discover.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}ch:c:{conversation}` or `{prefix}ch:u:{user}`.
    pub(crate) fn channel(&self, topic: Topic) -> String {
        format!("{}ch:{topic}", self.prefix)
    }

    /// The topic of a channel this node subscribed, or `None` for anything else.
    pub(crate) fn topic(&self, channel: &str) -> Option<Topic> {
        channel
            .strip_prefix(&*self.prefix)?
            .strip_prefix("ch:")?
            .parse()
            .ok()
    }

    /// `{prefix}node:{id}`: exists while the node's lease lives (`SET .. PX ttl`).
    /// The scripts in `presence.rs` build the same name from the prefix.
    pub(crate) fn node_lease(&self, node: &NodeId) -> String {
        format!("{}node:{node}", self.prefix)
    }

    /// `{prefix}nodes`: the set of nodes that registered anything and were not reaped yet.
    pub(crate) fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// `{prefix}node-users:{id}`: the set of users with sessions on that node.
    pub(crate) fn node_users(&self, node: &NodeId) -> String {
        format!("{}node-users:{node}", self.prefix)
    }

    /// `{prefix}presence:{user}`: hash of `s:{node}` (sessions) and `a:{node}` (away ones).
    pub(crate) fn presence(&self, user: UserId) -> String {
        format!("{}presence:{user}", self.prefix)
    }

    /// `{prefix}typing`: sorted set of `{conversation}:{user}` scored by deadline in millis.
    pub(crate) fn typing(&self) -> String {
        format!("{}typing", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ConversationId;

    #[test]
    fn a_channel_name_maps_back_to_its_topic_and_foreign_names_to_none() {
        let keys = Keys::new("chat:");
        let topic = Topic::Conversation(ConversationId::new());
        assert_eq!(keys.topic(&keys.channel(topic)), Some(topic));
        assert_eq!(keys.topic(&Keys::new("other:").channel(topic)), None);
        assert_eq!(keys.topic("chat:ch:x:nonsense"), None);
    }
}
