"""The GitHub workflows: they parse, every `bench ...` command in them exists, and the GPU ablation workflow's steps
run as a CPU variant on the smoke spec (the same commands, other values in the job's env)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bench.cli import cli

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"


def _load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict) and data.get("jobs"), name
    # YAML 1.1 reads the key `on` as True
    data["on"] = data.pop(True, data.get("on"))
    return data


def _steps(data: dict) -> list[dict]:
    return [s for job in data["jobs"].values() for s in job["steps"]]


def _bench_lines(run: str) -> list[str]:
    return [ln.strip() for ln in run.splitlines() if ln.strip().startswith("bench ")]


def _command_path(argv: list[str]) -> list[str]:
    """The (sub)command names at the start of a bench command line: ["sweep", "status"], ["compare"], ..."""
    import click

    path, cmd, ctx = [], cli, click.Context(cli)
    for tok in argv:
        if not isinstance(cmd, click.Group) or tok not in cmd.list_commands(ctx):
            break
        cmd = cmd.get_command(ctx, tok)
        path.append(tok)
    return path


def test_workflows_parse_and_trigger_as_documented():
    tests = _load("tests.yml")
    assert any("make test" in s.get("run", "") for s in _steps(tests)), "tests.yml runs the README's test command"
    assert "test:" in (REPO / "Makefile").read_text()

    gpu = _load("ablations-gpu.yml")
    on = gpu["on"]
    assert "workflow_dispatch" in on and on["schedule"][0]["cron"]
    assert "bench/methods/**" in on["pull_request"]["paths"]
    job = next(iter(gpu["jobs"].values()))
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    env = job["env"]
    assert "paper-ablations.yaml" in env["SWEEP_SPEC"] and env["SWEEP_DEVICE"] == "cuda"
    assert "results/baselines/paper-ablations.csv" in env["BASELINE"]
    assert (REPO / "results" / "baselines" / "paper-ablations.csv").is_file()
    steps = _steps(gpu)
    cache = [s for s in steps if str(s.get("uses", "")).startswith("actions/cache")]
    assert cache and "BENCH_HOME" in cache[0]["with"]["path"]
    upload = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    paths = "\n".join(s["with"]["path"] for s in upload)
    assert "sweep.csv" in paths and "tables/" in paths and "figures/" in paths
    runs = [s.get("run", "") for s in steps]
    assert any(ln.startswith("bench weights fetch") for r in runs for ln in _bench_lines(r))
    assert any('bench sweep "$SWEEP_SPEC" --device "$SWEEP_DEVICE" --limit' in r for r in runs)
    assert "bench compare" in [s for s in steps if "run" in s][-1]["run"], "the gate is the last command"


def test_every_bench_command_in_the_workflows_exists():
    from bench.models import hub

    seen = 0
    for wf in sorted(WORKFLOWS.glob("*.yml")):
        for step in _steps(_load(wf.name)):
            for line in _bench_lines(step.get("run", "")):
                argv = shlex.split(line)[1:]
                path = _command_path(argv)
                assert path, f"{wf.name}: {line!r} names no bench command"
                res = CliRunner().invoke(cli, [*path, "--help"])
                assert res.exit_code == 0, f"{wf.name}: `bench {' '.join(path)} --help` failed: {res.output}"
                seen += 1
    assert seen >= 4
    gpu_env = next(iter(_load("ablations-gpu.yml")["jobs"].values()))["env"]
    for name in gpu_env["BENCH_WEIGHTS"].split():  # the standard models the workflow fetches are known weights
        if not name.startswith("-"):
            hub.get_spec(name)


#: the CPU variant of ablations-gpu.yml: the smoke spec on the demo faces, gated on its committed baseline
CPU_VARIANT = {
    "SWEEP_SPEC": "sweeps/smoke.yaml",
    "SWEEP_DEVICE": "cpu",
    "SWEEP_LIMIT": "8",
    "SWEEP_WORKERS": "1",
    "BASELINE": "results/baselines/smoke.csv",
    "BENCH_WEIGHTS": "sface yunet",
}


@pytest.mark.slow
def test_gpu_workflow_runs_as_a_cpu_variant_on_the_smoke_spec(tmp_path):
    job = next(iter(_load("ablations-gpu.yml")["jobs"].values()))
    env = {k: str(v) for k, v in job["env"].items() if "${{" not in str(v)}
    env.update(CPU_VARIANT, SWEEP_OUT=str(tmp_path / "sweep-out"))
    assert set(job["env"]) <= set(env) | {"BENCH_HOME", "BENCH_DATA"}, "every workflow variable has a CPU value"
    env.pop("OMP_NUM_THREADS", None)
    run_env = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = []
    for step in job["steps"]:
        run = step.get("run", "")
        lines = [ln for ln in run.splitlines() if ln.strip()]
        if not lines or not all(ln.strip().startswith("bench ") for ln in lines):
            continue  # checkout, setup, install: the test suite already has bench installed
        proc = subprocess.run(["bash", "-eo", "pipefail", "-c", run], cwd=REPO, env=run_env, capture_output=True,
                              text=True, check=False, timeout=600)
        assert proc.returncode == 0, f"step {step.get('name')!r} failed:\n{proc.stdout}\n{proc.stderr}"
        ran.append(step.get("name"))
    assert len(ran) >= 4, ran
    report = tmp_path / "sweep-out" / "report"
    assert (report / "sweep.csv").stat().st_size > 0 and (report / "tables" / "smoke.md").is_file()
    assert "No change beyond tolerance" in (report / "compare.md").read_text()
