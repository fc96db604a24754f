"""`distilbert-deploy optimize`: the fastest artifact that passes parity on this machine, chosen by measurement."""
