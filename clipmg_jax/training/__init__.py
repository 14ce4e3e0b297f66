"""Training and evaluation of a model on a DataSource.

  trainer        the loop, read top to bottom: Setup (model, mesh, shardings, both steps) -> resume -> loop ->
                 final evaluation.
  runs           a trained run read back: load_config, load_run (the checkpoint a rule picks, restored into a Setup)
                 and evaluate_checkpoint; every command and notebook that reads a run goes through it.
  input_setup    config.data -> DataSource (data_source.py): the Grain pipeline, the validation subjects.
  model_setup    config.model -> the model, its parameters, pretrained vision weights.
  step           the jitted train and eval steps; losses, optimizer, train_state, sharding are their parts.
  checkpointing  Orbax checkpoints of the train state with the input position (data_position for another
                 process count or batch size); preemption, distributed for long and multi-host runs.
  evaluation     predictions over a split -> metrics (metrics, pose_monitoring) -> eval.json and its plots (drawn
                 by clipmg_jax/figures/results.py); metrics also holds the one softmax and top-k (top_classes).
  writers, logs  metrics.jsonl / TensorBoard, log set-up. defaults: the trainer's config fields.
  inspection     one clip's internals from a checkpoint (clipmg_jax/inspect_clip.py, notebooks).
"""
