-- 012: function bodies live once each in sql/functions/, not in migrations.
--
-- Up to version 11 the migrations defined the functions too, and later ones
-- redefined or dropped what earlier ones had made: trip_request() had three
-- bodies, and the bodies of functions long dropped were still there to
-- read. Now the migrations hold the schema (tables, indexes, domains,
-- constraints, types, data moves) and every function is defined once, in
-- sql/functions/NN_name.sql, which the daemon applies after the migrations
-- (include/store/migrations.h). Migrations 007, 008, 009 and 011 held only
-- functions and are gone from sql/: a database that recorded them keeps the
-- records, which nothing reads; 002, 004, 005 and 006 lost their function
-- bodies and name the checksums of their earlier texts (was-checksum).
--
-- What this migration itself does: drop the functions that no file defines
-- any more, in a database that an earlier version left them in (in a new
-- database none of them exists):
--   trip_transition(), trip_step()  the state machine one trip at a time,
--       before trip_apply() (sql/009 dropped them; a database that skipped
--       from before 009 straight to here still has them);
--   match_release()  the matcher releases a driver with a statement of its
--       own (src/match/match.c);
--   outbox_put()  trip_emit() writes its outbox row itself, as every other
--       writer of the outbox does.

DROP FUNCTION IF EXISTS trip_transition(uuid, text, text, text, jsonb);
DROP FUNCTION IF EXISTS trip_step(uuid, text, text, text, jsonb);
DROP FUNCTION IF EXISTS match_release(uuid, bigint, uuid, text);
DROP FUNCTION IF EXISTS outbox_put(uuid, integer, text, jsonb);
