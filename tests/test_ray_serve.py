"""`distilbert-deploy serve --engine ray` in .venv-ray, inside a private network namespace (Ray's internal servers
bind the host's address even when asked for loopback; the namespace has only its own loopback). One scenario run
(tests/ray_scenario.py) starts 2 replicas, queries them with tritonclient and the task endpoint, kills a replica
under a bounded load, and shuts down; the tests judge its findings."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from runtimes.procs import venv_dir

REPO = Path(__file__).resolve().parents[1]
VENV = venv_dir("ray")
pytestmark = [pytest.mark.ray, pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def findings(runtime_of, tmp_path_factory):
    tc = runtime_of("text-classification", "onnxruntime").artifact.path
    qa = runtime_of("question-answering", "onnxruntime").artifact.path
    work = tmp_path_factory.mktemp("ray")
    script = f"ip link set lo up && exec {VENV}/bin/python {REPO}/tests/ray_scenario.py 18080 {tc} {qa}"
    p = subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=work, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "DISTILBERT_DEPLOY_QUIET": "1", "RAY_USAGE_STATS_ENABLED": "0"})
    log = (work / "ray-serve.log").read_text(errors="replace")[-3000:] if (work / "ray-serve.log").is_file() else ""
    assert p.returncode == 0 and p.stdout.strip(), p.stdout[-2000:] + p.stderr[-3000:] + log
    found = json.loads(p.stdout.strip().splitlines()[-1])
    print("ray scenario:", json.dumps(found))  # the figures, for `pytest -s`
    found["log"] = log
    return found


def test_two_replicas_answer_tritonclient_and_the_task_endpoint_like_the_runtime(findings):
    assert findings["ready"] and findings["replicas"] == 2, findings
    assert findings["raw_max_abs_diff"] <= 1e-5
    assert findings["text_equal"] is True
    assert findings["task_endpoint"] == [200, True]
    assert findings["bad_input_status"] == 400  # the service's own error mapping, through Ray's proxy


def test_a_killed_replica_is_replaced_and_no_request_is_answered_wrong(findings):
    load = findings["load"]
    assert findings["killed_after_requests"] >= 20 and load["sent"] == 240, load  # bounded: 4 threads x 60
    assert load["ok_wrong"] == 0, load
    assert load["ok_right"] >= load["sent"] - 8, load  # only what the killed replica held may fail
    assert findings["replaced_within_s_after_load"] is not None, findings
    assert findings["after_replacement"] == 200


def test_shutdown_exits_0_and_leaves_no_ray_process(findings):
    assert findings["exit_code"] == 0, findings["log"]
    assert findings["leftover"] == []
