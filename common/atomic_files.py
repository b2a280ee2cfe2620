"""Writing files into the workdir so a crash never leaves half a file behind.

Everything the project writes beside its checkpoints (config.json, summary.json,
metrics.jsonl rewrites, MacBERT's similar-word table, ERNIE's phrase lexicon) goes
through `write_text`: the text lands in a temporary file that then replaces the target
in one `os.replace`, so a reader sees the old file or the new one, never a mix.
"""

import os


def write_text(path: str, text: str) -> None:
  """Atomically replaces `path` with `text`."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)
