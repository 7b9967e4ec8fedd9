-- 001: the foundation. PostGIS for every geographic column that follows.
-- (Needs a superuser or a role allowed to create the extension; the local
-- default cluster under var/pg makes the daemon's role a superuser.)
CREATE EXTENSION IF NOT EXISTS postgis;
