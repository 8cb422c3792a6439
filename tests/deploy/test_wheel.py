"""What the image installs is the wheel: it must carry the data files the code reads at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

from deploykit import ROOT


def test_the_wheel_carries_the_data_the_code_reads(tmp_path):
    # built from a copy: a build/ left in the checkout would be packed as it is, whatever pyproject says
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv*", "build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True, timeout=300)
    [wheel] = tmp_path.glob("meshbot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, pattern in (("knowledge/questions", "*.yaml"), ("kubesim/scenarios", "*.yaml")):
        shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).glob(pattern)}
        assert shipped and shipped <= names, sorted(shipped - names)
