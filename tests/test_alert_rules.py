"""The Prometheus alert rules (etc/prometheus/gearmgr-rules.yml): `promtool check rules` accepts
them, `promtool test rules` shows each alert firing on what it says and not on its look-alikes
(tests/prometheus/gearmgr-rules-test.yml), each reads metrics gearmgr serves, and each is
documented in docs/operations.md. promtool comes from Debian's `prometheus` package, which
`make test` installs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import which

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "etc" / "prometheus" / "gearmgr-rules.yml"
CASES = ROOT / "tests" / "prometheus" / "gearmgr-rules-test.yml"
PROMTOOL = which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed: Debian's `prometheus` package provides it "
    "(`make test` installs it; apt-get install prometheus)",
)


def alerts() -> list[dict]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout


@needs_promtool
def test_each_alert_fires_on_what_it_says_and_not_on_look_alikes(tmp_path: Path) -> None:
    bare = yaml.safe_load(RULES.read_text())
    for group in bare["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # the cases compare labels, not the prose
    (tmp_path / "gearmgr-rules.yml").write_text(yaml.safe_dump(bare))
    (tmp_path / CASES.name).write_text(CASES.read_text())
    done = promtool("test", "rules", CASES.name, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", CASES.read_text()))
    assert tested == {rule["alert"] for rule in alerts()}


def test_the_rules_read_metrics_gearmgr_serves_and_are_documented() -> None:
    served = {"up"} | set(
        re.findall(r"`(gearmgr_\w+)`", (ROOT / "docs" / "operations.md").read_text())
    )
    operations = (ROOT / "docs" / "operations.md").read_text()
    for rule in alerts():
        used = set(re.findall(r"\b(gearmgr_\w+|up)\{", rule["expr"])) | set(
            re.findall(r"\b(gearmgr_\w+)\b", rule["expr"])
        )
        assert used <= served, f"{rule['alert']} reads {used - served}, not in the metrics table"
        assert f"`{rule['alert']}`" in operations, f"{rule['alert']} is not in docs/operations.md"
        assert {"summary", "description"} <= set(rule["annotations"])
