"""The Dockerfile's invariants, read from the file (no Docker daemon is needed or used)."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field

import pytest
from deploykit import ROOT, one

DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments and parser directives dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            image = next(w for w in words if not w.startswith("--"))
            name = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else None
            stages.append(Stage(image, name))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


def env_of(stage: Stage) -> dict[str, str]:
    values = {}
    for args in stage.all("ENV"):
        for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
            values[key] = value.strip('"')
    return values


def test_multi_stage_build_from_a_pinned_slim_python(stages):
    assert len(stages) >= 2, "wheels are built in a builder stage, not in the image"
    names = {s.name for s in stages if s.name}
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    major_minor = re.search(r">=\s*(\d+\.\d+)", requires).group(1)
    for stage in stages:
        if stage.image in names:
            continue
        repo, _, tag = stage.image.partition(":")
        assert "$" not in stage.image, "resolve the base image here so scanners can read its tag"
        assert tag and tag != "latest" and "@" not in repo, f"{stage.image} is not pinned by tag"
        assert repo in ("python", "docker.io/library/python"), stage.image
        assert tag.startswith(major_minor + ".") and "slim" in tag, f"{stage.image}: want python {major_minor} slim"
    assert any("pip wheel" in run for run in stages[0].all("RUN")), "the builder stage builds wheels"


def test_the_image_installs_only_the_builders_wheels(stages):
    final = stages[-1]
    installs = [run for run in final.all("RUN") if "pip install" in run]
    assert installs and all("--no-index" in run for run in installs), "the runtime stage never reaches an index"
    assert not final.all("COPY") or all("--from=" in c for c in final.all("COPY")), "no source in the image"
    for run in final.all("RUN"):
        assert not re.search(r"\bapt(-get)?\s+install\b", run), "nothing but Python in the runtime image"


def test_runs_as_a_numeric_non_root_user(stages):
    users = stages[-1].all("USER")
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 10000, f"USER {users[-1]}: numeric, non-root, high (runAsNonRoot needs it)"
    assert not gid or (gid.isdigit() and int(gid) != 0), f"USER {users[-1]}: group must not be root"


def test_uid_matches_the_deployments(stages, rendered):
    uid = int(stages[-1].all("USER")[-1].partition(":")[0])
    for name in ("meshbot-bot", "meshbot-worker", "meshbot-scheduler"):
        spec = one(rendered["socket"], "Deployment", name)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsUser"] == uid, name


def test_works_with_a_read_only_root_filesystem(stages):
    env = env_of(stages[-1])
    for key in ("HOME", "XDG_CACHE_HOME", "TMPDIR"):
        assert env.get(key, "").startswith("/tmp"), f"{key} must point into /tmp (the only writable mount)"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1", "no __pycache__ writes at run time"
    assert any("compileall" in run for run in stages[-1].all("RUN")), "byte-compile at build time instead"


def test_entrypoint_is_the_meshbot_console_script(stages):
    entrypoints = stages[-1].all("ENTRYPOINT")
    assert entrypoints and json.loads(entrypoints[-1]) == ["meshbot"], "exec form, so signals reach meshbot"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "meshbot" in scripts
    for cmd in stages[-1].all("CMD"):
        json.loads(cmd)  # exec form


def test_exposes_the_ports_the_deployments_use(stages, rendered):
    exposed = {int(p.split("/")[0]) for args in stages[-1].all("EXPOSE") for p in args.split()}
    for name in ("meshbot-bot", "meshbot-worker"):
        container = one(rendered["http"], "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert {p["containerPort"] for p in container["ports"]} <= exposed, name


def test_the_build_context_holds_every_package(stages):
    """A package added to pyproject but not copied (or dockerignored) would be missing from the image."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in config["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {source.removeprefix("./").rstrip("/") for args in stages[0].all("COPY")
              for source in args.split()[:-1] if not source.startswith("--")}
    missing = packages - copied
    assert not missing, f"the builder does not COPY {sorted(missing)}"
    assert config["project"]["readme"] in copied, "pyproject names the README; the build needs it"
    assert all((ROOT / p).is_dir() for p in packages)
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    for path in packages | {"pyproject.toml", config["project"]["readme"]}:
        assert included(path, ignore), f".dockerignore leaves {path} out of the build context"
    for path in (".git", ".venv", "tests", "deploy", ".venv-checkov"):
        assert not included(path, ignore), f".dockerignore sends {path} to the build"


def included(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    keep = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern[1:] if negate else pattern
        if fnmatch.fnmatch(path, glob.rstrip("/")) or fnmatch.fnmatch(path + "/", glob):
            keep = negate
    return keep
