-- First start of the compose PostgreSQL (docker-entrypoint-initdb.d; runs once, on an empty data
-- volume): one database and owner role each for the MLflow backend store and the finbento
-- scheduler (APScheduler job store, run records, job locks).
--
-- The passwords come from the container's environment (psql's \getenv, PostgreSQL 15+), never
-- from this file: MLFLOW_DB_PASSWORD and SCHEDULER_DB_PASSWORD, set in deploy/.env. A missing
-- one stops the initialisation (ON_ERROR_STOP), so the server never starts half set up.
-- Changing a password later: ALTER ROLE ... PASSWORD ... (this file does not run again).

\getenv mlflow_password MLFLOW_DB_PASSWORD
\getenv scheduler_password SCHEDULER_DB_PASSWORD

\if :{?mlflow_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'MLFLOW_DB_PASSWORD is not set'; END $$;
\endif
\if :{?scheduler_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'SCHEDULER_DB_PASSWORD is not set'; END $$;
\endif

CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;

CREATE ROLE finbento LOGIN PASSWORD :'scheduler_password';
CREATE DATABASE finbento OWNER finbento;
REVOKE ALL ON DATABASE finbento FROM PUBLIC;
