"""Hostile config input (issue 23, cases 2, 11 and 17): overrides of text settings, element types of lists,
YAML alias bombs, sections given scalars, out-of-range n_boot / k / seed, binary and tagged config files and
golden grade maps outside [0, 1]. Each is refused with one line before any work, or kept as typed."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relsum.cli import main
from relsum.core.config import ConfigError, cfg, load_config, parse_overrides
from relsum.core.errors import InputError, RelsumError
from relsum.pipelines.configs import AnalyzeConfig, DemoConfig, EvaluateConfig, ExportConfig


@dataclasses.dataclass
class Section:
    rate: float = cfg(0.5, help="a rate")


@dataclasses.dataclass
class Settings:
    out_dir: str = cfg("out", help="a folder")
    maybe: str | None = cfg(None, help="optional text")
    path: Path = cfg(Path("p"), help="a path")
    count: int = cfg(1, help="an integer")
    ratio: float = cfg(0.5, help="a number")
    names: list[str] = cfg(["a"], help="text items")
    labels: dict[str, float] = cfg({}, help="text -> number")
    section: Section = cfg(default_factory=Section, help="a section")


def _yaml(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- case 2: key=value overrides of text settings ----------------------------------------------------------


@pytest.mark.parametrize(("override", "expected"), [
    ("out_dir=/some/out dir #1", "/some/out dir #1"),  # YAML dropped ' #1' as a comment
    ("out_dir=runs#2", "runs#2"),
    ("out_dir=yes", "yes"),  # YAML: True, then the folder 'True'
    ("out_dir=007", "007"),  # YAML: 7
    ("out_dir=2024-01-01", "2024-01-01"),
    ("out_dir='a: b'", "a: b"),  # a quoted value is unquoted, so YAML-looking text can still be given
    ("out_dir=\"[1, 2]\"", "[1, 2]"),
    ("out_dir=null", "null"),  # out_dir does not allow None: the text as typed
    ("path=/x #3", Path("/x #3")),
    ("maybe=null", None),
    ("maybe=~", None),
])
def test_text_overrides_keep_the_text_as_typed(override, expected):
    config = load_config(Settings, None, [override])
    key = override.split("=", 1)[0]
    assert getattr(config, key) == expected


@pytest.mark.parametrize(("override", "message"), [
    ("out_dir=x: y", "out_dir: expects text, got dict"),
    ("out_dir=[1,2]", "out_dir: expects text, got a YAML list"),
    ("out_dir={a: 1}", "out_dir: expects text"),
    ("out_dir='a' #b", "is not one quoted string"),
    ("count=5 #x", "count: '5 #x' has text after its value"),
    ("names=[a, b] #c", "has text after its value"),
    ("count=true", "count: True is not an integer"),
    ("ratio=.nan", "ratio: nan is not a number"),
    ("section=5", r"section: is a section of settings \(Section\): give it a mapping of its keys, got int 5"),
    ("section=[1]", "section: is a section of settings"),
    ("labels=5", "labels: expects a mapping, got int 5"),
    ("names=[a, [b]]", r"names\[1\]: expects text, got list"),
])
def test_overrides_that_do_not_fit_the_field_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Settings, None, [override])


def test_a_section_given_by_mapping_still_merges_and_conflicting_overrides_are_refused():
    assert load_config(Settings, None, ["section={rate: 2.0}"]).section.rate == 2.0
    with pytest.raises(ConfigError, match="section is set to a value and also has keys set"):
        load_config(Settings, None, ["section=5", "section.rate=1"])
    with pytest.raises(ConfigError, match="is not a config key"):
        parse_overrides(["section..rate=1"])


def test_stage_out_dir_override_with_a_hash_reaches_the_config():
    config = load_config(ExportConfig, None, ["candidates=a.csv", "catalog=b.csv", "summaries=c.csv",
                                              "out_dir=/some/out dir #1"])
    assert config.out_dir == "/some/out dir #1"


@pytest.mark.parametrize(("text", "message"), [
    ("out_dir: [1, 2]\n", "out_dir: expects text, got list"),
    ("out_dir: yes\n", "out_dir: expects text, got bool True"),
    ("out_dir: {x: y}\n", "out_dir: expects text, got dict"),
    ("names: [a, {b: c}]\n", r"names\[1\]: expects text"),
    ("section: 5\n", "section: is a section of settings"),
    ("labels: [1]\n", "labels: expects a mapping"),
    ("labels: {a: high}\n", "labels.a: 'high' is not a number"),
])
def test_yaml_file_values_are_type_checked(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Settings, _yaml(tmp_path, text))


def test_yaml_file_integers_and_dates_still_fill_text_fields(tmp_path):
    config = load_config(Settings, _yaml(tmp_path, "out_dir: 2024\nmaybe: 2024-01-31\n"))
    assert (config.out_dir, config.maybe) == ("2024", "2024-01-31")


# ---- case 11: alias bombs under a valid list key -----------------------------------------------------------


def test_billion_laughs_under_a_list_key_is_refused_quickly(tmp_path):
    bomb = "export: x\nevents: y\ncount_events: [" + ", ".join(
        f"&a{i} [{', '.join([f'*a{i - 1}' if i else 'click'] * 9)}]" for i in range(10)) + ", *a9]\n"
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_config(AnalyzeConfig, _yaml(tmp_path, bomb))
    assert time.perf_counter() - start < 2.0  # was 52 s into a MemoryError


def test_recursive_alias_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="recursive alias"):
        load_config(AnalyzeConfig, _yaml(tmp_path, "export: x\nevents: y\ncount_events: &r [click, *r]\n"))


def test_nested_list_elements_are_refused_before_expansion(tmp_path):
    # Small enough to pass the size bound: the element check refuses it without stringifying the nest.
    with pytest.raises(ConfigError, match=r"count_events\[0\]: expects text, got list"):
        load_config(AnalyzeConfig, _yaml(tmp_path, "export: x\nevents: y\ncount_events: [[click], click]\n"))


def test_ordinary_aliases_and_merge_keys_still_load(tmp_path):
    text = "labels: &d {rate: 0.25}\nout_dir: &o runs\nmaybe: *o\nnames: [a, b]\nsection: {<<: *d}\n"
    config = load_config(Settings, _yaml(tmp_path, text))
    assert (config.out_dir, config.maybe, config.names) == ("runs", "runs", ["a", "b"])
    assert config.section.rate == 0.25 and config.labels == {"rate": 0.25}


# ---- case 17: sections, ranges, binary and tagged files, grade maps ---------------------------------------


@pytest.mark.parametrize("override", ["k=0", "n_boot=0", "n_boot=-5", "n_boot=1000000", "seed=-1",
                                      "seed=4294967296"])
def test_evaluate_ranges_are_checked_when_the_config_is_built(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"{key} must be in"):
        load_config(EvaluateConfig, None, [override])


@pytest.mark.parametrize("override", ["n_boot=0", "seed=-3", "train_seeds=[0, -1]"])
def test_demo_ranges_are_checked_when_the_config_is_built(override):
    with pytest.raises(ConfigError, match="must be in"):
        load_config(DemoConfig, None, [override])


def test_cli_refuses_bad_ranges_and_scalar_sections_in_one_line_without_heavy_imports():
    """In a fresh interpreter: exit 2, one line, before pandas / numpy / torch are imported."""
    probe = ("import contextlib, io, json, sys\nfrom relsum.cli import main\nout = []\n"
             "for argv in json.loads(sys.argv[1]):\n    err = io.StringIO()\n"
             "    with contextlib.redirect_stderr(err):\n        status = main(argv)\n"
             "    out.append([status, err.getvalue()])\n"
             "print(json.dumps([out, [m for m in ('pandas', 'numpy', 'torch') if m in sys.modules]]))\n")
    commands = [["evaluate", "n_boot=0"], ["evaluate", "k=0"], ["evaluate", "seed=-1"],
                ["evaluate", "scorer=5"], ["train", "n_boot=0"],
                ["export-interleaving", "--candidates", "a", "--catalog", "b", "--summaries", "c", "seed=-1"]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", probe, json.dumps(commands)], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    results, heavy = json.loads(done.stdout)
    assert heavy == []
    for argv, (status, err) in zip(commands, results, strict=True):
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1 and "error:" in lines[0], (argv, err)


@pytest.mark.parametrize(("content", "message"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a YAML text file"),
    (b"out_dir: caf\xe9\n", "not a UTF-8 YAML text file"),
    (b"out_dir: !!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
    (b"out_dir: [unclosed\n", "not valid YAML"),
    (b"a: 1\n---\nb: 2\n", "not valid YAML"),
    (b"- a\n- b\n", "top level must be a mapping"),
])
def test_bad_config_files_are_one_line_config_errors(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(Settings, path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_cli_binary_config_and_python_tag_exit_2_with_one_line(tmp_path, capsys):
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)))
    tagged = _yaml(tmp_path, "catalog: !!python/object/apply:os.system [echo pwned]\n")
    for path in (binary, tagged):
        assert main(["validate", "--config", str(path)]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in lines[0]


def _golden(root: Path, yaml_text: str) -> Path:
    folder = root / "golden"
    folder.mkdir()
    (folder / "queries.csv").write_text("query_id,query,traffic\nq1,phone,100\n")
    (folder / "judgments.csv").write_text("query_id,product_id,grade\nq1,p1,3\n")
    (folder / "products.jsonl").write_text('{"product_id": "p1", "title": "Phone", "description": "d"}\n')
    (folder / "relsum.yaml").write_text(yaml_text)
    return folder


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("grade_map: {3: 4, 2: 0.5}\n", r"labels must be numbers in \[0, 1\]"),
    ("grade_map: {3: -0.5}\n", r"labels must be numbers in \[0, 1\]"),
    ("grade_map: {3: high}\n", r"labels must be numbers in \[0, 1\]"),
    ("grade_map: {3: true}\n", r"labels must be numbers in \[0, 1\]"),
    ("grade_map: [3, 2]\n", "grade_map must be a non-empty mapping"),
    ("grade_map: &g [*g]\n", "recursive alias"),
])
def test_golden_relsum_yaml_grade_map_outside_0_1_is_refused_naming_the_file(tmp_path, yaml_text, message):
    from relsum.data.golden import load_golden

    folder = _golden(tmp_path, yaml_text)
    with pytest.raises(RelsumError, match=message) as info:
        load_golden(folder)
    assert str(folder / "relsum.yaml") in str(info.value)


def test_golden_relsum_yaml_grade_map_in_range_is_used(tmp_path):
    from relsum.data.golden import config_for

    assert config_for(_golden(tmp_path, "grade_map: {3: 1, 2: '0.5'}\n")).grade_map == {"3": 1.0, "2": 0.5}


def test_input_error_is_what_the_grade_map_check_raises(tmp_path):
    from relsum.data.golden import find_grade_map

    with pytest.raises(InputError):
        find_grade_map(_golden(tmp_path, "grade_map: {3: 2}\n"))
