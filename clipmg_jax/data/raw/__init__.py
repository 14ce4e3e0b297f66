"""Stage 1, reading: a dataset's own files (labels, splits, OpenPose JSON, MiGA CSVs, videos) -> numpy arrays and
clip lists, keypoints in COCO-18 pixels. Bad files raise ValueError naming the file (read_errors).
Next: records/ turns what these readers return into clip records (layouts.py, clip_record.py) and shards
(convert.py)."""
