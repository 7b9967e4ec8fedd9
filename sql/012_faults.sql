-- 012: what faults need (issue 21): the outbox pruned once published.
--
-- Published outbox rows older than events.outbox_retention are deleted in
-- batches by the relay's pruner (src/events/relay.c), oldest publication
-- first; this index makes each batch a range scan whatever the table's size.
-- trip_events stays the permanent history.
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;

-- The rider's feed (src/match/feed.c): numbers given to a trip's messages
-- only go forward, across restarts too. The daemon reserves them a block at
-- a time: seq_max is the highest number it may give (no row: the first
-- block, implicit); a trip read back after a restart starts from it. The row
-- goes when the trip ends.
CREATE TABLE rider_feed_seq (
    trip_id uuid PRIMARY KEY REFERENCES trips (id),
    seq_max bigint NOT NULL CHECK (seq_max > 0)
);
