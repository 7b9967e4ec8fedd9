-- The car graph for pgr_dijkstra, from an osm2pgrouting import (--addnodes
-- --tags, mapconfig_for_cars.xml), under ridehail's car rules: the same
-- highway classes, access restrictions, oneway (incl. -1, roundabouts and
-- implied motorway oneway). Cost is length in metres; -1 closes a direction.
SELECT w.gid AS id, w.source, w.target,
       CASE WHEN fwd THEN w.length_m ELSE -1 END AS cost,
       CASE WHEN bwd THEN w.length_m ELSE -1 END AS reverse_cost
FROM (
  SELECT w.*, c.tag_value AS hw, o.tags,
         coalesce(o.tags->'oneway', '') AS ow,
         (coalesce(o.tags->'junction', '') IN ('roundabout', 'circular') OR c.tag_value IN ('motorway', 'motorway_link')) AS implied
  FROM ways w JOIN configuration c USING (tag_id) JOIN osm_ways o ON o.osm_id = w.osm_id
) w,
LATERAL (SELECT
  (w.ow NOT IN ('-1', 'reverse')) AS fwd,
  (w.ow IN ('-1', 'reverse', 'no', 'false', '0') OR (NOT w.implied AND w.ow NOT IN ('yes', 'true', '1'))) AS bwd) d
WHERE w.hw IN ('motorway', 'motorway_link', 'trunk', 'trunk_link', 'primary', 'primary_link', 'secondary',
               'secondary_link', 'tertiary', 'tertiary_link', 'unclassified', 'road', 'residential',
               'living_street', 'service')
  AND coalesce(w.tags->'area', '') <> 'yes'
  AND w.ow NOT IN ('reversible', 'alternating')
  AND coalesce(w.tags->'motorcar', w.tags->'motor_vehicle', w.tags->'vehicle', w.tags->'access', 'yes')
      NOT IN ('no', 'private', 'agricultural', 'forestry', 'delivery', 'emergency', 'military', 'psv', 'bus', 'disabled')
