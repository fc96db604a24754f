"""`make demo`: export the default text-classifier for both runtimes, answer real tweets with each, show what was
built, then `optimize` it: the fastest verified artifact for this machine, its accuracy, speed-ups and size
(demo_optimize)."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

TASKS = ("text-classification",)
BACKENDS = ("torch", "onnxruntime")
OWN_SENTENCES = ("What a fantastic day, I love this new phone!", "This update is terrible and keeps crashing.")


def run(model: str, artifacts: Path, reports: Path = Path("reports/demo"), budget_s: float | None = None) -> None:
    from exporters.onnx_export import ExportConfig, export
    from runtimes.pipeline import load_pipeline

    out = Console(width=max(Console().width, 120))
    name = model.replace("/", "--")
    paths = {}
    for task in TASKS:
        for backend in BACKENDS:
            path = artifacts / name / task / f"{backend}-fp32"
            out.rule(f"export {model} · {task} · {backend}")
            export(ExportConfig(model=model, task=task, out=path, backend=backend))
            paths[task, backend] = path
    pipes = {key: load_pipeline(path) for key, path in paths.items()}
    try:
        classify(out, {b: pipes["text-classification", b] for b in BACKENDS})
    finally:
        for p in pipes.values():
            p.runtime.close()
    built(out, paths)
    from .demo_optimize import BUDGET_S, run as fastest

    fastest(out, paths["text-classification", "onnxruntime"], reports, budget_s or BUDGET_S)


def real_tweets(per_label: int = 2):
    """The first held-out tweets of each label: never seen by the head in training."""
    from sources.tweets import LABELS, split

    heldout = split()[1]
    return [t for label in LABELS for t in [t for t in heldout if t.label == label][:per_label]]


def classify(out: Console, pipes: dict) -> None:
    rows = [(t.text, t.label) for t in real_tweets()] + [(s, "-") for s in OWN_SENTENCES]
    answers = {b: p([text for text, _ in rows]) for b, p in pipes.items()}
    table = Table("text", "true label", *(f"{b}" for b in pipes), title="text-classification on real tweets "
                  "(held-out) and two sentences of ours", title_justify="left")
    for i, (text, truth) in enumerate(rows):
        table.add_row(text[:70], truth, *(f"{answers[b][i]['label']} {answers[b][i]['score']:.3f}" for b in pipes))
    out.print(table)
    agree = all(answers["torch"][i]["label"] == answers["onnxruntime"][i]["label"] for i in range(len(rows)))
    out.print(f"labels agree between torch and onnxruntime: [bold]{agree}[/]")
    m = pipes["onnxruntime"].runtime.manifest
    if "heldout_accuracy" in m.source:
        out.print(f"head trained on tweets: held-out accuracy {m.source['heldout_accuracy']:.3f} on "
                  f"{m.source.get('heldout_size')} tweets (majority baseline {m.source.get('majority_baseline', 0):.3f})")


def built(out: Console, paths: dict) -> None:
    table = Table("task", "backend", "artifact", "MB", title="built artifacts", title_justify="left")
    for (task, backend), path in paths.items():
        size = sum(f.stat().st_size for f in path.iterdir()) / 1e6
        table.add_row(task, backend, str(path), f"{size:.1f}")
    out.print(table)
    first = paths[TASKS[0], "onnxruntime"]
    out.print(f"next: distilbert-deploy inspect {first}  |  distilbert-deploy predict {first} --text '...'")
