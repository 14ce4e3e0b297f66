"""Training and evaluation of a model on a DataSource.

  trainer        the loop, read top to bottom: Setup (model, mesh, shardings, both steps) -> resume -> loop ->
                 final evaluation.
  runs           a trained run read back: load_config, load_run (the checkpoint a rule picks, restored into a Setup)
                 and evaluate_checkpoint; every command and notebook that reads a run goes through it.
  model_setup    config.model -> the model, its parameters, pretrained vision weights.
  step           the jitted train and eval steps; losses, optimizer, train_state, sharding are their parts.
  checkpointing  Orbax checkpoints of the train state with the input position (data_position for another
                 process count or batch size); the one restore of a checkpoint.
  evaluation     predictions over a split -> metrics (metrics, pose_monitoring) -> eval.json (its plots drawn by the
                 callable the command hands in: clipmg_jax/figures/results.py); metrics also holds the one softmax
                 and top-k (top_classes).
  writers        metrics.jsonl / TensorBoard. defaults: the trainer's config fields.
  prefix_cache   the prefix cache built (its identity and checks: data/loader/token_cache.py). aot: ahead-of-time.

The data side (input_setup -> DataSource) is clipmg_jax/data/; the run folder, the workdir lock, the SIGTERM watch
and the processes are clipmg_jax/run/.
"""
