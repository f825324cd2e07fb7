"""Build a wheelhouse: every wheel fdsl needs on an offline machine (a cluster's GPU node) but torch.

Run it where the package index is reachable, copy the folder to the node, and there
``make install-offline WHEELHOUSE=DIR`` (or ``pip install --no-index --find-links DIR fdsl``)
installs from it alone.

    python tools/wheelhouse.py [--python-version 3.12] [--out wheelhouse] [--skip "numpy numba"]
                               [--extras render,train,gpu] [--also pytest] [--glibc 2.28]

What goes in:

- fdsl's own wheel, and its build requirements (setuptools, wheel), so that ``pip install -e .``
  of a checkout works offline too;
- manylinux x86_64 wheels for CPython X.Y of fdsl's dependencies, of the extras' and of
  ``--also``, resolved by pip in one go so their versions agree. Left out: torch (the node has its
  own CUDA build, and fdsl never installs one there), the ``--skip`` packages the node already has
  (``--skip "numpy<2"`` also constrains the resolution to what the node holds), and whatever only
  those need;
- for a package published as an sdist only (PyOpenGL 3.1.0), a wheel built here, kept only when it
  is pure Python and so fits any CPython.

``requirements.txt`` lists what ``make install-offline`` installs besides fdsl, ``wheelhouse.json``
each wheel with its size and the settings used. The folder is built beside ``--out`` and renamed
into place at the end: a failed build leaves an earlier wheelhouse as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from packaging.requirements import Requirement
except ImportError:  # a bare venv: pip carries the same library
    from pip._vendor.packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
NODE_BRINGS = ("torch",)  # never in a wheelhouse, whatever --skip says
STUB_TORCH = "2.13.0+fdsl.stub"  # stands in for the node's torch while pip resolves
MAX_BUILDS = 10  # sdist-only packages built here before giving up
Runner = Callable[..., subprocess.CompletedProcess]  # (cmd, env=None)


class WheelhouseError(Exception):
    """A wheelhouse that cannot be built as asked: one line for the user."""


def canonical(name: str) -> str:
    """PEP 503 name: ``PyOpenGL`` and ``pyopengl``, ``kornia_rs`` and ``kornia-rs`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name(filename: str) -> str:
    """The canonical package name of a wheel file."""
    return canonical(filename.split("-", 1)[0])


@dataclass(frozen=True)
class Target:
    """The interpreter the wheels are for: CPython ``python_version`` on x86_64 Linux, glibc >= ``glibc``."""

    python_version: str
    glibc: str = "2.28"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"3\.\d+", self.python_version):
            raise WheelhouseError(f"--python-version must look like 3.12, not {self.python_version!r}")
        if not re.fullmatch(r"2\.\d+", self.glibc) or int(self.glibc.split(".")[1]) < 5:
            raise WheelhouseError(f"--glibc must look like 2.28 (2.5 or later), not {self.glibc!r}")

    def platforms(self) -> list[str]:
        """Every manylinux tag such a machine runs; pip matches ``--platform`` tags exactly."""
        newest = int(self.glibc.split(".")[1])
        tags = [f"manylinux_2_{m}_x86_64" for m in range(newest, 4, -1)]
        legacy = {17: "manylinux2014_x86_64", 12: "manylinux2010_x86_64", 5: "manylinux1_x86_64"}
        return tags + [tag for m, tag in legacy.items() if m <= newest]

    def pip_args(self) -> list[str]:
        abi = "cp" + self.python_version.replace(".", "")
        args = ["--only-binary=:all:", "--python-version", self.python_version, "--implementation", "cp",
                "--abi", abi]
        for tag in self.platforms():
            args += ["--platform", tag]
        return args

    def markers(self) -> dict[str, str]:
        """The environment that dependency markers (``python_version < "3.12"``) are evaluated in."""
        full = f"{self.python_version}.0"
        return {"python_version": self.python_version, "python_full_version": full,
                "implementation_name": "cpython", "implementation_version": full,
                "platform_python_implementation": "CPython", "sys_platform": "linux",
                "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                "platform_release": "", "platform_version": ""}


@dataclass(frozen=True)
class Wanted:
    """What goes into the wheelhouse: requirement strings, read from pyproject.toml and the options."""

    extras_and_also: list[str]  # requirements.txt: installed next to fdsl
    build: list[str]  # [build-system] requires: never skipped (a build runs in its own clean env)
    skip: dict[str, Requirement]  # canonical name -> the node's package (its specifier constrains)


def wanted(pyproject: dict[str, Any], extras: Iterable[str], also: Iterable[str], skip: Iterable[str]) -> Wanted:
    """The requirements of fdsl's ``extras`` and of ``also``, without the node's torch."""
    optional = pyproject["project"].get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise WheelhouseError(f"no extra {', '.join(unknown)} in pyproject.toml (there are {', '.join(optional)})")
    reqs: list[str] = []
    for requirement in [r for extra in extras for r in optional[extra]] + list(also):
        if canonical(Requirement(requirement).name) not in NODE_BRINGS and requirement not in reqs:
            reqs.append(requirement)
    skipped = {canonical(Requirement(s).name): Requirement(s) for s in skip}
    return Wanted(reqs, list(pyproject.get("build-system", {}).get("requires", [])), skipped)


def needed(report: dict[str, Any], roots: Iterable[str], skip: Iterable[str],
           env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The items of pip's install report that ``roots`` need on the target, by canonical name.

    A dependency is followed when its marker holds on the target (for the extras it was asked
    with); the walk stops at a skipped name, so what only the node's own packages need stays out.
    """
    items = {canonical(item["metadata"]["name"]): item for item in report["install"]}
    stop = set(skip) | set(NODE_BRINGS)
    keep: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [r for r in map(Requirement, roots) if r.marker is None or r.marker.evaluate({**env, "extra": ""})]
    while todo:
        req = todo.pop()
        name, extras = canonical(req.name), frozenset(req.extras)
        if name in stop or (name, extras) in seen:
            continue
        seen.add((name, extras))
        if name not in items:
            raise WheelhouseError(f"pip's resolution holds no {req.name}, which the target needs")
        keep[name] = items[name]
        for text in items[name]["metadata"].get("requires_dist") or []:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({**env, "extra": e}) for e in extras or {""}):
                todo.append(dep)
    return keep


def missing_distribution(pip_output: str) -> str | None:
    """The requirement pip found no wheel for (``PyOpenGL==3.1.0``), or None for any other failure."""
    match = re.search(r"No matching distribution found for (\S+)", pip_output)
    return match.group(1) if match else None


def write_stub_wheel(folder: Path, name: str, version: str, requires: Sequence[str] = ()) -> Path:
    """An empty wheel that stands for a package of the node while pip resolves: torch, so that the
    resolution never depends on (or fetches the metadata of) torch and its CUDA libraries, and the
    skipped packages in the final offline check."""
    escaped = re.sub(r"[-_.]+", "_", name)
    dist = f"{escaped}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{dist}/METADATA": metadata,
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: fdsl-wheelhouse\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    path = folder / f"{escaped}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, text in files.items():
            wheel.writestr(member, text)
    return path


def _run(cmd: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False,
                          env=None if env is None else {**os.environ, **env})


def _tail(proc: subprocess.CompletedProcess, lines: int = 8) -> str:
    text = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines() if "is ignored" not in line)
    return "\n".join(text.strip().splitlines()[-lines:])


class Builder:
    """The steps of one build, each a pip command through ``run`` (tests pass a fake)."""

    def __init__(self, target: Target, staging: Path, scratch: Path, run: Runner = _run,
                 pip: Sequence[str] = (sys.executable, "-m", "pip"), log: Callable[[str], None] = print) -> None:
        self.target, self.staging, self.scratch, self.run, self.pip, self.log = target, staging, scratch, run, list(pip), log

    def pip_ok(self, *args: str, what: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        proc = self.run([*self.pip, *args]) if env is None else self.run([*self.pip, *args], env=env)
        if proc.returncode != 0:
            raise WheelhouseError(f"{what} failed:\n{_tail(proc)}")
        return proc

    def own_wheel(self, project: Path) -> Path:
        before = set(self.staging.glob("*.whl"))
        leftover = not (project / "build").exists()  # setuptools builds in the checkout's build/
        try:
            self.pip_ok("wheel", "--quiet", "--no-deps", "--wheel-dir", str(self.staging), str(project),
                        what="building fdsl's wheel")
        finally:
            if leftover:
                shutil.rmtree(project / "build", ignore_errors=True)
        built = [p for p in set(self.staging.glob("*.whl")) - before if wheel_name(p.name) == "fdsl"]
        if len(built) != 1:
            raise WheelhouseError(f"building fdsl's wheel left {len(built)} fdsl wheels")
        return built[0]

    def pure_wheel(self, requirement: str) -> Path:
        """A wheel of an sdist-only ``requirement``, built with this interpreter: pure Python only."""
        name = canonical(Requirement(requirement).name)
        self.log(f"wheelhouse: {requirement} has no wheel for the target; building one from its sdist")
        before = set(self.staging.glob("*.whl"))
        self.pip_ok("wheel", "--quiet", "--no-deps", "--no-binary", name, "--wheel-dir", str(self.staging),
                    requirement, what=f"building a wheel of {requirement}")
        built = [p for p in set(self.staging.glob("*.whl")) - before if wheel_name(p.name) == name]
        if len(built) != 1:
            raise WheelhouseError(f"building {requirement} left {len(built)} wheels of it")
        if not built[0].name.endswith("-none-any.whl"):
            built[0].unlink()
            raise WheelhouseError(
                f"{requirement} has no CPython {self.target.python_version} manylinux wheel, and its sdist "
                f"builds a compiled wheel ({built[0].name}) that fits only this machine's Python; build it "
                f"with Python {self.target.python_version} and put it in the wheelhouse, or --skip it")
        return built[0]

    def resolve(self, requirements: Sequence[str], constraints: Sequence[str]) -> dict[str, Any]:
        """pip's install report for ``requirements`` on the target, building sdist-only packages as needed."""
        stubs = self.scratch / "stubs"
        stubs.mkdir(exist_ok=True)
        write_stub_wheel(stubs, "torch", STUB_TORCH)
        constraints_file = self.scratch / "constraints.txt"
        constraints_file.write_text("".join(f"{c}\n" for c in [f"torch=={STUB_TORCH}", *constraints]))
        report = self.scratch / "report.json"
        cmd = [*self.pip, "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
               "--target", str(self.scratch / "target"), *self.target.pip_args(), "--constraint",
               str(constraints_file), "--find-links", str(self.staging), "--find-links", str(stubs), *requirements]
        built: set[str] = set()
        while True:
            proc = self.run(cmd)
            if proc.returncode == 0:
                return json.loads(report.read_text())
            missing = missing_distribution(proc.stdout + proc.stderr)
            if missing is None or missing in built or len(built) >= MAX_BUILDS:
                raise WheelhouseError(f"pip could not resolve fdsl's requirements for the target:\n{_tail(proc)}")
            self.pure_wheel(missing)
            built.add(missing)

    def download(self, items: Iterable[dict[str, Any]]) -> None:
        """Fetch the wheels of ``items`` that are not built here already."""
        here = {wheel_name(p.name) for p in self.staging.glob("*.whl")}
        pins = sorted(f"{item['metadata']['name']}=={item['metadata']['version']}" for item in items
                      if canonical(item["metadata"]["name"]) not in here)
        if pins:
            self.log(f"wheelhouse: downloading {len(pins)} wheels")
            self.pip_ok("download", "--quiet", "--no-deps", "--dest", str(self.staging), *self.target.pip_args(),
                        *pins, what="downloading the wheels")

    def check_offline(self, node_has: dict[str, str], requirements: Path) -> None:
        """Resolve fdsl and ``requirements`` from the staged wheels alone (``--no-index``, no pip
        configuration), with stand-ins for the node's own packages: proof that the node needs nothing else."""
        stubs = self.scratch / "node"
        stubs.mkdir(exist_ok=True)
        for name, version in node_has.items():
            write_stub_wheel(stubs, name, version)
        self.pip_ok("install", "--dry-run", "--ignore-installed", "--quiet", "--no-index", "--target",
                    str(self.scratch / "offline-target"), *self.target.pip_args(), "--find-links", str(self.staging),
                    "--find-links", str(stubs), "fdsl", "--requirement", str(requirements),
                    env={"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_INDEX_URL": "",
                         "PIP_EXTRA_INDEX_URL": "", "PIP_CONSTRAINT": ""},
                    what="installing from the wheelhouse alone (--no-index)")


def build_wheelhouse(out: Path, target: Target, *, extras: Sequence[str] = ("render", "train", "gpu"),
                     also: Sequence[str] = ("pytest",), skip: Sequence[str] = (), project: Path = ROOT,
                     run: Runner = _run, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the wheelhouse ``out`` for ``target``; returns what ``wheelhouse.json`` records."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    want = wanted(pyproject, extras, also, skip)
    if out.exists() and not (out / "wheelhouse.json").is_file():
        raise WheelhouseError(f"{out} exists and is not a wheelhouse made by this script: not replacing it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.tmp-", dir=out.parent) as tmp:
        staging, scratch = Path(tmp) / "wheels", Path(tmp) / "scratch"
        staging.mkdir()
        scratch.mkdir()
        builder = Builder(target, staging, scratch, run, log=log)
        log(f"wheelhouse: fdsl's wheel, then resolving for CPython {target.python_version} manylinux x86_64")
        own = builder.own_wheel(project)
        constraints = [str(r) for r in want.skip.values() if r.specifier]
        report = builder.resolve([str(own), *want.extras_and_also, *want.build], constraints)
        env = target.markers()
        keep = needed(report, ["fdsl", *want.extras_and_also], want.skip, env)
        keep.update(needed(report, want.build, (), env))
        builder.download(keep.values())
        files = {}
        for path in sorted(staging.glob("*.whl")):
            if wheel_name(path.name) in keep:
                files[wheel_name(path.name)] = path
            else:  # built for the resolution, but the node has it
                path.unlink()
        lacking = sorted(set(keep) - set(files))
        if lacking:
            raise WheelhouseError(f"no wheel arrived for {', '.join(lacking)}")
        (staging / "requirements.txt").write_text("".join(f"{r}\n" for r in want.extras_and_also))
        items = {canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}
        node_has = {name: items[name] for name in want.skip if name in items} | {"torch": STUB_TORCH}
        log("wheelhouse: checking that fdsl installs from it alone")
        builder.check_offline(node_has, staging / "requirements.txt")
        record = {"python_version": target.python_version, "glibc": target.glibc, "extras": list(extras),
                  "also": list(also), "skip": [str(r) for r in want.skip.values()],
                  "left_out": sorted(set(want.skip) | set(NODE_BRINGS)),
                  "bytes": sum(p.stat().st_size for p in files.values()),
                  "wheels": {p.name: p.stat().st_size for p in files.values()}}
        (staging / "wheelhouse.json").write_text(json.dumps(record, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    return record


def summary(record: dict[str, Any], out: Path) -> str:
    """Lines for the user: how many wheels, how big, the largest ones."""
    largest = sorted(record["wheels"].items(), key=lambda kv: -kv[1])[:5]
    return "\n".join([f"wheelhouse: {len(record['wheels'])} wheels, {record['bytes'] / 1e6:.1f} MB in {out} "
                      f"(CPython {record['python_version']}; left out: {' '.join(record['left_out'])})",
                      "largest: " + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in largest)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    parser.add_argument("--python-version", default=here, help=f"CPython version of the node (default {here})")
    parser.add_argument("--out", type=Path, default=ROOT / "wheelhouse", help="folder to build (default wheelhouse)")
    parser.add_argument("--skip", default="", help="packages the node has, space-separated; a specifier (numpy<2) "
                                                   "also constrains the others to it")
    parser.add_argument("--extras", default="render,train,gpu", help="fdsl extras to include (torch never is)")
    parser.add_argument("--also", default="pytest", help="more requirements, space-separated (default pytest, "
                                                         "for make gpu-check)")
    parser.add_argument("--glibc", default="2.28", help="oldest glibc of the nodes (default 2.28)")
    args = parser.parse_args(argv)
    try:
        target = Target(args.python_version, args.glibc)
        record = build_wheelhouse(args.out, target, extras=[e for e in args.extras.split(",") if e],
                                  also=args.also.split(), skip=args.skip.split(),
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
    except WheelhouseError as exc:
        print(f"wheelhouse: {exc}", file=sys.stderr)
        return 2
    print(summary(record, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
