r"""Converts checkpoints between Hugging Face (PyTorch) and ours.

  # A local HF model directory -> a model directory to continue pretraining from:
  python -m launch.convert --from=hf --src=/models/bert-base-uncased --dst=/tmp/bert_base
  # ELECTRA with its generator (default: <src>/generator when it is there):
  python -m launch.convert --from=hf --src=DISC_DIR --generator=GEN_DIR --dst=DIR
  # A training workdir (latest or --step checkpoint) or a model directory -> HF:
  python -m launch.convert --from=ours --to=hf --src=/tmp/bert_demo --dst=/tmp/bert_hf

HF model types: bert, roberta, distilbert, electra, albert (each converter is imported when
its type is converted: common/interop/hf_checkpoint.py `CONVERTERS`). An import prints
the `launch.train` command that continues pretraining from it.
Bad input ends with one `error: ...` line and exit status 2; the destination is then
not created (a conversion is written whole or not at all).

The same as Python functions: `import_hf(src, dst)` and `export_hf(src, dst)`.
"""

import os

from absl import app
from absl import flags
from absl import logging

from common.interop import hf_checkpoint
from common.interop import model_dir
# One way to report bad input for every entry point: one `error:` line, exit 2.
from launch.cli import fail
from launch.cli import parse_flags
from launch.cli import run_main

_FROM = flags.DEFINE_enum('from', None, ['hf', 'ours'], 'What --src holds.')
_TO = flags.DEFINE_enum('to', None, ['hf', 'ours'],
                        'What to write (default: the other one).')
_SRC = flags.DEFINE_string('src', None, 'HF model directory, training workdir or model '
                           'directory.')
_DST = flags.DEFINE_string('dst', None, 'Directory to create (must not exist or be empty).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint of a training workdir to export '
                             '(default: the latest).')
_GENERATOR = flags.DEFINE_string('generator', None, 'ELECTRA import: the generator '
                                 '(ElectraForMaskedLM) directory.')


def import_hf(src: str, dst: str, *, generator: str | None = None) -> dict:
  """Converts a local HF model directory into a model directory (common/interop/model_dir.py).

  Args:
    src: config.json + model.safetensors or pytorch_model.bin (sharded or not) + the
      tokenizer files, of model type bert, roberta, distilbert, electra or albert.
    dst: created, whole or not at all; must not exist or be empty.
    generator: ELECTRA only: the generator's HF directory (default `<src>/generator`
      when present).

  Returns:
    What source.json records (model_type, objective, heads found, recipe, ...), plus
    'command': the `launch.train` command that continues pretraining from dst.

  Raises:
    UserError: an unknown model type, missing weights, a missing or mis-shaped tensor
      (named), a tensor we do not model, a setting we cannot represent.
  """
  options = {'generator': generator} if generator else {}
  source = hf_checkpoint.import_dir(src, dst, **options)
  return {**source, 'command': continue_command(dst, source)}


def export_hf(src: str, dst: str, *, step: int | None = None) -> dict:
  """Writes our model as an HF model directory that `from_pretrained` loads.

  Args:
    src: a `launch.train` workdir (config.json, checkpoints/, tokenizer) or a model
      directory.
    dst: created, whole or not at all; must not exist or be empty.
    step: a workdir's checkpoint (default: the latest).

  Returns:
    {'architectures': {subdir: HF architecture}, 'model_type': ..., 'notes': [...]}.
    ELECTRA writes the discriminator (ElectraForPreTraining) in dst and the generator
    (ElectraForMaskedLM) in dst/generator.

  Raises:
    UserError: a setting no HF architecture represents (pre-LN, a factorized BERT, ...).
  """
  return hf_checkpoint.export_dir(src, dst, step=step)


def _flag_value(value) -> str:
  return repr(value) if isinstance(value, float) else str(value)


def continue_command(dst: str, source: dict) -> str:
  """The `launch.train` command that continues pretraining from an imported model."""
  import importlib  # pylint: disable=g-import-not-at-top
  recipe = source['recipe']
  config = importlib.import_module(f'experiments.{recipe}').get_config('base')
  dst = os.path.abspath(dst)
  saved = model_dir.model_fields(model_dir.read_json(os.path.join(dst, model_dir.MODEL_CONFIG)))
  flags_ = [f'--config=experiments/{recipe}.py:base', '--workdir=WORKDIR',
            f'--config.train.init_from={dst}']
  if source.get('tokenizer'):
    flags_.append(f'--config.tokenizer.path={os.path.join(dst, source["tokenizer"])}')
  for key, value in sorted(saved.items()):
    if key in config.model and config.model[key] != value:
      flags_.append(f'--config.model.{key}={_flag_value(value)}')
  for key, value in sorted(source.get('overrides', {}).items()):
    flags_.append(f'--config.{key}={_flag_value(value)}')
  positions = saved['max_position_embeddings'] - saved.get('position_offset', 0)
  if config.data.max_seq_length > positions:
    flags_.append(f'--config.data.max_seq_length={positions}')
    if config.masking.max_predictions_per_seq > positions:
      flags_.append(f'--config.masking.max_predictions_per_seq={positions}')
  return 'python -m launch.train ' + ' '.join(flags_)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f'unexpected arguments: {" ".join(argv[1:])}')
  source, target = _FROM.value, _TO.value
  if source is None:
    fail('--from is required: --from=hf (import) or --from=ours --to=hf (export)')
  target = target or ('ours' if source == 'hf' else 'hf')
  if source == target:
    fail(f'--from and --to are both {source!r}')
  if not _SRC.value or not _DST.value:
    fail('--src and --dst are required')
  logging.set_verbosity(logging.WARNING)
  if source == 'hf' and _STEP.value is not None:
    fail('--step applies to --from=ours')
  if source != 'hf' and _GENERATOR.value:
    fail('--generator applies to --from=hf')
  run_main(lambda: _convert(source))


def _convert(source: str) -> None:
  """The conversion itself; its errors become one line (launch/cli.py run_main)."""
  if source == 'hf':
    result = import_hf(_SRC.value, _DST.value, generator=_GENERATOR.value)
    heads = result['heads']
    print(f'wrote {os.path.abspath(_DST.value)}: {result["model_type"]} -> objective '
          f'{result["objective"]}; heads found: '
          f'{", ".join(h for h, ok in heads.items() if ok) or "none"}; left to fresh '
          f'init: {", ".join(h for h, ok in heads.items() if not ok) or "none"}; '
          f'tokenizer: {result["tokenizer"] or "none (no tokenizer files)"}')
    if result['objective'] == 'classification':
      print('fine-tune or evaluate it with:\n  python -m launch.finetune '
            '--config=experiments/glue.py:TASK --config.init_from='
            f'{os.path.abspath(_DST.value)} --config.data_dir=DATA_DIR --workdir=WORKDIR')
    else:
      print('continue pretraining with:\n  ' + result['command'])
      print('or fine-tune it with:\n  python -m launch.finetune '
            '--config=experiments/glue.py:TASK --config.init_from='
            f'{os.path.abspath(_DST.value)} --config.data_dir=DATA_DIR --workdir=WORKDIR')
  else:
    result = export_hf(_SRC.value, _DST.value, step=_STEP.value)
    for subdir, architecture in result['architectures'].items():
      print(f'wrote {os.path.normpath(os.path.join(os.path.abspath(_DST.value), subdir))}'
            f': {architecture}')
    for note in result['notes']:
      print(f'note: {note}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
