"""The Colab notebooks run top to bottom in a real Jupyter kernel, as written.

Each notebook in notebooks/ is executed with nbclient in a kernel of this very Python
(a kernelspec written for `sys.executable` into a temporary directory, so a fresh venv
needs no `ipykernel install` and another Python's `python3` kernelspec cannot be
picked), started in the repository root, with NOTEBOOK_SMOKE=1 (the notebooks' tiny
profile: a 2-layer model for a few dozen steps) and NOTEBOOK_WORKDIR in a temporary
directory; the notebooks run at the same time, one kernel each. A cell that raises
fails its notebook's test with the cell's traceback. Then what a reader looks for is
checked: the plot, the probe table, the export and what transformers makes of it.
The stored notebooks carry no outputs, so their diffs stay readable.

nbclient, nbformat and ipykernel come with the 'test' extra; the notebooks need the
'hf' extra (skipped without it, as the interop tests, unless BERT_FAMILY_REQUIRE_HF).
"""

import asyncio
import json
import os
import re
import sys
import time

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
import nbclient
import nbformat
import pytest

from tests import conftest
from tests.conftest import REPO

NOTEBOOKS = os.path.join(REPO, 'notebooks')
NAMES = ('quickstart', 'from_huggingface')
# Where the repository is assumed to live (no URL is recorded elsewhere).
CLONE = 'https://github.com/bert-family-jax/bert-family-jax'
COLAB = ('https://colab.research.google.com/github/bert-family-jax/bert-family-jax/blob/'
         'main/notebooks/{}.ipynb')
KERNEL = 'bert-family-test-python'


def _read(name: str):
  return nbformat.read(os.path.join(NOTEBOOKS, f'{name}.ipynb'), as_version=4)


def _kernel_manager(tmp_path):
  """An async kernel manager whose only kernelspec runs ipykernel on sys.executable."""
  spec_dir = tmp_path / 'kernels' / KERNEL
  spec_dir.mkdir(parents=True)
  (spec_dir / 'kernel.json').write_text(json.dumps({
      'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
      'display_name': 'Python (tests)', 'language': 'python'}))
  specs = KernelSpecManager(kernel_dirs=[str(tmp_path / 'kernels')],
                            ensure_native_kernel=False)
  return AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def _text(notebook) -> str:
  """Every text output of an executed notebook (streams, results, markdown), joined."""
  texts = []
  for cell in notebook.cells:
    for output in cell.get('outputs', []):
      texts.append(output.get('text', ''))
      data = output.get('data', {})
      texts += [data.get('text/plain', ''), data.get('text/markdown', '')]
  return '\n'.join(texts)


@pytest.fixture(scope='module')
def executed(tmp_path_factory):
  """Every notebook executed in the smoke profile, all at once (one kernel each: most
  of their time is single-threaded compiling, so two kernels use both cores).

  Returns:
    {name: (notebook, workdir)}, or {name: the exception} when a cell failed, which
    that notebook's test raises.
  """
  conftest.import_hf()
  root = tmp_path_factory.mktemp('notebooks')
  # As tests/cli_batch.py: a CPU, and compiled programs kept for this run (the probe
  # fine-tunings share theirs). Compiling is most of these tiny runs' time: XLA's
  # lowest optimisation level saves more of it than its slower steps cost (both
  # notebooks one after the other: 133 s instead of 166 s on 2 busy cores).
  env = {k: v for k, v in os.environ.items() if k != 'NOTEBOOK_PROFILE'}
  env.update(NOTEBOOK_SMOKE='1', JAX_PLATFORMS='cpu',
             JAX_COMPILATION_CACHE_DIR=str(root / 'jax_compilation_cache'),
             XLA_FLAGS=' '.join([os.environ.get('XLA_FLAGS', ''),
                                 '--xla_backend_optimization_level=0',
                                 '--xla_llvm_disable_expensive_passes=true']).strip())

  async def run(name):
    notebook = _read(name)
    workdir = root / name / 'work'
    client = nbclient.NotebookClient(
        notebook, km=_kernel_manager(root / name), timeout=900, allow_errors=False,
        resources={'metadata': {'path': REPO}})
    start = time.time()
    await client.async_execute(env={**env, 'NOTEBOOK_WORKDIR': str(workdir)})
    print(f'{name}.ipynb ran in {time.time() - start:.0f}s')
    return notebook, workdir

  async def run_all():
    return await asyncio.gather(*map(run, NAMES), return_exceptions=True)

  return dict(zip(NAMES, asyncio.run(run_all())))


def _result(executed, name):
  """(notebook, workdir, text) of an executed notebook; raises what stopped it."""
  if isinstance(executed[name], BaseException):
    raise executed[name]
  notebook, workdir = executed[name]
  return notebook, workdir, _text(notebook)


def _has_image(notebook) -> bool:
  return any('image/png' in output.get('data', {})
             for cell in notebook.cells for output in cell.get('outputs', []))


@pytest.mark.parametrize('name', NAMES)
def test_stored_notebooks_have_no_outputs_and_start_with_parameters(name):
  notebook = _read(name)
  nbformat.validate(notebook)
  code = [c for c in notebook.cells if c.cell_type == 'code']
  for cell in code:
    assert cell.outputs == [] and cell.execution_count is None, (
        f'{name}.ipynb is stored with outputs: clear them (Jupyter: Edit > Clear '
        'outputs of all cells; or jupyter nbconvert --clear-output --inplace)')
  assert 'parameters' in code[0].metadata.get('tags', [])
  assert 'NOTEBOOK_SMOKE' in code[0].source and 'NOTEBOOK_WORKDIR' in code[0].source


def test_every_notebook_has_its_colab_link_in_the_readme():
  with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
    readme = f.read()
  stored = sorted(f[:-len('.ipynb')] for f in os.listdir(NOTEBOOKS)
                  if f.endswith('.ipynb'))
  assert stored == sorted(NAMES)
  for name in NAMES:
    assert COLAB.format(name) in readme
    source = ''.join(c.source for c in _read(name).cells)
    assert COLAB.format(name) in source
    assert f"REPO_URL = '{CLONE}'" in source  # What the install cell clones.


def test_quickstart_pretrains_plots_probes_exports_and_fills_a_mask(executed):
  notebook, workdir, text = _result(executed, 'quickstart')
  assert "profile 'smoke'" in text
  for run in ('electra', 'bert'):
    assert os.path.isfile(workdir / run / 'summary.json')
  assert _has_image(notebook), 'the learning curves were not drawn'
  tables = list(workdir.glob('*/evaluation/evaluation.md'))  # The profile's runs.
  assert tables, 'launch.evaluate wrote no table'
  for table in tables:
    assert '| probe task | majority | pretrained | random init |' in table.read_text()
  assert '| probe task | majority | pretrained | random init |' in text
  assert '| word_order |' in text
  export = workdir / 'electra_hf'
  for subdir in ('', 'generator'):
    for file in ('config.json', 'model.safetensors', 'tokenizer.json'):
      assert os.path.isfile(export / subdir / file), f'{subdir}/{file}'
  # The fill-mask cell printed the masked text and five scored completions of it.
  assert 'Return the [MASK] of the object.' in text
  filled = [l for l in text.splitlines() if re.match(r'\s+[01]\.\d{3}\s', l)
            and 'Return the' in l and 'of the object.' in l]
  assert len(filled) == 5, text[-3000:]


def test_from_huggingface_imports_continues_finetunes_and_exports(executed):
  _, workdir, text = _result(executed, 'from_huggingface')
  assert "profile 'smoke'" in text
  for file in ('config.json', 'model.safetensors', 'vocab.txt', 'tokenizer.json'):
    assert os.path.isfile(workdir / 'hf_bert' / file), file
  assert 'bert -> objective mlm_nsp' in text
  assert os.path.isfile(workdir / 'imported' / 'hf_tokenizer.json')
  summary = json.loads((workdir / 'bert_wwm' / 'summary.json').read_text())
  assert summary['recipe'].startswith('bert-wwm') and summary['step'] > 0
  # Whole words of the imported WordPiece vocabulary were masked and predicted.
  assert summary['eval']['mlm_accuracy'] is not None
  with open(workdir / 'SST-2' / 'train.tsv') as f:
    assert f.readline() == 'sentence\tlabel\n'
  assert os.path.isfile(workdir / 'sst2' / 'results.json')
  exported = json.loads((workdir / 'sst2_hf' / 'config.json').read_text())
  assert exported['architectures'] == ['BertForSequenceClassification']
  assert 'BertForSequenceClassification: dev accuracy' in text
