"""Every `python -m clipmg_jax.<command>` runs in the one command shell (clipmg_jax/command.py): a misspelled
--config.<field> override ends at flag parsing, before any work, in one short message and a non-zero status."""

import os
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Each command with a config file it accepts.
COMMANDS = {"train": "configs/synthetic.py", "evaluate": "configs/synthetic.py",
            "pretrain": "configs/pretrain_synthetic.py", "inspect_clip": "configs/synthetic.py",
            "predict": "configs/synthetic.py", "cache_prefix": "configs/synthetic.py", "export": "configs/synthetic.py"}
# Other required flags of a command.
EXTRA_FLAGS = {"cache_prefix": ["--out", "unused_cache"], "export": ["--out", "unused_export"]}


def test_a_misspelled_override_is_one_short_message_in_every_command(tmp_path):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
  # All side by side: each spends its time importing JAX and the libraries.
  running = {name: subprocess.Popen([sys.executable, "-m", f"clipmg_jax.{name}", "--config", config, "--workdir",
                                     str(tmp_path / name), "--config.totl_steps=3", *EXTRA_FLAGS.get(name, [])],
                                    cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, config in COMMANDS.items()}
  for name, proc in running.items():
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "Traceback" not in err, (name, err[-3000:])
    assert "totl_steps" in err and "total_steps" in err, (name, err[-3000:])  # with the "Did you mean" hint
    assert len(err.strip().splitlines()) <= 6, (name, err)
    assert not (tmp_path / name).exists()
