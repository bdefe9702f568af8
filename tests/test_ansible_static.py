"""Static checks of the Ansible code: every playbook parses against every inventory, ansible-lint
(production profile, offline) and yamllint report nothing, and every role documents each default
in defaults/main.yml and mirrors it in meta/argument_specs.yml."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy import ANSIBLE_PLAYBOOK, ROOT

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
PLAYBOOKS = sorted(p.name for p in (ROOT / "playbooks").glob("*.yml"))
INVENTORIES = ("local", "cluster-sim", "production.example")
ROLES = sorted(p.name for p in (ROOT / "playbooks" / "roles").iterdir() if p.is_dir())
VAULT_PASSWORD_FILE = ROOT / "inventory" / "production.example" / "vault-password.example"


def test_every_playbook_is_a_known_one():
    assert set(PLAYBOOKS) == {"site.yml", "preflight.yml", "platform.yml", "deploy.yml", "rollback.yml", "backup.yml", "restore.yml",
                              "rotate_secrets.yml", "verify.yml"}


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_every_playbook_passes_syntax_check_against_the_inventory(inventory):
    for playbook in PLAYBOOKS:
        out = subprocess.run([ANSIBLE_PLAYBOOK, "--syntax-check", "-i", f"inventory/{inventory}",
                              "--vault-password-file", str(VAULT_PASSWORD_FILE), f"playbooks/{playbook}"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{playbook} against {inventory}: {out.stdout[-1500:]}{out.stderr[-1500:]}"


def test_ansible_lint_production_profile_reports_nothing():
    out = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--profile", "production", "-q",
                          "playbooks/", "inventory/local", "inventory/cluster-sim"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_yamllint_reports_nothing():
    out = subprocess.run([str(BIN / "yamllint"), "-s", "playbooks", "inventory", "tests/playbooks", ".ansible-lint", ".yamllint"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:]


@pytest.mark.parametrize("role", ROLES)
def test_role_defaults_are_prefixed_commented_and_mirrored_in_argument_specs(role):
    base = ROOT / "playbooks" / "roles" / role
    text = (base / "defaults" / "main.yml").read_text()
    defaults = yaml.safe_load(text)
    specs = yaml.safe_load((base / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(specs)
    assert [name for name in defaults if not name.startswith(f"{role}__")] == []
    lines = text.splitlines()
    uncommented = [name for name in defaults
                   if not lines[next(i for i, line in enumerate(lines) if line.startswith(f"{name}:")) - 1].startswith("#")]
    assert uncommented == []
    assert [name for name, spec in specs.items() if not spec.get("description") or not spec.get("type")] == []
