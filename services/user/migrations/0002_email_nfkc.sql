-- +goose Up
-- Emails have been NFKC-normalised before lower-casing since 1335e16; accounts stored before then under a form that
-- is not (an "e" plus a combining accent, full-width letters) can no longer log in, since login looks the new form
-- up. Rewriting them needs Go's NFKC and case folding, which SQL here lacks (SQLite has no normalize(), and lower()
-- is ASCII-only on both dialects unless PostgreSQL's locale says otherwise), so this version only queues the work:
-- the service runs each queued data migration right after the schema migrations, in the transaction that deletes
-- its row (adapters.RunDataMigrations), so it runs once even when replicas start together. Inserting the row again
-- runs it again at the next start (it is idempotent), e.g. after old replicas stored more rows during a rollout.
CREATE TABLE pending_data_migrations (name TEXT PRIMARY KEY);
INSERT INTO pending_data_migrations (name) VALUES ('0002_email_nfkc');

-- +goose Down
DROP TABLE pending_data_migrations;
