"""QuantizeConfig: one frozen request, shared by every backend's recipe. Validation only, no I/O."""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from functools import cached_property
from pathlib import Path

from runtimes.errors import ConfigError

# Methods per backend; a backend's recipe module may check its own further.
METHODS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("optimize", "fp16", "dynamic", "static"),
    "openvino": ("int8", "int8-accuracy"),
    "inc": ("int8", "int8-accuracy"),
}
DEFAULT_METHOD = {"onnxruntime": "dynamic", "openvino": "int8", "inc": "int8"}
CALIBRATE_METHODS = ("minmax", "entropy", "percentile")
MIN_CALIBRATION = 8
NNCF_SCHEMES = ("transformer", "defaults")


@dataclass(frozen=True)
class QuantizeConfig:
    artifact: Path
    out: Path
    backend: str = "onnxruntime"
    method: str | None = None  # None: the backend's default (DEFAULT_METHOD)
    target: str | None = "auto"  # auto (or None): picked from this CPU's flags (auto_target.choose)
    calibration_size: int = 128
    calibrate_method: str = "minmax"
    per_channel: bool = False
    max_accuracy_drop: float = 0.01  # enforced by ORT dynamic/static (ort_accuracy), OpenVINO and INC int8-accuracy
    # ORT dynamic/static: these encoder nodes stay fp32 and no search runs (a recipe a search found before, as the
    # manifest's fp32_nodes list it); the bound is still checked once
    keep_fp32: tuple[str, ...] = ()
    # openvino: "transformer" (model_type TRANSFORMER: SmoothQuant, attention MatMuls kept f32) or "defaults"
    # (nncf.quantize's own scheme); the task head stays fp32 in both
    nncf_scheme: str = "transformer"

    def __post_init__(self):
        if self.backend not in METHODS:
            raise ConfigError(f"unknown quantization backend '{self.backend}'. Expected one of: {', '.join(METHODS)}")
        if self.method is None:
            object.__setattr__(self, "method", DEFAULT_METHOD[self.backend])
        if self.method not in METHODS[self.backend]:
            raise ConfigError(f"unknown method '{self.method}' for backend {self.backend}. "
                              f"Expected one of: {', '.join(METHODS[self.backend])}")
        if self.calibrate_method not in CALIBRATE_METHODS:
            raise ConfigError(f"unknown calibrate method '{self.calibrate_method}'. "
                              f"Expected one of: {', '.join(CALIBRATE_METHODS)}")
        if not isinstance(self.calibration_size, int) or self.calibration_size < 0:
            raise ConfigError(f"calibration_size must be an integer >= 0, got {self.calibration_size!r}")
        if not 0 <= self.max_accuracy_drop <= 1:
            raise ConfigError(f"max_accuracy_drop must be in [0, 1], got {self.max_accuracy_drop}")
        if self.nncf_scheme not in NNCF_SCHEMES:
            raise ConfigError(f"unknown --nncf-scheme '{self.nncf_scheme}'. Expected one of: {', '.join(NNCF_SCHEMES)}")
        if self.nncf_scheme != "transformer" and self.backend != "openvino":
            raise ConfigError(f"--nncf-scheme is an OpenVINO (NNCF) option, not one of {self.backend}. Fix: drop it, "
                              f"or use --backend openvino")
        object.__setattr__(self, "keep_fp32", tuple(self.keep_fp32))
        if self.keep_fp32 and (self.backend, self.method) not in (("onnxruntime", "dynamic"), ("onnxruntime", "static")):
            raise ConfigError(f"--keep-fp32 names encoder nodes for the onnxruntime dynamic and static recipes, not "
                              f"{self.backend} {self.method}. Fix: drop --keep-fp32, or use --backend onnxruntime "
                              f"--method dynamic|static")
        if Path(self.out).absolute() == Path(self.artifact).absolute():
            raise ConfigError("--out must differ from the source artifact (a recipe writes a new artifact)")

    @cached_property
    def target_choice(self) -> dict:
        """{"requested", "picked", "why"}: what the manifest records as recipe.target."""
        from .auto_target import choose

        return choose(self.backend, self.method, self.target)

    @property
    def preset_name(self) -> str | None:
        return self.target_choice["picked"]


DEFAULTS = {f.name: f.default for f in fields(QuantizeConfig) if f.default is not MISSING}  # the CLI's defaults
