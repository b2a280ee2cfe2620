"""The architecture the folders promise: common/ is shared and never imports a family
package, and no module imports itself back through a cycle."""

import ast
import os

from tests.conftest import REPO

PACKAGES = ('common', 'electra_jax', 'albert_jax', 'experiments', 'launch')
FAMILIES = ('albert_jax', 'electra_jax')


def _modules() -> dict[str, str]:
  """Dotted module name -> file, for every module of the project's packages."""
  out = {}
  for package in PACKAGES:
    for root, _, files in os.walk(os.path.join(REPO, package)):
      for name in sorted(f for f in files if f.endswith('.py')):
        path = os.path.join(root, name)
        dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
        out[dotted.removesuffix('.__init__')] = path
  return out


def _imports(path: str, top_level_only: bool) -> list[tuple[int, str]]:
  """(line, module) of each import in the file; `from a import b` names a.b when that
  is a module, else a. Imports inside functions run late and cannot form an import
  cycle, so `top_level_only` skips them."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  nodes = tree.body if top_level_only else list(ast.walk(tree))
  out = []
  for node in nodes:
    if isinstance(node, ast.Import):
      out += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      out += [(node.lineno, f'{node.module}.{alias.name}') for alias in node.names]
      out.append((node.lineno, node.module))
  return out


def test_common_never_imports_a_family_package():
  """ALBERT's and ELECTRA's code is named in tables (common/registry.py), never imported
  by common/: a shared module that imports a family package is a layering error."""
  offenders = [f'{os.path.relpath(path, REPO)}:{line} {module}'
               for name, path in _modules().items() if name.startswith('common')
               for line, module in _imports(path, top_level_only=False)
               if module.split('.')[0] in FAMILIES]
  assert not offenders, offenders


def test_no_import_cycles():
  modules = _modules()
  graph = {name: sorted({m for _, m in _imports(path, top_level_only=True)
                         if m in modules and m != name})
           for name, path in modules.items()}
  state, cycles = {}, []

  def visit(name, stack):
    state[name] = 'open'
    for dep in graph[name]:
      if state.get(dep) == 'open':
        cycles.append(stack[stack.index(dep):] + [dep])
      elif dep not in state:
        visit(dep, stack + [dep])
    state[name] = 'done'

  for name in sorted(graph):
    if name not in state:
      visit(name, [name])
  assert not cycles, cycles
