"""The generator registry and gen-fractal's shared checks: specs, light imports, --version (size
limits: test_limits.py)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fdsl import __version__
from fdsl.errors import FdslError
from fdsl.generators import cli, registry
from fdsl.generators import spec as spec_module
from fdsl.generators.generate import generate
from fdsl.generators.spec import GeneratorSpec, register_generator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import assert_refused_in_one_line, edit_manifest, exit_code  # noqa: E402
from toy_source import ToySource  # noqa: E402

HEAVY = ("h5py", "torch", "fdsl.datasets.builder.build", "fdsl.datasets.format", "fdsl.datasets.builder.jobs", "ray")


@pytest.mark.parametrize("module", [m.rsplit(".", 1)[1] for m in registry.BUILTIN_MODULES]
                         + ["registry", "spec", "generate", "rebuild"])
def test_importing_a_generator_imports_no_h5py_builder_or_torch(module):
    code = (f"import sys, fdsl.generators.{module}\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_builtin_registers_a_spec_with_flags_read_from_its_parser():
    specs = registry.generators()
    assert list(specs) == ["fractaldb", "exfractaldb", "rcdb", "linedb"]
    assert {"fill_rate", "search_points", "color"} <= set(specs["fractaldb"].option_names)
    assert {"instances_3d", "views", "no_roll"} <= set(specs["exfractaldb"].option_names)
    assert "broken_fraction" in specs["rcdb"].option_names
    assert set(specs["linedb"].option_names) == {"line_counts", "shuffle_counts"}
    assert specs["fractaldb"].takes("points") and not specs["rcdb"].takes("points")
    with pytest.raises(FdslError, match="unknown --db 'nope'; choose one of fractaldb, exfractaldb"):
        registry.get_generator("nope")


def _toy_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--toy-size", dest="toy_size", type=int, default=None)


def _toy_source(*, classes: int, seed: int, params_from, workers, backend, instances=None,
                toy_size=None) -> Callable[[], ToySource]:
    return lambda: ToySource(classes=classes, per_class=instances or 2, size=toy_size or 8, seed=seed)


@pytest.fixture
def toy(monkeypatch):
    """A generator registered the way a new module would, undone after the test."""
    registry.generators()
    monkeypatch.setattr(spec_module, "_REGISTRY", dict(spec_module._REGISTRY))
    return register_generator(GeneratorSpec(name="toy", description="test images", defaults={"instances": 2},
                                            add_arguments=_toy_arguments, prepare_source=_toy_source))


def test_a_registered_generator_gets_the_cli_flags_help_and_checks(toy, tmp_path, capsys):
    assert toy.option_names == ("toy_size",)
    assert exit_code(cli.main, ["--help"]) == 0
    help_text = capsys.readouterr().out
    assert "toy: test images" in help_text and "toy options" in help_text and "--toy-size" in help_text
    assert "toy 2" in help_text  # the --instances default, from the spec
    out = tmp_path / "toy"
    assert cli.main(["--db", "toy", "--classes", "2", "--toy-size", "4", "--workers", "1", "--out", str(out)]) == 0
    assert '"size": 4' in (out / "manifest.json").read_text()
    capsys.readouterr()
    for flags, message in ((["--image-size", "8"], "--image-size does not apply to --db toy"),
                           (["--views", "2", "--points", "9"], "--points, --views do not apply to --db toy")):
        assert_refused_in_one_line(capsys, cli.main, ["--db", "toy", "--classes", "1", "--out", str(tmp_path / "no"), *flags], message)
    assert not (tmp_path / "no").exists()
    with pytest.raises(FdslError, match="--toy-size does not apply to --db fractaldb"):
        generate("fractaldb", tmp_path / "no", classes=1, toy_size=3)


def test_spec_mistakes_are_caught_at_registration(toy):
    with pytest.raises(ValueError, match="already registered"):
        register_generator(GeneratorSpec(name="toy", description="", prepare_source=lambda **kw: None))
    with pytest.raises(ValueError, match="unknown settings"):
        GeneratorSpec(name="x", description="", prepare_source=_toy_source, defaults={"colour": 1})
    eager = GeneratorSpec(name="y", description="", prepare_source=_toy_source,
                          add_arguments=lambda group: group.add_argument("--y-size", type=int, default=3))
    with pytest.raises(ValueError, match=r"flags \['y_size'\] must default to None"):
        eager.option_names  # noqa: B018


def test_version(capsys):
    assert exit_code(cli.main, ["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"gen-fractal (fdsl {__version__})"


@pytest.mark.parametrize("flags, message", [
    (["--image-size", "1000000"], "--image-size 1000000 exceeds the limit of 16,384"),
    (["--classes", str(10**20)], f"--classes {10**20} exceeds the limit of 1,000,000"),
    (["--instances", str(10**9)], "--instances 1000000000 exceeds the limit"),
    (["--classes", "1000000", "--instances", "1000000"], "--classes x --instances 1000000000000 exceeds"),
    (["--points", str(10**10)], "--points 10000000000 exceeds the limit of 100,000,000"),
    (["--image-size", "16384", "--workers", "64"], "GiB for their image and point buffers"),
    (["--search-points", str(10**10)], "--search-points 10000000000 exceeds the limit"),
    (["--db", "exfractaldb", "--views", str(10**9)], "--views 1000000000 exceeds the limit of 100,000"),
    (["--db", "exfractaldb", "--search-points-3d", str(10**10)], "--search-points-3d 10000000000 exceeds"),
    (["--db", "linedb", "--classes", "10000"], "a line count 160000 exceeds the limit of 100,000"),
])
def test_absurd_sizes_are_refused_before_any_work_or_file(tmp_path, capsys, flags, message):
    argv = ["--db", "fractaldb", "--classes", "1", "--out", str(tmp_path / "o"), *flags]
    if argv.count("--db") == 2:
        argv = argv[2:]
    if argv.count("--classes") == 2:
        at = argv.index("--classes")
        del argv[at:at + 2]
    assert_refused_in_one_line(capsys, cli.main, argv, message)
    assert not (tmp_path / "o").exists()


# The small settings each generator is refused with: the flag under test comes last, so it wins.
_EXFRACTALDB = ["--db", "exfractaldb", "--classes", "1", "--instances-3d", "2", "--views", "3",
                "--image-size", "32", "--points", "500"]
_RCDB = ["--db", "rcdb", "--classes", "1", "--instances", "2"]
_LINEDB = ["--db", "linedb", "--classes", "2"]


@pytest.mark.parametrize("argv, message", [
    (_EXFRACTALDB + ["--views", "0"], "--views must be positive"),
    (_EXFRACTALDB + ["--instances", "7"], "--instances 7 does not fit --db exfractaldb"),
    (_EXFRACTALDB + ["--variance-threshold", "1.5"], "--variance-threshold"),
    (_EXFRACTALDB + ["--instances-3d", "146"], "at most 145"),
    (_EXFRACTALDB + ["--params-from", "/nonexistent/classes.npz"], "not an ExFractalDB classes.npz"),
    (_EXFRACTALDB + ["--search-points-3d", "50"], "--search-points-3d must be >= 100"),
    (_EXFRACTALDB + ["--seed", "-1"], "--seed must be >= 0"),
    (_RCDB + ["--points", "100"], "--points does not apply"),
    (_RCDB + ["--image-size", "4"], "at least 8"),
    (_RCDB + ["--seed", "-1"], "--seed must be >= 0"),
    (_RCDB + ["--views", "3"], "--views does not apply to --db rcdb"),
    (_RCDB + ["--params-from", "/nonexistent/classes.npz"], "not an RCDB classes.npz"),
    (_LINEDB + ["--points", "100"], "--points does not apply to --db linedb"),
    (_LINEDB + ["--line-counts", "a,b"], "comma-separated line counts"),
    (_LINEDB + ["--fill-rate", "0.1"], "--fill-rate does not apply to --db linedb"),
])
def test_bad_generator_flags_are_refused_in_one_line(tmp_path, capsys, argv, message):
    assert_refused_in_one_line(capsys, cli.main, [*argv, "--out", str(tmp_path / "o")], message)
    assert not (tmp_path / "o").exists()


# Small settings of each built-in generator, for the uniform per-generator API below.
_SMALL = {
    "fractaldb": dict(instances=4, image_size=32, points=500, search_points=20_000, fill_rate=0.04),
    "exfractaldb": dict(instances_3d=2, views=2, image_size=32, points=500, search_points_3d=1000),
    "rcdb": dict(instances=3, image_size=32),
    "linedb": dict(instances=3, image_size=16),
}


@pytest.mark.parametrize("db", list(_SMALL))
def test_every_generator_rebuilds_its_source_from_its_folder(tmp_path, db):
    from fdsl.datasets.format import open_dataset, read_manifest
    from fdsl.generators.rebuild import source_from_folder

    spec = registry.get_generator(db)
    out = tmp_path / db
    generate(db, out, classes=2, seed=3, workers=1, **_SMALL[db])
    params = spec.load_class_params(out / "classes.npz")
    assert isinstance(params, spec_module.ClassParams) and len(params) == 2 and len(params.head(1)) == 1
    (tmp_path / "again.npz").write_bytes(params.to_npz())  # what to_npz writes, load_class_params reads
    assert spec.load_class_params(tmp_path / "again.npz").to_npz() == params.to_npz()
    source = source_from_folder(out)
    assert source.config() == read_manifest(out)["config"] and source.params.to_npz() == params.to_npz()
    reader = open_dataset(out)
    stored = reader.read_images(np.arange(len(reader)))
    np.testing.assert_array_equal(source.render(0, source.num_items()).images, stored)
    edit_manifest(out, lambda m: m["generator"].update(version="0"))
    with pytest.raises(FdslError, match=f"made by {db} version 0"):
        source_from_folder(out)
