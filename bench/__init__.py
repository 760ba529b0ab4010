"""The gateway benchmark (issue 8): load generation, targets, report. Run scripts/bench.py."""
