"""Recognition on one's own videos with a trained run: the library under `python -m clipmg_jax.predict`.

  predictor.py     a trained run with the evaluation step and its dataset's conversion options: examples -> logits
  records.py       clips and sliding windows of a video as the converter's records (clip_record.make_record) and as
                   the evaluation decoder's examples
  recognize.py     one clip's class probabilities; every window's, cached; one video's online segments
  online_split.py  online recognition scored over a raw dataset's split (true gestures from its labels)
  outputs.py       the JSON and CSV files written
  pose.py          skeleton extraction in the pose environment (data_prep/extract_pose.py)
  online.py        windows -> segments (NMS) and their matching to true gestures
  inspection.py    one clip's internals from a checkpoint (python -m clipmg_jax.inspect_clip, the notebooks)

Figures and the rendered video are clipmg_jax/figures/'s.
"""
