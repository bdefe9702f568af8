-- `python -m ops restore` (a named backup into the live database) is recorded
-- in ops_runs like every other maintenance run.
ALTER TABLE ops_runs DROP CONSTRAINT ops_runs_kind;
ALTER TABLE ops_runs ADD CONSTRAINT ops_runs_kind
    CHECK (kind IN ('backup', 'verify', 'prune', 'retention', 'integrity', 'repair', 'drill', 'restore'));
