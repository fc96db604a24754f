"""The imports run one way: distilbert_deploy (the CLI) -> benchmarks -> quantization -> exporters -> sources -> runtimes, and
only the CLI (and runtimes/serving itself) imports runtimes/serving. Read from every module's ast, lazy imports
inside functions included, so a moved import line cannot hide from it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ORDER = ("runtimes", "sources", "exporters", "quantization", "benchmarks", "distilbert_deploy")  # bottom first
SERVING = "runtimes.serving"


def layer(module: str) -> str | None:
    if module == SERVING or module.startswith(SERVING + "."):
        return SERVING
    top = module.split(".")[0]
    return top if top in ORDER else None


def rank(name: str) -> int:
    return ORDER.index("runtimes" if name == SERVING else name)


def imported(module: str, source: str, package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, relative ones resolved against `module`."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts[:len(parts) - node.level + package]
                out.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
            else:
                out.append((node.lineno, node.module))
    return out


def violations(module: str, source: str, package: bool = False) -> list[str]:
    me = layer(module)
    bad = []
    for line, target in imported(module, source, package):
        them = layer(target)
        if me is None or them is None:
            continue
        into_serving = them == SERVING and me not in (SERVING, "distilbert_deploy")
        upward = them != SERVING and rank(them) > rank(me)
        if into_serving or upward:
            bad.append(f"{module}:{line} imports {target}")
    return bad


def modules():
    for top in ORDER:
        for path in sorted((REPO / top).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            package = parts[-1] == "__init__"
            yield ".".join(parts[:-1] if package else parts), path, package


def test_no_module_imports_up_the_layers_or_into_the_service_from_below_the_cli():
    found = [v for name, path, package in modules() for v in violations(name, path.read_text(), package)]
    assert found == []
    assert sum(1 for _ in modules()) > 100  # the scan saw the whole tree (135 modules today)


@pytest.mark.parametrize("module,line", [
    # the seven edges this test was written against (issue 25), each put back
    ("benchmarks.bench.cli", "from distilbert_deploy.cli import main"),
    ("benchmarks.serve_bench.cli", "from distilbert_deploy.cli import main as cli_main"),
    ("quantization.agreement", "from benchmarks.parity.metrics import margins"),
    ("quantization.agreement", "from benchmarks.parity.tolerances import MIN_DECISIVE"),
    ("exporters.triton_repo", "from runtimes.serving.model import text_inputs"),
    ("exporters.triton_models.tokenizer_model", "from runtimes.serving.model import TextTask"),
    ("exporters.triton_models.postprocess_model", "from runtimes.serving.model import per_input"),
    # and the other kinds: relative, plain import, lazy, the runtime core into the service
    ("runtimes.tasks.core", "from ..serving.batcher import DynamicBatcher"),
    ("runtimes.base", "import benchmarks.bench.core"),
    ("exporters.onnx_export", "def f():\n    from quantization.api import quantize\n"),
])
def test_each_forbidden_edge_is_caught(module, line):
    (hit,) = violations(module, line)
    assert hit.startswith(f"{module}:")


@pytest.mark.parametrize("module,line", [
    ("distilbert_deploy.cli", "from runtimes.serving.server import serve"),
    ("runtimes.serving.model", "from ..tasks.text_tensors import texts_of"),
    ("benchmarks.parity.comparator", "from runtimes.judging import metrics"),
    ("quantization.agreement", "from runtimes.judging.agreement import judged\nimport numpy"),
    ("runtimes.judging", "from .tolerances import Tolerance"),
])
def test_downward_and_sideways_edges_pass(module, line):
    assert violations(module, line, package=module == "runtimes.judging") == []


def test_the_cli_parser_imports_the_benchmarks_configs_only():
    """`distilbert-deploy serve` builds the whole parser: it must not pull in the bench harness's runners or loops,
    nor a quantization recipe (only the configs the flags take their choices and defaults from)."""
    import subprocess
    import sys

    code = ("import sys; from distilbert_deploy.cli import build_parser; build_parser(); "
            "print(' '.join(m for m in sys.modules if m.startswith(('benchmarks', 'quantization', 'exporters'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert {"benchmarks.bench.config", "quantization.config"} <= loaded  # the flags' choices and defaults
    assert loaded <= {"benchmarks", "benchmarks.bench", "benchmarks.bench.config", "benchmarks.bench.workloads",
                      "benchmarks.serve_bench", "benchmarks.serve_bench.config", "quantization",
                      "quantization.config"}, sorted(loaded)
