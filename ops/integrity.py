"""Count integrity: the GX suite in expectations/, its Data Docs, and the repair it calls for.

A check that could not run counts as a failure, never as a pass.

Data Docs: each run builds the GX HTML site into a fresh directory under
`<docs_dir>/.builds/` and then points the symlink `<docs_dir>/<docs_name>` at it
(an atomic rename), so a reader never sees a half-written site and old runs do
not pile up. `<docs_dir>/live/index.html` shows the last check of the live
database, `<docs_dir>/drill/index.html` that of the last drill's copy.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

from ops.pg import connect, sqlalchemy_url

log = logging.getLogger("likes.ops.integrity")
SUITE = Path(__file__).resolve().parent.parent / "expectations" / "likes_integrity.json"
MAX_ROWS_LOGGED = 20
ROWS_FETCHED = 200              # failing rows a row check fetches (GX's own cap); the count is exact
_TOTAL = "unexpected_total"


@dataclass
class Check:
    meaning: str
    type: str
    asset: str
    passed: bool
    unexpected_count: int | None = None
    rows: list = field(default_factory=list)
    error: str | None = None


@dataclass
class IntegrityResult:
    passed: bool
    checks: list[Check]
    duration_seconds: float
    docs_index: str | None = None
    docs_error: str | None = None


@dataclass
class RepairResult:
    changed: list[dict]
    integrity_after: IntegrityResult


def integrity(database_url: str, suite_path: Path = SUITE, max_rows: int = MAX_ROWS_LOGGED,
              docs_dir: Path | None = None, docs_name: str = "live") -> IntegrityResult:
    """Validate the suite against the database; with docs_dir, publish the Data Docs HTML there."""
    t0 = time.monotonic()
    spec = json.loads(Path(suite_path).read_text())
    gx = load_gx()
    from great_expectations.core.run_identifier import RunIdentifier

    context = gx.get_context(mode="ephemeral")
    _quiet_progress_bars(context)
    source = context.data_sources.add_postgres(name="likes", connection_string=sqlalchemy_url(database_url))
    by_asset: dict[str, list[dict]] = {}
    for e in spec["expectations"]:
        by_asset.setdefault(e["asset"], []).append(e)
    validations, asset_of_suite = [], {}
    for asset_name, expectations in by_asset.items():
        batch = source.add_table_asset(name=asset_name, table_name=asset_name).add_batch_definition_whole_table("all")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{spec['name']}.{asset_name}"))
        for e in expectations:
            suite.add_expectation(_expectation(gx, e))
        asset_of_suite[suite.name] = asset_name
        validations.append(context.validation_definitions.add(
            gx.ValidationDefinition(data=batch, suite=suite, name=f"{spec['name']}.{asset_name}")))
    checkpoint = context.checkpoints.add(gx.Checkpoint(name=spec["name"], validation_definitions=validations,
                                                       result_format="COMPLETE"))
    outcome = checkpoint.run(run_id=RunIdentifier(run_name=docs_name))
    checks = [_check(asset_of_suite[v.suite_name], r, max_rows)
              for v in outcome.run_results.values() for r in v.results]
    # Every expectation must have reported: one that is missing could not run.
    result = IntegrityResult(len(checks) == len(spec["expectations"]) and all(c.passed for c in checks), checks, 0.0)
    for c in checks:
        if not c.passed:
            log.error("integrity FAILED: %s (%s on %s): %s unexpected%s; rows: %s", c.meaning, c.type, c.asset,
                      c.unexpected_count, f"; could not run: {c.error}" if c.error else "",
                      json.dumps(c.rows, default=str))
    if docs_dir is not None:
        try:
            result.docs_index = str(_publish_docs(context, Path(docs_dir), docs_name))
            log.info("integrity: Data Docs at %s", result.docs_index)
        except Exception as exc:      # the checks' outcome stands; the missing report is named
            result.docs_error = f"Data Docs not published to {docs_dir}: {exc}"
            log.error("integrity: %s", result.docs_error)
    result.duration_seconds = round(time.monotonic() - t0, 3)
    return result


def load_gx():
    """Import GX (seconds): only when a check runs, or ahead of time by a caller that
    must not spend those seconds later (restore, with likes read-only)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations
    return great_expectations


def repair(database_url: str, post_ids: list[str] | None = None, docs_dir: Path | None = None) -> RepairResult:
    """Recompute drifted counters from the like rows in one transaction, then validate again."""
    with connect(database_url) as conn:
        rows = conn.execute("SELECT post_id, count_before, count_after FROM eng_post_like_repair(%s)",
                            (post_ids,)).fetchall()
    changed = [{"post_id": p, "count_before": b, "count_after": a} for p, b, a in rows]
    for c in changed:
        log.info("repair: %s %d -> %d", c["post_id"], c["count_before"], c["count_after"])
    return RepairResult(changed, integrity(database_url, docs_dir=docs_dir))


def _expectation(gx, e: dict):
    if e["type"] == "UnexpectedRowsExpectation":
        query = (f"SELECT unexpected.*, count(*) OVER () AS {_TOTAL} FROM ({e['kwargs']['unexpected_rows_query']}) "
                 f"AS unexpected LIMIT {ROWS_FETCHED}")
        return _unexpected_rows_counted_once()(unexpected_rows_query=query, description=e["meaning"])
    return getattr(gx.expectations, e["type"])(**e["kwargs"], description=e["meaning"])


@functools.cache
def _unexpected_rows_counted_once():
    """UnexpectedRowsExpectation runs its query twice, once for the rows and once
    for their count; on the like rows that doubles the suite's time. This one
    runs it once: the query carries the total in a window column."""
    from great_expectations.expectations.core.unexpected_rows_expectation import UnexpectedRowsExpectation

    class UnexpectedRowsCountedOnce(UnexpectedRowsExpectation):
        metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.table",)

        def _validate(self, metrics: dict, runtime_configuration: dict | None = None, execution_engine=None):
            rows = [dict(r) for r in metrics["unexpected_rows_query.table"]]
            total = rows[0][_TOTAL] if rows else 0
            for r in rows:
                r.pop(_TOTAL, None)
            return {"success": total == 0, "result": {"observed_value": total, "details": {"unexpected_rows": rows}}}

    return UnexpectedRowsCountedOnce


def _check(asset: str, r, max_rows: int) -> Check:
    cfg = r.expectation_config
    raised = (r.exception_info or {}).get("raised_exception") or any(
        isinstance(v, dict) and v.get("raised_exception") for v in (r.exception_info or {}).values())
    res = r.result or {}
    rows = res.get("details", {}).get("unexpected_rows") or res.get("unexpected_list") or []
    count = res.get("observed_value") if cfg.type.startswith("unexpected_rows") else res.get("unexpected_count")
    error = None
    if raised:
        info = r.exception_info
        messages = [v.get("exception_message") for v in info.values() if isinstance(v, dict)] \
            if "exception_message" not in info else [info["exception_message"]]
        error = "; ".join(m for m in messages if m)[:500] or "the check raised an exception"
    return Check(meaning=cfg.description or cfg.type, type=cfg.type, asset=asset,
                 passed=bool(r.success) and not raised, unexpected_count=count,
                 rows=[_plain(x) for x in list(rows)[:max_rows]], error=error)


def _plain(row):
    if isinstance(row, dict):
        return {k: _plain(v) for k, v in row.items()}
    return row if isinstance(row, (str, int, float, bool, type(None))) else str(row)


def _publish_docs(context, docs_dir: Path, docs_name: str) -> Path:
    builds = docs_dir / ".builds"
    builds.mkdir(parents=True, exist_ok=True)
    build = builds / f"{docs_name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    context.add_data_docs_site(site_name=docs_name, site_config={
        "class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(build)}})
    context.build_data_docs(site_names=[docs_name])
    link = docs_dir / docs_name
    previous = link.resolve() if link.is_symlink() else None
    if link.exists() and not link.is_symlink():
        shutil.rmtree(link)                 # a plain directory left by hand
    tmp_link = docs_dir / f".tmp-{docs_name}-{secrets.token_hex(3)}"
    tmp_link.symlink_to(build.relative_to(docs_dir))
    os.replace(tmp_link, link)
    if previous and previous != build and previous.parent == builds:
        shutil.rmtree(previous, ignore_errors=True)
    # Builds of runs that died before the swap, once no run can still be writing them.
    current = {p.resolve() for p in docs_dir.iterdir() if p.is_symlink()}
    for old in builds.iterdir():
        if old.resolve() not in current and old.stat().st_mtime < time.time() - 86400:
            shutil.rmtree(old, ignore_errors=True)
    return link / "index.html"


def _quiet_progress_bars(context) -> None:
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except Exception:                  # older/newer config shape: progress bars only add log noise
        pass
