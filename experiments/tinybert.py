r"""TinyBERT general distillation: attention scores and hidden states, layer by layer.

Jiao et al. 2020, "TinyBERT: Distilling BERT for Natural Language Understanding"
(Findings of EMNLP, arXiv:1909.10351), and huawei-noah/Pretrained-Language-Model
TinyBERT/ (general_distill.py, transformer/modeling.py). The objective 'distillation'
lives in common/train/distillation.py.

The teacher is any MLM-style pretraining workdir or model directory, not fine-tuned
(`--config.teacher.path`); the student reads its tokenizer. Run the CPU demo (a few
minutes on 2 cores) on the BERT demo as teacher:

  python -m launch.train --config=experiments/bert.py:demo --workdir=/tmp/bert_demo
  python -m launch.train --config=experiments/tinybert.py:demo \
      --config.teacher.path=/tmp/bert_demo --workdir=/tmp/tinybert_demo

Sizes (paper section 4.1): `:4l` (TinyBERT4, 4 layers, 312 wide, FFN 1200, 12 heads:
14.4M as HF BertForMaskedLM counts it, plus the 0.24M projection used in training; the
paper says 14.5M) and `:6l` (TinyBERT6, BERT-base's widths at 6 layers: 67.0M), both
for a BERT-base teacher. Every size keeps the teacher's heads (attention scores are
compared head by head).

This is the general stage. The task stage (section 3.3; common/train/
task_distillation.py) is `launch.finetune` with a teacher fine-tuned on the task:
intermediate-layer distillation on the task's data, then prediction-layer
distillation, per seed; the paper's data augmentation (section 3.4) writes
`train_aug.tsv` beside the task's files first (common/data/augmentation.py):

  python -m launch.finetune --config=experiments/glue.py:sst2 \
      --config.init_from=/tmp/bert_demo --config.data_dir=DATA --workdir=/tmp/sst2_teacher
  python -m launch.augment --data_dir=DATA --task=sst2 --model=/tmp/bert_demo
  python -m launch.finetune --config=experiments/glue.py:sst2 \
      --config.init_from=/tmp/tinybert_demo --config.teacher.path=/tmp/sst2_teacher \
      --config.train_split=train_aug --config.data_dir=DATA --workdir=/tmp/sst2_tinybert
"""

import ml_collections

from common.config_args import parse_size
from experiments import base

# Students (section 4.1); 'demo' is ours, for a CPU: half the BERT demo's depth and
# width (base.DEMO: 4 layers H128, 2 heads) with the teacher's 2 heads.
SIZES = {
    'demo': base.demo(model=dict(num_layers=2, hidden_size=64, num_heads=2,
                                 intermediate_size=256)),
    '4l': dict(model=dict(num_layers=4, hidden_size=312, num_heads=12,
                          intermediate_size=1200)),
    '6l': dict(model=dict(base.BERT_BASE, num_layers=6)),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = parse_size(arg, SIZES, default='4l')
  config = base.get_config()
  config.name = f'tinybert-{size}'

  # Model: BERT's encoder (token types kept, as TinyBertForPreTraining), smaller.

  # Objective: general distillation is Transformer-layer distillation only (section
  # 3.3): attention-score MSE per mapped layer + hidden-state MSE per mapped layer and
  # of the embedding outputs, through a learned projection; summed over layers with
  # weight 1 (general_distill.py: loss = att_loss + rep_loss). No soft targets, no
  # MLM: the student's MLM head is not trained at this stage. Prediction-layer
  # distillation (the task stage) is objective.alpha_ce at distill_temperature 1.
  config.objective.update(name='distillation', alpha_ce=0.0, alpha_mlm=0.0,
                          alpha_cos=0.0, alpha_attention=1.0, alpha_hidden=1.0,
                          distill_temperature=1.0)

  # Teacher: student layer i matches teacher layer i*k + k-1 (k = 12/4 = 3: layers 3,
  # 6, 9, 12 counted from 1; section 4.1, the "uniform" strategy); one projection
  # shared by every layer (the code's fit_dense; 'per_layer' is the paper's W_h per
  # layer). The student starts from scratch (TinyBertForPreTraining.from_scratch).
  config.teacher.update(layer_map='block_last', init_student=False,
                        hidden_projection='shared')

  # Masking and data: BERT's pretraining examples (pregenerate_training_data.py, from
  # BERT's create_pretraining_data), a fresh mask per epoch, 128 tokens.
  config.masking.update(dynamic=True, dupe_factor=1)

  # Optimizer (general_distill.py defaults): BertAdam lr 5e-5, weight decay 0.01,
  # 10% warmup; batch 256 (README command). Steps (ours, unverified): 3 epochs of
  # English Wikipedia (2,500M words, ~3B pieces) in 256 x 128 tokens are ~275K.
  config.optimizer.update(learning_rate=5e-5)
  config.train.update(batch_size=256, steps=275_000)
  base.apply(config, SIZES[size])
  config.optimizer.warmup_steps = int(0.1 * config.train.steps)
  return config
