"""The data-preparation commands. A package so that data_prep/extract_pose.py runs as a module from the repository
root (`python -m data_prep.extract_pose`), which puts the root, and with it clipmg_jax, on the path in the pose
environment, where clipmg_jax is not installed; the other commands run by their file path."""
