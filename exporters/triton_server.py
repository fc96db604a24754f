"""Start the real `tritonserver` that nvidia-pytriton bundles (python backend only) on a model repository, bound to
127.0.0.1, from its own venv (.venv-triton: numpy 1.26, this project installed for the python models).

Three facts make the bare binary work here: the python backend directory needs the stub built for this Python
(pytriton ships one per version and copies it in itself); the stub links the interpreter's own libpython, so
LD_LIBRARY_PATH starts with the running Python's LIBDIR; and the stub's embedded Python finds its environment from
the `python` first on PATH, so PATH starts with the venv's bin."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from runtimes.errors import BackendUnavailable
from runtimes.procs import ServerProcess, free_port, venv_dir

DEFAULT_VENV = venv_dir("triton")
FIX = "make venv-triton (nvidia-pytriton in its own venv)"


def _venv_facts(venv: Path) -> dict:
    py = venv / "bin" / "python"
    if not py.is_file():
        raise BackendUnavailable("triton", detail=f"no Triton venv at {venv}", hint=FIX)
    code = ("import json, os, sys, sysconfig, pytriton; d = os.path.dirname(pytriton.__file__); "
            "from importlib.metadata import version; "
            "print(json.dumps({'dist': os.path.join(d, 'tritonserver'), 'libs': os.path.join(os.path.dirname(d), "
            "'nvidia_pytriton.libs'), 'libdir': sysconfig.get_config_var('LIBDIR'), "
            "'version': f'{sys.version_info[0]}.{sys.version_info[1]}', 'pytriton': version('nvidia-pytriton')}))")
    p = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    if p.returncode != 0:
        raise BackendUnavailable("triton", missing=["pytriton"], detail=p.stderr.strip()[-300:], hint=FIX)
    import json

    return json.loads(p.stdout)


def backend_dir(facts: dict, root: Path) -> Path:
    """The python backend with this Python's stub, as pytriton lays it out at start."""
    python = root / "backends" / "python"
    python.mkdir(parents=True, exist_ok=True)
    dist = Path(facts["dist"])
    for f in (dist / "backends" / "python").iterdir():
        if f.is_file():
            shutil.copy2(f, python / f.name)
    shutil.copy2(dist / "python_backend_stubs" / facts["version"] / "triton_python_backend_stub", python)
    return root / "backends"


def server_command(repository: Path, workdir: Path, http: int, grpc: int,
                   venv: Path = DEFAULT_VENV) -> tuple[list[str], dict, str]:
    """(argv, environment, nvidia-pytriton version) of the bundled tritonserver on `repository`, on 127.0.0.1."""
    facts = _venv_facts(Path(venv))
    backends = backend_dir(facts, Path(workdir))
    env = {**os.environ, "PATH": f"{Path(venv) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "LD_LIBRARY_PATH": os.pathsep.join(filter(None, (facts["libdir"], facts["libs"],
                                                             os.environ.get("LD_LIBRARY_PATH"))))}
    cmd = [str(Path(facts["dist"]) / "bin" / "tritonserver"), "--model-repository", str(repository),
           "--backend-directory", str(backends), "--http-address", "127.0.0.1", "--http-port", str(http),
           "--grpc-address", "127.0.0.1", "--grpc-port", str(grpc), "--allow-metrics", "false",
           "--exit-timeout-secs", "5", "--strict-readiness", "true"]
    return cmd, env, facts["pytriton"]


@contextmanager
def tritonserver(repository: Path, workdir: Path, *, venv: Path = DEFAULT_VENV, timeout_s: float = 120,
                 log_name: str = "tritonserver.log") -> Iterator[dict]:
    """Run tritonserver on 127.0.0.1 until the block ends; yields {'http': 'host:port', 'grpc': ..., 'log': path,
    'start_s': seconds until ready}. Raises DeployError with the log's tail when it does not become ready."""
    http, grpc = free_port(), free_port()
    cmd, env, _ = server_command(repository, workdir, http, grpc, venv)
    server = ServerProcess(cmd, Path(workdir) / log_name, f"http://127.0.0.1:{http}/v2/health/ready",
                           name="tritonserver", env=env, cwd=workdir, ready_timeout_s=timeout_s, stop_timeout_s=30)
    with server:
        yield {"http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}", "log": server.log_path,
               "pid": server.proc.pid, "start_s": round(server.ready_s, 2)}


if __name__ == "__main__":  # python -m exporters.triton_server REPO: serve until Ctrl-C
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, tritonserver(Path(sys.argv[1]).absolute(), Path(tmp)) as server:
        print(f"tritonserver ready in {server['start_s']} s: HTTP {server['http']}, gRPC {server['grpc']}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
