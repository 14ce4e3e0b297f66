"""Speed and size measurements, run as modules from the repository root: `python -m benchmarks.<name> --help`.
(The studies of the paper's claims are in studies/.)"""
