"""The run folder (folder.py: its files and their readers) and the session of a command (session.py: distributed start
and stop, the workdir lock and the SIGTERM watch, taken once)."""
