"""The data plane without a protocol or a model: errors are typed once (kind -> HTTP status here, gRPC code in
test_grpc), admission refuses while draining or loading and counts what it admits, deadlines and options are read
from request parameters, the key check is exact. The REST parsers are pure functions."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runtimes.errors import ConfigError, DeployError, InputError
from runtimes.serving.batcher import DeadlineExceeded, QueueFull
from runtimes.serving.config import DEFAULTS, ServeConfig
from runtimes.serving.dataplane import HTTP_STATUS, DataPlane, NotFound, TooLarge, Unauthenticated, kind_of, message_of
from runtimes.serving.rest_task import parse_predict


class FakeModel:
    ready = True


def plane(**cfg) -> DataPlane:
    return DataPlane(ServeConfig(artifacts=(Path("x"),), **cfg), {"m": FakeModel()}, api_key="k3y")


@pytest.mark.parametrize("error,kind,status", [
    (InputError("bad"), "bad_input", 400), (ConfigError("bad option"), "bad_input", 400),
    (Unauthenticated("who"), "auth", 401), (NotFound("nope"), "not_found", 404),
    (TooLarge("big", "too_large"), "too_large", 413), (TooLarge("many", "too_many_items"), "too_many_items", 413),
    (QueueFull("full"), "queue_full", 503), (DeadlineExceeded("late"), "deadline", 504),
    (asyncio.TimeoutError(), "deadline", 504), (DeployError("model broke"), "model", 500),
    (ZeroDivisionError("secret detail"), "internal", 500),
])
def test_every_error_has_one_kind_and_one_status(error, kind, status):
    assert kind_of(error) == kind and HTTP_STATUS[kind] == status
    if kind == "internal":
        assert "secret detail" not in message_of(error) and "ZeroDivisionError" in message_of(error)


def test_admission_counts_and_refuses_while_draining_or_loading():
    p = plane()
    with p.admitted():
        assert p.inflight == 1
    assert p.inflight == 0
    p.draining = True
    with pytest.raises(DeployError) as e:
        with p.admitted():
            pass
    assert kind_of(e.value) == "draining" and p.inflight == 0
    p.draining, p.models["m"].ready = False, False
    with pytest.raises(DeployError) as e:
        with p.admitted():
            pass
    assert kind_of(e.value) == "not_ready"
    FakeModel.ready = True


def test_key_lookup_deadline_options_and_items():
    p = plane(max_request_items=3, timeout_s=10.0)
    p.authenticate("k3y")
    for given in (None, "", "k3", "k3y "):
        with pytest.raises(Unauthenticated):
            p.authenticate(given)
    with pytest.raises(NotFound, match="Served: m"):
        p.model("other")
    with pytest.raises(NotFound, match="version '2'"):
        p.model("m", "2")
    assert p.deadline({}, 100.0) == 110.0 and p.deadline({"timeout": 2_000_000}, 100.0) == 102.0
    assert p.deadline({"timeout": 60_000_000}, 100.0) == 110.0  # the server's limit still holds
    for bad in (0, -1, "5", True):
        with pytest.raises(InputError, match="timeout"):
            p.deadline({"timeout": bad}, 0.0)
    assert p.task_options({"top_k": 2, "timeout": 5, "truncation": False, "binary_data_output": True}) == \
        ({"top_k": 2}, False)
    with pytest.raises(InputError, match="truncation"):
        p.task_options({"truncation": "no"})
    p.check_items(3)
    with pytest.raises(TooLarge, match="at most 3"):
        p.check_items(4)
    p.close()


def test_cli_defaults_are_serveconfigs():
    from distilbert_deploy.cli import build_parser

    args = build_parser().parse_args(["serve", "a"])
    for key, value in DEFAULTS.items():
        if hasattr(args, key) and key not in ("artifacts", "names", "repository"):
            assert getattr(args, key) == value, key


@pytest.mark.parametrize("body,words", [
    (b"[", "not valid JSON"), (b'["x"]', "must be"), (b'{"text": "x"}', "must be"),
    (b'{"inputs": "x", "extra": 1}', "must be"),
])
def test_parse_predict_refuses_with_the_reason(body, words):
    with pytest.raises(InputError, match=words):
        parse_predict(body)


def test_parse_predict_forms():
    assert parse_predict(b'{"inputs": "x"}') == ("x", {})
    assert parse_predict(b'{"inputs": ["a", "b"], "parameters": {"top_k": 2}}') == (["a", "b"], {"top_k": 2})
