-- Every maintenance run (backup, verify, prune, retention, integrity, repair,
-- drill), written by `python -m ops` and the Airflow DAGs, read by
-- `python -m ops status` and /api/monitoring/health.
CREATE TABLE ops_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text        NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    outcome     text        NOT NULL,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT ops_runs_kind CHECK (kind IN ('backup', 'verify', 'prune', 'retention', 'integrity', 'repair', 'drill')),
    CONSTRAINT ops_runs_outcome CHECK (outcome IN ('running', 'success', 'failed'))
);
CREATE INDEX ops_runs_kind_finished ON ops_runs (kind, finished_at DESC);
REVOKE ALL ON ops_runs FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON ops_runs TO likes_ops;

-- What /api/monitoring/health and `python -m ops status` report: seconds since
-- the last successful backup, drill and integrity check, the last integrity
-- outcome, and the problems. The staleness rule (26 h) lives here only.
-- *_missing means never run (a fresh install); *_stale and integrity_failed
-- are the runbooks' alerts.
CREATE FUNCTION eng_ops_status()
RETURNS TABLE (backup_age_seconds double precision, drill_age_seconds double precision,
               integrity_age_seconds double precision, integrity_outcome text, problems text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH ages AS (
        SELECT (SELECT extract(epoch FROM now() - max(finished_at)) FROM ops_runs
                 WHERE kind = 'backup' AND outcome = 'success') AS backup_age,
               (SELECT extract(epoch FROM now() - max(finished_at)) FROM ops_runs
                 WHERE kind = 'drill' AND outcome = 'success') AS drill_age,
               (SELECT extract(epoch FROM now() - max(finished_at)) FROM ops_runs
                 WHERE kind = 'integrity' AND outcome = 'success') AS integrity_age,
               (SELECT outcome FROM ops_runs WHERE kind = 'integrity' AND outcome <> 'running'
                 ORDER BY finished_at DESC LIMIT 1) AS integrity_outcome
    )
    SELECT backup_age, drill_age, integrity_age, integrity_outcome,
           array_remove(ARRAY[
               CASE WHEN backup_age IS NULL THEN 'backup_missing'
                    WHEN backup_age > 26 * 3600 THEN 'backup_stale' END,
               CASE WHEN drill_age IS NULL THEN 'drill_missing'
                    WHEN drill_age > 26 * 3600 THEN 'drill_stale' END,
               CASE WHEN integrity_outcome = 'failed' THEN 'integrity_failed' END], NULL)
      FROM ages
$$;
REVOKE ALL ON FUNCTION eng_ops_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eng_ops_status() TO likes_api, likes_ops;
