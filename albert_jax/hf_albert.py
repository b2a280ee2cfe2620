"""HF ALBERT <-> our `MaskedLMModel` with cross-layer sharing: the converter of model_type
'albert', which `common.interop.hf_checkpoint.CONVERTERS` names as
'albert_jax.hf_albert:ALBERT'.

ALBERT is our encoder with `layer_sharing='all'` (common/model/encoder.py): HF's
`albert_layer_groups.{g}.albert_layers.0` is our 'layer_group_{g}', and HF applies
group int(i / (L / G)) at layer i as ours applies i * G // L. The E -> H projection
`embedding_hidden_mapping_in` is our 'embedding_projection'; the MLM head maps H -> E
onto the tied table; the SOP classifier reads the pooled [CLS] ('pooler',
'sentence_head').

| HF architecture      | objective | our params                                      |
|----------------------|-----------|-------------------------------------------------|
| AlbertForPreTraining | mlm_sop   | encoder, mlm_head, pooler, sentence_head        |
| AlbertForMaskedLM    | mlm       | encoder, mlm_head                               |
| AlbertModel          | mlm       | encoder (+ pooler); mlm_head left to fresh init |
| AlbertForSequenceClassification | classification | encoder, pooler, classifier (tanh) |

Export writes the architecture the objective names (common/train/objectives.py
`HFExport`): AlbertForPreTraining for 'mlm_sop'; AlbertForMaskedLM for an MLM model
that no architecture before it represents (one with sharing); likewise
AlbertForSequenceClassification for a classifier with a tanh head, AlbertModel for
params without heads. An unshared model
(layer_sharing 'none') is ALBERT with one group per layer. HF cannot represent
attention-only or FFN-only sharing, nor inner_group_num > 1 (several layers inside a
group): both are refused. When E = H our encoder has no projection; HF always has one,
written as the identity (and read back only if it is the identity).
"""

import dataclasses

import numpy as np

from common.model import encoder as encoder_lib
from common.interop import hf_bert
from common.interop import hf_checkpoint as hf
from common.model import mlm_model
from common.interop import model_dir
from common.errors import UserError

PREFIX = 'albert.'
PROJECTION = f'{PREFIX}encoder.embedding_hidden_mapping_in'
# ALBERT's config.json keys are BERT's; AlbertConfig's defaults differ.
ALBERT_KEYS = {**hf_bert.BERT_KEYS, 'vocab_size': ('vocab_size', 30000),
               'hidden_size': ('hidden_size', 4096),
               'num_heads': ('num_attention_heads', 64),
               'intermediate_size': ('intermediate_size', 16384),
               'hidden_act': ('hidden_act', 'gelu_new'),
               'dropout_rate': ('hidden_dropout_prob', 0.0),
               'attention_dropout_rate': ('attention_probs_dropout_prob', 0.0)}
ALBERT_LAYER = {
    'attention/query': 'attention.query', 'attention/key': 'attention.key',
    'attention/value': 'attention.value', 'attention/out': 'attention.dense',
    'attention_layer_norm': 'attention.LayerNorm', 'mlp/wi': 'ffn',
    'mlp/wo': 'ffn_output', 'mlp_layer_norm': 'full_layer_layer_norm'}
_HEADS = (hf.linear(f'{PREFIX}pooler', 'pooler/dense', 'pooler') +
          hf_bert.mlm_head_entries('predictions.dense', 'predictions.LayerNorm',
                                   'predictions.bias') +
          hf.linear('sop_classifier.classifier', 'sentence_head/dense', 'sop'))
_CLASSIFIER = tuple(hf.classifier_entries(f'{PREFIX}pooler', 'classifier'))
_TIED = {'predictions.decoder.weight': f'{PREFIX}embeddings.word_embeddings.weight',
         'predictions.decoder.bias': 'predictions.bias'}


def _hf_groups(num_layers: int, num_groups: int) -> list[int]:
  """HF's group of each layer (AlbertTransformer.forward), float division included."""
  return [int(i / (num_layers / num_groups)) for i in range(num_layers)]


def _group_entries(scopes: list[str]) -> list[hf.Entry]:
  """`albert_layer_groups.{g}.albert_layers.0` <-> our layer scope of group g."""
  return [e for g, ours in enumerate(scopes) for e in hf_bert.layer_entries(
      f'{PREFIX}encoder.albert_layer_groups.{g}.albert_layers.0.', ours, ALBERT_LAYER)]


def _entries(spec: encoder_lib.EncoderSpec, heads=_HEADS) -> list[hf.Entry]:
  """Every tensor of an ALBERT of this spec ('all' sharing, or 'none' as L groups)
  with these heads."""
  if spec.layer_sharing == 'all':
    scopes = [f'encoder/layer_group_{g}' for g in range(spec.num_hidden_groups)]
  else:
    scopes = [f'encoder/layer_{i}' for i in range(spec.num_layers)]
  projection = hf.linear(PROJECTION, 'encoder/embedding_projection') if (
      spec.factorized) else []
  return (hf_bert.embedding_entries(PREFIX, 'encoder/embeddings') + projection +
          _group_entries(scopes) + list(heads))


def _model_config(hf_config: dict, src: str) -> dict:
  hf.check_common(hf_config, src)
  if hf_config.get('inner_group_num', 1) != 1:
    raise UserError(f'{src}/config.json: inner_group_num={hf_config["inner_group_num"]} '
                    'cannot be represented (one layer per sharing group)')
  layers = hf_config.get('num_hidden_layers', 12)
  groups = hf_config.get('num_hidden_groups', 1)
  spec_groups = [i * groups // layers for i in range(layers)]
  if _hf_groups(layers, groups) != spec_groups:
    raise UserError(f'{src}/config.json: num_hidden_groups={groups} with '
                    f'num_hidden_layers={layers} groups layers as {_hf_groups(layers, groups)}'
                    f' (float division), ours as {spec_groups}')
  hidden = hf_config.get('hidden_size', 4096)
  embedding = hf_config.get('embedding_size', 128)
  return hf_bert.model_config_from_hf(
      hf_config, ALBERT_KEYS, src, position_offset=0, layer_sharing='all',
      num_hidden_groups=groups, embedding_size=0 if embedding == hidden else embedding)


def _check_identity(src: str, weights: dict[str, np.ndarray], hidden: int) -> set[str]:
  """E = H: the projection must be the identity (ours has none); its names."""
  names = {f'{PROJECTION}.weight', f'{PROJECTION}.bias'}
  weight = weights.get(f'{PROJECTION}.weight')
  bias = weights.get(f'{PROJECTION}.bias')
  if weight is None or bias is None:
    raise UserError(f'{src}: missing tensor {PROJECTION}.weight or .bias')
  if not (np.array_equal(weight, np.eye(hidden, dtype=weight.dtype)) and
          not np.any(bias)):
    raise UserError(f'{src}: {PROJECTION} is not the identity but embedding_size equals '
                    'hidden_size, where ours has no projection')
  return names


@dataclasses.dataclass(frozen=True)
class AlbertConverter(hf.Converter):
  """AlbertForPreTraining / AlbertForMaskedLM <-> MaskedLMModel with sharing."""
  model_type: str = 'albert'
  recipe: str = 'albert'
  # HF architecture -> the head groups it holds.
  architectures = {'AlbertForPreTraining': ('mlm', 'pooler', 'sop'),
                   'AlbertForMaskedLM': ('mlm',), 'AlbertModel': (),
                   'AlbertForSequenceClassification': ('pooler', 'classifier')}
  base_architecture = 'AlbertModel'
  head_activations = {'AlbertForSequenceClassification': 'tanh'}

  def import_model(self, src, hf_config, weights):
    model_config = _model_config(hf_config, src)
    spec = encoder_lib.EncoderSpec.from_config(model_config)
    weights = hf.with_prefix(weights, PREFIX, 'embeddings.word_embeddings.weight')
    identity = set() if spec.factorized else _check_identity(src, weights,
                                                             spec.hidden_size)
    if hf.is_classifier(weights, _CLASSIFIER):
      return hf.import_classifier(src, hf_config, weights, model_config,
                                  _entries(spec, _CLASSIFIER), 'tanh', identity)
    shapes = hf.param_shapes(mlm_model.MaskedLMModel(hf.unrolled(model_config),
                                                     sentence_classes=2))
    flat, present, used = hf.convert_in(src, weights, _entries(spec), shapes)
    used |= identity
    hf.check_rest(src, weights, used, _TIED)
    heads = {g: v for g, v in present.items() if g != 'encoder'}
    objective = 'mlm_sop' if heads.get('sop') else 'mlm'
    return hf.Imported(model_config, model_dir.unflatten(flat), objective, heads)

  def represents(self, model_config):
    spec = encoder_lib.EncoderSpec.from_config(model_config)
    return not spec.position_offset and spec.type_vocab_size > 0

  def export_model(self, model_config, architecture, params):
    spec = encoder_lib.EncoderSpec.from_config(model_config)
    if spec.layer_sharing not in ('all', 'none'):
      raise UserError(f"model.layer_sharing {spec.layer_sharing!r} cannot be exported: "
                      "HF ALBERT shares whole layers ('all') or nothing")
    groups = spec.num_hidden_groups if spec.layer_sharing == 'all' else spec.num_layers
    heads = set(self.architectures[architecture])
    if any(name.startswith('pooler/') for name in params):
      heads.add('pooler')
    classify = architecture in self.head_activations
    entries = [e for e in _entries(spec, _CLASSIFIER if classify else _HEADS)
               if e.group == 'encoder' or e.group in heads]
    constants = {}
    if not spec.factorized:
      constants = {f'{PROJECTION}.weight': np.eye(spec.hidden_size, dtype=np.float32),
                   f'{PROJECTION}.bias': np.zeros(spec.hidden_size, np.float32)}
    config = hf_bert.hf_config_from_ours(
        spec, ALBERT_KEYS, architectures=[architecture], model_type='albert',
        embedding_size=spec.embedding_size, num_hidden_groups=groups, inner_group_num=1,
        classifier_dropout_prob=0.0)
    model = hf.HFModel(config, entries, constants=constants)
    return [hf.base_model(model, PREFIX) if architecture == self.base_architecture
            else model]


ALBERT = AlbertConverter()
