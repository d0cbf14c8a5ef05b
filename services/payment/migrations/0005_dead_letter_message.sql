-- +goose Up
-- Which stored message a dead letter is for, so that it is recorded once:
-- a delivery whose termination was lost (the connection dropped after the
-- row was written) is delivered again and gives the message up again, and
-- before this key it wrote a second row. The consumer writes
-- "<consumer> <stream> <stream sequence> <stored time in ns>": the stored
-- time tells apart two messages with one sequence in a stream that was
-- deleted and made again while this database kept its rows (an embedded
-- run reusing its data directory). NULL for rows recorded before the
-- column, and for a message with no JetStream metadata: NULLs never
-- conflict, so those are simply not deduplicated.
ALTER TABLE dead_letters ADD COLUMN message_key TEXT;
CREATE UNIQUE INDEX dead_letters_message_key ON dead_letters (message_key);

-- +goose Down
DROP INDEX dead_letters_message_key;
ALTER TABLE dead_letters DROP COLUMN message_key;
