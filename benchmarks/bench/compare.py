"""`compare OLD.json NEW.json`: match results by (scenario, workload, target) and flag the ones whose samples
say NEW is slower beyond the noise both runs measured (Mann-Whitney + bootstrap interval of the median
ratio; see stats.judge_change). No fixed percentage. Reports from different CPUs (model or ISA flags,
runtimes.hardware.same_cpu) are shown side by side but never judged: another CPU is not a regression."""
from __future__ import annotations

from dataclasses import dataclass, replace

from runtimes.hardware import isa_text, same_cpu

from .report import BenchReport
from .stats import Change, judge_change

MIN_SAMPLES = 5  # fewer samples than this on either side: reported, not judged
NOT_JUDGED = "not judged: different CPUs"


@dataclass(frozen=True)
class Row:
    scenario: str
    workload: str
    target: str
    old_p50_ms: float
    new_p50_ms: float
    change: Change | None  # None: too few samples to judge; verdict NOT_JUDGED (...) when the CPUs differ

    @property
    def verdict(self) -> str:
        return self.change.verdict if self.change else "too few samples"


def _cpu(c: dict) -> str:
    return f"{c.get('model')} (ISA: {isa_text(c)}; {c.get('logical_cpus')} CPUs)"


def compare(old: BenchReport, new: BenchReport, *, alpha: float = 0.01) -> tuple[list[Row], list[str]]:
    """(rows, warnings). Warnings name what makes the runs hard to compare (another CPU, load). When the CPUs
    differ every row keeps its figures but its verdict is NOT_JUDGED (...): no regression, no improvement."""
    oc, nc = old.environment.get("cpu") or {}, new.environment.get("cpu") or {}
    same, why = same_cpu(oc, nc)
    olds = {(r.scenario, r.workload, r.target): r for r in old.results}
    rows = []
    for r in new.results:
        o = olds.get((r.scenario, r.workload, r.target))
        if o is None:
            continue
        judged = len(o.samples_ns) >= MIN_SAMPLES and len(r.samples_ns) >= MIN_SAMPLES
        change = judge_change(r.samples_ns, o.samples_ns, alpha=alpha) if judged else None
        if change and not same:
            change = replace(change, verdict=f"{NOT_JUDGED} ({why})")
        rows.append(Row(r.scenario, r.workload, r.target, o.stats.p50_ms, r.stats.p50_ms, change))
    warnings = []
    if not same:
        warnings.append(f"{NOT_JUDGED}, so no difference is called a regression or an improvement ({why}): "
                        f"old {_cpu(oc)}, new {_cpu(nc)}")
    elif oc.get("logical_cpus") != nc.get("logical_cpus"):
        warnings.append(f"same CPU type, different CPU counts: {oc.get('logical_cpus')} vs {nc.get('logical_cpus')}")
    if old.environment.get("libraries") != new.environment.get("libraries"):
        diff = {k: (old.environment["libraries"].get(k), v) for k, v in new.environment.get("libraries", {}).items()
                if old.environment.get("libraries", {}).get(k) != v}
        warnings.append("library versions differ: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in diff.items()))
    if old.config.get("quick") or new.config.get("quick"):
        warnings.append("a QUICK report is a smoke test: too few samples to judge much")
    if not rows:
        warnings.append("the reports share no (scenario, workload, target): nothing to compare")
    return rows, warnings


def to_markdown(rows: list[Row], warnings: list[str], old_name: str, new_name: str) -> str:
    reg = [r for r in rows if r.verdict == "regression"]
    L = [f"# Compare `{old_name}` -> `{new_name}`", ""]
    other = next((w for w in warnings if w.startswith(NOT_JUDGED)), None)
    if other:
        L += [f"**{other[:1].upper() + other[1:]}.** The rows are shown side by side only.", ""]
    else:
        L += [f"{len(reg)} regression(s) among {len(rows)} matched results."]
    L += ["A regression: one-sided Mann-Whitney p < 0.01 that NEW is slower AND the 99% bootstrap interval of "
          "median(new)/median(old) wholly above 1, on the same CPU model and ISA flags.", ""]
    L += [f"- warning: {w}" for w in warnings if w is not other]
    L += ["", "| scenario | workload | target | old p50 ms | new p50 ms | new/old | 99% interval | p (slower) | verdict |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r.change
        if c is None:
            L.append(f"| {r.scenario} | {r.workload} | `{r.target}` | {r.old_p50_ms:.3f} | {r.new_p50_ms:.3f} | "
                     f"{r.new_p50_ms / r.old_p50_ms:.3f} | – | – | too few samples |")
            continue
        v = {"regression": "**REGRESSION**", "improvement": "improvement", "same": "within noise"}.get(c.verdict,
                                                                                                    c.verdict)
        L.append(f"| {r.scenario} | {r.workload} | `{r.target}` | {r.old_p50_ms:.3f} | {r.new_p50_ms:.3f} | "
                 f"{c.ratio:.3f} | {c.ci_low:.3f}–{c.ci_high:.3f} | {c.p_slower:.2g} | {v} |")
    return "\n".join(L) + "\n"
