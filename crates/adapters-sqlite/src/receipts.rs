//! `ReceiptStore`: delivered and read watermarks.

use crate::connection::greatest;
use crate::rows::ParticipantRow;
use crate::schema::participants;
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
                    let key = (
                        update.conversation_id.to_string(),
                        update.user_id.to_string(),
                    );
                    diesel::update(participants::table.find((&key.0, &key.1)))
                        .set((
                            participants::delivered_seq
                                .eq(greatest(participants::delivered_seq, delivered)),
                            participants::read_seq.eq(greatest(participants::read_seq, read)),
                        ))
                        .returning(ParticipantRow::as_select())
                        .get_result(conn)
                        .optional()?
                        .map(ParticipantRow::into_participant)
                        .transpose()
                })
                .collect()
        })
        .await
    }
}
