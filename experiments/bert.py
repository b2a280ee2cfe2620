r"""BERT: masked LM (15%, 80/10/10) + next-sentence prediction, static masks.

Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding" (arXiv:1810.04805), and google-research/bert (create_pretraining_data.py,
run_pretraining.py, optimization.py).

Run the CPU demo (a few minutes on 2 cores, on the embedded default corpus):

  python -m launch.train --config=experiments/bert.py:demo --workdir=/tmp/bert_demo

Paper sizes: `:base` (L12 H768 A12, 110M) and `:large` (L24 H1024 A16, 340M in the paper;
335M counted exactly); `:small` is the ELECTRA paper's BERT-Small (Table 1). Any field
can be overridden: `--config.train.steps=100`.

Every setting of the paper is experiments/base.py's default, with its source there:
model, MLM + NSP objective, masking, segment-pair data, Adam, batch and steps, mesh.
"""

import ml_collections

from common.config_args import parse_size
from experiments import base

# Paper section 3; 'demo' is ours, for a CPU (base.DEMO), with 2 static copies of the
# masks instead of 10.
SIZES = {
    'demo': base.demo(masking=dict(dupe_factor=2)),
    'base': dict(model=base.BERT_BASE),
    'large': dict(model=base.BERT_LARGE),
    # BERT-Small of the ELECTRA paper (Clark et al. 2020, arXiv:2003.10555, section 3.3
    # and Table 1): ELECTRA-Small's hyperparameters (L12 H256 A4 FFN 1024, embeddings
    # 128, sequence 128, batch 128, lr 5e-4), trained 1.5M steps "so it uses the same
    # training FLOPs as ELECTRA-Small", 14M parameters; GLUE dev 75.1.
    'small': dict(model=dict(num_layers=12, hidden_size=256, num_heads=4,
                             intermediate_size=1024, embedding_size=128),
                  data=dict(max_seq_length=128), train=dict(batch_size=128,
                                                            steps=1_500_000),
                  optimizer=dict(learning_rate=5e-4)),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = parse_size(arg, SIZES, default='base')
  config = base.get_config()
  config.name = f'bert-{size}'
  return base.apply(config, SIZES[size])
