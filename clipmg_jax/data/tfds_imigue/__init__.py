"""A TFDS dataset builder for iMiGUE producing the records of data_prep/convert.py (see the builder module)."""
