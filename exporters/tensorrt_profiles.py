"""TensorRT optimization profiles, one per sequence-length bucket.

Each bucket covers sequences 1..its bound, so the runtime picks the tightest one that covers a shape. TensorRT
tunes kernels at a profile's opt shape; a bucket's opt sequence is the median token length of the real train
tweets that fall in it (rounded up to a multiple of 8), and its bound where none do. Batch and choices
min/opt/max come from the source manifest unless overridden. Every profile is checked against TensorRT's
constraints (1 <= min <= opt <= max, within the model) before the builder sees it."""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from runtimes.errors import ConfigError
from runtimes.heads import get_head

DEFAULT_BUCKETS = (64, 128, 512)
LENGTH_SAMPLE = 5000  # train tweets tokenized for the length distribution


@dataclass(frozen=True)
class Profile:
    name: str  # "seq<=64"
    axes: dict  # axis -> (min, opt, max), e.g. {"batch": (1, 1, 64), "sequence": (1, 24, 64)}
    opt_from: str

    def shape(self, dims: tuple[str, ...], which: int) -> tuple[int, ...]:
        return tuple(self.axes[d][which] for d in dims)

    def to_dict(self) -> dict:
        return {"name": self.name, **{k: dict(zip(("min", "opt", "max"), v)) for k, v in self.axes.items()},
                "opt_from": self.opt_from}


def tweet_lengths(tokenizer, n: int = LENGTH_SAMPLE) -> list[int]:
    """Token counts (with [CLS]/[SEP]) of the first n train tweets of the shared split."""
    from sources.tweets import split

    texts = [t.text for t in split()[0][:n]]
    return sorted(len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"])


def bucket_profiles(manifest, buckets: tuple[int, ...], lengths: list[int], *, opt_batch: int | None = None,
                    max_batch: int | None = None) -> tuple[Profile, ...]:
    head = get_head(manifest.task)
    sp = manifest.shape_profile
    batch = (sp["min"]["batch"], opt_batch or sp["opt"]["batch"], max_batch or sp["max"]["batch"])
    seq_limit = sp["max"]["sequence"]
    if not buckets or list(buckets) != sorted(set(buckets)):
        raise ConfigError(f"sequence buckets must be distinct and increasing; got {list(buckets)}. Fix: e.g. 64,128,512")
    out, lo = [], 0
    for bound in buckets:
        name = f"seq<={bound}"
        inside = lengths[bisect.bisect_right(lengths, lo):bisect.bisect_right(lengths, bound)]
        if inside:
            median = inside[len(inside) // 2]
            opt, why = min(bound, -(-median // 8) * 8), f"median {median} of {len(inside)} train tweets in ({lo}, {bound}]"
        else:
            opt, why = bound, f"no train tweet is in ({lo}, {bound}]: the bound"
        axes = {"batch": batch, "sequence": (1, opt, bound)}
        if head.multiple_choice:
            axes = {"batch": batch, "num_choices": tuple(sp[k]["num_choices"] for k in ("min", "opt", "max")),
                    "sequence": (1, opt, bound)}
        check(Profile(name, axes, why), seq_limit)
        out.append(Profile(name, axes, why))
        lo = bound
    return tuple(out)


def check(profile: Profile, seq_limit: int) -> None:
    """TensorRT's shape constraints, named by profile, before any build."""
    for axis, (lo, opt, hi) in profile.axes.items():
        if not 1 <= lo <= opt <= hi:
            raise ConfigError(f"optimization profile '{profile.name}': axis '{axis}' has min/opt/max {lo}/{opt}/{hi}; "
                              f"TensorRT needs 1 <= min <= opt <= max. Fix: --opt-batch/--max-batch or --buckets")
    if profile.axes["sequence"][2] > seq_limit:
        raise ConfigError(f"optimization profile '{profile.name}': sequence max {profile.axes['sequence'][2]} exceeds "
                          f"the model's {seq_limit} positions. Fix: --buckets with a last bound <= {seq_limit}")

