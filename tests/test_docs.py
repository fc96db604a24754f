"""Generated docs stay generated: every reference report's Markdown in docs/, and every table a hand-written doc
takes from a report, equals a fresh render from its JSON (benchmarks/reports.py, `make docs`)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import reports
from runtimes.errors import DeployError

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_json_under_docs_is_a_report_with_a_renderer():
    found = reports.reports(DOCS)
    assert len(found) == len(list(DOCS.rglob("*.json"))) >= 30
    assert {Path(p).relative_to(DOCS).as_posix(): fn for p, fn in found}["serve-bench/realsize.json"] == \
        "benchmarks.serve_bench.realsize:to_markdown"  # the specific pattern before serve-bench/*.json


def test_the_committed_markdown_is_a_fresh_render():
    drifts = reports.check(DOCS)
    assert not drifts, "run `make docs`: " + "; ".join(f"{d.path}: {d.why}" for d in drifts)


@pytest.fixture
def docs_copy(tmp_path):
    """The parts of docs/ the drift tests edit: the bench report, the trt builds and docs/bench.md."""
    root = tmp_path / "docs"
    for rel in ("bench/bench.json", "bench/bench.md", "tensorrt/trt-builds.json", "tensorrt/trt-builds.md",
                "tensorrt/README.md", "bench.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(DOCS / rel, root / rel)
    return root


def test_a_hand_edited_report_or_table_is_caught_and_make_docs_puts_it_back(docs_copy):
    md = docs_copy / "bench" / "bench.md"
    good_md, good_page = md.read_text(), (docs_copy / "bench.md").read_text()
    md.write_text(good_md.replace("| `onnxruntime-fp32` | bs1xs128 | 10.5 |", "| `onnxruntime-fp32` | bs1xs128 | 9.5 |"))
    doc = json.loads((docs_copy / "bench" / "bench.json").read_text())
    row = next(r for r in doc["results"] if r["target"] == "onnxruntime-fp32" and r["scenario"] == "latency")
    row["stats"]["mean_ms"] = 12.5  # the JSON changed: the table in docs/bench.md must follow
    (docs_copy / "bench" / "bench.json").write_text(json.dumps(doc))
    drifted = {d.path.relative_to(docs_copy).as_posix() for d in reports.check(docs_copy)}
    assert drifted == {"bench/bench.md", "bench.md"}
    assert sorted(p.relative_to(docs_copy).as_posix() for p in reports.write(docs_copy)) == ["bench.md", "bench/bench.md"]
    assert not reports.check(docs_copy)
    page = (docs_copy / "bench.md").read_text()
    assert "| `onnxruntime-fp32` | bs1xs128 | 12.5 |" in page and page != good_page
    assert page.replace("| bs1xs128 | 12.5 |", "| bs1xs128 | 10.5 |") == good_page  # only the cell moved


def test_cli_check_exits_1_on_drift_and_2_without_markers(docs_copy):
    cli = [sys.executable, "-m", "distilbert_deploy.cli", "docs", "--docs", str(docs_copy), "--check"]
    assert subprocess.run(cli, capture_output=True, text=True).returncode == 0
    trt = docs_copy / "tensorrt" / "trt-builds.md"
    trt.write_text(trt.read_text() + "edited\n")
    r = subprocess.run(cli, capture_output=True, text=True)
    assert r.returncode == 1 and "trt-builds.md: differs from a fresh render" in r.stderr and "make docs" in r.stderr
    page = docs_copy / "tensorrt" / "README.md"
    page.write_text(page.read_text().replace(reports.END, ""))
    r = subprocess.run(cli, capture_output=True, text=True)
    assert r.returncode == 2 and "put the markers back" in r.stderr
    (docs_copy / "stray.json").write_text("{}")
    with pytest.raises(DeployError, match="no renderer for .*stray.json"):
        reports.reports(docs_copy)
