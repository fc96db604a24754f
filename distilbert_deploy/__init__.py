"""distilbert-deploy command line: export, predict, inspect, demo."""
