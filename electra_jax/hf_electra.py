"""HF ELECTRA <-> our `ElectraModel` (electra_jax/model.py): the converter of model_type
'electra', which `common.interop.hf_checkpoint.CONVERTERS` names as
'electra_jax.hf_electra:ELECTRA'.

HF keeps the two networks in two directories: the discriminator
(ElectraForPreTraining: 'electra.*' + 'discriminator_predictions.*') and the generator
(ElectraForMaskedLM: 'electra.*' + 'generator_predictions.*' + 'generator_lm_head').
Ours is one `ElectraModel` whose networks share ONE embedding layer, so:
- import: the discriminator directory, plus the generator directory when given (or
  found as `<src>/generator`, where export puts it). Their embeddings must be equal
  (the released checkpoints tie them); the generator's size must be the one
  `model.generator_hidden_fraction` derives (electra_jax/model.py::generator_spec).
  -> params 'embeddings', 'discriminator', 'discriminator_head' (+ 'generator',
  'generator_head'), objective 'electra'.
  A generator directory alone is an MLM model with factorized embeddings: it imports
  as a `MaskedLMModel` (objective 'mlm'), and such a model exports back as
  ElectraForMaskedLM (the MLM objective's choice for a factorized encoder).
- export: for objective 'electra' (ElectraForPreTraining, electra_jax/objective.py
  `HF_EXPORT`) the discriminator at the destination and, when the params have a
  generator, ElectraForMaskedLM in `<dst>/generator`, both holding the shared tables.

A fine-tuned discriminator is a `SequenceClassifier` (common/model/classifier.py) with
a gelu head: ElectraForSequenceClassification's 'classifier.dense' is our 'pooler',
'classifier.out_proj' our 'classifier', 'electra.*' our 'encoder' (objective
'classification', both ways). Params without heads ('embeddings' + 'discriminator',
or 'encoder') export as ElectraModel; an ElectraModel imports as a discriminator
without its head (objective 'electra', heads rtd: false).

HF's generator head always applies gelu (ours applies model.hidden_act), so a generator
needs hidden_act 'gelu'.
"""

import dataclasses
import os

import numpy as np

from common.model import encoder as encoder_lib
from common.interop import hf_bert
from common.interop import hf_checkpoint as hf
from common.model import mlm_model
from common.interop import model_dir
from common.errors import UserError
from electra_jax import model as model_lib

PREFIX = 'electra.'
GENERATOR_SUBDIR = 'generator'
_TIED = {'generator_lm_head.weight': 'electra.embeddings.word_embeddings.weight'}


def _network_entries(model_config: dict, embeddings: str, encoder: str,
                     factorized: bool) -> list[hf.Entry]:
  """'electra.*' <-> an embeddings scope and an encoder scope (without embeddings)."""
  entries = hf_bert.embedding_entries(PREFIX, embeddings)
  if factorized:
    entries += hf.linear(f'{PREFIX}embeddings_project', f'{encoder}/embedding_projection')
  return entries + hf_bert.bert_layer_entries(PREFIX, encoder, model_config['num_layers'])


def _generator_head(ours: str, group: str) -> list[hf.Entry]:
  return hf_bert.mlm_head_entries('generator_predictions.dense',
                                  'generator_predictions.LayerNorm',
                                  'generator_lm_head.bias', ours=ours, group=group)


_CLASSIFIER = tuple(hf.classifier_entries('classifier.dense', 'classifier.out_proj'))
_RTD_HEAD = (hf.linear('discriminator_predictions.dense', 'discriminator_head/dense', 'rtd')
             + hf.linear('discriminator_predictions.dense_prediction',
                         'discriminator_head/prediction', 'rtd'))


def _model_config(hf_config: dict, src: str) -> dict:
  hf.check_common(hf_config, src)
  hidden = hf_config.get('hidden_size', 256)
  embedding = hf_config.get('embedding_size', 128)
  return hf_bert.model_config_from_hf(
      hf_config, hf_bert.BERT_KEYS, src, position_offset=0,
      embedding_size=0 if embedding == hidden else embedding)


def _is_generator(hf_config: dict, weights: dict) -> bool:
  return ('generator_predictions.dense.weight' in weights or
          'ElectraForMaskedLM' in (hf_config.get('architectures') or []))


def _check_gelu(hidden_act: str, where: str) -> None:
  if hidden_act != 'gelu':
    raise UserError(f"{where}: hidden_act {hidden_act!r}: HF's ELECTRA generator head "
                    'always applies gelu, ours model.hidden_act')


def _generator_fraction(disc: dict, gen: dict, src: str) -> float:
  """model.generator_hidden_fraction that derives `gen` from `disc`, or UserError."""
  for key in ('vocab_size', 'num_layers', 'max_position_embeddings', 'type_vocab_size',
              'layer_norm_eps', 'hidden_act'):
    if disc[key] != gen[key]:
      raise UserError(f'{src}: the generator has {key}={gen[key]!r}, the discriminator '
                      f'{disc[key]!r}; ElectraModel needs them equal')
  disc_e = disc['embedding_size'] or disc['hidden_size']
  gen_e = gen['embedding_size'] or gen['hidden_size']
  if disc_e != gen_e:
    raise UserError(f'{src}: the generator has embedding_size {gen_e}, the discriminator '
                    f'{disc_e}; ElectraModel shares one embedding layer')
  fraction = gen['hidden_size'] / disc['hidden_size']
  derived = model_lib.generator_spec({**disc, 'generator_hidden_fraction': fraction})
  for key, hf_key in (('num_heads', 'num_attention_heads'),
                      ('intermediate_size', 'intermediate_size')):
    if getattr(derived, key) != gen[key]:
      raise UserError(f'{src}: the generator has {hf_key}={gen[key]} but ElectraModel '
                      f'derives {getattr(derived, key)} for hidden size '
                      f"{gen['hidden_size']} (electra_jax/model.py::generator_spec)")
  return fraction


@dataclasses.dataclass(frozen=True)
class ElectraConverter(hf.Converter):
  """ElectraForPreTraining (+ generator) <-> ElectraModel; ElectraForMaskedLM alone <->
  a factorized MaskedLMModel."""
  model_type: str = 'electra'
  recipe: str = 'electra'
  # The discriminator (+ generator) of an ElectraModel; a MaskedLMModel; a
  # SequenceClassifier; an encoder alone.
  architectures = ('ElectraForPreTraining', 'ElectraForMaskedLM',
                   'ElectraForSequenceClassification', 'ElectraModel')
  base_architecture = 'ElectraModel'
  head_activations = {'ElectraForSequenceClassification': 'gelu'}
  options = ('generator',)

  def import_model(self, src, hf_config, weights, generator=None):
    model_config = _model_config(hf_config, src)
    weights = hf.with_prefix(weights, PREFIX, 'embeddings.word_embeddings.weight')
    factorized = encoder_lib.EncoderSpec.from_config(model_config).factorized
    if hf.is_classifier(weights, _CLASSIFIER):
      if generator is not None:
        raise UserError(f'{src} is a sequence classifier: --generator does not apply')
      return hf.import_classifier(
          src, hf_config, weights, model_config, _network_entries(
              model_config, 'encoder/embeddings', 'encoder', factorized) +
          list(_CLASSIFIER), 'gelu')
    if _is_generator(hf_config, weights):
      return self._import_generator_alone(src, model_config, weights, factorized)
    if generator is None and os.path.isfile(os.path.join(src, GENERATOR_SUBDIR,
                                                         'config.json')):
      generator = os.path.join(src, GENERATOR_SUBDIR)
    disc_entries = _network_entries(model_config, 'embeddings', 'discriminator',
                                    factorized) + _RTD_HEAD
    if generator is None:
      # Any generator size that builds: only the discriminator's shapes are used.
      shapes_config = {**model_config, 'generator_hidden_fraction': min(
          1.0, 64 / model_config['hidden_size'])}
      shapes = hf.param_shapes(model_lib.ElectraModel(hf.unrolled(shapes_config)))
      flat, present, used = hf.convert_in(src, weights, disc_entries, shapes)
      hf.check_rest(src, weights, used, {})
      heads = {'rtd': present.get('rtd', False), 'generator': False}
      return hf.Imported(model_config, model_dir.unflatten(flat), 'electra', heads)

    generator = os.path.abspath(generator)
    gen_config = hf.read_config(generator)
    gen_weights = hf.with_prefix(hf.read_weights(generator), PREFIX,
                                 'embeddings.word_embeddings.weight')
    if gen_config['model_type'] != 'electra' or not _is_generator(gen_config, gen_weights):
      raise UserError(f'{generator} is not an ELECTRA generator (ElectraForMaskedLM)')
    gen_model = _model_config(gen_config, generator)
    _check_gelu(gen_model['hidden_act'], generator)
    model_config['generator_hidden_fraction'] = _generator_fraction(
        model_config, gen_model, generator)
    gen_spec = model_lib.generator_spec(model_config)
    shapes = hf.param_shapes(model_lib.ElectraModel(hf.unrolled(model_config)))
    flat, present, used = hf.convert_in(src, weights, disc_entries, shapes)
    hf.check_rest(src, weights, used, {})
    gen_entries = _network_entries(model_config, 'embeddings', 'generator',
                                   gen_spec.factorized) + _generator_head(
                                       'generator_head', 'encoder')
    gen_flat, _, gen_used = hf.convert_in(generator, gen_weights, gen_entries, shapes)
    hf.check_rest(generator, gen_weights, gen_used, _TIED)
    for name, value in gen_flat.items():
      if name.startswith('embeddings/') and not np.array_equal(value, flat[name]):
        hf_name = next(e.hf for e in gen_entries if e.ours == name)
        raise UserError(f'{generator}: {hf_name} differs from the discriminator\'s; '
                        'ElectraModel shares one embedding layer')
    heads = {'rtd': present.get('rtd', False), 'generator': True}
    return hf.Imported(model_config, model_dir.unflatten({**gen_flat, **flat}),
                       'electra', heads)

  def _import_generator_alone(self, src, model_config, weights, factorized):
    _check_gelu(model_config['hidden_act'], src)
    entries = _network_entries(model_config, 'encoder/embeddings', 'encoder',
                               factorized) + _generator_head('mlm_head', 'mlm')
    shapes = hf.param_shapes(mlm_model.MaskedLMModel(hf.unrolled(model_config)))
    flat, present, used = hf.convert_in(src, weights, entries, shapes)
    hf.check_rest(src, weights, used, _TIED)
    return hf.Imported(model_config, model_dir.unflatten(flat), 'mlm',
                       {'mlm': present.get('mlm', False)}, recipe='bert',
                       overrides={'objective.name': 'mlm'})

  def represents(self, model_config):
    spec = encoder_lib.EncoderSpec.from_config(model_config)
    return (spec.layer_sharing == 'none' and spec.position_offset == 0 and
            spec.type_vocab_size > 0)

  def export_model(self, model_config, architecture, params):
    spec = encoder_lib.EncoderSpec.from_config(model_config)

    def config(spec, name):
      return hf_bert.hf_config_from_ours(
          spec, hf_bert.BERT_KEYS, architectures=[name],
          model_type='electra', embedding_size=spec.embedding_size)

    if architecture == 'ElectraForSequenceClassification':  # A SequenceClassifier.
      return [hf.HFModel(config(spec, architecture), _network_entries(
          model_config, 'encoder/embeddings', 'encoder', spec.factorized) +
                         list(_CLASSIFIER))]
    if architecture == 'ElectraModel':  # An encoder: ours, or a discriminator's.
      scopes = ('encoder/embeddings', 'encoder')
      if any(name.startswith('discriminator/') for name in params):
        scopes = ('embeddings', 'discriminator')
      return [hf.base_model(hf.HFModel(config(spec, architecture), _network_entries(
          model_config, *scopes, spec.factorized)), PREFIX)]
    if architecture == 'ElectraForMaskedLM':  # A MaskedLMModel.
      _check_gelu(spec.hidden_act, 'model')
      entries = _network_entries(model_config, 'encoder/embeddings', 'encoder',
                                 spec.factorized) + _generator_head('mlm_head', 'mlm')
      return [hf.HFModel(config(spec, 'ElectraForMaskedLM'), entries)]
    models = [hf.HFModel(
        config(spec, 'ElectraForPreTraining'),
        _network_entries(model_config, 'embeddings', 'discriminator', spec.factorized)
        + _RTD_HEAD)]
    if any(name.startswith('generator') for name in params):
      _check_gelu(spec.hidden_act, 'model')
      gen_spec = model_lib.generator_spec(model_config)
      models.append(hf.HFModel(
          config(gen_spec, 'ElectraForMaskedLM'),
          _network_entries(model_config, 'embeddings', 'generator', gen_spec.factorized)
          + _generator_head('generator_head', 'generator'), subdir=GENERATOR_SUBDIR))
    return models


ELECTRA = ElectraConverter()
