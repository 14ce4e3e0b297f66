"""A run's folder and a command's session: folder.py (the folder's files and their readers), session.py (processes
joined and left, the workdir lock and the SIGTERM watch, taken once), with workdir_lock.py, preemption.py,
distributed.py and logs.py; output_paths.py checks a command's outputs before any work."""
