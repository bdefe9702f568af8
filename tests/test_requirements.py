"""The API's runtime set is pinned, has no Airflow, and agrees with the full set."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_api_requirements_are_a_pinned_subset_of_the_full_set_without_airflow():
    full, api = _pins(ROOT / "requirements.txt"), _pins(ROOT / "api" / "requirements.txt")
    assert not [n for n in api if n.startswith(("apache-airflow", "great-expectations", "ansible"))]
    mismatched = {n: (v, full.get(n)) for n, v in api.items() if full.get(n) != v}
    assert mismatched == {}
    for name in ("sanic", "psycopg", "redis", "limits", "prometheus-client", "alembic"):
        assert name in api


def test_airflow_host_requirements_are_a_pinned_subset_of_the_full_set_without_the_api_server():
    full, airflow = _pins(ROOT / "requirements.txt"), _pins(ROOT / "dags" / "requirements.txt")
    assert not [n for n in airflow if n.startswith(("sanic", "ansible"))]
    mismatched = {n: (v, full.get(n)) for n, v in airflow.items() if full.get(n) != v}
    assert mismatched == {}
    for name in ("apache-airflow", "apache-airflow-providers-postgres", "apache-airflow-providers-celery",
                 "great-expectations", "psycopg", "psycopg-binary"):
        assert name in airflow
