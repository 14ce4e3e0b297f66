"""The checks of the paper's claims and the other studies over trained runs, run as modules from the repository root:
`python -m studies.<name> --help`. `sweep` trains a sweep's runs and finds the finished ones; `results/` keeps the
figures behind each table of docs/results.md."""
