-- +goose Up
-- The last ack floor a replica read of the order consumer, so that a
-- process that starts and finds the consumer gone (deleted while every
-- replica was down) creates it just above the floor instead of replaying
-- the whole stream. The floor is the server's, not a sequence this service
-- handled last: with 64 workers and retries on a back-off, message 100 may
-- be done while message 50 is still owed, and the stream holds messages
-- the consumer does not take (other subjects), so only the server knows
-- up to where every message was settled. consumer_created_ns is when the
-- consumer it was read of was created (server time, in ns): a stream made
-- again under the same name after that numbers its messages from 1, and
-- the floor says nothing of them.
CREATE TABLE consumer_floors (
    consumer            TEXT NOT NULL,
    stream              TEXT NOT NULL,
    ack_floor           BIGINT NOT NULL,
    consumer_created_ns BIGINT NOT NULL,
    PRIMARY KEY (consumer, stream)
);

-- +goose Down
DROP TABLE consumer_floors;
