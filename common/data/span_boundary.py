"""Span-boundary targets: for each masked token, the span's two outside neighbours.

SpanBERT's span-boundary objective (SBO) predicts every token of a masked span from
the encoder outputs at the tokens just outside it, x_{s-1} and x_{e+1}, plus a
relative position embedding of the token inside the span (Joshi et al. 2020,
"SpanBERT", section 3.2, eq. 1-2). The boundaries are computed here, data side,
from the masked positions of any masking strategy: a span is a maximal run of
consecutive masked positions, as facebookresearch/SpanBERT merges adjacent masked
intervals before taking boundaries, so both boundaries are unmasked tokens
([CLS] and [SEP] included). With token-level masking most spans have length 1.

Fields (padded like `masked_positions`, zeros where `masked_weights` is 0):
`masked_span_left [P]`, `masked_span_right [P]` positions and
`masked_span_offsets [P]` the 0-based position inside the span.
"""

from __future__ import annotations

import numpy as np

SPAN_FIELDS = ('masked_span_left', 'masked_span_right', 'masked_span_offsets')


def boundary_targets(masked_positions_P: np.ndarray, masked_weights_P: np.ndarray,
                     seq_len: int) -> dict[str, np.ndarray]:
  """Boundary positions and in-span offsets of every masked target.

  Args:
    masked_positions_P: [P] positions, the real ones (weight 1) sorted ascending.
    masked_weights_P: [P] 1.0 real targets first, 0.0 padding.
    seq_len: L, to keep a right boundary inside the row.

  Returns:
    The three `SPAN_FIELDS`, int32 [P].
  """
  p = len(masked_positions_P)
  k = int(np.count_nonzero(masked_weights_P))
  left, right, offsets = (np.zeros(p, np.int32) for _ in range(3))
  if k == 0:
    return dict(zip(SPAN_FIELDS, (left, right, offsets)))
  pos_K = np.asarray(masked_positions_P[:k], np.int64)
  new_span_K = np.concatenate([[True], np.diff(pos_K) != 1])
  span_id_K = np.cumsum(new_span_K) - 1
  first_S = pos_K[new_span_K]
  last_S = pos_K[np.concatenate([np.flatnonzero(new_span_K)[1:] - 1, [k - 1]])]
  left[:k] = np.maximum(first_S[span_id_K] - 1, 0)
  right[:k] = np.minimum(last_S[span_id_K] + 1, seq_len - 1)
  offsets[:k] = pos_K - first_S[span_id_K]
  return dict(zip(SPAN_FIELDS, (left, right, offsets)))
