-- 012: what faults need (issue 21): the outbox pruned once published.
--
-- Published outbox rows older than events.outbox_retention are deleted in
-- batches by the relay's pruner (src/events/relay.c), oldest publication
-- first; this index makes each batch a range scan whatever the table's size.
-- trip_events stays the permanent history.
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
