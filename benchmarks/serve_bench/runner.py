"""One run: the in-process ceiling, then per service configuration (batching on, then off) one server subprocess
started, waited for (/v2/health/ready), driven by one headless locust process per concurrency step, and stopped with
SIGTERM; then the ceiling again. The batching server, once ready and before its locust steps, also gets the paired
c=1 latency measurement (measure_paired: in-process and HTTP calls interleaved). Figures come from the raw
per-request samples the locustfile writes; locust's CSV and the server's /metrics are parsed and kept beside them."""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from runtimes.artifact import read_manifest
from runtimes.errors import ConfigError, DeployError

from . import peers
from .config import HOST, MODEL_NAME, ServeBenchConfig, ServeBenchError
from .paired import PAIRED_WHEN, measure_paired
from .parsing import PERCENTILE_METHOD, parse_locust_csv, server_delta, summarize_step
from .peers import REPO, serve_args
from .server import Server, children_cpu_s
from .report import (BATCHING, BATCHING_GRPC, NO_BATCHING, P50_SLACK_MS, Ceiling, Paired, PeerFailure,
                     ServeBenchReport, ServerRun, Step, judge, peer_targets)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


# ------------------------------------------------------------------------------------------ the load

def run_step(cfg: ServeBenchConfig, server: Server, concurrency: int, texts_path: Path, work: Path) -> Step:
    """One locust process at `concurrency` closed-loop users, bounded in time (the locustfile's timer, locust's -t,
    and a subprocess timeout) and in measured requests (cfg.max_requests)."""
    stats_csv = work / f"c{concurrency}-stats.csv"
    samples = work / f"c{concurrency}-samples.json"
    env = {**os.environ, "SERVE_BENCH_TEXTS": str(texts_path), "SERVE_BENCH_MODEL": server.model,
           "SERVE_BENCH_PROTOCOL": server.launch.protocol,
           "SERVE_BENCH_GRPC_TARGET": f"{HOST}:{server.launch.grpc_port}",
           "SERVE_BENCH_WARMUP_S": repr(cfg.warmup_s), "SERVE_BENCH_DURATION_S": repr(cfg.duration_s),
           "SERVE_BENCH_MAX_REQUESTS": str(cfg.max_requests), "SERVE_BENCH_SAMPLES": str(samples),
           "SERVE_BENCH_STATS_CSV": str(stats_csv)}
    limit = math.ceil(cfg.warmup_s + cfg.duration_s) + 10  # -t: a backstop behind the locustfile's own timer
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(concurrency),
            "-r", str(concurrency), "-t", f"{limit}s", "--stop-timeout", "0",
            "--host", server.url, "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"]
    before = server.metrics()
    cpu0, load0, wall0 = server.cpu_s(), children_cpu_s(), time.monotonic()
    log_path = work / f"c{concurrency}-locust.log"
    with open(log_path, "wb") as log:
        try:
            rc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work,
                                timeout=cfg.step_timeout_s).returncode
        except subprocess.TimeoutExpired:
            raise ServeBenchError(f"locust at concurrency {concurrency} ran past {cfg.step_timeout_s:.0f} s and was "
                                  f"killed; its log: {log_path}") from None
    wall, cpu1, load1 = time.monotonic() - wall0, server.cpu_s(), children_cpu_s()
    after = server.metrics()
    if rc != 0 or not samples.is_file():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise ServeBenchError(f"locust at concurrency {concurrency} failed (exit {rc}; samples written: "
                              f"{samples.is_file()}). Its log ({log_path}):\n{tail}")
    fig = summarize_step(json.loads(samples.read_text()), concurrency)
    delta = server_delta(before, after) if before is not None else {}
    # CPU use over the locust process's life (its start-up included), in cores: who used the shared CPUs
    delta["server_cpu_cores"] = (cpu1 - cpu0) / wall if cpu0 is not None and cpu1 is not None else None
    delta["load_generator_cpu_cores"] = (load1 - load0) / wall
    return Step(**fig, locust=parse_locust_csv(stats_csv), server=delta)


def run_config(cfg: ServeBenchConfig, label: str, max_batch_size: int, texts_path: Path, work: Path,
               log: Callable[[str], None], paired_texts: list[str] | None = None,
               peer: str | None = None, task: str = "text-classification") -> tuple[ServerRun, Paired | None]:
    """One server: started, (paired_texts given: the paired c=1 measurement first), the locust steps, SIGTERM."""
    work.mkdir(parents=True, exist_ok=True)
    paired = None
    with Server(cfg, max_batch_size, work / "server.log", peer, task) as server:
        log(f"{label}: server ready in {server.ready_s:.1f} s ({server.command})")
        if paired_texts is not None:
            paired = measure_paired(cfg, server, paired_texts, label)
            log(f"{label}: paired c=1 latency, {paired.pairs} pairs in {paired.duration_s:.1f} s: "
                + (f"service p50 {paired.service_p50_ms:.2f} ms, in-process p50 {paired.inprocess_p50_ms:.2f} ms, "
                   f"{paired.p50_diff_ms:+.2f} ms (median per-pair difference {paired.median_diff_ms:+.2f} ms)"
                   if paired.pairs else "no successful pair") + f", {paired.errors} errors")
        steps = []
        for c in cfg.concurrency:
            step = run_step(cfg, server, c, texts_path, work)
            mb = step.server.get("mean_batch_size")
            log(f"{label}: concurrency {c}: {step.throughput_rps:.1f} req/s, p50 {step.p50_ms:.2f} ms, p99 "
                f"{step.p99_ms:.2f} ms, {step.errors} errors" + (f", mean batch {mb:.2f}" if mb is not None else ""))
            steps.append(step)
        rss = server.rss_mb()
        code = server.stop()
    if code != 0:
        log(f"{label}: the server exited with {code if code is not None else 'no code (killed)'} after SIGTERM")
    return ServerRun(label, max_batch_size, server.command, server.ready_s, code, tuple(steps), server.engine,
                     rss, served=server.launch.served, note=server.launch.note,
                     listening=tuple(f"{a}:{p}" for a, p in server.sockets)), paired


def run_peer(cfg: ServeBenchConfig, peer: str, texts_path: Path, work: Path, log: Callable[[str], None],
             task: str) -> ServerRun | PeerFailure:
    """A peer's run, or why it could not be measured (a failure is a row of the report, never a missing one)."""
    try:
        return run_config(cfg, peer, cfg.batch_size, texts_path, work, log, peer=peer, task=task)[0]
    except DeployError as e:
        log(f"{peer}: FAILED: {e}")
        return PeerFailure(peer, f"{type(e).__name__}: {e}")


# ------------------------------------------------------------------------------------------ one run

def heldout_texts(n: int) -> list[str]:
    from sources.tweets import split

    heldout = split()[1]
    if n > len(heldout):
        raise ConfigError(f"texts={n} is more than the {len(heldout)} held-out tweets. Fix: --texts {len(heldout)} "
                          f"or fewer")
    return [t.text for t in heldout[:n]]


def check_artifact(cfg: ServeBenchConfig):
    m = read_manifest(cfg.artifact)  # ArtifactError with the fix when it is not an artifact
    if m.task not in peers.TASK_PEERS:
        raise ConfigError(f"the service benchmark sends one tweet per request and checks a text-classification "
                          f"answer or one embedding; '{cfg.artifact}' is a {m.task} artifact. Fix: pass a "
                          f"text-classification or feature-extraction artifact, e.g. "
                          f"artifacts/default/text-classification/onnxruntime-fp32")
    if bad := [p for p in cfg.peers if p not in peers.TASK_PEERS[m.task]]:
        raise ConfigError(f"peer(s) {', '.join(bad)} are measured on text-classification only; '{cfg.artifact}' is "
                          f"a {m.task} artifact. Fix: --peer {','.join(peers.TASK_PEERS[m.task])} or none")
    rows = int(m.shape_profile["max"]["batch"])
    if cfg.batch_size > rows:
        raise ConfigError(f"batch_size {cfg.batch_size} is over what '{cfg.artifact}' accepts ({rows} rows). Fix: "
                          f"--batch-size {rows} or less")
    return m


def _modes(c: Ceiling) -> str:
    return (", ".join(f"{k} {v:.1f}" for k, v in c.modes_texts_per_s.items()) + f" texts/s; one text p50 "
            f"{c.single_p50_ms:.2f} ms")


def run_serve_bench(cfg: ServeBenchConfig, log: Callable[[str], None] = print) -> ServeBenchReport:
    from benchmarks.bench import env as envmod

    from .ceiling import measure_ceiling

    m = check_artifact(cfg)
    import importlib.metadata
    import importlib.util

    # never imported here: locust monkey-patches threading and sockets (gevent) in the importing process
    if importlib.util.find_spec("locust") is None:
        raise ServeBenchError("the load benchmark needs locust (the `dev` extra). Fix: make venv, or pip install "
                              "'locust>=2.20'")

    texts = heldout_texts(cfg.texts)
    environment = envmod.capture(REPO)
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        work = Path(tmp)
        texts_path = work / "texts.json"
        texts_path.write_text(json.dumps(texts, ensure_ascii=False))
        cls = m.task == "text-classification"  # feature-extraction: our /v1/embeddings and the peers only
        ceilings = [measure_ceiling(cfg, texts, "before")] if cls else []
        if ceilings:
            log(f"in-process ceiling: {_modes(ceilings[0])}")
        on, paired = run_config(cfg, BATCHING, cfg.batch_size, texts_path, work / BATCHING, log,
                                paired_texts=texts if cls else None, task=m.task)
        runs = [on]
        if cls:
            runs.append(run_config(cfg, NO_BATCHING, 1, texts_path, work / NO_BATCHING, log)[0])
        paired_grpc = None
        if cls and cfg.grpc:
            grpc_run, paired_grpc = run_config(cfg, BATCHING_GRPC, cfg.batch_size, texts_path, work / BATCHING_GRPC,
                                               log, paired_texts=texts, peer=peers.OURS_GRPC)
            runs.append(grpc_run)
        measured = [run_peer(cfg, peer, texts_path, work / peer, log, m.task) for peer in cfg.peers]
        runs += [r for r in measured if isinstance(r, ServerRun)]
        failures = [r for r in measured if isinstance(r, PeerFailure)]
        if cls:
            ceilings.append(measure_ceiling(cfg, texts, "after"))
            log(f"in-process ceiling again: {_modes(ceilings[1])}")
    environment["load_average_end"] = envmod.cpu_info()["load_average_1_5_15"]
    run_dicts = [asdict(r) for r in runs]
    fails = [asdict(f) for f in failures]
    targets = judge(run_dicts, [asdict(c) for c in ceilings], cfg.max_queue, asdict(paired) if paired else None,
                    task=m.task, paired_grpc=asdict(paired_grpc) if paired_grpc else None) + peer_targets(run_dicts,
                                                                                                        fails)
    notes = [f"{r.label}: the server exited with {r.exit_code if r.exit_code is not None else 'no code (killed)'} "
             f"after SIGTERM (expected 0)" for r in runs if r.exit_code != 0]
    notes += [f"{r.label} c={s.concurrency}: the step stopped on its request budget ({cfg.max_requests}) before "
              f"its time" for r in runs for s in r.steps if s.budget_exhausted]
    notes += [f"{r.label} c={s.concurrency}: errors by kind (server): {s.server['errors']}"
              for r in runs for s in r.steps if s.server.get("errors")]
    notes += [f"{r.label} c={s.concurrency}: {s.errors} failed requests; the first: {s.error_messages[0]}"
              for r in runs for s in r.steps if s.errors and s.error_messages]
    if paired and paired.connections > 1:
        notes.append(f"paired c=1 measurement: {paired.connections} connections were opened (a failed exchange "
                     f"closes the connection; 1 means one keep-alive connection throughout)")
    threads = f"--threads {cfg.threads}" if cfg.threads else "the backend's default intra-op threads"
    cthreads = cfg.effective_ceiling_threads
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    return ServeBenchReport(
        created=created, command=cfg.command, model=str(m.source.get("id") or m.source.get("name") or "?"),
        task=m.task, artifact=str(cfg.artifact), backend=m.backend, precision=m.precision, config=config,
        method={
            "serve_command": " ".join(["distilbert-deploy", *serve_args(cfg, cfg.batch_size, 0)]).replace(
                "--port 0", "--port PORT"),
            "steps": f"concurrency {', '.join(map(str, cfg.concurrency))}, in that order, against one server per "
                     f"configuration; each step is one locust process: {cfg.warmup_s:g} s warm-up, then "
                     f"{cfg.duration_s:g} s measured, bounded at {cfg.max_requests} measured requests; {threads}, "
                     f"{cfg.instances} instance(s), --max-queue-delay-ms {cfg.queue_delay_ms:g}, --max-queue "
                     f"{cfg.max_queue} rows",
            "figures": "client side, from every request's own timing (locust's perf_counter around the whole HTTP "
                       "exchange): throughput = successful answers completed in the measured window (end of "
                       "warm-up to the last answer) / its length; p50/p90/p99 over the requests started in the "
                       f"window (numpy `{PERCENTILE_METHOD}`); errors = failed requests (HTTP status other than 200 "
                       "or not a text-classification answer / one embedding) over the whole step, warm-up included. "
                       "Each engine is driven in its own protocol (the peers table says which). The locust c=1 "
                       "step is reported like the others, but the c=1 latency target is judged on the paired "
                       "measurement below, not on it",
            "ceiling": f"in-process `runtimes.pipeline.load_pipeline(artifact, RuntimeOptions(threads="
                       f"{cthreads}), batch_size={cfg.batch_size})` on the same texts in this process, no server "
                       f"running; the best throughput of three ways of calling it (calls of {cfg.batch_size} texts in "
                       f"corpus order; one text per call; all texts in one call, which the pipeline sorts by length "
                       f"before batching), and the one-text p50; at least {cfg.ceiling_min_time_s:g} s and "
                       f"{cfg.ceiling_min_iters} calls each (one call for all texts at once), once before and once "
                       f"after the service runs; the c=64 target uses the higher throughput of the two. Its one-text "
                       f"p50 is reported for reference only: measured minutes away from the service, it is not what "
                       f"the c=1 target is judged on",
            "paired": f"the c=1 latency target's figures: while the {BATCHING} server is up ({PAIRED_WHEN}), this "
                      f"process loads the same artifact in-process (`load_pipeline(artifact, RuntimeOptions("
                      f"threads={cthreads}))`, as the ceiling) and, on the held-out texts in order, one at a time, "
                      f"alternates one in-process call `pipe(text)` and one `POST /v1/models/{MODEL_NAME}/predict` "
                      f"{{\"inputs\": text}} over one keep-alive http.client connection, on the same text, swapping "
                      f"which goes first every pair; each timed with perf_counter (the request from sending it to "
                      f"having read the answer); {cfg.paired_warmup_pairs} untimed warm-up pairs, then at most "
                      f"{cfg.paired_max_pairs} pairs or {cfg.paired_max_s:g} s; a pair whose answer is not a 200 "
                      f"text-classification answer is dropped and counted as an error; p50/p90 numpy `linear`; "
                      f"met when service p50 <= in-process p50 + {P50_SLACK_MS:g} ms"
                      + (f"; with --grpc, the same against the {BATCHING_GRPC} server, one gRPC ModelInfer (one BYTES "
                         f"`text`, tritonclient's messages) over one channel in place of the HTTP request"
                         if cfg.grpc else ""),
        },
        load={"tool": "locust", "version": importlib.metadata.version("locust"), "user_class": "FastHttpUser",
              "endpoint": f"/v1/models/{MODEL_NAME}/predict" if cls else "/v1/embeddings", "texts": len(texts),
              "text_source": "sources.tweets.split()[1], the held-out split, in its order",
              "mean_chars": float(np.mean([len(t) for t in texts]))},
        environment=environment, ceilings=tuple(ceilings), runs=tuple(runs), targets=tuple(targets), paired=paired,
        paired_grpc=paired_grpc,
        notes=tuple(notes), failures=tuple(failures))
