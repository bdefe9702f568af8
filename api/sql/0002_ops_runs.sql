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

-- The ages the API's health reports: seconds since the last successful backup
-- and drill, and the outcome of the last integrity check (NULL when never run).
CREATE FUNCTION eng_ops_status()
RETURNS TABLE (backup_age_seconds double precision, drill_age_seconds double precision,
               integrity_age_seconds double precision, integrity_outcome text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT (SELECT extract(epoch FROM now() - max(finished_at)) FROM ops_runs
             WHERE kind = 'backup' AND outcome = 'success'),
           (SELECT extract(epoch FROM now() - max(finished_at)) FROM ops_runs
             WHERE kind = 'drill' AND outcome = 'success'),
           (SELECT extract(epoch FROM now() - max(finished_at)) FROM ops_runs
             WHERE kind = 'integrity' AND outcome = 'success'),
           (SELECT outcome FROM ops_runs WHERE kind = 'integrity' AND outcome <> 'running'
             ORDER BY finished_at DESC LIMIT 1)
$$;
REVOKE ALL ON FUNCTION eng_ops_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eng_ops_status() TO likes_api, likes_ops;
