"""Start, readiness and drain. The models are checked before the port is bound (a bad or failed-parity artifact
stops the start with a clear error); they load and warm up in the background while /v2/health/live answers, and
/v2/health/ready turns 200 only when every one is warm. On SIGTERM or SIGINT readiness turns false, new requests
get 503, every accepted request is answered, then the process exits 0 (1 if the drain timed out)."""
from __future__ import annotations

import logging
import signal
import socket
import threading
import time

import uvicorn

from runtimes.errors import ConfigError

from .app import create_app
from .config import ServeConfig
from .dataplane import DataPlane
from .model import api_key, load_models

log = logging.getLogger("distilbert_deploy.serve")


class DrainingServer(uvicorn.Server):
    """uvicorn, with a drain in front of its shutdown and no re-raised signal (so a drained exit is 0)."""

    def __init__(self, config: uvicorn.Config, state: DataPlane, drain_timeout_s: float):
        super().__init__(config)
        self.state, self.drain_timeout_s = state, drain_timeout_s
        self.drain_deadline: float | None = None
        self.drain_timed_out = False
        self.grpc = None  # grpc.aio.Server on the same loop, when --grpc-port is given

    async def startup(self, sockets=None) -> None:
        cfg = self.state.cfg
        if cfg.grpc_port is not None:  # before HTTP, so a taken gRPC port stops the start
            from .grpc_oip import start_server

            self.grpc = await start_server(self.state, cfg.host, cfg.grpc_port)
        await super().startup(sockets)

    async def shutdown(self, sockets=None) -> None:
        await super().shutdown(sockets)
        if self.grpc is not None:  # the drain already waited for every admitted request, gRPC ones too
            await self.grpc.stop(grace=1.0)

    def handle_exit(self, sig: int, frame) -> None:
        if self.state.draining:  # a second signal: stop now
            self.force_exit = self.should_exit = True
            return
        log.warning("%s: draining (%d request(s) in flight, up to %.0f s)", signal.Signals(sig).name,
                    self.state.inflight, self.drain_timeout_s)
        self.state.draining = True
        self.drain_deadline = time.monotonic() + self.drain_timeout_s

    async def on_tick(self, counter: int) -> bool:
        if self.state.draining and not self.should_exit:
            if self.state.inflight == 0:
                return True
            if time.monotonic() > self.drain_deadline:
                self.drain_timed_out = True
                log.error("drain timed out with %d request(s) unanswered", self.state.inflight)
                return True
        return await super().on_tick(counter)


def check_port_free(host: str, port: int, flag: str) -> None:
    """A port another process listens on is an error before any model is loaded or warmed (the bind itself comes
    later, on the loop, and still fails clearly if the port was taken meanwhile)."""
    if not port:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and grpc bind
        try:
            s.bind((host, port))
        except OSError as e:
            raise ConfigError(f"{flag} {port}: cannot listen on {host}:{port} ({e.strerror}; is the port in use?). "
                              f"Fix: give a free port, or stop what holds it") from None


def serve(cfg: ServeConfig) -> int:
    """Run the service until drained. Returns the exit code."""
    models = load_models(cfg)  # manifests, checksums, parity verdicts: before any port is bound
    key = api_key(cfg)
    check_port_free(cfg.host, cfg.port, "--port")
    if cfg.grpc_port is not None:
        check_port_free(cfg.host, cfg.grpc_port, "--grpc-port")
    state = DataPlane(cfg, models, api_key=key)
    app = create_app(state)
    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=max(1, int(cfg.drain_timeout_s)), lifespan="off")
    server = DrainingServer(config, state, cfg.drain_timeout_s)

    def load() -> None:
        try:
            for name, model in models.items():
                started = time.monotonic()
                model.load(state.metrics.observer(name))
                log.info("model '%s' ready: %s %s %s, %d instance(s), warmed in %.1f s (%s)", name,
                         model.manifest.task, model.manifest.backend, model.manifest.precision,
                         cfg.instances, time.monotonic() - started, model.judged)
            while not server.started and not server.should_exit:
                time.sleep(0.05)
            grpc = f", grpc: {cfg.host}:{cfg.grpc_port}" if cfg.grpc_port is not None else ""
            log.info("ready: http://%s:%d%s (%s)", cfg.host, cfg.port, grpc, ", ".join(models))
        except BaseException as e:  # noqa: BLE001 - reported by serve() after the server stops
            state.load_error = e
            server.should_exit = True

    loader = threading.Thread(target=load, name="model-loader", daemon=True)
    loader.start()
    try:
        server.run()
    finally:
        loader.join(timeout=5)
        for model in models.values():
            model.close()
        state.close()
    if state.load_error is not None:
        raise state.load_error
    return 1 if server.drain_timed_out else 0
