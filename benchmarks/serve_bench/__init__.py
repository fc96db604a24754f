"""Load benchmark of the production service (`make bench-serve`): locust, headless, on 127.0.0.1, drives
`distilbert-deploy serve` with real held-out tweets at several concurrencies, batching on against
`--max-batch-size 1`, with the in-process runtime on the same texts as the ceiling. Typed, versioned JSON; Markdown
and PNG are pure functions of it. See docs/serve-bench/README.md."""
