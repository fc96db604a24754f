"""Latency benchmark harness: backend (runners, through runtimes.registry), scenario (core), launcher
(in-process or subprocess), typed JSON report, Markdown/PNG rendering and `compare`. See docs/bench.md."""
