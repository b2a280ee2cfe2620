"""Word-order probe: does the model read its context in order, or as a bag of words?

Early in pretraining an MLM predicts a masked token from WHICH words surround it, not
from their order; using order comes later, often as a sudden drop in the loss (Chen
et al. 2024, "Sudden Drops in the Loss: Syntax Acquisition, Phase Transitions, and
Simplicity Bias in MLMs", ICLR, arXiv:2309.07311). The tasks that need order wait for
it: a discriminator cannot flag plausible replacements (ELECTRA), and sentence-order
prediction (ALBERT) stays near its label prior. Pretraining therefore also reports
`shuffled_context_mlm_accuracy`: held-out MLM accuracy on the same batches with every
unselected token shuffled within its segment. Equal to `mlm_accuracy`: the model ignores
word order so far; below it: order is in use.
"""

import numpy as np

from common.data import packing


def shuffle_context(batch: dict[str, np.ndarray], specials: packing.SpecialIds,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
  """The batch with each row's context tokens permuted within their segment.

  A segment is a maximal run of real tokens between special tokens ([CLS], [SEP],
  padding). The selected positions (`masked_positions` with weight > 0: their [MASK],
  kept or replaced tokens and their targets) and the special tokens stay where they
  are, so the targets, labels and segment layout are unchanged; only the order of the
  other tokens is lost, never which tokens are present.

  Args:
    batch: a masked batch: input_ids, attention_mask [B, L]; masked_positions,
      masked_weights [B, P]; other fields are copied unchanged.
    specials: the tokenizer's special ids.
    rng: the source of the permutations.

  Returns:
    A new batch; `input_ids` [B, L] shuffled as above.
  """
  ids_BxL = batch['input_ids'].copy()
  selected_BxL = np.zeros(ids_BxL.shape, bool)
  rows, cols = np.nonzero(batch['masked_weights'] > 0)
  selected_BxL[rows, batch['masked_positions'][rows, cols]] = True
  # [MASK] is not a boundary: context moves across the (fixed) selected positions.
  boundary_BxL = (np.isin(ids_BxL, [specials.cls, specials.sep, specials.pad])
                  | ~batch['attention_mask'].astype(bool))
  for row in range(ids_BxL.shape[0]):
    start = 0
    for end in list(np.nonzero(boundary_BxL[row])[0]) + [ids_BxL.shape[1]]:
      movable = start + np.nonzero(~selected_BxL[row, start:end])[0]
      ids_BxL[row, movable] = ids_BxL[row, rng.permutation(movable)]
      start = end + 1
  return {**batch, 'input_ids': ids_BxL}
