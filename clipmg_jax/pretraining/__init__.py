"""Contrastive pretraining of the vision tower (`python -m clipmg_jax.pretrain`) on the training machinery of
clipmg_jax/training/: the task (contrastive: its model, step, corpus and export); the model itself is
clipmg_jax/models/contrastive.py."""
