"""The console script: success paths and every bad-input case (exit 2, nothing half-written)."""
import json
import shutil

import pytest

from distilbert_deploy.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_prints_fusions_and_validation(tmp_path, capsys):
    code, out, _ = run(capsys, "export", "--model", "tiny", "--task", "fill-mask", "--out", tmp_path / "fm")
    assert code == 0
    assert "Attention x2" in out and "max abs diff" in out
    assert (tmp_path / "fm" / "manifest.json").is_file()


def test_predict_text_classification(tiny_artifacts, capsys):
    code, out, _ = run(capsys, "predict", tiny_artifacts["text-classification", "onnxruntime"],
                       "--text", "I love this phone", "--text", "worst service ever")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["input"] for r in rows] == ["I love this phone", "worst service ever"]
    assert all(r["output"][0]["label"] in ("negative", "neutral", "positive") for r in rows)


def test_predict_qa_and_multiple_choice(tiny_artifacts, capsys):
    code, out, _ = run(capsys, "predict", tiny_artifacts["question-answering", "torch"],
                       "--question", "Who wrote it?", "--context", "The book was written by Jane Austen in 1813.")
    assert code == 0 and set(json.loads(out)["output"]) == {"score", "start", "end", "answer"}
    code, out, _ = run(capsys, "predict", tiny_artifacts["multiple-choice", "onnxruntime"],
                       "--prompt", "She opened the door and", "--choice", "walked in.", "--choice", "ate the sky.")
    ans = json.loads(out)["output"]
    assert code == 0 and ans["choice"] in (0, 1) and abs(sum(ans["scores"]) - 1) < 1e-5


def test_inspect_is_readable(tiny_artifacts, capsys):
    code, out, _ = run(capsys, "inspect", tiny_artifacts["question-answering", "onnxruntime"])
    assert code == 0
    for text in ("question-answering", "onnxruntime / fp32", "start_logits", "model.onnx", "Attention=2"):
        assert text in out
    code, out, _ = run(capsys, "inspect", "--json", tiny_artifacts["question-answering", "onnxruntime"])
    assert json.loads(out)["task"] == "question-answering"


def test_unknown_task(tmp_path, capsys):
    code, _, err = run(capsys, "export", "--model", "tiny", "--task", "summarization", "--out", tmp_path / "x")
    assert code == 2 and "unknown task 'summarization'" in err and "text-classification" in err
    assert list(tmp_path.iterdir()) == []


def test_model_path_that_does_not_exist(tmp_path, capsys):
    code, _, err = run(capsys, "export", "--model", tmp_path / "no-such-model", "--out", tmp_path / "x")
    assert code == 2 and "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_hub_id_while_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, _, err = run(capsys, "export", "--model", "someorg/some-distilbert", "--out", tmp_path / "x")
    assert code == 2 and "someorg/some-distilbert" in err and "local" in err
    assert not (tmp_path / "x").exists()


def test_empty_text_list(tiny_artifacts, tmp_path, capsys):
    art = tiny_artifacts["text-classification", "onnxruntime"]
    code, _, err = run(capsys, "predict", art)
    assert code == 2 and "no input given" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    code, _, err = run(capsys, "predict", art, "--file", empty)
    assert code == 2 and "no input given" in err


def test_text_longer_than_max_length(tiny_artifacts, capsys):
    art = tiny_artifacts["text-classification", "onnxruntime"]
    long_text = "word " * 700
    with pytest.warns(UserWarning, match="truncat"):
        code, out, _ = run(capsys, "predict", art, "--text", long_text)
    assert code == 0 and json.loads(out)["output"][0]["label"]
    code, _, err = run(capsys, "predict", art, "--error-on-overflow", "--text", long_text)
    assert code == 2 and "512" in err


def test_tampered_and_unknown_schema_artifacts(tiny_artifacts, tmp_path, capsys):
    art = tmp_path / "art"
    shutil.copytree(tiny_artifacts["text-classification", "onnxruntime"], art)
    with open(art / "model.onnx", "r+b") as f:
        f.truncate(2048)
    code, _, err = run(capsys, "predict", art, "--text", "hi")
    assert code == 2 and "sha256 mismatch" in err
    shutil.rmtree(art)
    shutil.copytree(tiny_artifacts["text-classification", "onnxruntime"], art)
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["schema_version"] = 2
    (art / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, "inspect", art)
    assert code == 2 and "schema version 2 is not supported" in err


def test_cuda_provider_missing_is_exit_2(tiny_artifacts, capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA")
    code, _, err = run(capsys, "predict", tiny_artifacts["text-classification", "onnxruntime"],
                       "--device", "cuda", "--text", "hi")
    assert code == 2 and "CUDAExecutionProvider" in err and "onnxruntime-gpu" in err


def test_predict_file_that_is_not_utf8(tiny_artifacts, tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"\xff\xfegood morning\n")
    code, out, err = run(capsys, "predict", tiny_artifacts["text-classification", "onnxruntime"], "--file", bad)
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"--file {bad} is not UTF-8" in err and "byte 0" in err and "iconv" in err
    fine = tmp_path / "utf8.txt"
    fine.write_text("café au lait\n\nnaïve ☕\n", encoding="utf-8")
    code, out, _ = run(capsys, "predict", tiny_artifacts["text-classification", "onnxruntime"], "--file", fine)
    assert code == 0 and [json.loads(x)["input"] for x in out.splitlines()] == ["café au lait", "naïve ☕"]


def test_predict_file_with_bad_json_lines_for_qa(tiny_artifacts, tmp_path, capsys):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"question": "Who?", "context": "Jane wrote it."}\nnot json\n')
    code, _, err = run(capsys, "predict", tiny_artifacts["question-answering", "onnxruntime"], "--file", f)
    assert code == 2 and "question-answering expects JSON lines" in err and "line 2" in err


@pytest.mark.parametrize("task,flags,wrong,owner", [
    ("feature-extraction", ["--question", "q", "--context", "c"], "--question", "question-answering"),
    ("text-classification", ["--prompt", "p", "--choice", "a"], "--prompt", "multiple-choice"),
    ("question-answering", ["--text", "t"], "--text", "feature-extraction"),
    ("token-classification", ["--text", "t", "--top-k", "2"], "--top-k", "text-classification"),
])
def test_predict_flags_for_another_task(tiny_artifacts, capsys, task, flags, wrong, owner):
    """Flags that do not fit the artifact name its task, which task the flag is for, and the flags it takes."""
    code, out, err = run(capsys, "predict", tiny_artifacts[task, "onnxruntime"], *flags)
    assert code == 2 and out == ""
    assert f"this artifact is {task}" in err and f"{wrong} is for" in err and owner in err.split(f"{wrong} is for")[1]
    takes = err.split(f"{task} takes")[1]
    assert "--file" in takes and ("--text" in takes) == (task not in ("question-answering", "multiple-choice"))


def test_make_quantize_passes_only_what_was_given_and_the_cli_defaults_come_from_quantize_config(tmp_path):
    """`make quantize` passes BACKEND, METHOD, TARGET and OUT only when given, so the defaults are QuantizeConfig's:
    openvino and inc get their int8, onnxruntime its dynamic, and the artifact lands beside the source as
    BACKEND-METHOD[-TARGET] (the names the Makefile used to build itself)."""
    import subprocess

    from distilbert_deploy.cli import build_parser
    from distilbert_deploy.quantize_cli import quantize_config

    def line(*var):
        r = subprocess.run(["make", "-n", "quantize", "MODEL=tiny", *var], capture_output=True, text=True, check=True)
        return next(x for x in r.stdout.splitlines() if "distilbert-deploy quantize" in x)

    for flag in ("--out", "--backend", "--method", "--target"):
        assert flag not in line()
    cmd = line("BACKEND=openvino", "METHOD=int8-accuracy", "TARGET=arm64", f"OUT={tmp_path}")
    assert f"--out {tmp_path} --backend openvino --method int8-accuracy --target arm64" in cmd

    src = tmp_path / "m" / "onnxruntime-fp32"

    def cfg(*args):
        return quantize_config(build_parser().parse_args(["quantize", str(src), *args]))

    assert (cfg().method, cfg().target, cfg().out) == ("dynamic", "auto", src.parent / "onnxruntime-dynamic")
    for backend in ("openvino", "inc"):
        c = cfg("--backend", backend)
        assert (c.method, c.out) == ("int8", src.parent / f"{backend}-int8")
    assert cfg("--target", "arm64").out == src.parent / "onnxruntime-dynamic-arm64"
    assert cfg("--backend", "openvino", "--method", "int8-accuracy").out == src.parent / "openvino-int8-accuracy"
    assert cfg("--out", str(tmp_path / "x")).out == tmp_path / "x"
