"""Writing files into the workdir so a crash never leaves half a file behind.

Everything the project writes beside its checkpoints (config.json, summary.json,
metrics.jsonl rewrites, MacBERT's similar-word table, ERNIE's phrase lexicon, the
tokenizer files) goes through `write_text` or `write_bytes`: the content lands in a
temporary file that then replaces the target in one `os.replace`, so a reader sees the
old file or the new one, never a mix.
"""

import os


def write_text(path: str, text: str) -> None:
  """Atomically replaces `path` with `text`."""
  write_bytes(path, text.encode('utf-8'))


def write_bytes(path: str, data: bytes) -> None:
  """Atomically replaces `path` with `data`; a failed write leaves no temp file."""
  tmp = path + '.tmp'
  try:
    with open(tmp, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(e, OSError) and not e.filename:  # A failed write names no file.
      raise OSError(e.errno, e.strerror, path) from e
    raise
