"""The parity report: typed, versioned JSON whose truth value is pass/fail, and its Markdown view
(a pure function of the JSON, so old reports can be re-rendered)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runtimes.artifact import write_text_atomic
from runtimes.hardware import cpu_info, gpu_info, isa_text

SCHEMA_VERSION = 2  # 2: `environment`, the machine it ran on (cpu_info, gpu_info); version 1 files still read
MAX_FAILURES_SHOWN = 10  # per check, in the Markdown; the JSON keeps every one


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    limit: float | None  # None: reported, not judged
    op: str  # "<=" or ">="
    passed: bool | None  # None when not judged
    detail: str = ""


@dataclass(frozen=True)
class CaseFailure:
    case: str
    check: str
    detail: str
    repro: str  # the exact command that reproduces this case


@dataclass(frozen=True)
class TargetReport:
    artifact: str
    task: str
    backend: str
    precision: str
    device: str
    reference: str
    passed: bool
    cases: int
    seconds: float
    checks: tuple[Check, ...]
    failures: tuple[CaseFailure, ...]
    repro: str
    tolerance: dict = field(default_factory=dict)
    platform: str = ""  # where the candidate ran: "linux-x86_64", "linux-aarch64 (emulated, QEMU_CPU=...)"

    @property
    def id(self) -> str:
        return target_id(self.task, self.backend, self.precision, self.platform)

    def summary(self) -> dict:
        """What goes into the artifact's manifest."""
        return {"passed": self.passed, "cases": self.cases, "reference": self.reference, "device": self.device,
                "platform": self.platform,
                "checks": {c.name: {"value": c.value, "limit": c.limit, "passed": c.passed} for c in self.checks},
                "failures": len(self.failures)}


@dataclass(frozen=True)
class Report:
    passed: bool
    targets: tuple[TargetReport, ...]
    corpus: dict
    created: str
    command: str
    environment: dict = field(default_factory=dict)  # {"cpu": cpu_info(), "gpu": gpu_info()}; {} in version 1
    schema_version: int = SCHEMA_VERSION

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict:
        d = asdict(self)
        return {"schema_version": d.pop("schema_version"), "passed": d.pop("passed"), **d}

    @classmethod
    def from_dict(cls, d: dict) -> "Report":
        targets = tuple(TargetReport(**{**t, "checks": tuple(Check(**c) for c in t["checks"]),
                                        "failures": tuple(CaseFailure(**f) for f in t["failures"])})
                        for t in d["targets"])
        return cls(**{**d, "targets": targets, "environment": d.get("environment") or {}})


def machine() -> dict:
    """The machine a parity run ran on, as every report records it."""
    return {"cpu": cpu_info(), "gpu": gpu_info()}


def target_id(task: str, backend: str, precision: str, platform: str = "") -> str:
    """task-backend-precision, with '@platform' when the candidate ran emulated (one report may hold both)."""
    base = f"{task}-{backend}-{precision}"
    return f"{base}@{platform.split()[0]}" if "emulated" in platform else base


def fmt(x: float | None) -> str:
    if x is None:
        return "–"
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.6g}"
    return f"{x:.2e}"


def machine_line(env: dict) -> str:
    cpu, gpu = env.get("cpu"), env.get("gpu")
    if not cpu:
        return "Machine: not recorded (a version 1 report)."
    gpus = ", ".join(g.get("name", "?") for g in (gpu or {}).get("gpus", [])) or "none"
    return (f"Machine: {cpu.get('model')} ({cpu.get('logical_cpus')} logical CPUs), ISA: "
            f"{isa_text(cpu)}; GPU: {gpus}.")


def to_markdown(d: dict) -> str:
    """Markdown summary of a report dict (Report.to_dict() or the parsed parity.json)."""
    verdict = "PASSED" if d["passed"] else "FAILED"
    c = d["corpus"]
    lines = [f"# Parity: {verdict}", "",
             f"Reference: PyTorch fp32 on CPU. Corpus `{c['size']}` (version {c['version']}). "
             f"{sum(t['passed'] for t in d['targets'])}/{len(d['targets'])} targets pass. Created {d['created']}.", "",
             machine_line(d.get("environment") or {}), "",
             "| target | platform | artifact | cases | result | checks (value vs limit) |", "|---|---|---|---|---|---|"]
    for t in d["targets"]:
        checks = "; ".join(f"{'❌ ' if k['passed'] is False else ''}{k['name']} {fmt(k['value'])}"
                           + (f" {k['op']} {fmt(k['limit'])}" if k["limit"] is not None else " (reported)")
                           + (f" ({k['detail']})" if k["name"] == "accuracy_delta" else "")
                           for k in t["checks"])
        tid = target_id(t["task"], t["backend"], t["precision"], t.get("platform", ""))
        lines.append(f"| `{tid}` | {t.get('platform') or '–'} | `{t['artifact']}` | {t['cases']} | "
                     f"{'pass' if t['passed'] else '**FAIL**'} | {checks} |")
    failing = [t for t in d["targets"] if not t["passed"]]
    for t in failing:
        tid = target_id(t["task"], t["backend"], t["precision"], t.get("platform", ""))
        lines += ["", f"## FAIL `{tid}` ({t['artifact']}, {t.get('platform') or 'host'})", "",
                  f"Reproduce: `{t['repro']}`", ""]
        for k in t["checks"]:
            if k["passed"] is False:
                lines.append(f"- **{k['name']}** = {fmt(k['value'])}, limit {k['op']} {fmt(k['limit'])}"
                             + (f": {k['detail']}" if k["detail"] else ""))
        by_check: dict[str, list] = {}
        for f in t["failures"]:
            by_check.setdefault(f["check"], []).append(f)
        for name, fs in by_check.items():
            lines.append(f"- failing cases for {name} ({len(fs)}):")
            lines += [f"  - `{f['case']}`: {f['detail']}. Reproduce: `{f['repro']}`" for f in fs[:MAX_FAILURES_SHOWN]]
            if len(fs) > MAX_FAILURES_SHOWN:
                lines.append(f"  - … {len(fs) - MAX_FAILURES_SHOWN} more in parity.json")
    return "\n".join(lines) + "\n"


def write(report: Report, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d = report.to_dict()
    write_text_atomic(out / "parity.json", json.dumps(d, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(out / "parity.md", to_markdown(d))
    return out / "parity.json", out / "parity.md"
