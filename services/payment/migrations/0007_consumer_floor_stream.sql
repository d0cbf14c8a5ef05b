-- +goose Up
-- When the stream a floor was read on was created (server time, in ns),
-- as that stream's own record says: a floor holds only on a stream created
-- at that very time. Comparing it with the consumer's creation time (0006)
-- compared the clocks of two servers, and a stream made again on one whose
-- clock is behind, already longer than the floor, was taken for the old
-- one. 0: saved before this column, judged as before.
ALTER TABLE consumer_floors ADD COLUMN stream_created_ns BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE consumer_floors DROP COLUMN stream_created_ns;
