"""`make wheelhouse` (tools/wheelhouse.py): what goes in, what stays out, and a build that fails
leaves nothing half-made. pip is faked where it would reach the index; the offline check runs the
real pip on wheels made here, with --no-index."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("wheelhouse", ROOT / "tools" / "wheelhouse.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["wheelhouse"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


wh = _load()
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
[project]
name = "fdsl"
version = "0.1.0"
dependencies = ["numpy>=1.26", "hdf5plugin>=4.4"]
[project.optional-dependencies]
render = ["pyrender==0.1.45", "PyOpenGL==3.1.0"]
train = ["torch==2.13.0", "kornia==0.9.0"]
gpu = ["numba-cuda>=0.20"]
"""


def test_target_names_every_manylinux_tag_up_to_its_glibc() -> None:
    target = wh.Target("3.12", "2.17")
    assert target.platforms() == [f"manylinux_2_{m}_x86_64" for m in range(17, 4, -1)] + [
        "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    args = target.pip_args()
    assert args[:8] == ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", "--abi",
                        "cp312", "--platform"]
    assert args.count("--platform") == 16
    assert target.markers()["python_version"] == "3.12"
    for bad in [("3", "2.28"), ("3.12.1", "2.28"), ("3.12", "2.4"), ("3.12", "glibc")]:
        with pytest.raises(wh.WheelhouseError):
            wh.Target(*bad)


def test_wanted_is_the_extras_and_also_without_torch() -> None:
    import tomllib

    want = wh.wanted(tomllib.loads(PYPROJECT), ["render", "train", "gpu"], ["pytest"], ["numpy<2", "Numba"])
    assert want.extras_and_also == ["pyrender==0.1.45", "PyOpenGL==3.1.0", "kornia==0.9.0", "numba-cuda>=0.20",
                                    "pytest"]
    assert want.build == ["setuptools>=68"]
    assert sorted(want.skip) == ["numba", "numpy"] and str(want.skip["numpy"]) == "numpy<2"
    with pytest.raises(wh.WheelhouseError, match="no extra vision in pyproject.toml"):
        wh.wanted(tomllib.loads(PYPROJECT), ["vision"], [], [])


def _item(name: str, version: str = "1.0", *requires: str) -> dict:
    return {"metadata": {"name": name, "version": version, "requires_dist": list(requires)},
            "download_info": {"url": f"https://example.invalid/{name}.whl"}}


REPORT = {"install": [
    _item("fdsl", "0.1.0", "numpy>=1.26", "h5py", "plotlib[fast]", 'tomli; python_version < "3.12"'),
    _item("numpy"),
    _item("h5py", "3.0", "numpy", "cached-property"),  # the node has h5py: its own needs stay out
    _item("cached-property"),
    _item("plotlib", "2.0", 'speedup; extra == "fast"', 'sphinx; extra == "docs"', "Kornia_RS"),
    _item("speedup"),
    _item("sphinx"),
    _item("kornia-rs", "0.2"),
    _item("kornia", "0.9", "torch>=2.5.1", "kornia-rs>=0.2", 'pytest; extra == "dev"'),
    _item("torch", "2.13.0+fdsl.stub", "nvidia-cublas"),
    _item("nvidia-cublas"),
    _item("tomli"),
    _item("pytest"),
]}


def test_needed_follows_markers_and_extras_and_stops_at_the_nodes_packages() -> None:
    env312 = wh.Target("3.12").markers()
    keep = wh.needed(REPORT, ["fdsl", "kornia==0.9"], {"h5py"}, env312)
    assert sorted(keep) == ["fdsl", "kornia", "kornia-rs", "numpy", "plotlib", "speedup"]
    keep311 = wh.needed(REPORT, ["fdsl"], {"h5py"}, wh.Target("3.11").markers())
    assert "tomli" in keep311  # python_version < "3.12" holds on 3.11
    assert "h5py" in wh.needed(REPORT, ["fdsl"], set(), env312) and "cached-property" in wh.needed(
        REPORT, ["fdsl"], set(), env312)
    with pytest.raises(wh.WheelhouseError, match="holds no scipy"):
        wh.needed(REPORT, ["scipy"], set(), env312)


def test_missing_distribution_is_read_off_pips_message() -> None:
    out = ("ERROR: Could not find a version that satisfies the requirement PyOpenGL==3.1.0 (from pyrender) "
           "(from versions: 3.1.5, 3.1.6)\nERROR: No matching distribution found for PyOpenGL==3.1.0 (from pyrender)\n")
    assert wh.missing_distribution(out) == "PyOpenGL==3.1.0"
    assert wh.missing_distribution("ERROR: HTTP error 503 while getting https://...") is None


def _staging(tmp_path: Path) -> tuple[Path, Path]:
    staging, scratch = tmp_path / "wheels", tmp_path / "scratch"
    staging.mkdir()
    scratch.mkdir()
    wh.write_stub_wheel(staging, "fdsl", "0.1.0", ["numpy>=1.26", "lz4"])
    wh.write_stub_wheel(staging, "lz4", "4.4")
    wh.write_stub_wheel(staging, "kornia", "0.9.0", ["torch>=2.5.1", "kornia-rs>=0.2.0"])
    wh.write_stub_wheel(staging, "kornia_rs", "0.2.0")
    (scratch / "requirements.txt").write_text("kornia==0.9.0\n")
    return staging, scratch


def test_offline_check_passes_on_a_complete_wheelhouse_and_names_what_is_missing(tmp_path: Path) -> None:
    """The real pip, --no-index: fdsl and the requirements install from the staged wheels plus
    stand-ins for the node's numpy and torch, and fail once a wheel is taken away."""
    staging, scratch = _staging(tmp_path)
    builder = wh.Builder(wh.Target(HERE), staging, scratch, log=lambda _: None)
    node = {"numpy": "2.0.0", "torch": wh.STUB_TORCH}
    builder.check_offline(node, scratch / "requirements.txt")
    next(staging.glob("kornia_rs-*.whl")).unlink()
    with pytest.raises(wh.WheelhouseError, match="(?s)--no-index.*kornia-rs>=0.2.0"):
        builder.check_offline(node, scratch / "requirements.txt")


def test_a_stub_wheel_is_a_wheel_pip_installs(tmp_path: Path) -> None:
    path = wh.write_stub_wheel(tmp_path, "scikit-learn", "1.9.1", ["numpy"])
    assert path.name == "scikit_learn-1.9.1-py3-none-any.whl"
    with zipfile.ZipFile(path) as z:
        assert "Requires-Dist: numpy" in z.read("scikit_learn-1.9.1.dist-info/METADATA").decode()
    wh.write_stub_wheel(tmp_path, "numpy", "2.0")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
                           str(tmp_path), "--target", str(tmp_path / "t"), "scikit-learn"], capture_output=True,
                          text=True, env={"PIP_CONFIG_FILE": "/dev/null", "PATH": "/usr/bin:/bin"}, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["numpy-2.0.dist-info", "scikit_learn-1.9.1.dist-info"]


class FakePip:
    """pip as the index would answer: PyOpenGL 3.1.0 has an sdist only; every other pin has a wheel."""

    def __init__(self, built_wheel: str = "pyopengl-3.1.0-py3-none-any.whl", fail_download: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.built_wheel, self.fail_download = built_wheel, fail_download

    @staticmethod
    def _after(cmd: list[str], flag: str) -> Path:
        return Path(cmd[cmd.index(flag) + 1])

    def __call__(self, cmd, env=None) -> subprocess.CompletedProcess:
        cmd = list(cmd)
        self.calls.append(cmd)
        verb = cmd[3]
        if verb == "wheel" and "--no-binary" in cmd:
            wh.write_stub_wheel(self._after(cmd, "--wheel-dir"), "x", "0")  # another package's leftover
            (self._after(cmd, "--wheel-dir") / self.built_wheel).write_bytes(b"built")
        elif verb == "wheel":
            wh.write_stub_wheel(self._after(cmd, "--wheel-dir"), "fdsl", "0.1.0", ["numpy>=1.26", "hdf5plugin"])
        elif verb == "install" and "--report" in cmd:
            links = [Path(cmd[i + 1]) for i, c in enumerate(cmd) if c == "--find-links"]
            if not any(links[0].glob("pyopengl-*")):
                return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for "
                                                                "PyOpenGL==3.1.0 (from pyrender)\n")
            assert any(links[1].glob("torch-2.13.0+fdsl.stub-py3-none-any.whl"))
            report = {"install": [
                _item("fdsl", "0.1.0", "numpy>=1.26", "hdf5plugin"), _item("numpy", "2.4"),
                _item("hdf5plugin", "7.1", "h5py"), _item("h5py", "3.16", "numpy"),
                _item("pyrender", "0.1.45", "PyOpenGL==3.1.0", "numpy"), _item("PyOpenGL", "3.1.0"),
                _item("kornia", "0.9.0", "torch>=2.5.1", "kornia_rs"), _item("kornia_rs", "0.2.0"),
                _item("torch", "2.13.0+fdsl.stub"), _item("setuptools", "84.2.1"),
                _item("numba-cuda", "0.30.4", "numba>=0.60"), _item("numba", "0.68.1"), _item("pytest", "9.2.0")]}
            self._after(cmd, "--report").write_text(json.dumps(report))
        elif verb == "download":
            if self.fail_download:
                return subprocess.CompletedProcess(cmd, 1, "", "ERROR: HTTP error 503\n")
            dest = self._after(cmd, "--dest")
            for pin in [c for c in cmd if "==" in c]:
                name, version = pin.split("==")
                (dest / f"{name.replace('-', '_')}-{version}-py3-none-manylinux_2_28_x86_64.whl").write_bytes(
                    b"w" * len(name))
        elif verb == "install":
            assert "--no-index" in cmd and env["PIP_CONFIG_FILE"] == "/dev/null"
        return subprocess.CompletedProcess(cmd, 0, "", "")


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "pyproject.toml").write_text(PYPROJECT)
    return folder


def test_build_leaves_out_torch_and_the_skipped_packages_and_builds_sdist_only_ones(tmp_path, project) -> None:
    pip, out, lines = FakePip(), tmp_path / "wh", []
    record = wh.build_wheelhouse(out, wh.Target("3.12"), skip=["numpy", "h5py", "numba"], project=project, run=pip,
                                 log=lines.append)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["fdsl-0.1.0-py3-none-any.whl", "hdf5plugin-7.1-py3-none-manylinux_2_28_x86_64.whl",
                     "kornia-0.9.0-py3-none-manylinux_2_28_x86_64.whl",
                     "kornia_rs-0.2.0-py3-none-manylinux_2_28_x86_64.whl",
                     "numba_cuda-0.30.4-py3-none-manylinux_2_28_x86_64.whl", "pyopengl-3.1.0-py3-none-any.whl",
                     "pyrender-0.1.45-py3-none-manylinux_2_28_x86_64.whl",
                     "pytest-9.2.0-py3-none-manylinux_2_28_x86_64.whl", "requirements.txt",
                     "setuptools-84.2.1-py3-none-manylinux_2_28_x86_64.whl", "wheelhouse.json"]
    assert (out / "requirements.txt").read_text() == ("pyrender==0.1.45\nPyOpenGL==3.1.0\nkornia==0.9.0\n"
                                                      "numba-cuda>=0.20\npytest\n")
    saved = json.loads((out / "wheelhouse.json").read_text())
    assert saved == record and saved["left_out"] == ["h5py", "numba", "numpy", "torch"]
    assert saved["bytes"] == sum(p.stat().st_size for p in out.glob("*.whl")) == sum(saved["wheels"].values())
    download = next(c for c in pip.calls if c[3] == "download")
    assert sorted(c for c in download if "==" in c) == ["hdf5plugin==7.1", "kornia==0.9.0", "kornia_rs==0.2.0",
                                                        "numba-cuda==0.30.4", "pyrender==0.1.45", "pytest==9.2.0",
                                                        "setuptools==84.2.1"]
    assert "PyOpenGL==3.1.0 has no wheel for the target; building one from its sdist" in " ".join(lines)
    check = pip.calls[-1]
    assert check[3] == "install" and "--no-index" in check
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_a_compiled_build_of_an_sdist_is_refused_in_one_line(tmp_path, project) -> None:
    pip = FakePip(built_wheel="pyopengl-3.1.0-cp311-cp311-linux_x86_64.whl")
    with pytest.raises(wh.WheelhouseError) as info:
        wh.build_wheelhouse(tmp_path / "wh", wh.Target("3.12"), project=project, run=pip, log=lambda _: None)
    assert "PyOpenGL==3.1.0 has no CPython 3.12 manylinux wheel" in str(info.value)
    assert not (tmp_path / "wh").exists() and list(tmp_path.iterdir()) == [project]


def test_a_failed_build_leaves_the_earlier_wheelhouse_as_it_was(tmp_path, project) -> None:
    out = tmp_path / "wh"
    wh.build_wheelhouse(out, wh.Target("3.12"), project=project, run=FakePip(), log=lambda _: None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(wh.WheelhouseError, match="downloading the wheels failed"):
        wh.build_wheelhouse(out, wh.Target("3.12"), skip=["numpy"], project=project,
                            run=FakePip(fail_download=True), log=lambda _: None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project", "wh"]


def test_a_folder_that_is_no_wheelhouse_is_not_replaced(tmp_path, project) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    with pytest.raises(wh.WheelhouseError, match="is not a wheelhouse made by this script"):
        wh.build_wheelhouse(out, wh.Target("3.12"), project=project, run=FakePip(), log=lambda _: None)
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


def test_cli_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "wheelhouse.py"), "--python-version", "3",
                           "--out", str(tmp_path / "wh")], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "wheelhouse: --python-version must look like 3.12, not '3'\n"


def _make_dry_run(*args: str) -> str:
    # Under `make test` MAKELEVEL/MAKEFLAGS come down to this make, which would then print
    # "Entering directory" lines; a dry run of its own is asked for.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True).stdout


def test_make_targets_pass_the_settings_through() -> None:
    dry = _make_dry_run("wheelhouse-gpu-node", "WHEELHOUSE=/tmp/x", "PYTHON=python3")
    assert "tools/wheelhouse.py --python-version 3.12 --out /tmp/x --skip \"numpy numba llvmlite h5py" in dry
    assert '--also "pytest hdf5plugin<5"' in dry  # the GPU node's wheelhouse stays under 60 MB
    dry = _make_dry_run("gpu-check", "OFFLINE=1", "WHEELHOUSE=/tmp/x")
    assert "-m venv --system-site-packages .venv-offline" in dry
    assert "pip install -q --no-index --find-links /tmp/x" in dry and "-r /tmp/x/requirements.txt -e ." in dry
    assert dry.rstrip().endswith("PYOPENGL_PLATFORM=egl .venv-offline/bin/python benchmarks/gpu_check.py")
