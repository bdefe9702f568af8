"""Count integrity: the GX suite in expectations/, and the repair it calls for.

A check that could not run counts as a failure, never as a pass.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ops.pg import connect, sqlalchemy_url

log = logging.getLogger("likes.ops.integrity")
SUITE = Path(__file__).resolve().parent.parent / "expectations" / "likes_integrity.json"
MAX_ROWS_LOGGED = 20


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


@dataclass
class RepairResult:
    changed: list[dict]
    integrity_after: IntegrityResult


def integrity(database_url: str, suite_path: Path = SUITE, max_rows: int = MAX_ROWS_LOGGED) -> IntegrityResult:
    t0 = time.monotonic()
    spec = json.loads(Path(suite_path).read_text())
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx     # heavy: imported only when a check runs

    context = gx.get_context(mode="ephemeral")
    _quiet_progress_bars(context)
    source = context.data_sources.add_postgres(name="likes", connection_string=sqlalchemy_url(database_url))
    checks: list[Check] = []
    by_asset: dict[str, list[dict]] = {}
    for e in spec["expectations"]:
        by_asset.setdefault(e["asset"], []).append(e)
    for asset_name, expectations in by_asset.items():
        batch = source.add_table_asset(name=asset_name, table_name=asset_name).add_batch_definition_whole_table("all")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{spec['name']}.{asset_name}"))
        for e in expectations:
            cls = getattr(gx.expectations, e["type"])
            suite.add_expectation(cls(**e["kwargs"], description=e["meaning"]))
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(data=batch, suite=suite, name=f"{spec['name']}.{asset_name}"))
        outcome = validation.run(result_format="COMPLETE")
        for r in outcome.results:
            checks.append(_check(asset_name, r, max_rows))
    result = IntegrityResult(all(c.passed for c in checks), checks, round(time.monotonic() - t0, 3))
    for c in checks:
        if not c.passed:
            log.error("integrity FAILED: %s (%s on %s): %s unexpected%s; rows: %s", c.meaning, c.type, c.asset,
                      c.unexpected_count, f"; could not run: {c.error}" if c.error else "",
                      json.dumps(c.rows, default=str))
    return result


def repair(database_url: str, post_ids: list[str] | None = None) -> RepairResult:
    """Recompute drifted counters from the like rows in one transaction, then validate again."""
    with connect(database_url) as conn:
        rows = conn.execute("SELECT post_id, count_before, count_after FROM eng_post_like_repair(%s)",
                            (post_ids,)).fetchall()
    changed = [{"post_id": p, "count_before": b, "count_after": a} for p, b, a in rows]
    for c in changed:
        log.info("repair: %s %d -> %d", c["post_id"], c["count_before"], c["count_after"])
    return RepairResult(changed, integrity(database_url))


def _check(asset: str, r, max_rows: int) -> Check:
    cfg = r.expectation_config
    raised = (r.exception_info or {}).get("raised_exception") or any(
        isinstance(v, dict) and v.get("raised_exception") for v in (r.exception_info or {}).values())
    res = r.result or {}
    rows = res.get("details", {}).get("unexpected_rows") or res.get("unexpected_list") or []
    count = res.get("observed_value") if cfg.type == "unexpected_rows_expectation" else res.get("unexpected_count")
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


def _quiet_progress_bars(context) -> None:
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except Exception:                  # older/newer config shape: progress bars only add log noise
        pass
