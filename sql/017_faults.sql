-- 017: what faults need (issue 21); the functions are in sql/functions/
-- (30_trip_fare.sql: trip_driven(); 40_trip_driver_lost.sql; the state
-- machine's rule for a trip whose driver is gone in 40_trip_apply.sql).
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

-- A live trip whose driver is gone (no socket, no location) for
-- trip.driver_lost_after: the matcher flags it, and clears the flag if the
-- driver comes back (trip_driver_lost()); a flagged trip can be ended by its
-- rider (even IN_PROGRESS) or an operator, reason driver_lost, under the
-- fare rule of docs/api.md (trip_step_cancelled()).
ALTER TABLE trips ADD COLUMN driver_lost_at timestamptz;
