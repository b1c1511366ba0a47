DROP INDEX messages_deleted_with_attachments_idx;
ALTER TABLE messages DROP COLUMN attachment_count;
DROP TABLE attachments;
