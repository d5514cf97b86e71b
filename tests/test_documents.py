"""The result documents: every kind has a published JSON Schema, every
reader validates against it, and an odd document is one line naming the
file and the field (exit 2), never a traceback.  Quick and without the C
core's runs where it can be: CI runs this file on the oldest and the newest
Python the machine has too."""
import json
import os
import subprocess
import sys

import pytest

from _support import one_line as _one_line


@pytest.mark.parametrize("change,field", [
    ({"machine": "x"}, "field machine"),
    ({"figures": []}, "field figures"),
    ("samples", "samples"),
])
def test_odd_documents_are_one_line_naming_the_field(run_cli, tmp_path, real, change, field):
    good = real["results"][0]
    bad = json.loads(json.dumps(good))
    if change == "samples":
        bad["figures"][next(iter(bad["figures"]))]["samples"] = "oops"
    else:
        bad.update(change)
    (tmp_path / "a.json").write_text(json.dumps(good))
    (tmp_path / "b.json").write_text(json.dumps(bad))
    for cmd in (["compare", "a.json", "b.json"], ["report", "b.json", "--out", "r.html"],
                ["plot", "b.json", "--out", "plots"]):
        r = run_cli(*cmd)
        assert r.returncode == 2, (cmd, r.stderr)
        line = _one_line(r)
        assert "b.json" in line and field in line, line


def test_an_internal_error_is_one_line_and_no_documented_code(tmp_path):
    code = ("import sys, pyharness.cli.compare as c\n"
            "def boom(*a, **k): raise RuntimeError('boom')\n"
            "c.compare_main = boom\n"
            "from pyharness.cli import main\n"
            "sys.exit(main(['compare', 'a', 'b']))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 70 and "internal error: RuntimeError: boom" in _one_line(r)


def test_every_document_we_write_matches_its_published_schema(run_cli, tmp_path):
    from pyharness import documents
    r = run_cli("run", "--duration", "0.5", "--quiet", "--json", "r.json", "--log", "r.jsonl")
    assert r.returncode == 0, r.stderr
    assert documents.load(str(tmp_path / "r.json"), ("run",))["schema"] == "pyharness.run/1"
    assert {x["type"] for x in documents.load_lines(str(tmp_path / "r.jsonl"))} >= {"start", "end"}
    for kind in documents.KINDS:
        assert os.path.exists(documents.schema_path(kind)), kind
        with open(documents.schema_path(kind)) as f:
            from jsonschema import Draft202012Validator
            Draft202012Validator.check_schema(json.load(f))


def test_validate_names_the_field_and_the_kind(real):
    from pyharness import documents
    good = real["results"][0]
    assert documents.validate(good) == "bench"
    with pytest.raises(documents.DocumentError, match=r"x.json: not a valid pyharness.bench/1 "
                                                      r"document: field figures\.\S+\.samples"):
        bad = json.loads(json.dumps(good))
        bad["figures"][next(iter(bad["figures"]))]["samples"] = [1, "two"]
        documents.validate(bad, ("bench",), "x.json")
    with pytest.raises(documents.DocumentError, match="newer than this pyharness"):
        documents.validate(dict(good, schema="pyharness.bench/2"), ("bench",), "x.json")
    with pytest.raises(documents.DocumentError, match="is not a pyharness run result"):
        documents.validate(good, ("run",), "x.json")


def test_json_that_is_not_json_is_refused(tmp_path):
    from pyharness import documents
    for text in ("garbage", '{"a": NaN}', "\xff\xfe", "[" * 100000):
        p = tmp_path / "x.json"
        p.write_bytes(text.encode("latin-1"))
        with pytest.raises(documents.DocumentError):
            documents.read_json(str(p))


def test_what_we_write_has_no_nan():
    from pyharness import documents
    text = documents.dumps({"a": float("nan"), "b": [float("inf"), 1.5]})
    assert json.loads(text) == {"a": None, "b": [None, 1.5]}


def test_output_rules(tmp_path):
    from pyharness import outputs
    from pyharness.errors import UsageError
    p = tmp_path / "r.json"
    outputs.check_output_path(str(p))
    assert not p.exists()                                  # checking creates nothing
    outputs.write_file(str(p), "one\n")
    os.symlink("r.json", tmp_path / "l.json")
    outputs.write_file(str(tmp_path / "l.json"), "two\n")
    assert os.path.islink(tmp_path / "l.json") and p.read_text() == "two\n"
    with pytest.raises(UsageError, match="is a directory"):
        outputs.check_output_path(str(tmp_path))
    with pytest.raises(UsageError, match="does not exist"):
        outputs.check_output_path(str(tmp_path / "no" / "r.json"))
    os.mkfifo(tmp_path / "f")
    with pytest.raises(UsageError, match="is a FIFO"):
        outputs.check_output_path(str(tmp_path / "f"))
    with pytest.raises(UsageError, match="FIFO with no reader"):
        outputs.check_output_path(str(tmp_path / "f"), "--log", stream=True)
    assert outputs.write_output(str(tmp_path / "gone" / "x.json"), "{}", "--json") is False


def test_what_compare_and_history_print_as_json_matches_their_schemas(run_cli, tmp_path, real):
    from pyharness import documents
    for i, d in enumerate(real["results"][:3]):
        (tmp_path / f"b{i}.json").write_text(json.dumps(d))
    r = run_cli("compare", "b0.json", "b1.json", "--format", "json")
    assert documents.validate(json.loads(r.stdout), ("compare",)) == "compare", r.stderr
    assert run_cli("store", "import", "--store", "s.db", "b0.json", "b1.json", "b2.json"
                   ).returncode == 0
    r = run_cli("history", "--store", "s.db", "--check", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert documents.validate(json.loads(r.stdout), ("history",)) == "history"
