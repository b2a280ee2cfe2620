r"""Fine-tunes an encoder on a GLUE or GLUE-format task (experiments/glue.py).

  python -m launch.finetune --config=experiments/glue.py:sst2 \
      --config.init_from=/tmp/bert_demo --config.data_dir=/data/glue_data/SST-2 \
      --workdir=/tmp/sst2

`--config.init_from`: a pretraining workdir, a model directory, a Hugging Face model
directory, or `random`. Writes one directory per run (seed, learning rate) with
metrics.jsonl, TensorBoard events, a plot and `best/` (the best dev parameters, a model
directory), then `results.json` (median and best over seeds) and `submission/` (test
predictions in the GLUE submission format). Started again, finished runs are kept and
an interrupted one resumes; SIGTERM/SIGINT stop it with a checkpoint (exit status 0 /
130). Bad input: one `error:` line, exit status 2 (launch/cli.py).
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from launch.cli import check_loaded
from launch.cli import parse_flags
from launch.cli import run_main

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Fine-tuning file and task, e.g. experiments/glue.py:sst2.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the runs and results.')


def main(argv: list[str]) -> None:
  config = check_loaded(argv, _CONFIG, _WORKDIR, example='experiments/glue.py:sst2')
  logging.set_verbosity(logging.WARNING)
  from common.train import distributed  # pylint: disable=g-import-not-at-top
  from common.train import finetuning  # pylint: disable=g-import-not-at-top

  def body():
    distributed.initialize()
    return finetuning.finetune(config, _WORKDIR.value)

  results = run_main(body, _WORKDIR.value)
  median = results.get('median', {})
  print(f'done: {results["task"]}, {len(results["runs"])} runs; median dev '
        + ', '.join(f'{k} {v:.4f}' for k, v in sorted(median.items()))
        + f'; results in {_WORKDIR.value}/results.json')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
