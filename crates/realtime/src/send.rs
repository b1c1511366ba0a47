//! One send, whatever the transport: a WebSocket `message` frame and `POST .../messages` go
//! through [`Realtime::queue_send`] (the sender's rate limit, validation and preparation, the
//! node's group-commit batcher) and, once committed, [`Realtime::end_typing`]. So both have
//! the same limits, the same idempotency and the same effects; they differ only in how they
//! answer (a `message_sent` frame in send order, or an HTTP response).

use crate::batcher::SendResult;
use crate::metrics::Transport;
use crate::Realtime;
use domain::message::AppendOutcome;
use domain::realtime::SessionId;
use domain::services::{ChatError, SendCommand};
use domain::{ConversationId, UserId};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The attempt must wait: retry after this long. The one place a wait becomes a
/// `Retry-After` value, for every limit that answers one (sends, upgrades, logins,
/// registrations, a saturated password hasher).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for a `Retry-After` header, at least 1 (0 would invite a busy loop).
    pub fn as_secs_ceil(self) -> u64 {
        let secs = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// Where a send comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `POST /api/v1/conversations/{id}/messages`: membership is checked with the send.
    Rest,
    /// A session's `message` frame.
    Ws {
        /// The session, so its own message is not echoed back to it.
        session: SessionId,
        /// The session follows the conversation, so its user is a member (a removal ends
        /// the following): no membership read.
        member: bool,
    },
}

impl Via {
    fn transport(self) -> Transport {
        match self {
            Self::Rest => Transport::Rest,
            Self::Ws { .. } => Transport::Ws,
        }
    }
}

/// Why a send was not queued; nothing was done.
#[derive(Debug)]
pub enum SendRefused {
    /// The sender's message rate limit (`realtime.messages_per_second`).
    RateLimited(RetryAfter),
    /// Validation, membership or storage.
    Chat(ChatError),
}

impl From<ChatError> for SendRefused {
    fn from(e: ChatError) -> Self {
        Self::Chat(e)
    }
}

/// A send queued for its commit.
#[derive(Debug)]
pub struct QueuedSend {
    /// Its conversation.
    pub conversation: ConversationId,
    /// When it reached the server, for the send -> ack latency.
    pub received: Instant,
    /// For a reply, the preview of the message it answers, as read when the send was
    /// checked: what the answer to the sender carries, as the live frame does.
    pub reply_preview: Option<domain::message::ReplyPreview>,
    answer: oneshot::Receiver<SendResult>,
}

impl QueuedSend {
    /// Its outcome, once committed. Cancel-safe: polled again, it still answers.
    pub async fn outcome(&mut self) -> SendResult {
        (&mut self.answer).await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Its outcome if it came already, without waiting.
    pub fn try_outcome(&mut self) -> Option<SendResult> {
        match self.answer.try_recv() {
            Ok(result) => Some(result),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(stopped())),
        }
    }
}

fn stopped() -> ChatError {
    ChatError::Storage(domain::StorageError::msg("the commit batcher stopped"))
}

impl Realtime {
    /// Checks `cmd.sender`'s rate limit, validates and prepares the message, and queues it
    /// for the node's next commit (in call order: a session's sends commit in frame order).
    pub async fn queue_send(&self, cmd: SendCommand, via: Via) -> Result<QueuedSend, SendRefused> {
        let received = Instant::now();
        self.metrics.message_in(via.transport());
        self.throttles
            .check_message(cmd.sender)
            .map_err(SendRefused::RateLimited)?;
        let conversation = cmd.conversation_id;
        let (prepared, origin) = match via {
            Via::Ws {
                session,
                member: true,
            } => (self.messages.prepare_member_send(cmd).await?, Some(session)),
            Via::Ws { session, .. } => (self.messages.prepare_send(cmd).await?, Some(session)),
            Via::Rest => (self.messages.prepare_send(cmd).await?, None),
        };
        let reply_preview = prepared.reply_preview.clone();
        let answer = self.batcher.enqueue(prepared, origin).await?;
        Ok(QueuedSend {
            conversation,
            received,
            reply_preview,
            answer,
        })
    }

    /// A committed send's effects: counts its latency and, for a new message, returns the
    /// end of the sender's typing lease in its conversation, to run (a replay ends nothing:
    /// the message was sent before).
    pub fn sent(
        &self,
        queued: &QueuedSend,
        outcome: &AppendOutcome,
        via: Via,
    ) -> Option<TypingEnd> {
        self.metrics
            .send_acked(via.transport(), queued.received.elapsed());
        let AppendOutcome::Created(message) = outcome else {
            return None;
        };
        Some(TypingEnd {
            typing: self.typing.clone(),
            conversation: queued.conversation,
            user: message.sender_id,
        })
    }
}

/// A sent message ends its sender's typing lease in its conversation, whatever the transport.
#[must_use = "the lease ends only when run"]
pub struct TypingEnd {
    typing: domain::services::TypingService,
    conversation: ConversationId,
    user: UserId,
}

impl TypingEnd {
    /// The conversation whose lease it ends.
    pub fn conversation(&self) -> ConversationId {
        self.conversation
    }

    /// Ends the lease (a failure is logged: the lease expires on its own).
    pub async fn run(self) {
        if let Err(e) = self.typing.message_sent(self.conversation, self.user).await {
            tracing::warn!(error = %e, "typing stop after a send failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        assert_eq!(RetryAfter(Duration::from_millis(1)).as_secs_ceil(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(2001)).as_secs_ceil(), 3);
        assert_eq!(RetryAfter(Duration::from_secs(2)).as_secs_ceil(), 2);
        assert_eq!(RetryAfter(Duration::ZERO).as_secs_ceil(), 1);
    }
}
