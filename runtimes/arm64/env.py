"""The emulated aarch64 environment that `make arm64-env` builds: where it is, what it holds, how to run in it."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackendUnavailable

PLATFORM = "linux-aarch64"
ENV_VAR = "DISTILBERT_DEPLOY_ARM64_ENV"
DEFAULT_ENV = Path(__file__).resolve().parents[2] / ".arm64-env"  # the Makefile's link into the build cache
# neoverse-n1 (Graviton2, Ampere Altra: NEON + dot product, no SVE); QEMU's default 'max' is ~20x slower for fp32
DEFAULT_QEMU_CPU = "neoverse-n1"
HINT = ("make arm64-env (no root needed: a Debian trixie arm64 root filesystem unpacked from its .debs, the aarch64 "
        "onnxruntime wheel and qemu-aarch64-static, all in one directory; or set DISTILBERT_DEPLOY_ARM64_ENV to one "
        "built elsewhere)")


@dataclass(frozen=True)
class Arm64Env:
    path: Path
    facts: dict  # env.json: recipe, qemu version, the emulated python's machine / python / onnxruntime
    qemu: str
    qemu_cpu: str

    @property
    def root(self) -> Path:
        return self.path / self.facts.get("root", "root")

    @property
    def platform(self) -> str:
        """What reports and manifests record next to the host verdict."""
        return f"{PLATFORM} (emulated, QEMU_CPU={self.qemu_cpu})"

    def python(self, *args: str) -> tuple[list[str], dict]:
        """argv and environment that run the emulated python3 with the aarch64 wheels on sys.path."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QEMU_"))}
        env["QEMU_CPU"] = self.qemu_cpu
        return [self.qemu, "-L", str(self.root), str(self.root / "usr/bin/python3"), "-I", *args], env

    def describe(self) -> dict:
        arm = self.facts.get("arm", {})
        return {"platform": self.platform, "qemu": self.facts.get("qemu"), "qemu_cpu": self.qemu_cpu,
                "onnxruntime": arm.get("onnxruntime"), "python": arm.get("python"), "recipe": self.facts.get("recipe"),
                "note": "emulated: answers are the aarch64 kernels', times are not ARM speeds"}


def locate() -> Arm64Env:
    """The environment, or BackendUnavailable saying what is missing and how to build it."""
    where = os.environ.get(ENV_VAR)
    path = Path(where) if where else DEFAULT_ENV
    origin = f"${ENV_VAR}={where}" if where else f"{DEFAULT_ENV} (no ${ENV_VAR} set)"
    facts_file = path / "env.json"
    if not facts_file.is_file():
        raise BackendUnavailable(f"onnxruntime on {PLATFORM}", missing=["the emulated aarch64 environment"],
                                 hint=HINT, detail=f"looked for {facts_file} from {origin}")
    facts = json.loads(facts_file.read_text())
    qemu = _qemu(path, facts)
    if qemu is None:
        raise BackendUnavailable(f"onnxruntime on {PLATFORM}", missing=["qemu-aarch64-static"], hint=HINT,
                                 detail=f"the environment at {path} has no QEMU of its own (env.json 'qemu_bin') "
                                        f"and none is on PATH")
    env = Arm64Env(path.resolve(), facts, qemu, os.environ.get("QEMU_CPU") or DEFAULT_QEMU_CPU)
    python = env.root / "usr/bin/python3"
    if not python.exists():
        raise BackendUnavailable(f"onnxruntime on {PLATFORM}", missing=[str(python)], hint=HINT,
                                 detail=f"the environment at {path} is incomplete")
    return env


def _qemu(path: Path, facts: dict) -> str | None:
    """The environment's own qemu-aarch64-static (env.json 'qemu_bin', relative to the environment: what recipes
    from v2 on ship), else one on PATH (environments built by the v1 recipe, with qemu-user-static installed)."""
    own = facts.get("qemu_bin")
    if own and os.access(path / own, os.X_OK):
        return str((path / own).resolve())
    return shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
