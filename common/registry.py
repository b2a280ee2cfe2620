"""Tables that say where things live: 'package.module:attribute', imported when used.

As big_vision picks a model with `importlib.import_module(f"big_vision.models.{name}")`,
a table here maps a name to the place of its definition (STYLE.md 18): nothing is filled
in as an import side effect, and common/ can name a family package's code (an ELECTRA
objective, the ALBERT converter) without importing it until it is asked for.
"""

import importlib
from typing import Any


def resolve(path: str) -> Any:
  """The attribute named by 'package.module:attribute', importing its module."""
  module, attribute = path.split(':')
  return getattr(importlib.import_module(module), attribute)
