-- 004: location history (the cold path). Telemetry, not transactional: the
-- daemon writes it in batches from a bounded queue and may drop points when
-- the database is slow; trips and dispatch never read it to decide anything.
-- Partitioned by day on the server's receive time, so retention is a cheap
-- DROP of old partitions. No foreign keys: batch inserts stay cheap, and a
-- history row outliving its account is harmless.

CREATE TABLE driver_locations (
    driver_id   uuid NOT NULL,
    trip_id     uuid,
    recorded_at timestamptz NOT NULL,      -- when the server received it
    device_at   timestamptz,               -- when the device says it was taken
    location    geography(Point, 4326) NOT NULL,
    heading_deg real CHECK (heading_deg >= 0 AND heading_deg <= 360),
    speed_kmh   real CHECK (speed_kmh >= 0),
    accuracy_m  real CHECK (accuracy_m >= 0),
    source      text CHECK (source IN ('gps', 'network', 'manual'))
) PARTITION BY RANGE (recorded_at);

-- Catches rows outside every daily partition (it should stay empty: the
-- daemon creates partitions days ahead).
CREATE TABLE driver_locations_default PARTITION OF driver_locations DEFAULT;

CREATE INDEX driver_locations_driver ON driver_locations (driver_id, recorded_at);
CREATE INDEX driver_locations_trip ON driver_locations (trip_id, recorded_at) WHERE trip_id IS NOT NULL;

-- Creates the daily partitions from today to `ahead` days on and drops those
-- entirely older than `keep`. Returns how many it created and dropped.
CREATE FUNCTION ridehail_location_partitions(keep interval, ahead integer,
                                             OUT created integer, OUT dropped integer)
LANGUAGE plpgsql AS $$
DECLARE
    day date;
    part record;
    upper_bound timestamptz;
BEGIN
    -- daemons sharing the database take turns
    PERFORM pg_advisory_xact_lock(7243002);
    created := 0;
    dropped := 0;
    FOR i IN 0..ahead LOOP
        day := (now() AT TIME ZONE 'UTC')::date + i;
        IF to_regclass(format('driver_locations_%s', to_char(day, 'YYYYMMDD'))) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF driver_locations FOR VALUES FROM (%L) TO (%L)',
                           'driver_locations_' || to_char(day, 'YYYYMMDD'),
                           (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        END IF;
    END LOOP;
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'driver_locations'::regclass AND c.relname ~ '^driver_locations_[0-9]{8}$'
    LOOP
        upper_bound := (to_date(right(part.relname, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC';
        IF upper_bound < now() - keep THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
END
$$;
