"""The production service on Ray Serve: `distilbert-deploy serve --engine ray --replicas N [--autoscale MIN:MAX]`.

Each replica builds exactly what `serve` builds: it loads and verifies the artifacts (checksums, parity verdict),
warms them, and serves the same FastAPI app (create_app) through `serve.ingress`, so the endpoints, batching,
limits and errors are the service's own; Ray's HTTP proxy routes to the replicas. Ray is imported only here (its
own extra: it installs protobuf 7, which tritonclient[grpc] does not accept). More machines join a running head
with `ray start --address HEAD:6379`; `--address auto` attaches this command to that cluster."""
from __future__ import annotations

import logging
import signal
import threading
import time

from ray import serve

from ..errors import ConfigError
from .app import create_app
from .config import ServeConfig
from .dataplane import DataPlane
from .model import api_key, load_models

log = logging.getLogger("distilbert_deploy.serve")
DEPLOYMENT = "distilbert-deploy"


@serve.ingress()
class ServiceReplica:
    """One replica: the service's models and app. Ray calls __serve_build_asgi_app__ after __init__."""

    def __init__(self, cfg: ServeConfig):
        self.state = DataPlane(cfg, load_models(cfg), api_key=api_key(cfg))
        for name, model in self.state.models.items():
            model.load(self.state.metrics.observer(name))

    def __serve_build_asgi_app__(self):
        return create_app(self.state)

    def check_health(self) -> None:  # Ray restarts a replica whose check raises
        if not self.state.ready:
            raise RuntimeError("models not ready")

    def __del__(self):
        state = getattr(self, "state", None)
        for model in state.models.values() if state else ():
            model.close()


def parse_autoscale(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        lo, hi = (int(x) for x in text.split(":"))
    except ValueError:
        raise ConfigError(f"--autoscale '{text}' must be MIN:MAX replicas, e.g. 1:4") from None
    if not 0 <= lo <= hi or hi < 1:
        raise ConfigError(f"--autoscale {text}: need 0 <= MIN <= MAX and MAX >= 1")
    return lo, hi


def deployment(cfg: ServeConfig, replicas: int, autoscale: tuple[int, int] | None):
    if replicas < 1:
        raise ConfigError(f"--replicas must be >= 1; got {replicas}")
    scaling = ({"autoscaling_config": {"min_replicas": autoscale[0], "max_replicas": autoscale[1],
                                       "target_ongoing_requests": cfg.max_batch_size}}
               if autoscale else {"num_replicas": replicas})
    return serve.deployment(ServiceReplica, name=DEPLOYMENT, max_ongoing_requests=cfg.max_queue,
                            graceful_shutdown_timeout_s=cfg.drain_timeout_s,
                            health_check_period_s=2, **scaling).bind(cfg)


def run(cfg: ServeConfig, replicas: int = 1, autoscale: str | None = None, address: str | None = None) -> int:
    """Start (or join) Ray, deploy, serve until SIGTERM/SIGINT, then shut Serve and Ray down. Returns 0."""
    import ray

    app = deployment(cfg, replicas, parse_autoscale(autoscale))
    stop = threading.Event()
    t0 = time.monotonic()
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs its own (aborting) handlers
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": cfg.host, "port": cfg.port})
        serve.run(app, name=DEPLOYMENT, route_prefix="/", blocking=False)
        log.info("ready: http://%s:%d on Ray Serve (%s), started in %.1f s", cfg.host, cfg.port,
                 f"autoscale {autoscale}" if autoscale else f"{replicas} replica(s)", time.monotonic() - t0)
        print(f"ready: http://{cfg.host}:{cfg.port} (Ray Serve)", flush=True)
        while not stop.wait(0.5):
            pass
        log.warning("shutting down Ray Serve")
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
