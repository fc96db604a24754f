"""One error family. Every message says what failed, what was expected and how to fix it."""
from __future__ import annotations


class DeployError(Exception):
    """Base of every error this project raises on purpose. The CLI maps it to exit code 2."""

    exit_code = 2


class ConfigError(DeployError):
    """A request that cannot be valid: unknown task, bad option, empty input."""


class ModelSourceError(DeployError):
    """A model could not be resolved: missing path, hub offline, unreadable checkpoint."""


class ExportError(DeployError):
    """Export to ONNX failed or did not match PyTorch."""


class ArtifactError(DeployError):
    """An artifact directory is missing pieces, tampered with, or of an unknown schema."""


class ArtifactMismatch(ArtifactError):
    """An artifact does not fit this machine or this request (device, provider, profile)."""


class InputError(DeployError):
    """A feed or text given to a runtime does not match what the artifact accepts."""


class ParityError(DeployError):
    """A backend's outputs disagree with the PyTorch reference beyond tolerance."""


class BackendUnavailable(DeployError):
    """A backend, device or execution provider was asked for and cannot be had here."""

    def __init__(self, backend: str, *, missing: list[str] | None = None, hint: str = "", detail: str = ""):
        self.backend = backend
        self.missing = list(missing or [])
        self.hint = hint
        parts = [f"backend '{backend}' is unavailable"]
        if self.missing:
            parts.append(f"missing: {', '.join(self.missing)}")
        if detail:
            parts.append(detail)
        msg = "; ".join(parts)
        if hint:
            msg += f". Fix: {hint}"
        super().__init__(msg)


class QuantizationError(DeployError):
    """A quantization / optimization recipe cannot run on this input (already INT8, no calibration data)."""


def run_main(main, argv=None) -> int:
    """The one error policy of every entry point (`distilbert-deploy`, `python -m benchmarks.X`): a DeployError
    prints `error: ...` and returns its exit code (2); Ctrl-C returns 130."""
    import sys

    try:
        return main(argv) or 0
    except DeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
