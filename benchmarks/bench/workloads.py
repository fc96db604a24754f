"""What one call feeds a backend. A workload is plain data (JSON-able), so the in-process and the subprocess
launchers build byte-identical feeds from it. numpy only."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

CLS, SEP, PAD = 101, 102, 0  # bert-base-uncased ids (every model here uses that vocabulary)
NUM_CHOICES = 2  # multiple-choice feeds: batch x 2 x sequence
MAX_POSITIONS = 512
BUCKETS = (16, 32, 64, 128, 256, 512)
PADDINGS = ("dynamic", "bucket", "fixed")


@dataclass(frozen=True)
class Workload:
    key: str  # unique in a report, e.g. "bs1xs128" or "tweets-dynamic"
    batch: int
    sequence: int  # fixed shapes: the sequence length; requests: the longest padded length
    requests: tuple[tuple[tuple[int, ...], ...], ...] = ()  # real text: per request, per row, the token ids
    padding: str = "fixed"  # requests: dynamic (to the request's longest row), bucket, fixed (to `sequence`)
    label: str = ""
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["requests"] = [[list(r) for r in req] for req in self.requests]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Workload":
        return cls(**{**d, "requests": tuple(tuple(tuple(r) for r in req) for req in d.get("requests", ()))})

    def padded_length(self, req) -> int:
        longest = max(len(r) for r in req)
        if self.padding == "dynamic":
            return longest
        if self.padding == "bucket":
            return next(b for b in BUCKETS if b >= longest)
        return self.sequence

    @property
    def calls(self) -> int:
        """Feeds per pass (1 for a fixed shape)."""
        return max(1, len(self.requests))

    def sequences_per_call(self) -> float:
        return float(np.mean([len(r) for r in self.requests])) if self.requests else float(self.batch)

    def tokens_per_call(self) -> float:
        """Real (non-padding) tokens per call, averaged over a pass."""
        if self.requests:
            return float(np.mean([sum(len(r) for r in req) for req in self.requests]))
        return float(self.batch * self.sequence)

    def padded_tokens_per_call(self) -> float:
        if self.requests:
            return float(np.mean([len(req) * self.padded_length(req) for req in self.requests]))
        return float(self.batch * self.sequence)

    def max_shape(self) -> tuple[int, int]:
        """(batch, sequence) of the largest feed."""
        if self.requests:
            return max(len(r) for r in self.requests), max(self.padded_length(r) for r in self.requests)
        return self.batch, self.sequence


def fixed(batch: int, sequence: int, key: str | None = None) -> Workload:
    return Workload(key or f"bs{batch}xs{sequence}", batch, sequence)


def build_feeds(w: Workload, input_dims: dict[str, tuple]) -> list[dict[str, np.ndarray]]:
    """One feed per call of a pass. input_dims: input name -> dims (names such as 'batch', 'sequence',
    'num_choices'), from the artifact manifest. Fixed shapes: seeded random ids between [CLS] and [SEP],
    attention mask all ones (every token real)."""
    if not w.requests:
        rng = np.random.default_rng(0)
        ids = rng.integers(1000, 30000, size=(w.batch, w.sequence), dtype=np.int64)
        ids[:, 0], ids[:, -1] = CLS, SEP
        rows = [(ids, np.ones_like(ids))]
    else:
        rows = []
        for req in w.requests:
            length = w.padded_length(req)
            ids = np.full((len(req), length), PAD, np.int64)
            mask = np.zeros_like(ids)
            for i, r in enumerate(req):
                ids[i, :len(r)], mask[i, :len(r)] = r, 1
            rows.append((ids, mask))
    feeds = []
    for ids, mask in rows:
        feed = {}
        for name, dims in input_dims.items():
            base = mask if name == "attention_mask" else ids
            if "num_choices" in dims:
                base = np.repeat(base[:, None, :], NUM_CHOICES, axis=1)
            feed[name] = np.ascontiguousarray(base)
        feeds.append(feed)
    return feeds


# The select scenario (what `distilbert-deploy optimize` times): real held-out text at batch 1 and at the service's
# batch size (`serve --max-batch-size` 16), then the two fixed shapes users quote.
SELECT_WORKLOADS = ("tweets-bs1", "tweets-bs16", "1x128", "8x128")


def parse_select(spec: str) -> tuple[str, object, int]:
    """A select workload name -> (kind, value, batch): ("tweets", None, N), ("fixed", (B, S), B) or
    ("file", path, N). No I/O; a name that is none of these is a ConfigError that lists the forms."""
    from runtimes.errors import ConfigError

    s = spec.strip()
    try:
        if s.startswith("tweets-bs"):
            n = int(s[len("tweets-bs"):])
            if n >= 1:
                return "tweets", None, n
        elif s.startswith("file:"):
            path, _, n = s[len("file:"):].rpartition("@") if "@" in s else (s[len("file:"):], "", "1")
            if path and int(n) >= 1:
                return "file", path, int(n)
        else:
            b, q = (int(x) for x in s.lower().split("x"))
            if b >= 1 and 2 <= q <= MAX_POSITIONS:
                return "fixed", (b, q), b
    except ValueError:
        pass
    raise ConfigError(f"unknown workload '{spec}'. Expected tweets-bsN (held-out tweets, N a request), BxS (a fixed "
                      f"shape, e.g. 1x128; 2 <= S <= {MAX_POSITIONS}) or file:PATH[@N] (one text per line, N a request)")
