r"""Fine-tuning on GLUE and GLUE-format tasks: a classifier on any starting encoder.

GLUE: Wang et al. 2019, "GLUE: A Multi-Task Benchmark and Analysis Platform for Natural
Language Understanding" (arXiv:1804.07461), its data as the GLUE distribution lays it
out (`glue_data/<TASK>/`, common/data/glue.py). The recipe is BERT's
(Devlin et al. 2019, section 4.1 and Appendix A.3; google-research/bert
run_classifier.py): a head on [CLS], AdamW with weight decay 0.01, 10% linear warmup
then linear decay, batch 32, 3 epochs, the best of several runs on dev. Per-family
learning rates and ELECTRA's layer-wise decay: `family_defaults` below.

  python -m launch.finetune --config=experiments/glue.py:sst2 \
      --config.init_from=/tmp/bert_demo --config.data_dir=/data/glue_data/SST-2 \
      --workdir=/tmp/sst2

`:<task>` is cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli, or generic (a
directory with task.json, as the probe suite writes, or `--config.task.text_a=...`
`--config.task.label=...` for a TSV/CSV/JSONL task). `--config.init_from` is a
pretraining workdir, a model directory, a Hugging Face model directory, or `random`
(a fresh encoder of `config.model`: the control). `--config.num_seeds=5` runs more
seeds; `--config.sweep_learning_rates=2e-5,3e-5,5e-5` sweeps rates too.
`--config.teacher.path=<fine-tuned classifier>` distils it into the starting encoder
(TinyBERT's task stage, experiments/tinybert.py).
"""

import ml_collections

from common.config_args import parse_size
from experiments import base

TASKS = ('cola', 'sst2', 'mrpc', 'qqp', 'stsb', 'mnli', 'qnli', 'rte', 'wnli', 'generic')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  task = parse_size(arg, TASKS, default='generic', what='task')
  config = base.get_config()
  config.name = f'finetune-{task}'

  # What to fine-tune and on what. The starting point brings its model config and
  # tokenizer; `model` and `tokenizer` below are used only by init_from=random.
  config.init_from = ''
  config.data_dir = ''
  # The task; text_a / text_b / label / labels / regression / file_format describe a
  # generic task when its directory has no task.json.
  config.task = dict(name=task, text_a='sentence', text_b='', label='label', labels='',
                     regression=False, file_format='tsv')
  # Runs: num_seeds seeds from `seed`, at each rate of sweep_learning_rates (comma-
  # separated; empty: optimizer.learning_rate). The best dev evaluation of each run is
  # kept; results.json reports the median and the best over seeds.
  config.num_seeds = 3
  config.sweep_learning_rates = ''
  config.epochs = 3.0
  # Warmup as a fraction of the run's steps (optimizer.warmup_steps is derived).
  config.warmup_fraction = 0.1
  config.data.max_seq_length = 128
  # The training split: 'train', or 'train_aug' written by `launch.augment` (TinyBERT's
  # data augmentation, common/data/augmentation.py).
  config.train_split = 'train'

  # TinyBERT task distillation (Jiao et al. 2020, section 3.3; common/train/
  # task_distillation.py), on when teacher.path names a classifier fine-tuned on this
  # task (a launch.finetune workdir or its <run>/best): per run, first
  # `intermediate_epochs` of attention and hidden-state distillation at
  # `intermediate_learning_rate` (the reference task_distill.py's first command: 10
  # epochs, its default 5e-5), then `epochs` of prediction-layer distillation (its
  # `--pred_distill` command: 3 epochs, 3e-5) at temperature 1. Student layer i
  # matches teacher layer i*k + k-1 (block_last), through one learned projection when
  # the widths differ.
  config.teacher.update(layer_map='block_last', hidden_projection='shared')
  config.teacher.intermediate_epochs = 10.0
  config.teacher.intermediate_learning_rate = 5e-5
  config.objective.distill_temperature = 1.0
  # Defaults by the starting point's family and width (`family_defaults`, keyed
  # '<family>_<small|base|large>', H <= 256 / <= 768 / larger), used where the config
  # leaves optimizer.learning_rate / optimizer.layer_decay at 0. The papers sweep the
  # rate on dev; these are the values they report or recommend.
  # - BERT (Devlin et al. 2019, A.3): lr in {5e-5, 4e-5, 3e-5, 2e-5}, batch 32, 3 epochs.
  # - Compact BERTs, H <= 256 (Turc et al. 2019, "Well-Read Students Learn Better",
  #   arXiv:1908.08962, section 4): lr in {1e-4, 5e-5, 3e-5}; our CPU demos sit here.
  # - RoBERTa (Liu et al. 2019, Table 10): lr in {1e-5, 2e-5, 3e-5}, batch {16, 32},
  #   10 epochs, 6% warmup.
  # - ALBERT (Lan et al. 2020, Table 14): per task, lr 1e-5 to 5e-5.
  # - ELECTRA (Clark et al. 2020, Table 7 / Appendix A): lr 3e-4 Small, 1e-4 Base,
  #   5e-5 Large; layer-wise decay 0.8 Small/Base, 0.9 Large; batch 32, 3 epochs
  #   (10 for RTE and STS-B).
  config.family_defaults = dict(
      bert_small=dict(learning_rate=1e-4, layer_decay=1.0),
      bert_base=dict(learning_rate=3e-5, layer_decay=1.0),
      bert_large=dict(learning_rate=2e-5, layer_decay=1.0),
      roberta_small=dict(learning_rate=1e-4, layer_decay=1.0),
      roberta_base=dict(learning_rate=2e-5, layer_decay=1.0),
      roberta_large=dict(learning_rate=1e-5, layer_decay=1.0),
      albert_small=dict(learning_rate=1e-4, layer_decay=1.0),
      albert_base=dict(learning_rate=3e-5, layer_decay=1.0),
      albert_large=dict(learning_rate=2e-5, layer_decay=1.0),
      electra_small=dict(learning_rate=3e-4, layer_decay=0.8),
      electra_base=dict(learning_rate=1e-4, layer_decay=0.8),
      electra_large=dict(learning_rate=5e-5, layer_decay=0.9))

  # AdamW, weight decay 0.01 (LayerNorm and biases excluded), clip 1.0. 0 = the
  # starting point's family default (family_defaults).
  config.optimizer.update(learning_rate=0.0, layer_decay=0.0)
  # Batch 32; evaluate once an epoch (eval_every 0) on every dev split; checkpoints
  # for resume only (the best dev parameters are kept apart, in <run>/best/).
  config.train.update(batch_size=32, eval_batch_size=32, eval_every=0, log_every=10,
                      checkpoint_every=1000, keep_checkpoints=1)
  return config
