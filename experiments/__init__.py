"""Experiment files: one ml_collections config per recipe, `get_config(arg)` picks a size."""
