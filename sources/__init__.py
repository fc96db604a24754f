"""Model sources and data sets: built-in model names, local directories and hub ids (models), the builders of the
built-ins (builtin_models, minilm, default_head) and the tweets every layer measures on (tweets). Below exporters,
on runtimes only."""
