"""Figures 1–29, Tables 1–8 and the claims verdict of the paper (protocol §4, §5), from `results/summary*.parquet`
and the per-run logs and analysis files only. `inventory` names every output and imports nothing heavy."""
