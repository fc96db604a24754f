"""distilbert-deploy optimize: candidates per CPU class (synthetic CPUs), selection as a pure function of verdicts
and timings, one real run on the tiny model (builds in subprocesses, parity, the bench's select scenario, the
written winner and its report), and bad input (exit 2, nothing written)."""
from __future__ import annotations

import json
import random

import pytest

from conftest import AVX2_ONLY, synthetic_cpu

AMX = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
AVX512_NO_BF16 = ("avx2", "fma", "avx512f", "avx512_vnni")


def ids(cpu, task="text-classification", backends=("onnxruntime", "openvino")):
    from benchmarks.optimize.candidates import enumerate_candidates

    return [c.id for c in enumerate_candidates(cpu, task, backends)]


def test_avx2_only_gets_no_vnni_or_bf16_recipe_and_tries_plain_int8_first():
    got = ids(synthetic_cpu(*AVX2_ONLY))
    assert got[0] == "onnxruntime-dynamic-avx2"  # the fastest INT8 measured on the AVX2 Zen 3
    assert {"onnxruntime-fp32", "onnxruntime-optimize", "onnxruntime-static-avx2", "openvino-fp32",
            "openvino-int8-cpu-f32", "openvino-int8-nncf-cpu-f32"} <= set(got)
    assert not [c for c in got if "vnni" in c or "bf16" in c]  # full-range u8s8 saturates without VNNI


def test_amx_gets_every_x86_preset_and_bf16():
    got = ids(synthetic_cpu(*AMX))
    for cid in ("onnxruntime-dynamic-avx512-vnni", "onnxruntime-static-avx512-vnni", "onnxruntime-dynamic-avx2",
                "openvino-bf16", "openvino-int8-avx512-bf16", "openvino-int8-nncf-avx512-bf16",
                "openvino-int8-cpu-f32", "onnxruntime-fp32"):
        assert cid in got
    assert len(got) == len(set(got))


def test_avx512_without_bf16_has_vnni_but_no_bf16():
    got = ids(synthetic_cpu(*AVX512_NO_BF16))
    assert "onnxruntime-dynamic-avx512-vnni" in got
    assert not [c for c in got if "bf16" in c]


def test_arm64_gets_the_arm64_preset_and_no_openvino():
    got = ids(synthetic_cpu("asimd", "asimddp", machine="aarch64"))
    assert "onnxruntime-dynamic-arm64" in got and "onnxruntime-static-arm64" in got
    assert not [c for c in got if "openvino" in c or "avx" in c]


def test_missing_backend_builds_nothing_of_it():
    got = ids(synthetic_cpu(*AMX), backends=("onnxruntime",))
    assert got and not [c for c in got if c.startswith("openvino")]


def test_cls_variants_only_for_heads_that_read_cls():
    from benchmarks.optimize.candidates import cls_variant, enumerate_candidates

    c = enumerate_candidates(synthetic_cpu(*AMX), "text-classification")[0]
    v = cls_variant(c, "text-classification")
    assert v.id == f"{c.id}-cls" and v.cls_pruned and v.command == c.command
    assert cls_variant(c, "token-classification") is None and cls_variant(v, "text-classification") is None


# ------------------------------------------------------------------ selection: pure


def rec(cid, kind="candidate", ci=True, full=True, status="built", **p50):
    return {"id": cid, "kind": kind, "ci": ci, "full": full, "status": status, "reason": "",
            "p50": dict(p50), "p99": {k: v * 1.5 for k, v in p50.items()}}


RECORDS = [
    rec("fast-but-failed-full", full=False, a=1.0, b=1.0),
    rec("fastest-failed-ci", ci=False, full=None, a=0.5, b=0.5),
    rec("crashed", ci=None, full=None, status="crashed"),
    rec("winner", a=2.0, b=4.0),
    rec("second", a=3.0, b=3.0),
    rec("unjudged-full", full=None, a=5.0, b=1.0),
    rec("peer-x", "peer", None, None, "timed", a=4.0, b=2.0),
    rec("peer-y", "peer", None, None, "timed", a=2.5, b=8.0),
    rec("torch-eager-fp32", "baseline", None, None, "timed", a=10.0, b=12.0),
]


def test_selection_never_picks_a_crashed_or_failed_candidate():
    from benchmarks.optimize.selection import select

    sel = select(RECORDS, "a")
    assert sel["winner"] == "winner" and sel["runner_up"] == "second"
    assert sel["ratio_to_runner_up"] == pytest.approx(1.5)
    assert sel["best_peer"]["a"] == {"id": "peer-y", "p50_ms": 2.5, "ratio": pytest.approx(1.25)}
    assert sel["best_peer"]["b"]["id"] == "peer-x" and sel["best_peer"]["b"]["ratio"] == pytest.approx(0.5)
    assert sel["vs_baseline"] == {"a": pytest.approx(5.0), "b": pytest.approx(3.0)}
    losers = sel["losers"]
    assert losers["fast-but-failed-full"].startswith("failed parity on the full corpus")
    assert losers["fastest-failed-ci"].startswith("failed parity on the ci corpus")
    assert losers["crashed"].startswith("crashed")
    assert losers["second"] == "slower: 1.50x the winner's p50 on a"
    assert set(losers) == {r["id"] for r in RECORDS if r["kind"] == "candidate"} - {"winner"}


def test_selection_is_a_pure_function_of_the_records():
    from benchmarks.optimize.selection import select

    first = select(RECORDS, "a")
    for seed in range(5):
        shuffled = RECORDS[:]
        random.Random(seed).shuffle(shuffled)
        assert select(shuffled, "a") == first
    # the rank workload decides: on b, "second" (3.0) beats "winner" (4.0)
    assert select(RECORDS, "b")["winner"] == "second"


def test_selection_with_no_passing_candidate_picks_nothing():
    from benchmarks.optimize.selection import select

    sel = select([r for r in RECORDS if r["id"] not in ("winner", "second")], "a")
    assert sel["winner"] is None and "crashed" in sel["losers"]


def test_targets_judge_the_issue_bounds():
    from benchmarks.optimize.selection import select, targets

    recs = [rec("w", a=1.0, **{"1x128": 2.0}), rec("peer-p", "peer", None, None, "timed", a=1.3, **{"1x128": 2.2}),
            rec("torch-eager-fp32", "baseline", None, None, "timed", a=3.0, **{"1x128": 6.0})]
    t = {x["target"]: x for x in targets(select(recs, "a"), recs, "a")}
    assert t["as fast as every peer on every workload"]["passed"] is True
    assert t[">= 1.2x the best peer on a"]["passed"] is True  # 1.3
    assert t[">= 1.2x the best peer on 1x128"]["passed"] is False  # 1.1
    assert t[">= 2.5x PyTorch eager fp32 at 1x128"]["value"] == pytest.approx(3.0)


# ------------------------------------------------------------------ workloads


@pytest.mark.parametrize("spec", ["tweets-bs0", "2x1", "1x513", "fixed", "file:", "tweets-bsx"])
def test_unknown_workload_is_a_config_error(spec):
    from benchmarks.bench.workloads import parse_select
    from runtimes.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown workload"):
        parse_select(spec)


def test_workload_forms():
    from benchmarks.bench.workloads import parse_select

    assert parse_select("tweets-bs16") == ("tweets", None, 16)
    assert parse_select("8x128") == ("fixed", (8, 128), 8)
    assert parse_select("file:/x/y.txt@4") == ("file", "/x/y.txt", 4)
    assert parse_select("file:/x/y.txt") == ("file", "/x/y.txt", 1)


# ------------------------------------------------------------------ one real run on the tiny model


def crashing(cpu, task, backends=()):
    """The real candidates of this machine, narrowed, plus one whose build command fails."""
    from benchmarks.optimize.candidates import Candidate, enumerate_candidates

    keep = [c for c in enumerate_candidates(cpu, task, backends) if c.id in ("onnxruntime-fp32", "onnxruntime-optimize")]
    bad = Candidate("onnxruntime-static-broken", "onnxruntime", "int8",
                    ("quantize", "--backend", "onnxruntime", "--method", "static", "--calibration-size", "1"))
    return keep + [bad]


@pytest.fixture(scope="module")
def tiny_run(tiny_artifacts, tmp_path_factory):
    """optimize on the tiny classifier: the plain export, ORT's fused fp32 and a candidate whose build exits 2;
    the ci verdict of the fused one is recorded as failed, so the ranking has a failed-parity entry too."""
    import benchmarks.optimize.run as run
    from benchmarks.optimize.run import OptimizeConfig, optimize

    root = tmp_path_factory.mktemp("optimize")
    src = tiny_artifacts["text-classification", "onnxruntime"]
    real_judge = run.judge
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISTILBERT_DEPLOY_CACHE", str(root / "cache"))
        mp.setattr(run, "enumerate_candidates", crashing)

        def judge(paths, corpus, log):  # the real suite; then one verdict turned, so a fast failure is present
            out = real_judge(paths, corpus, log)
            if "onnxruntime-optimize" in out:
                out["onnxruntime-optimize"] = (False, "recorded as failed by the test")
            return out

        mp.setattr(run, "judge", judge)
        cfg = OptimizeConfig(src=src, out=root / "winner", workloads=("tweets-bs1", "1x32"), report_dir=root / "rep",
                             peers=("ort-qdynamic",), baselines=("torch-eager-fp32",), quick=True, cls_top=1,
                             min_time_s=0.0, command="pytest")
        d = optimize(cfg, log=lambda m: None)
    return d, root


def test_tiny_run_selects_a_passing_candidate_and_writes_it(tiny_run):
    from runtimes.artifact import load_artifact

    d, root = tiny_run
    by = {r["id"]: r for r in d["candidates"]}
    assert d["winner"] not in ("onnxruntime-optimize", "onnxruntime-static-broken")
    assert by[d["winner"]]["ci"] is True and by[d["winner"]]["full"] is True
    assert by["onnxruntime-static-broken"]["status"] == "crashed"
    assert "calibration" in by["onnxruntime-static-broken"]["reason"]
    assert by["onnxruntime-optimize"]["ci"] is False
    art = load_artifact(root / "winner")  # checksums verified
    sel = art.manifest.recipe["selection"]
    assert sel["selected_by"] == "measurement" and sel["winner"] == d["winner"]
    assert sel["cpu"]["model"] and sel["cpu"]["class"]
    assert not list(root.glob(".winner*"))  # nothing staged left behind


def test_tiny_run_records_every_candidate_in_manifest_and_report(tiny_run):
    from runtimes.artifact import read_manifest

    d, root = tiny_run
    expected = {"onnxruntime-fp32", "onnxruntime-optimize", "onnxruntime-static-broken", "onnxruntime-fp32-cls",
                "onnxruntime-optimize-cls", "onnxruntime-static-broken-cls"}
    cands = {r["id"] for r in d["candidates"] if r["kind"] == "candidate"}
    assert cands == expected
    in_manifest = {r["id"] for r in read_manifest(root / "winner").recipe["selection"]["candidates"]}
    assert expected <= in_manifest and "peer-ort-qdynamic" in in_manifest and "torch-eager-fp32" in in_manifest
    report = json.loads((root / "rep" / "selection.json").read_text())
    md = (root / "rep" / "selection.md").read_text()
    assert {r["id"] for r in report["candidates"]} == in_manifest
    for cid in in_manifest:
        assert f"| {cid} |" in md or f"| **{cid}** |" in md
    assert (root / "rep" / "selection.png").stat().st_size > 1000
    timed = [r for r in report["candidates"] if r["p50"]]
    assert all(set(r["p50"]) == {"tweets-bs1", "1x32"} for r in timed)
    # every loser says why it lost
    for cid, why in report["selection"]["losers"].items():
        assert why, cid


def test_tiny_run_profiles_the_workloads_where_a_target_against_the_peers_was_missed(tiny_run):
    d, root = tiny_run
    missed = {t["workload"] for t in d["targets"] if t["passed"] is False and "peer" in t["target"]}
    assert {e["workload"] for e in d["profiles"]} == missed
    md = (root / "rep" / "selection.md").read_text()
    assert ("## Where the time goes" in md) == bool(missed)
    for e in d["profiles"]:
        ids = [p["id"] for p in e["targets"]]
        assert ids[0] == d["winner"] and d["selection"]["best_peer"][e["workload"]]["id"] in ids
        for p in e["targets"]:
            assert "error" in p or (p["node_us"] > 0 and p["wall_us"] > 0), p


# ------------------------------------------------------------------ bad input: exit 2, nothing written


def cli(*args):
    from distilbert_deploy.cli import main

    return main(["optimize", *map(str, args)])


def test_source_that_is_not_an_fp32_export(tiny_run, tmp_path, capsys):
    _, root = tiny_run
    # a recipe's output (here ORT's fused fp32, method optimize) is never a source
    cands = list((root / "cache" / "optimize").glob("*/onnxruntime-optimize-*"))
    assert cands
    assert cli(cands[0], "--out", tmp_path / "o2") == 2
    err = capsys.readouterr().err
    assert "not a plain fp32 export" in err and "Fix:" in err
    assert not (tmp_path / "o2").exists()


def test_unknown_workload_exits_2(tiny_artifacts, tmp_path, capsys):
    src = tiny_artifacts["text-classification", "onnxruntime"]
    assert cli(src, "--out", tmp_path / "o", "--workload", "tweets-bs0") == 2
    assert "unknown workload" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert cli(src, "--out", tmp_path / "o", "--workload", f"file:{tmp_path / 'missing.txt'}") == 2
    assert "no file" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_impossible_budget_exits_2(tiny_artifacts, tmp_path, capsys):
    src = tiny_artifacts["text-classification", "onnxruntime"]
    assert cli(src, "--out", tmp_path / "o", "--budget-s", "5") == 2
    err = capsys.readouterr().err
    assert "cannot fit" in err and "Fix: --budget-s" in err and not (tmp_path / "o").exists()
    assert cli(src, "--out", tmp_path / "o", "--budget-s", "0") == 2


def test_no_passing_candidate_exits_2_and_writes_nothing(tiny_artifacts, tmp_path, monkeypatch, capsys):
    import benchmarks.optimize.run as run

    monkeypatch.setenv("DISTILBERT_DEPLOY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(run, "enumerate_candidates",
                        lambda cpu, task, backends=(): [c for c in crashing(cpu, task, backends)
                                                        if c.id != "onnxruntime-optimize"])
    monkeypatch.setattr(run, "judge", lambda paths, corpus, log: {cid: (False, "failed by the test") for cid in paths})
    src = tiny_artifacts["text-classification", "onnxruntime"]
    assert cli(src, "--out", tmp_path / "o", "--cls-top", "0", "--peer", "none", "--baseline", "none") == 2
    err = capsys.readouterr().err
    assert "no candidate passed parity" in err and "onnxruntime-static-broken: crashed" in err
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o*"))


# ------------------------------------------------------------------ static-shape variants (OpenVINO bucket padding)


def test_static_variants_only_for_openvino():
    from benchmarks.optimize.candidates import BUCKETS, cls_variant, enumerate_candidates, static_variant

    cands = {c.id: c for c in enumerate_candidates(synthetic_cpu(*AMX), "text-classification")}
    v = static_variant(cands["openvino-bf16"])
    assert v.id == "openvino-bf16-static" and v.static
    assert (v.unstatic.id, v.unstatic.command, v.unstatic.static) == ("openvino-bf16", cands["openvino-bf16"].command, False)
    assert v.to_dict()["static_buckets"] == list(BUCKETS)
    assert static_variant(cands["onnxruntime-fp32"]) is None and static_variant(v) is None
    both = cls_variant(v, "text-classification")
    assert both.id == "openvino-bf16-cls-static" and both.cls_pruned and both.static


@pytest.mark.parametrize("task", ["token-classification", "text-classification", "multiple-choice"])
def test_bucket_padding_gives_the_dynamic_models_answers(task, tiny_openvino, tmp_path):
    """A static variant pads each feed to the next bucket and cuts sequence-axis outputs back: same outputs as the
    dynamic IR, shapes included, on lengths inside and on a bucket edge, and a shorter row after a longer one in
    the same bucket (every feed is written into the model's own input tensors: nothing of the longer row may stay)."""
    import numpy as np

    from benchmarks.optimize.build import derive_static
    from runtimes.base import RuntimeOptions
    from runtimes.registry import open_runtime

    src = tiny_openvino(task)
    derive_static(src, tmp_path / "static")
    dyn, st = open_runtime(src, RuntimeOptions()), open_runtime(tmp_path / "static", RuntimeOptions())
    dyn.load(), st.load()
    try:
        assert st.describe()["static_shapes"] is True and st.describe()["sequence_buckets"][0] == 16
        rng = np.random.default_rng(0)
        for batch in (1, 3, 2):  # a batch model's input tensors shrink too
            for length in (5, 16, 21, 18):
                shape = (batch, 2, length) if task == "multiple-choice" else (batch, length)
                ids = rng.integers(1000, 30000, size=shape).astype(np.int64)
                mask = np.ones_like(ids)
                mask[0, ..., length - 2:] = 0  # a padded row too
                feed = {"input_ids": ids, "attention_mask": mask}
                a, b = dyn.infer(feed), st.infer(feed)
                for k in a:
                    assert a[k].shape == b[k].shape, (k, length)
                    np.testing.assert_allclose(a[k], b[k], atol=1e-4, rtol=1e-4)
        # batches of 2 and 3 share one model per bucket (batch axis dynamic); batch 1 has its own static ones
        batch_models = [k for k in st.compiled_by_shape if k is not None and k[0][0] == -1]
        assert sorted(k[0][-1] for k in batch_models) == [16, 24]
    finally:
        dyn.close(), st.close()


def test_a_served_static_artifact_warms_its_own_buckets(tiny_openvino, tmp_path):
    """The service's warm-up compiles the artifact's bucket models (batch 1 and a batch model each), not a fixed
    length list that would miss 24, 40, 48 and 56 and leave their compiles to the first requests."""
    from benchmarks.optimize.build import derive_static
    from runtimes.serving.config import ServeConfig
    from runtimes.serving.model import ServedModel

    derive_static(tiny_openvino("text-classification"), tmp_path / "static")
    served = ServedModel("m", tmp_path / "static", ServeConfig(artifacts=(tmp_path / "static",), allow_unjudged=True,
                                                               max_batch_size=4))
    served.load()
    try:
        rt = served.runtimes[0]
        buckets = [b for b in rt.buckets if b <= served.max_length]
        warmed = {(k[0][0], k[0][-1]) for k in rt.compiled_by_shape if k is not None}
        assert {(1, b) for b in buckets} | {(-1, b) for b in buckets} <= warmed
        assert {24, 40, 48, 56} <= set(buckets)
    finally:
        served.close()


# ------------------------------------------------------------------ the recipe book (ORT accuracy searches)


def test_booked_recipe_is_replayed_and_a_miss_searches_again(tiny_artifacts, tmp_path, monkeypatch):
    """A booked fp32-node list goes to the build as --keep-fp32; when that build fails (the bound missed), the
    plain command (the search) runs next and its result is booked on this machine."""
    import benchmarks.optimize.build as build
    from benchmarks.optimize.candidates import Candidate

    src = tiny_artifacts["text-classification", "onnxruntime"]
    c = Candidate("onnxruntime-dynamic-avx2", "onnxruntime", "int8",
                  ("quantize", "--backend", "onnxruntime", "--method", "dynamic", "--target", "avx2"))
    key = build.book_key(src, c)
    monkeypatch.setattr(build, "SHIPPED_BOOK", tmp_path / "shipped.json")
    (tmp_path / "shipped.json").write_text(json.dumps({key: ["/distilbert/transformer/layer.0/ffn/lin2/MatMul"]}))
    calls, remembered = [], []

    def fake_run(argv, out, env=None):
        calls.append(argv)
        if "--keep-fp32" in argv:
            return False, "error: INT8 with the named nodes fp32 misses the bound (exit 2)", "", 1.0
        (out / "manifest.json").parent.mkdir(parents=True, exist_ok=True)
        return True, "", "", 2.0

    monkeypatch.setattr(build, "run_build", fake_run)
    monkeypatch.setattr(build, "reusable", lambda path: False)
    monkeypatch.setattr(build, "remember", lambda root, k, out: remembered.append(k))
    b = build.build_one(c, src, tmp_path / "cache", "0" * 64)
    assert [("--keep-fp32" in a) for a in calls] == [True, False]
    assert calls[0][calls[0].index("--keep-fp32") + 1] == "/distilbert/transformer/layer.0/ffn/lin2/MatMul"
    assert b.status == "built" and b.seconds == 3.0 and "booked recipe missed" in b.reason
    assert remembered == [key]


def test_book_round_trip(tmp_path, tiny_artifacts):
    from benchmarks.optimize.build import read_book, remember
    from runtimes.artifact import update_manifest

    art = tmp_path / "art"
    import shutil

    shutil.copytree(tiny_artifacts["text-classification", "onnxruntime"], art)
    update_manifest(art, recipe={"accuracy_control": {"kept_fp32": ["a", "b"]}})
    remember(tmp_path, "k/text-classification/x", art)
    assert read_book(tmp_path)["k/text-classification/x"] == ["a", "b"]


# ------------------------------------------------------------------ the selection report: typed and versioned

def _committed_selections():
    from pathlib import Path

    docs = Path(__file__).parents[1] / "docs"
    return [docs / "demo" / "selection.json", *sorted((docs / "optimize").glob("*.json"))]


def _within(small, big, at="") -> None:
    """Every key and value of `small` is in `big` (an upgrade only adds keys)."""
    if isinstance(small, dict):
        assert isinstance(big, dict), at
        for k, v in small.items():
            assert k in big, f"{at}.{k}"
            _within(v, big[k], f"{at}.{k}")
    elif isinstance(small, list):
        assert isinstance(big, list) and len(big) == len(small), at
        for i, (a, b) in enumerate(zip(small, big)):
            _within(a, b, f"{at}[{i}]")
    else:
        assert small == big and type(small) is type(big), at


@pytest.mark.parametrize("path", _committed_selections(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_committed_selection_reads_as_version_1_and_round_trips(path):
    from benchmarks.optimize.report import SelectionReport, read_report, upgrade_unversioned
    from benchmarks.report_io import as_dict

    doc = json.loads(path.read_text())
    assert "schema_version" not in doc  # written before the report was versioned
    up = upgrade_unversioned(doc)
    _within(doc, up)
    report = read_report(doc)
    assert isinstance(report, SelectionReport) and report.schema_version == 1
    assert as_dict(report) == up
    assert report.winner == doc["winner"] and report.winner_recipe.id == doc["winner"]
    assert len(report.candidates) == len(doc["candidates"])
    peers = [r for r in report.candidates if r.kind != "candidate"]
    assert peers and all(r.recipe is None and r.full is None and r.path is None for r in peers)


def test_an_unversioned_peer_row_reads_as_unjudged_with_no_reason():
    from benchmarks.optimize.report import read_report

    doc = json.loads(_committed_selections()[1].read_text())  # docs/optimize/amx-2.json
    base = next(r for r in doc["candidates"] if r["id"] == "torch-eager-fp32")
    assert "ci" not in base and "reason" not in base
    row = next(r for r in read_report(doc).candidates if r.id == "torch-eager-fp32")
    assert (row.kind, row.ci, row.reason, row.build_note) == ("baseline", None, "", None)
    assert row.p50 == base["p50"]


def _malformed(edit):
    from benchmarks.optimize.report import upgrade_unversioned

    d = upgrade_unversioned(json.loads(_committed_selections()[0].read_text()))
    edit(d)
    return d


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["candidates"][3].update(ci="yes"), "candidates[3].ci"),
    (lambda d: d["selection"]["best_peer"]["1x128"].update(ratio="fast"), "best_peer.1x128.ratio"),
    (lambda d: d.pop("winner_recipe"), "missing field(s) winner_recipe"),
    (lambda d: d["targets"][0].pop("limit"), "missing field(s) limit"),
    (lambda d: d["candidates"][0]["recipe"].update(static_buckets="16,32"), "recipe.static_buckets"),
    (lambda d: d.update(speedup=2.0), "unknown field(s) speedup"),
    (lambda d: d["bench"].update(workloads=["tweets-bs1"]), "bench.workloads"),
])
def test_a_malformed_selection_is_a_report_error_naming_the_field(edit, field):
    from benchmarks.optimize.report import to_markdown
    from benchmarks.report_io import ReportError
    from runtimes.errors import ConfigError

    with pytest.raises(ReportError, match="malformed selection.json") as e:
        to_markdown(_malformed(edit))
    assert field in str(e.value) and "make optimize" in str(e.value)
    assert issubclass(ReportError, ConfigError)  # the CLI's exit 2


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_a_selection_of_another_schema_version_is_a_report_error(version):
    from benchmarks.optimize.report import read_report
    from benchmarks.report_io import ReportError

    with pytest.raises(ReportError, match="schema version"):
        read_report(_malformed(lambda d: d.update(schema_version=version)))


def test_the_written_selection_is_version_1_and_reads_back_exactly(tiny_run):
    from benchmarks.optimize.report import read_report, to_markdown
    from benchmarks.report_io import as_dict

    d, root = tiny_run
    written = json.loads((root / "rep" / "selection.json").read_text())
    assert written["schema_version"] == 1 and list(written)[0] == "schema_version"
    assert as_dict(read_report(written)) == written
    assert to_markdown(written) == (root / "rep" / "selection.md").read_text()
    keys = {frozenset(r) for r in written["candidates"]}
    assert len(keys) == 1  # every row has every field: peers and baselines too
    assert {r["id"] for r in written["candidates"]} == {r["id"] for r in d["candidates"]}
