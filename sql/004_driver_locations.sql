-- 004: location history (the cold path). Telemetry, not transactional: the
-- daemon writes it in batches from a bounded queue and may drop points when
-- the database is slow; trips and dispatch never read it to decide anything.
-- Partitioned by day on the server's receive time, so retention is a cheap
-- DROP of old partitions. No foreign keys: batch inserts stay cheap, and a
-- history row outliving its account is harmless. The partitions are made
-- and dropped by ridehail_location_partitions() (sql/functions/20_driver_locations.sql).
--
-- Its text up to schema version 11 also defined functions; their bodies
-- now live in sql/functions/. The schema it makes is the same, so a
-- database that recorded that text is at this migration:
-- was-checksum: ef7df4fde155fb68

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
