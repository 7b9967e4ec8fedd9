-- The daily partitions of the location history (table: sql/004_driver_locations.sql),
-- kept by src/presence/history.c.

-- Creates the daily partitions from today to `ahead` days on and drops those
-- entirely older than `keep`. Returns how many it created and dropped.
CREATE OR REPLACE FUNCTION ridehail_location_partitions(keep interval, ahead integer,
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
