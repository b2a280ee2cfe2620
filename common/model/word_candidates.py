"""Replacement candidates for words, from a pretrained masked LM: TinyBERT's augmentation.

common/data/augmentation.py asks, for every word of a text, K words that could stand
in its place (Jiao et al. 2020, section 3.4): a one-piece word gets the masked LM's K
most likely whole-word pieces at its position with it masked; a longer word the K
whole-word pieces nearest to it by cosine of the LM's input embeddings (averaged over
the word's pieces; the paper's GloVe neighbours, without a download). Candidates are
"whole-word pieces": non-special pieces that start a word and decode to word
characters only, so a replacement is always one word.

The masked LM is any model with an MLM head (a pretraining workdir or model directory
read by the caller; params named as `MaskedLMModel` names them: 'encoder',
'mlm_head'), run in batches of a fixed shape under one jit.
"""

import dataclasses
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common.data import augmentation
from common.model import distillation_model
from common.model import encoder as encoder_lib

_WORD = re.compile(r'\w+')


class WordCandidates:
  """The candidate table of a set of texts, computed in batches.

  Attributes:
    table: text -> the candidates of each of its words (`augmentation.CandidateFn`
      is `table.__getitem__`).
  """

  def __init__(self, model_config: dict, params: dict, tokenizer, *,
               num_candidates: int = augmentation.NUM_CANDIDATES,
               max_seq_length: int = 128, batch_size: int = 64):
    """Args:
      model_config: the `config.model` fields of the masked LM.
      params: its parameters, unrolled layers, with 'encoder' and 'mlm_head'.
      tokenizer: its tokenizer (common/data/tokenizer.py interface).
    """
    spec = dataclasses.replace(encoder_lib.EncoderSpec.from_config(
        ml_collections.ConfigDict(model_config)), scan_layers=False, remat_policy='none')
    self._model = distillation_model.DistillationModel(spec)
    self._params = {k: params[k] for k in ('encoder', 'mlm_head')}
    self._tokenizer, self._k = tokenizer, num_candidates
    self._length = min(max_seq_length,
                       spec.max_position_embeddings - spec.position_offset)
    self._batch = batch_size
    pieces = [tokenizer.decode([i]).strip() for i in range(tokenizer.vocab_size)]
    whole = np.array([bool(_WORD.fullmatch(p)) for p in pieces]) & tokenizer.is_word_start
    whole[np.asarray(tokenizer.special_ids)] = False
    self._pieces, self._whole = pieces, whole
    table = np.asarray(self._params['encoder']['embeddings']['token_embed']['embedding'],
                       np.float32)
    self._embeddings = table / np.maximum(np.linalg.norm(table, axis=-1, keepdims=True),
                                          1e-8)
    self._predict = jax.jit(self._masked_logits)
    self.table: dict[str, list[list[str]]] = {}

  def _masked_logits(self, params, input_ids_BxL, positions_Bx1):
    batch = {'input_ids': input_ids_BxL, 'segment_ids': jnp.zeros_like(input_ids_BxL),
             'attention_mask': (input_ids_BxL != self._tokenizer.pad_id).astype(jnp.int32)}
    return self._model.apply({'params': params}, batch, deterministic=True,
                             positions_BxP=positions_Bx1)['mlm_logits'][:, 0]

  def _top(self, scores_V: np.ndarray, exclude: list[int]) -> list[str]:
    scores_V = np.where(self._whole, scores_V, -np.inf)
    scores_V[exclude] = -np.inf
    top = np.argsort(-scores_V)[:self._k]
    return [self._pieces[i] for i in top if np.isfinite(scores_V[i])]

  def add(self, texts: list[str]) -> None:
    """Computes the candidates of every word of `texts` (once per distinct text)."""
    texts = [t for t in dict.fromkeys(texts) if t and t not in self.table]
    queries = []  # (text, word number, ids, position of the masked piece)
    for text in texts:
      runs, is_word = augmentation.split_words(text)
      ids, spans = [self._tokenizer.cls_id], []
      for run, word in zip(runs, is_word):
        piece_ids = [int(i) for i in self._tokenizer.encode(run.strip())] if run.strip() else []
        if word:
          spans.append((len(ids), piece_ids))
        ids += piece_ids
      ids = ids[:self._length - 1] + [self._tokenizer.sep_id]
      options = []
      for n, (start, piece_ids) in enumerate(spans):
        if len(piece_ids) == 1 and start < len(ids) - 1:
          masked = list(ids)
          masked[start] = self._tokenizer.mask_id
          queries.append((text, n, masked, start, piece_ids[0]))
          options.append([])
        elif piece_ids:
          vector = self._embeddings[piece_ids].mean(0)
          options.append(self._top(self._embeddings @ vector, piece_ids))
        else:
          options.append([])
      self.table[text] = options
    for first in range(0, len(queries), self._batch):
      chunk = queries[first:first + self._batch]
      ids_BxL = np.full((self._batch, self._length), self._tokenizer.pad_id, np.int32)
      positions_Bx1 = np.zeros((self._batch, 1), np.int32)
      for row, (_, _, ids, position, _) in enumerate(chunk):
        ids_BxL[row, :len(ids)] = ids
        positions_Bx1[row, 0] = position
      logits_BxV = np.asarray(self._predict(self._params, ids_BxL, positions_Bx1))
      for row, (text, n, _, _, original) in enumerate(chunk):
        self.table[text][n] = self._top(logits_BxV[row].astype(np.float64), [original])
