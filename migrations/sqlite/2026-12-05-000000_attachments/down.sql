DROP INDEX messages_deleted_with_attachments;
ALTER TABLE messages DROP COLUMN attachment_count;
DROP TABLE attachments;
