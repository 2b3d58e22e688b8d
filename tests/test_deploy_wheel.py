"""The wheel and the sdist, as a user installs them: built with `python -m build`, carrying
every package and the BPF sources, installed with pip into a fresh venv that sees the
distribution's bcc; `oomtrace doctor` runs from it."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.root  # doctor needs root


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: setuptools comes from the venv, not a download; build/ goes to a copy's tree
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    return out


def _version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_wheel_carries_every_module_and_the_bpf_sources(dist):
    wheel = next(dist.glob("oomtrace-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "tracer").rglob("*.py")}
    assert modules <= names, f"not in the wheel: {sorted(modules - names)}"
    bpf = {f"tracer/bpf/{p.name}" for p in (ROOT / "bpf").iterdir() if p.suffix in (".c", ".h")}
    assert bpf and bpf <= names, sorted(bpf - names)
    assert wheel.name == f"oomtrace-{_version()}-py3-none-any.whl"


def test_the_sdist_carries_the_bpf_sources(dist):
    sdist = next(dist.glob("oomtrace-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {f"bpf/{p.name}" for p in (ROOT / "bpf").iterdir() if p.suffix in (".c", ".h")} <= names
    assert "pyproject.toml" in names and "README.md" in names


def test_installed_in_a_fresh_venv_doctor_runs(dist, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True)
    wheel = next(dist.glob("oomtrace-*.whl"))
    pip = subprocess.run([str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    version = subprocess.run([str(venv / "bin/oomtrace"), "--version"], capture_output=True, text=True, env=env,
                             cwd=tmp_path)
    assert version.returncode == 0 and _version() in version.stdout
    doctor = subprocess.run([str(venv / "bin/oomtrace"), "doctor", "--cache-dir", str(tmp_path / "cache")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert doctor.returncode == 0, doctor.stderr
    assert "tracepoint oom:mark_victim" in doctor.stdout
    where = subprocess.run([str(venv / "bin/python"), "-c", "import tracer, bcc; print(tracer.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where  # the installed copy, not the checkout
