"""Shared parts of every recipe: corpus, tokenizer, data pipeline, encoder, heads,
objectives, the one train step and loop, optimizers, sharding, checkpointing, metrics."""
