"""The production service: OIP v2 REST + a pipeline-style task endpoint over verified artifacts, with a dynamic
batcher, Prometheus metrics, bounded queues and a graceful drain. Needs the `serve` extra (fastapi, uvicorn,
prometheus-client); imports runtimes only, never torch. Entry point: `distilbert-deploy serve` (server.serve)."""
