"""Parsing the size after the colon in `--config=experiments/<recipe>.py:<size>`.

As in big_vision's configs, the experiment file's `get_config(arg)` receives the text
after the colon; here it names a size from the recipe's size table.
"""

from collections.abc import Container

from common.errors import UserError


def parse_size(arg: str | None, sizes: Container[str], default: str,
               what: str = 'size') -> str:
  """The size (or task: `what`) named by `arg` (`default` when empty); unknown names
  fail with the list."""
  size = (arg or '').strip() or default
  if size not in sizes:
    raise UserError(f'unknown {what} {size!r}; known {what}s: {", ".join(sizes)}')
  return size
