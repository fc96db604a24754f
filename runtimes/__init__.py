"""Bottom layer: artifacts, the Runtime interface, the backend registry and the task layer.
Importing this package pulls in neither torch nor tensorrt."""
from .errors import (ArtifactError, ArtifactMismatch, BackendUnavailable, ConfigError, DeployError,
                     ExportError, InputError, ModelSourceError, ParityError)
from .heads import HEADS, TASKS, HeadSpec, TensorSpec, get_head

__all__ = [
    "ArtifactError", "ArtifactMismatch", "BackendUnavailable", "ConfigError", "DeployError", "ExportError",
    "InputError", "ModelSourceError", "ParityError", "HEADS", "TASKS", "HeadSpec", "TensorSpec", "get_head",
]
