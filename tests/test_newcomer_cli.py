"""The command line as a newcomer meets it: --version, help and usage, submit's config, check's
messages, and the words of every message that prints a count (issue 17)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from gearmgr.cli import main as cli
from gearmgr.discovery import discover, validate
from tests.support import Gearmand, free_port, wait_for
from tests.test_client import RawWorker


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``gearmgr ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def worker(gearmand: Gearmand) -> Iterator[RawWorker]:
    w = RawWorker(gearmand.address).start()
    wait_for(lambda: gearmand.status().get("reverse", (0, 0, 0))[2] == 1, what="worker registered")
    yield w
    w.stop()


# -- --version, metavars, help -------------------------------------------------------------------


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0
    assert out == f"gearmgr {metadata.version('gearmgr')}\n"


def test_python_dash_m_gearmgr_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gearmgr", "--version"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    assert done.stdout.startswith("gearmgr ")


def subcommands() -> list[str]:
    return sorted(cli.build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


@pytest.mark.parametrize("command", subcommands())
def test_every_metavar_is_upper_case(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli([command, "--help"], capsys)
    assert code == 0
    parser = cli.build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    for action in parser._actions:
        if action.help == "==SUPPRESS==" or action.nargs == 0 or action.choices:
            continue
        # What a user fills in reads the same in every command: FILE, SECONDS, FUNCTION...
        shown = action.metavar or (
            action.dest if not action.option_strings else action.dest.upper()
        )
        name = shown.split(".")[0]  # FILE.ini, as the SPEC writes it
        assert name == name.upper(), f"{command} {action.option_strings or ''}: {shown}"
        assert shown in out


def test_stop_and_restart_help_use_the_spec_names(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(["stop", "--help"], capsys)
    assert "--timeout SECONDS" in out
    _, out, _ = run_cli(["restart", "--help"], capsys)
    assert "FUNCTION" in out.splitlines()[0]
    assert "-c FILE" in out


# -- submit -c -----------------------------------------------------------------------------------


def test_submit_takes_its_servers_from_the_config(
    gearmand: Gearmand,
    worker: RawWorker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GEARMGR_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "mine.yaml"
    config.write_text(f'servers: ["{gearmand.address}"]\n')
    code, out, err = run_cli(["submit", "-c", str(config), "reverse", "hello"], capsys)
    assert (code, out, err) == (0, "olleh\n", "")
    # $GEARMGR_CONFIG, then ./gearmgr.yaml, as for every other command
    monkeypatch.setenv("GEARMGR_CONFIG", str(config))
    assert run_cli(["submit", "reverse", "abc"], capsys)[:2] == (0, "cba\n")
    monkeypatch.delenv("GEARMGR_CONFIG")
    (tmp_path / "gearmgr.yaml").write_text(config.read_text())
    assert run_cli(["submit", "reverse", "xy"], capsys)[:2] == (0, "yx\n")


def test_submit_server_flag_wins_over_the_config(
    gearmand: Gearmand, worker: RawWorker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text(f'servers: ["127.0.0.1:{free_port()}"]\n')
    argv = ["submit", "-c", str(config), "-s", gearmand.address, "reverse", "ab"]
    assert run_cli(argv, capsys)[:2] == (0, "ba\n")


def test_submit_with_a_missing_config_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    code, out, err = run_cli(["submit", "-c", str(missing), "reverse", "x"], capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert str(missing) in err and "No such file" in err


def test_import_ini_refuses_a_config_it_would_ignore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = tmp_path / "gm.ini"
    ini.write_text("[GearmanManager]\nworker_dir=./workers\n")
    code, out, err = run_cli(["import-ini", "-c", "mine.yaml", str(ini)], capsys)
    assert code == 2
    assert out == ""
    assert "import-ini takes no config file" in err
    assert run_cli(["import-ini", str(ini)], capsys)[0] == 0


# -- check: worker file messages -----------------------------------------------------------------


def test_a_slow_import_does_not_hide_the_other_files_errors(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text("import time\ntime.sleep(60)\n\ndef slow(job):\n    pass\n")
    (tmp_path / "bad.py").write_text("raise RuntimeError('missing setting')\n")
    (tmp_path / "good.py").write_text("def good(job):\n    return 'ok'\n")
    results = validate(discover([tmp_path]).files, timeout=1.0)
    assert results["slow"] == f"{tmp_path / 'slow.py'}: importing it did not finish in 1s"
    assert results["bad"] == f"{tmp_path / 'bad.py'}: RuntimeError: missing setting (at bad.py:1)"
    assert results["good"] is None


def test_a_file_that_kills_its_import_is_named_alone(tmp_path: Path) -> None:
    (tmp_path / "dies.py").write_text("import os\nos._exit(5)\n")
    (tmp_path / "good.py").write_text("def good(job):\n    return 'ok'\n")
    results = validate(discover([tmp_path]).files, timeout=5.0)
    assert (
        results["dies"]
        == f"{tmp_path / 'dies.py'}: importing it killed the process (exit status 5)"
    )
    assert results["good"] is None


def test_a_name_mismatch_says_what_the_file_defines(tmp_path: Path) -> None:
    (tmp_path / "title_case.py").write_text(
        "import os\nfrom json import loads\n\n"
        "def titlecase(job):\n    return job.text.title()\n\n"
        "class Helper:\n    pass\n\n"
        "def _private():\n    pass\n"
    )
    (tmp_path / "empty.py").write_text("X = 1\n")
    (tmp_path / "value.py").write_text("value = 42\n")
    results = validate(discover([tmp_path]).files, timeout=5.0)
    assert results["title_case"] == (
        f"{tmp_path / 'title_case.py'}: defines no function or class named 'title_case'; "
        "it defines: Helper, titlecase"
    )
    assert results["empty"].endswith(
        "defines no function or class named 'empty'; it defines no function or class at all"
    )
    assert results["value"].endswith("value is a int, not a function or class taking the job")


def test_a_failing_constructor_points_at_the_users_file(tmp_path: Path) -> None:
    (tmp_path / "needs_arg.py").write_text(
        "class needs_arg:\n"
        "    def __init__(self, size):\n"
        "        self.size = size\n\n"
        "    def run(self, job):\n"
        "        return job.data\n"
    )
    (tmp_path / "bad_json.py").write_text(
        "import json\n\n"
        "class bad_json:\n"
        "    def __init__(self):\n"
        "        self.conf = json.loads('{')\n\n"
        "    def run(self, job):\n"
        "        return job.data\n"
    )
    results = validate(discover([tmp_path]).files, timeout=5.0)
    assert results["needs_arg"].endswith(
        "needs_arg() raised TypeError: needs_arg.__init__() missing 1 required positional "
        "argument: 'size' (at needs_arg.py:2)"
    )
    assert results["bad_json"].startswith(f"{tmp_path / 'bad_json.py'}: bad_json() raised ")
    assert results["bad_json"].endswith("(at bad_json.py:5)")


def test_check_reports_each_files_own_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workers = tmp_path / "workers"
    workers.mkdir()
    (workers / "title_case.py").write_text("def titlecase(job):\n    return job.text\n")
    (workers / "good.py").write_text("def good(job):\n    return 'ok'\n")
    config = tmp_path / "gearmgr.yaml"
    config.write_text("worker_dirs: [workers]\n")
    code, out, _ = run_cli(["check", "-c", str(config)], capsys)
    assert code == 1
    assert "functions: 2 (1 broken)" in out
    assert "it defines: titlecase" in out


# -- counts in words -----------------------------------------------------------------------------


def test_plural() -> None:
    from gearmgr.words import plural

    assert plural(1, "job") == "1 job"
    assert plural(0, "job") == "0 jobs"
    assert plural(1, "process") == "1 process"
    assert plural(3, "process") == "3 processes"


# -- status after worker files are removed -------------------------------------------------------


def test_status_keeps_the_counts_of_a_removed_function(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
) -> None:
    from gearmgr.ops.status import format_status
    from tests.support import gearman_cli

    sup = supervisor_factory({"include": ["reverse", "pid"], "auto_reload": True, "max_jobs": 1})
    sup.wait_ready(gearmand.port, {"reverse": 1, "pid": 1})
    for text in ("ab", "cd"):  # max_jobs 1: each job recycles the process (a restart)
        assert gearman_cli(gearmand.port, "-f", "reverse", text).returncode == 0
        sup.wait_ready(gearmand.port, {"reverse": 1})
    wait_for(
        lambda: sup.status()["functions"]["reverse"]["restarts"].get("max_jobs") == 2,
        what="two restarts of reverse",
    )
    (workers_dir / "reverse.py").unlink()
    status = wait_for(
        lambda: (
            (s := sup.status())
            and not any("reverse" in p["functions"] for p in s["processes"])
            and s
        ),
        timeout=20,
        what="reverse's process gone",
    )
    reverse = status["functions"]["reverse"]
    assert reverse["jobs_done"] == 2
    assert reverse["restarts"] == {"max_jobs": 2}
    assert reverse["removed"] is True
    assert status["functions"]["pid"]["removed"] is False
    table = format_status(status)
    assert "(shared: reverse)" not in table
    assert re.search(r"^reverse \(removed\)\s+0\s+2\s+0\s+-\s+-\s+-\s+max_jobs=2$", table, re.M), (
        table
    )


def test_status_shows_each_workers_unique_memory(supervisor_factory, gearmand: Gearmand) -> None:
    import psutil

    from gearmgr.ops.status import format_status

    sup = supervisor_factory({"include": ["reverse", "pid"]})
    sup.wait_ready(gearmand.port, {"reverse": 1, "pid": 1})
    status = sup.status()
    for proc in status["processes"]:
        uss = psutil.Process(proc["pid"]).memory_full_info().uss
        assert 0 < proc["uss"] < proc["rss"] or proc["rss"] == 0
        assert abs(proc["uss"] - uss) < 8 << 20  # read at status time, by psutil
    header, *rows = format_status(status).split("\n\n")[1].splitlines()
    assert header.split() == ["PID", "STATE", "JOBS", "RSS", "USS", "AGE", "FUNCTIONS"]
    assert all(re.search(r"\d+\.\dMiB\s+\d+\.\dMiB", row) for row in rows), rows


# -- sys.exit in a job ---------------------------------------------------------------------------


def test_sys_exit_in_a_job_is_logged_as_such(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
) -> None:
    from tests.support import gearman_cli

    (workers_dir / "quits.py").write_text("import sys\n\ndef quits(job):\n    sys.exit(3)\n")
    sup = supervisor_factory({"include": ["quits"]})
    sup.wait_ready(gearmand.port, {"quits": 1})
    done = gearman_cli(gearmand.port, "-f", "quits", "x")
    assert b"SystemExit: 3" in done.stdout + done.stderr  # the job failed, with the reason
    line = wait_for(
        lambda: next((ln for ln in sup.log().splitlines() if "(quits#0) exited" in ln), None),
        what="the exit logged",
    )
    assert "exited with status 0 (a job called sys.exit(3))" in line
    assert "(crash)" not in line
    assert "leaving after 1 job (job_exit)" in sup.log()
    sup.wait_ready(gearmand.port, {"quits": 1})  # replaced


# -- start-up errors -----------------------------------------------------------------------------


def run_supervisor(config: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gearmgr", "run", "-c", str(config), "--allow-root"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=config.parent,
    )


@pytest.mark.parametrize(
    ("key", "code", "expected"),
    [  # a missing folder of pid_file or log_file is found when the config loads: exit 2
        ("pid_file", 2, "pid_file: "),
        ("control_socket", 1, "control_socket {path}: Not a directory"),
        ("log_file", 2, "log_file: "),
    ],
)
def test_a_start_up_path_error_names_the_key_and_the_path(
    tmp_path: Path, key: str, code: int, expected: str
) -> None:
    (tmp_path / "workers").mkdir()
    (tmp_path / "a_file").write_text("")  # a path under a file fails even for root
    path = tmp_path / "a_file" / "x"
    config = tmp_path / "gearmgr.yaml"
    settings = {"control_socket": "gearmgr.sock", key: str(path)}
    config.write_text(
        f'servers: ["127.0.0.1:{free_port()}"]\nworker_dirs: [workers]\n'
        + "".join(f"{k}: {v}\n" for k, v in settings.items())
    )
    done = run_supervisor(config)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert expected.format(path=path) in last and str(path.parent) in last
    assert not (tmp_path / "gearmgr.sock").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_folders_the_user_cannot_use_are_named_and_nothing_is_left_behind(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir(mode=0o700)  # root's alone: user nobody can neither read nor write it
    (folder / "workers").mkdir()
    (folder / "workers" / "reverse.py").write_text("def reverse(job):\n    return job.data\n")
    config = folder / "gearmgr.yaml"
    config.write_text(
        f'servers: ["127.0.0.1:{free_port()}"]\nembedded_server: true\n'
        "worker_dirs: [workers]\ncontrol_socket: gearmgr.sock\nuser: nobody\n"
    )
    done = run_supervisor(config)
    assert done.returncode == 1
    last = done.stderr.splitlines()[-1]
    assert "[Errno" not in done.stderr
    assert f"user nobody cannot read {folder / 'workers'} (worker_dirs)" in last
    assert f"cannot write in {folder} (embedded_server's queue and log)" in last
    assert sorted(p.name for p in folder.iterdir()) == ["gearmgr.yaml", "workers"]


# -- make run ------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


def quickstart_config(tmp_path: Path, server: str) -> Path:
    """A copy of etc/gearmgr.yaml's shape in a temp folder: embedded server on ``server``."""
    workers = tmp_path / "workers"
    workers.mkdir(exist_ok=True)
    (workers / "reverse.py").write_text("def reverse(job):\n    return job.text[::-1]\n")
    config = tmp_path / "gearmgr.yaml"
    config.write_text(
        f'servers: ["{server}"]\nembedded_server: true\nworker_dirs: [workers]\n'
        "control_socket: gearmgr.sock\n"
    )
    return config


def stop_group(proc: subprocess.Popen[str]) -> str:
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return out


def test_make_run_follows_config_and_port(tmp_path: Path) -> None:
    from tests.support import function_status

    port = free_port()
    config = quickstart_config(tmp_path, "127.0.0.1:4730")  # as etc/gearmgr.yaml says
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"CONFIG={config}", f"PORT={port}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: function_status_or_none(port).get("reverse", (0, 0, 0))[2] >= 1,
            timeout=30,
            what=f"reverse registered at the embedded gearmand on {port}",
        )
        assert function_status(port)["reverse"][2] == 1
    finally:
        out = stop_group(proc)
    assert f"gearman -p {port} -f reverse hello" in out
    assert f"submit -s 127.0.0.1:{port} reverse hello" in out
    assert "embedded gearmand" in out and f"answers on 127.0.0.1:{port}" in out
    run_config = tmp_path / ".gearmgr-make-run.yaml"
    assert f"starting the supervisor with {run_config}" in out
    assert f"a copy of {config} for 127.0.0.1:{port}: edits to {config} apply at the next" in out
    assert f"127.0.0.1:{port}" in run_config.read_text()


def function_status_or_none(port: int) -> dict[str, tuple[int, int, int]]:
    from tests.support import function_status

    try:
        return function_status(port)
    except OSError:
        return {}


def test_make_run_refuses_a_foreign_gearmand_on_its_embedded_port(
    tmp_path: Path, gearmand: Gearmand
) -> None:
    config = quickstart_config(tmp_path, gearmand.address)
    done = subprocess.run(
        [sys.executable, "-m", "gearmgr.cli.quickstart", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    err = done.stderr.strip()
    assert err.count("\n") == 0
    assert f"a gearmand already answers on {gearmand.address}" in err
    for way in ("make run EXTERNAL=1", f"make run PORT={gearmand.port + 1}", "systemctl disable"):
        assert way in err
    assert not (tmp_path / "gearmgr.sock").exists()


def test_make_run_external_uses_the_gearmand_that_is_there(
    tmp_path: Path, gearmand: Gearmand
) -> None:
    config = quickstart_config(tmp_path, gearmand.address)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gearmgr.cli.quickstart", "-c", str(config), "--external"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "GEARMGR_ALLOW_ROOT": "1"},
    )
    try:
        wait_for(
            lambda: gearmand.status().get("reverse", (0, 0, 0))[2] >= 1,
            timeout=20,
            what="reverse registered at the gearmand that was there",
        )
    finally:
        out = stop_group(proc)
    assert f"using the gearmand that answers on {gearmand.address} (EXTERNAL=1)" in out
    assert "embedded gearmand" not in out
    assert "embedded_server: false" in (tmp_path / ".gearmgr-make-run.yaml").read_text()


def test_counts_of_one_read_in_the_singular(
    supervisor_factory, gearmand: Gearmand, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    from gearmgr.ops.status import format_status

    sup = supervisor_factory({"include": ["reverse"], "max_jobs": 1})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    assert "starting 1 process for 1 function on" in sup.log()
    assert format_status(sup.status()).splitlines()[0].endswith(", 1 process")
    config = str(tmp_path / "gearmgr.yaml")
    code, out, _ = run_cli(["restart", "reverse", "-c", config], capsys)
    assert (code, out) == (0, "gearmgr: replacing 1 process of reverse\n")
    assert "restart requested: replacing 1 process of reverse one by one" in sup.log()
    from tests.support import gearman_cli

    assert gearman_cli(gearmand.port, "-f", "reverse", "ab").returncode == 0
    wait_for(lambda: "leaving after 1 job (max_jobs)" in sup.log(), what="the recycle")
    sup.wait_ready(gearmand.port, {"reverse": 1})
    wait_for(lambda: len(sup.status()["processes"]) == 1, what="one process (no replacement)")
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0
    assert "stopping: 1 process finishes its job and exits" in sup.log()
    assert not re.search(r"\b1 (processes|jobs|functions)\b", sup.log())


@pytest.mark.parametrize("command", [["stop"], ["submit", "reverse", "x"]])
@pytest.mark.parametrize("value", ["-1", "0", "abc"])
def test_a_timeout_that_is_not_seconds_is_a_usage_error(
    command: list[str], value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli([*command, "--timeout", value], capsys)
    assert code == 2
    assert f"--timeout: expected a number of seconds above 0, got '{value}'" in err


def test_submit_to_no_server_says_how_to_name_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEARMGR_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("gearmgr.cli.submit.DEFAULT_SERVER", f"127.0.0.1:{free_port()}")
    code, _, err = run_cli(["submit", "reverse", "x"], capsys)
    assert code == 1
    assert err.count("\n") == 1
    assert "name the job server with -s HOST:PORT, or its config with -c FILE" in err


def test_every_subcommand_argument_has_help() -> None:
    """`gearmgr X --help` explains every argument, down to `gearmgr failed retry`'s."""
    import argparse

    def parsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield name, sub
                    yield from ((f"{name} {n}", p) for n, p in parsers(sub))

    missing = [
        f"{name}: {action.dest}"
        for name, sub in parsers(cli.build_parser())
        for action in sub._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []
