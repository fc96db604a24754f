"""The report I/O every benchmark report shares. A report is a frozen dataclass with three class constants (FILE,
MADE_BY, SCHEMA_VERSION); `load`/`parse` check the header and build it field by field from its type hints, so a
file of another version, with a missing, unknown or mistyped field, is a ReportError that names the command to
re-run. Writes are atomic (temp file, then rename), the Markdown rendered before anything is written."""
from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from pathlib import Path

from runtimes.artifact import write_file_atomic
from runtimes.errors import ConfigError


class ReportError(ConfigError):
    """A report file that cannot be read: missing, not JSON, another schema version, or malformed."""


def read_json(path: str | os.PathLike, made_by: str, writes: str):
    """A report file's parsed JSON; a missing or unreadable file is a ReportError that names the command."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"report '{path}' does not exist. Fix: run `{made_by}` (writes {writes}) "
                          f"or pass the path of one")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"report '{path}' is not valid JSON ({e}). It may be truncated. Fix: re-run "
                          f"`{made_by}`") from None


def check_header(d, where: str, version: int, name: str, made_by: str) -> None:
    """A report dict is an object of this schema version, or a ReportError says what to pass instead."""
    if not isinstance(d, dict):
        raise ReportError(f"{where}: expected a JSON object, got {type(d).__name__}. Fix: pass a "
                          f"{name} written by `{made_by}`")
    if d.get("schema_version") != version:
        raise ReportError(f"{where}: schema version {d.get('schema_version')!r} is not supported (this code reads "
                          f"version {version}). Fix: pass a {name} written by this version, or "
                          f"re-run `{made_by}`")


# --------------------------------------------------------------------------- typed reports

class _Mistyped(Exception):
    pass


_SCALARS = {str: (str,), bool: (bool,), int: (int,), float: (int, float)}


def _build(tp, value, at: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None holding an X: X's own error names the field inside it
            return _build(options[0], value, at)
        for option in options:
            try:
                return _build(option, value, at)
            except _Mistyped:
                continue
        raise _Mistyped(f"{at}: {value!r:.60} is none of {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise _Mistyped(f"{at}: expected null, got {type(value).__name__}")
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, at)
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Mistyped(f"{at}: expected a list, got {type(value).__name__}")
        item = args[0] if args else typing.Any
        built = [_build(item, v, f"{at}[{i}]") for i, v in enumerate(value)]
        return tuple(built) if (origin or tp) is tuple else built
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _Mistyped(f"{at}: expected an object, got {type(value).__name__}")
        item = args[1] if args else typing.Any
        return {k: _build(item, v, f"{at}.{k}") for k, v in value.items()}
    ok = _SCALARS.get(tp)
    if ok is None:
        raise TypeError(f"{at}: report field type {tp!r} is not supported")
    if isinstance(value, bool) and tp is not bool or not isinstance(value, ok):
        raise _Mistyped(f"{at}: expected {tp.__name__}, got {type(value).__name__} {value!r:.40}")
    return float(value) if tp is float else value


def _dataclass(cls, value, at: str):
    if not isinstance(value, dict):
        raise _Mistyped(f"{at}: expected an object, got {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise _Mistyped(f"{at}: unknown field(s) {', '.join(unknown)}")
    missing = [n for n, f in fields.items() if n not in value and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise _Mistyped(f"{at}: missing field(s) {', '.join(missing)}")
    return cls(**{n: _build(hints[n], v, f"{at}.{n}") for n, v in value.items()})


def parse(cls, d, where: str = "report"):
    """A report dataclass from its JSON document (header checked, every field typed)."""
    check_header(d, where, cls.SCHEMA_VERSION, cls.FILE, cls.MADE_BY)
    try:
        return _dataclass(cls, d, cls.__name__)
    except _Mistyped as e:
        raise ReportError(f"{where}: malformed {cls.FILE} ({e}). Fix: pass a {cls.FILE} written by "
                          f"`{cls.MADE_BY}`, or re-run it") from None


def load(cls, path: str | os.PathLike):
    return parse(cls, read_json(path, cls.MADE_BY, cls.FILE), str(path))


def as_dict(report) -> dict:
    """The report as the JSON document it is written as (lists, not tuples), schema_version first."""
    d = json.loads(json.dumps(dataclasses.asdict(report)))
    return {"schema_version": d.pop("schema_version"), **d}


# --------------------------------------------------------------------------- writing

def write_atomic(target: Path, data: bytes) -> None:
    """Temp file beside the target, then rename: a reader never sees half a report."""
    target.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(target, data)


def write_report(report, out_dir: Path, markdown, indent: int = 2) -> dict[str, Path]:
    """A typed report's FILE (JSON) and its Markdown (markdown(dict)) beside it, each written atomically."""
    d = as_dict(report)
    parse(type(report), d, type(report).FILE)  # what is written reads back
    out_dir = Path(out_dir)
    paths = {"json": out_dir / type(report).FILE, "md": out_dir / Path(type(report).FILE).with_suffix(".md")}
    md = markdown(d)
    write_atomic(paths["json"], (json.dumps(d, indent=indent, ensure_ascii=False) + "\n").encode())
    write_atomic(paths["md"], md.encode())
    return paths


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is missing (the plots are then skipped; the
    JSON and Markdown are still written)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | os.PathLike) -> None:
    """A matplotlib figure to PNG, written atomically, then closed."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(Path(path), buf.getvalue())


def write_files(d: dict, out_dir: Path, name: str, markdown, plot_to) -> dict[str, Path]:
    """A report's JSON, Markdown (markdown(d)) and PNG (plot_to(d, path) -> drawn?), each written atomically."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md", "png": out_dir / f"{name}.png"}
    md = markdown(d)  # render before writing anything: a rendering error leaves no half-written set
    write_atomic(paths["json"], (json.dumps(d, indent=1, ensure_ascii=False) + "\n").encode())
    write_atomic(paths["md"], md.encode())
    if not plot_to(d, paths["png"]):
        paths.pop("png")
    return paths
