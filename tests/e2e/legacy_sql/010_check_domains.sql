-- 010: the one-column CHECK constraints of the busy tables become domains.
--
-- PostgreSQL prepares a table's CHECK constraints again at every execution
-- of every statement that writes a row of it: each one is read back from
-- its stored text and planned (ExecRelCheck: stringToNode, then
-- expression_planner), however many rows the statement writes, and an
-- UPDATE checks all of them whatever columns it sets. trips had 20,
-- drivers 11. A domain's constraints are planned once per session (the
-- type cache keeps them) and checked where a value becomes of the domain:
-- when an INSERT or UPDATE stores a text, a number or a parameter into the
-- column, or a PL/pgSQL variable of the row type is assigned. A value
-- copied from a column of the same domain (UPDATE ... FROM unnest(trips[]))
-- is not checked twice.
--
-- Measured (backend CPU, bench/trip_sql.py, two alternating runs against
-- a database at sql/009): presence's one-row status UPDATE of drivers
-- 117 / 130 -> 91 / 55 us; batches of one, a new trip 599 / 599 -> 534 /
-- 417 us and a MATCHED transition 872 / 807 -> 716 / 638 us; batches of 16
-- and 64 unchanged within noise (one preparation shared by the batch).
-- pgbench, one client, that UPDATE prepared: 4,250-6,400 -> 7,230-11,500
-- tps (8,200-9,800 with no checks at all).
--
-- What stays a table CHECK: the constraints across columns (state against
-- driver_id, completed_at, cancelled_at, fare_final) and trips.state, which
-- the partial indexes' predicates name (its type stays text so that they
-- and the queries they serve keep matching as they are). driver_locations
-- keeps its four: it is written in batches of up to presence.history_batch_max
-- rows, one preparation per batch.
--
-- The same rules as before, value for value; the error of a violation is
-- still SQLSTATE 23514 (check_violation), naming the domain instead of the
-- table. Changing a column to a domain with a CHECK rewrites the table
-- (the rows are checked on the way): on a large database this migration
-- holds each table's lock for the time of its rewrite.

CREATE DOMAIN rh_count AS integer CHECK (VALUE >= 0);
CREATE DOMAIN rh_amount AS bigint CHECK (VALUE >= 0);
CREATE DOMAIN rh_version AS integer CHECK (VALUE >= 1);
CREATE DOMAIN rh_role AS text CHECK (VALUE IN ('rider', 'driver', 'operator', 'system'));
CREATE DOMAIN rh_rater_role AS text CHECK (VALUE IN ('rider', 'driver'));
CREATE DOMAIN rh_stars AS smallint CHECK (VALUE BETWEEN 1 AND 5);
CREATE DOMAIN rh_currency AS character(3) CHECK (VALUE ~ '^[A-Z]{3}$');
CREATE DOMAIN rh_driver_status AS text
    CHECK (VALUE IN ('offline', 'available', 'offered', 'en_route', 'on_trip'));
CREATE DOMAIN rh_email AS text CHECK (length(VALUE) BETWEEN 3 AND 254);
CREATE DOMAIN rh_person_name AS text CHECK (length(VALUE) BETWEEN 1 AND 100);
CREATE DOMAIN rh_phone AS text CHECK (length(VALUE) BETWEEN 3 AND 32);
CREATE DOMAIN rh_plate AS text CHECK (length(VALUE) BETWEEN 1 AND 16);
CREATE DOMAIN rh_vehicle_color AS text CHECK (length(VALUE) BETWEEN 1 AND 30);
CREATE DOMAIN rh_vehicle_model AS text CHECK (length(VALUE) BETWEEN 1 AND 50); -- make and model
CREATE DOMAIN rh_vehicle_type AS text CHECK (VALUE ~ '^[a-z0-9_-]{1,31}$');    -- a driver's
CREATE DOMAIN rh_trip_vehicle AS text CHECK (length(VALUE) BETWEEN 1 AND 31);  -- a trip's
CREATE DOMAIN rh_reason AS text CHECK (length(VALUE) <= 64);
CREATE DOMAIN rh_address AS text CHECK (length(VALUE) <= 200);
CREATE DOMAIN rh_quote_id AS text CHECK (length(VALUE) <= 400);
CREATE DOMAIN rh_comment AS text CHECK (length(VALUE) <= 500);
CREATE DOMAIN rh_idempotency_key AS text CHECK (length(VALUE) BETWEEN 1 AND 255);
CREATE DOMAIN rh_event_type AS text CHECK (VALUE ~ '^[a-z]+(\.[a-z_]+)+$');

ALTER TABLE drivers
    DROP CONSTRAINT drivers_email_check,
    DROP CONSTRAINT drivers_name_check,
    DROP CONSTRAINT drivers_phone_check,
    DROP CONSTRAINT drivers_plate_check,
    DROP CONSTRAINT drivers_rating_count_check,
    DROP CONSTRAINT drivers_rating_sum_check,
    DROP CONSTRAINT drivers_status_check,
    DROP CONSTRAINT drivers_vehicle_color_check,
    DROP CONSTRAINT drivers_vehicle_make_check,
    DROP CONSTRAINT drivers_vehicle_model_check,
    DROP CONSTRAINT drivers_vehicle_type_check,
    ALTER COLUMN email TYPE rh_email,
    ALTER COLUMN name TYPE rh_person_name,
    ALTER COLUMN phone TYPE rh_phone,
    ALTER COLUMN plate TYPE rh_plate,
    ALTER COLUMN rating_count TYPE rh_count,
    ALTER COLUMN rating_sum TYPE rh_amount,
    ALTER COLUMN status TYPE rh_driver_status,
    ALTER COLUMN vehicle_color TYPE rh_vehicle_color,
    ALTER COLUMN vehicle_make TYPE rh_vehicle_model,
    ALTER COLUMN vehicle_model TYPE rh_vehicle_model,
    ALTER COLUMN vehicle_type TYPE rh_vehicle_type;

ALTER TABLE riders
    DROP CONSTRAINT riders_email_check,
    DROP CONSTRAINT riders_name_check,
    DROP CONSTRAINT riders_phone_check,
    DROP CONSTRAINT riders_rating_count_check,
    DROP CONSTRAINT riders_rating_sum_check,
    ALTER COLUMN email TYPE rh_email,
    ALTER COLUMN name TYPE rh_person_name,
    ALTER COLUMN phone TYPE rh_phone,
    ALTER COLUMN rating_count TYPE rh_count,
    ALTER COLUMN rating_sum TYPE rh_amount;

ALTER TABLE operators
    DROP CONSTRAINT operators_email_check,
    DROP CONSTRAINT operators_name_check,
    ALTER COLUMN email TYPE rh_email,
    ALTER COLUMN name TYPE rh_person_name;

ALTER TABLE trips
    DROP CONSTRAINT trips_cancel_fee_check,
    DROP CONSTRAINT trips_cancel_reason_check,
    DROP CONSTRAINT trips_cancelled_by_check,
    DROP CONSTRAINT trips_currency_check,
    DROP CONSTRAINT trips_dropoff_address_check,
    DROP CONSTRAINT trips_event_seq_check,
    DROP CONSTRAINT trips_fare_final_check,
    DROP CONSTRAINT trips_fare_metered_check,
    DROP CONSTRAINT trips_fare_quoted_check,
    DROP CONSTRAINT trips_metered_distance_m_check,
    DROP CONSTRAINT trips_metered_duration_s_check,
    DROP CONSTRAINT trips_pickup_address_check,
    DROP CONSTRAINT trips_quote_id_check,
    DROP CONSTRAINT trips_vehicle_type_check,
    DROP CONSTRAINT trips_version_check,
    ALTER COLUMN cancel_fee TYPE rh_amount,
    ALTER COLUMN cancel_reason TYPE rh_reason,
    ALTER COLUMN cancelled_by TYPE rh_role,
    ALTER COLUMN currency TYPE rh_currency,
    ALTER COLUMN dropoff_address TYPE rh_address,
    ALTER COLUMN event_seq TYPE rh_count,
    ALTER COLUMN fare_final TYPE rh_amount,
    ALTER COLUMN fare_metered TYPE rh_amount,
    ALTER COLUMN fare_quoted TYPE rh_amount,
    ALTER COLUMN metered_distance_m TYPE rh_count,
    ALTER COLUMN metered_duration_s TYPE rh_count,
    ALTER COLUMN pickup_address TYPE rh_address,
    ALTER COLUMN quote_id TYPE rh_quote_id,
    ALTER COLUMN vehicle_type TYPE rh_trip_vehicle,
    ALTER COLUMN version TYPE rh_version;

ALTER TABLE trip_events
    DROP CONSTRAINT trip_events_actor_role_check,
    ALTER COLUMN actor_role TYPE rh_role;

ALTER TABLE trip_ratings
    DROP CONSTRAINT trip_ratings_by_role_check,
    DROP CONSTRAINT trip_ratings_comment_check,
    DROP CONSTRAINT trip_ratings_stars_check,
    ALTER COLUMN by_role TYPE rh_rater_role,
    ALTER COLUMN comment TYPE rh_comment,
    ALTER COLUMN stars TYPE rh_stars;

ALTER TABLE ride_idempotency
    DROP CONSTRAINT ride_idempotency_key_check,
    ALTER COLUMN key TYPE rh_idempotency_key;

ALTER TABLE outbox
    DROP CONSTRAINT outbox_event_type_check,
    DROP CONSTRAINT outbox_event_version_check,
    ALTER COLUMN event_type TYPE rh_event_type,
    ALTER COLUMN event_version TYPE rh_version;
