//! `ReceiptStore`: delivered and read watermarks.

use crate::hot::RaiseWatermarks;
use crate::rows::ParticipantRow;
use crate::SqliteStorage;
use async_trait::async_trait;
use diesel::prelude::*;
use domain::conversation::Participant;
use domain::ports::{ReceiptStore, WatermarkUpdate};
use domain::StorageError;

#[async_trait]
impl ReceiptStore for SqliteStorage {
    async fn advance_watermarks(
        &self,
        updates: &[WatermarkUpdate],
    ) -> Result<Vec<Option<Participant>>, StorageError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let updates = updates.to_vec();
        self.write(move |conn| {
            updates
                .iter()
                .map(|update| {
                    let read = update.read_seq.unwrap_or(0);
                    // Read implies delivered.
                    let delivered = update.delivered_seq.unwrap_or(0).max(read);
                    let (conversation, user) = (
                        update.conversation_id.to_string(),
                        update.user_id.to_string(),
                    );
                    RaiseWatermarks {
                        conversation: &conversation,
                        user: &user,
                        delivered,
                        read,
                    }
                    .get_result::<ParticipantRow>(conn)
                    .optional()?
                    .map(ParticipantRow::into_participant)
                    .transpose()
                })
                .collect()
        })
        .await
    }
}
