"""question-answering against the REAL transformers 4.x pipeline (transformers 5 removed it, so test_tasks.py
checks a port of it). The oracle runs in its own venv (.venv-tf4, `make venv-tf4`: transformers 4.57) through
tests/tf4_qa_reference.py; ours is the onnxruntime artifact the project's exporter makes from the same tiny
seeded model (the `tiny` fixture of test_tasks.py), loaded with runtimes.pipeline.load_pipeline."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from runtimes.procs import venv_bin
from tiny_tasks import CONTEXT, LONG_CONTEXT, QUESTIONS, SENTENCES, same

TF4_PYTHON = venv_bin("tf4")
ORACLE = Path(__file__).parent / "tf4_qa_reference.py"
# many words split into word pieces (and an [UNK]): answers that start or end inside a word get widened
SUBWORDS = " ".join(SENTENCES[4:] + SENTENCES[:3])
CONTEXTS = (CONTEXT, LONG_CONTEXT, SUBWORDS)
KWARGS = [{}, {"top_k": 3}, {"handle_impossible_answer": True, "top_k": 2}, {"max_answer_len": 5},
          {"doc_stride": 64, "max_seq_len": 128},
          {"max_answer_len": 4, "align_to_words": False}, {"max_seq_len": 64, "doc_stride": 16, "top_k": 2}]


@pytest.fixture(scope="session")
def tf4_python():
    return TF4_PYTHON


@pytest.fixture(scope="session")
def qa_model(tf4_python, tiny, tmp_path_factory):
    """(save_pretrained dir with tokenizer, onnxruntime artifact dir) of the tiny question-answering model."""
    from exporters.onnx_export import ExportConfig, export

    model, tok = tiny["question-answering"]
    root = tmp_path_factory.mktemp("tiny-qa-tf4")
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    os.environ.setdefault("DISTILBERT_DEPLOY_QUIET", "1")
    export(ExportConfig(model=str(root / "model"), task="question-answering", out=root / "onnx",
                        backend="onnxruntime"))
    return root / "model", root / "onnx"


def oracle(python: Path, model_dir: Path, cases: list[dict]) -> list:
    request = json.dumps({"model_dir": str(model_dir), "cases": cases})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run([str(python), str(ORACLE)], input=request, capture_output=True, text=True, env=env,
                          cwd=model_dir)
    assert done.returncode == 0, f"{ORACLE.name} failed:\n{done.stderr[-4000:]}"
    reply = json.loads(done.stdout)
    assert reply["transformers"].startswith("4.57."), reply["transformers"]
    return reply["answers"]


def score_diffs(got, want):
    if isinstance(want, dict):
        return [abs(got["score"] - want["score"])]
    return [d for g, w in zip(got, want) for d in score_diffs(g, w)]


def answer_texts(want):
    return [want["answer"]] if isinstance(want, dict) else [t for w in want for t in answer_texts(w)]


@pytest.mark.tf4
@pytest.mark.slow
def test_question_answering_equals_transformers_4_pipeline(tf4_python, qa_model):
    from runtimes.pipeline import load_pipeline

    model_dir, artifact = qa_model
    ours = load_pipeline(artifact)
    tok = ours.tokenizer
    assert len(tok(QUESTIONS[0], LONG_CONTEXT)["input_ids"]) > 384  # several stride windows at the defaults
    cases = [{"question": q, "context": c, "kwargs": kw}
             for kw in KWARGS for c in CONTEXTS for q in QUESTIONS]
    cases += [{"question": QUESTIONS, "context": c, "kwargs": kw} for kw in KWARGS for c in CONTEXTS]
    want = oracle(tf4_python, model_dir, cases)
    assert len(want) == len(cases)
    diffs, texts = [], set()
    try:
        for case, w in zip(cases, want):
            got = ours(question=case["question"], context=case["context"], **case["kwargs"])
            same(got, w, f"{case['kwargs']} {case['question']!r}")
            diffs += score_diffs(got, w)
            texts |= set(answer_texts(w))
    finally:
        ours.runtime.close()
    print(f"{len(cases)} calls, {len(diffs)} answers equal to transformers 4.57's pipeline; "
          f"max score diff {max(diffs):.2e}; {len(texts)} distinct answer texts")
    assert len(texts) > 3  # the spans are not all the same answer
