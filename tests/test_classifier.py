"""The sequence classifier (common/model/classifier.py) and its HF interop.

The head on every family's encoder; its pooler is the pretraining models' pooler; a
classifier exported as the family's *ForSequenceClassification gives transformers'
logits (right-padded inputs, float32, 1e-4) and imports back exactly; an HF classifier
imports with its labels and exports back tensor for tensor; an encoder without heads
(an imported BertModel, ...) exports as the family's base model.
`pytest -s` prints the largest difference per family.
"""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import safetensors.numpy

from common.errors import UserError
from common.interop import hf_checkpoint
from common.interop import model_dir
from common.model import classifier
from common.model import encoder as encoder_lib
from common.model import heads
from common.model import mlm_model
from common.train import sharding
from electra_jax import export as electra_export
from launch import convert
from tests import conftest
from tests import test_hf_interop as interop

V, TOL = interop.V, interop.TOL
# family: (our model config, head activation, pad id, token types)
FAMILIES = {
    'bert': (interop.OURS, 'tanh', 0, True),
    'roberta': (dict(interop.OURS, max_position_embeddings=42, type_vocab_size=1,
                     position_offset=2, layer_norm_eps=1e-5), 'tanh', 1, False),
    # Shared (3 layers in 2 groups) and factorized.
    'albert': (dict(interop.OURS, num_layers=3, embedding_size=16, hidden_act='gelu_new',
                    layer_sharing='all', num_hidden_groups=2, dropout_rate=0.0,
                    attention_dropout_rate=0.0), 'tanh', 0, True),
    # A discriminator's encoder: factorized, small.
    'electra': (dict(interop.OURS, embedding_size=16), 'gelu', 0, True),
    'distilbert': (dict(interop.OURS, type_vocab_size=0), 'relu', 0, False),
}
ARCHITECTURES = {'bert': 'Bert', 'roberta': 'Roberta', 'albert': 'Albert',
                 'electra': 'Electra', 'distilbert': 'DistilBert'}
LABELS = ['negative', 'neutral', 'positive']


@pytest.fixture(scope='module')
def hf():
  return conftest.import_hf()


def _batch(family, length=interop.T):
  _, _, pad_id, token_types = FAMILIES[family]
  batch = interop.make_batch(pad_id, token_types)
  return {k: v[:, :length] for k, v in batch.items() if k != 'masked_positions'}


_APPLY = {}


def run_ours(model_config, num_labels, activation, params, batch):
  key = (json.dumps(model_config, sort_keys=True), num_labels, activation)
  if key not in _APPLY:
    model = classifier.SequenceClassifier(ml_collections.ConfigDict(model_config),
                                          num_labels, activation)
    _APPLY[key] = jax.jit(lambda p, b: model.apply({'params': p}, b))
  return np.asarray(_APPLY[key](params, {k: jnp.asarray(v) for k, v in batch.items()}))


def random_params(model_config, num_labels, activation, seed):
  """Random values for every parameter (LayerNorm scales around 1)."""
  rng = np.random.default_rng(seed)
  shapes = hf_checkpoint.param_shapes(classifier.SequenceClassifier(
      ml_collections.ConfigDict(model_config), num_labels, activation))
  return model_dir.unflatten({
      name: (name.endswith('/scale') + 0.2 * rng.standard_normal(shape)).astype(
          np.float32) for name, shape in shapes.items()})


def run_hf(torch, model, batch, token_types):
  kwargs = dict(input_ids=torch.tensor(batch['input_ids'], dtype=torch.long),
                attention_mask=torch.tensor(batch['attention_mask'], dtype=torch.long))
  if token_types:
    kwargs['token_type_ids'] = torch.tensor(batch['segment_ids'], dtype=torch.long)
  with torch.no_grad():
    return model.eval()(**kwargs)


def report(family, what, diff):
  print(f'\n[hf-parity] {family:10s} {what:22s} max |diff| {diff:.2e}')
  assert diff <= TOL, (family, what, diff)


def write_ours(path, params, model_config, source):
  with model_dir.atomic_directory(path) as tmp:
    model_dir.write_contents(tmp, params, model_config, source)
  return path


# ----------------------------------------------------------------- the model


@pytest.mark.parametrize('family', sorted(FAMILIES))
@pytest.mark.parametrize('num_labels', [3, 1])
def test_the_head_on_every_family_gives_one_row_of_logits_per_example(family, num_labels):
  model_config, activation, _, _ = FAMILIES[family]
  batch = _batch(family)
  params = random_params(model_config, num_labels, activation, seed=0)
  assert sorted(params) == ['classifier', 'encoder', 'pooler']
  logits = run_ours(model_config, num_labels, activation, params, batch)
  assert logits.shape == (interop.B, num_labels) and logits.dtype == np.float32
  assert np.all(np.isfinite(logits))
  # Padding is never attended to: other ids there change nothing.
  padded = dict(batch, input_ids=np.where(batch['attention_mask'] == 1,
                                          batch['input_ids'], 7))
  np.testing.assert_allclose(run_ours(model_config, num_labels, activation, params,
                                      padded), logits, atol=1e-5)


def test_dropout_is_on_only_when_asked():
  config = ml_collections.ConfigDict(interop.OURS)
  model = classifier.SequenceClassifier(config, 3, 'tanh', dropout_rate=0.5)
  batch = {k: jnp.asarray(v) for k, v in _batch('bert').items()}
  variables = model.init(jax.random.key(0), batch)
  a = model.apply(variables, batch)
  assert np.array_equal(a, model.apply(variables, batch))
  b = model.apply(variables, batch, deterministic=False, rngs={'dropout': jax.random.key(1)})
  assert not np.allclose(a, b)


def test_every_parameter_has_logical_axes_the_rules_resolve():
  model_config = FAMILIES['albert'][0]
  model = classifier.SequenceClassifier(ml_collections.ConfigDict(model_config), 3)
  batch = {k: jnp.ones((1, 4), jnp.int32) for k in ('input_ids', 'attention_mask')}
  boxed = jax.eval_shape(model.init, jax.random.key(0), batch)['params']
  rules = dict(sharding.LOGICAL_AXIS_RULES)
  leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  for leaf in leaves:
    assert isinstance(leaf, nn.LogicallyPartitioned)
    assert len(leaf.names) == len(leaf.value.shape)
    assert all(name in rules for name in leaf.names), leaf.names
  assert set(encoder_lib.LOGICAL_AXIS_NAMES) >= {
      n for leaf in leaves for n in leaf.names}


def test_the_pretrained_pooler_and_encoder_drop_in_unchanged():
  """MaskedLMModel with NSP ('mlm_nsp'): same 'encoder' and 'pooler' trees, shapes and
  logical names; with its values the classifier's tanh pooler IS heads.Pooler."""
  config = ml_collections.ConfigDict(interop.OURS)
  batch = {k: jnp.ones((1, 4), jnp.int32)
           for k in ('input_ids', 'segment_ids', 'attention_mask')}
  pretrained = jax.eval_shape(mlm_model.MaskedLMModel(config, sentence_classes=2).init,
                              jax.random.key(0), {**batch, 'masked_positions':
                                                  jnp.zeros((1, 1), jnp.int32)})['params']
  ours = jax.eval_shape(classifier.SequenceClassifier(config, 3).init,
                        jax.random.key(0), batch)['params']

  def described(tree):
    return jax.tree.map(lambda x: (x.value.shape, x.names), tree,
                        is_leaf=lambda x: isinstance(x, nn.Partitioned))

  for scope in ('encoder', 'pooler'):
    assert described(pretrained[scope]) == described(ours[scope]), scope

  x = jax.random.normal(jax.random.key(1), (2, 5, 32))
  pooler = heads.Pooler(config).init(jax.random.key(2), x)
  mine = classifier.PooledDense(config, 'tanh').apply(pooler, x[:, 0])
  np.testing.assert_allclose(mine, heads.Pooler(config).apply(pooler, x), atol=1e-6)


def test_bad_heads_are_named():
  config = ml_collections.ConfigDict(interop.OURS)
  batch = {'input_ids': jnp.ones((1, 4), jnp.int32)}
  with pytest.raises(UserError, match="head_activation 'swish' is unknown"):
    classifier.SequenceClassifier(config, 2, 'swish').init(jax.random.key(0), batch)
  with pytest.raises(UserError, match='num_labels must be a positive integer'):
    classifier.SequenceClassifier(config, 0).init(jax.random.key(0), batch)


# ----------------------------------------------------------------- choosing the class


@pytest.mark.parametrize('model, activation, architecture', [
    ({}, 'tanh', 'BertForSequenceClassification'),
    ({'position_offset': 2, 'type_vocab_size': 1}, 'tanh',
     'RobertaForSequenceClassification'),
    ({'type_vocab_size': 0}, 'relu', 'DistilBertForSequenceClassification'),
    ({'embedding_size': 16}, 'gelu', 'ElectraForSequenceClassification'),
    ({}, 'gelu', 'ElectraForSequenceClassification'),
    ({'layer_sharing': 'all', 'embedding_size': 16}, 'tanh',
     'AlbertForSequenceClassification'),
    ({'embedding_size': 16}, 'tanh', 'AlbertForSequenceClassification'),
])
def test_the_head_activation_and_config_pick_the_classifier(model, activation,
                                                             architecture):
  converter, chosen = hf_checkpoint.converter_for_export(
      'classification', dict(interop.OURS, **model), head_activation=activation)
  assert chosen == architecture
  assert converter.head_activations[chosen] == activation


@pytest.mark.parametrize('model, activation', [
    ({'layer_sharing': 'all'}, 'gelu'),
    ({'type_vocab_size': 0}, 'tanh'),
    ({'position_offset': 2}, 'relu'),
])
def test_no_classifier_class_for_the_activation_and_config_is_named(model, activation):
  with pytest.raises(UserError, match=f"no HF architecture represents objective "
                     f"'classification' with model .*, head_activation="
                     f"'{activation}'"):
    hf_checkpoint.converter_for_export('classification', dict(interop.OURS, **model),
                                       head_activation=activation)


def test_export_refuses_a_classifier_it_cannot_describe(tmp_path):
  params = random_params(interop.OURS, 3, 'tanh', seed=0)
  for name, source, message in (
      ('no_act', {'objective': 'classification'}, "does not say the classifier's "
       'head_activation'),
      ('labels', {'objective': 'classification', 'head_activation': 'tanh',
                  'num_labels': 2}, 'says num_labels=2 but the classifier has 3'),
      ('names', {'objective': 'classification', 'head_activation': 'tanh',
                 'id2label': ['a', 'b']}, 'id2label must name labels 0..2'),
      ('relu', {'objective': 'classification', 'head_activation': 'relu'},
       "head_activation='relu'")):
    src = write_ours(str(tmp_path / name), params, interop.OURS, source)
    with pytest.raises(UserError, match=message):
      convert.export_hf(src, str(tmp_path / f'{name}_hf'))
    assert not os.path.exists(tmp_path / f'{name}_hf')


# ----------------------------------------------------------------- parity with HF


def hf_classifier(transformers, family, num_labels):
  """A random HF *ForSequenceClassification of the family, shaped as FAMILIES."""
  labels = dict(num_labels=num_labels)
  if num_labels == len(LABELS):
    labels = dict(id2label=dict(enumerate(LABELS)),
                  label2id={n: i for i, n in enumerate(LABELS)})
  size = interop.BERT_SIZE
  if family == 'bert':
    config = transformers.BertConfig(**size, **labels)
  elif family == 'roberta':
    config = transformers.RobertaConfig(**{**size, 'max_position_embeddings': 42},
                                        type_vocab_size=1, layer_norm_eps=1e-5, **labels)
  elif family == 'albert':
    config = transformers.AlbertConfig(
        **{**size, 'num_hidden_layers': 3, 'hidden_act': 'gelu_new'},
        embedding_size=16, num_hidden_groups=2, **labels)
  elif family == 'electra':
    config = transformers.ElectraConfig(**size, embedding_size=16, **labels)
  else:
    config = transformers.DistilBertConfig(vocab_size=V, dim=32, n_layers=2, n_heads=2,
                                           hidden_dim=64, max_position_embeddings=40,
                                           **labels)
  name = f'{ARCHITECTURES[family]}ForSequenceClassification'
  return getattr(transformers, name)(config)


def perturb_all(torch, model, seed):
  """Every weight ~ N(0, 0.2), biases and LayerNorm moved off 0 / 1: HF's init (std
  0.02) gives nearly the same logits for every input, which would check little."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for _, p in sorted(model.named_parameters()):
      if p.dim() > 1:
        p.copy_(0.2 * torch.randn(p.shape, generator=generator))
  interop.perturb_torch(torch, model, seed)


def _tensors(path):
  return {k: v for k, v in safetensors.numpy.load_file(
      os.path.join(path, 'model.safetensors')).items() if not k.endswith('position_ids')}


@pytest.mark.parametrize('family', sorted(FAMILIES))
@pytest.mark.parametrize('num_labels', [3, 1])
def test_our_classifier_exports_as_the_family_classifier(hf, family, num_labels,
                                                         tmp_path):
  torch, transformers = hf
  model_config, activation, _, token_types = FAMILIES[family]
  params = random_params(model_config, num_labels, activation, seed=1)
  names = LABELS if num_labels == 3 else ['score']
  src = write_ours(str(tmp_path / 'ours'), params, model_config, {
      'objective': 'classification', 'num_labels': num_labels,
      'head_activation': activation, 'id2label': names})
  result = hf_checkpoint.export_dir(src, str(tmp_path / 'hf'))
  architecture = f'{ARCHITECTURES[family]}ForSequenceClassification'
  assert result['architectures'] == {'.': architecture}

  model = transformers.AutoModelForSequenceClassification.from_pretrained(
      str(tmp_path / 'hf'))
  assert type(model).__name__ == architecture
  assert model.config.num_labels == num_labels
  assert [model.config.id2label[i] for i in range(num_labels)] == names
  assert model.config.problem_type == (
      'regression' if num_labels == 1 else 'single_label_classification')
  # Every tensor the HF class has, and nothing else.
  expected = {k for k in model.state_dict() if not k.endswith('position_ids')}
  assert set(_tensors(str(tmp_path / 'hf'))) == expected

  batch = _batch(family)
  theirs = run_hf(torch, model, batch, token_types).logits.numpy()
  assert np.ptp(theirs, axis=0).min() > 0.05  # The inputs give different logits.
  ours = run_ours(model_config, num_labels, activation, params, batch)
  report(family, f'export K={num_labels}', float(np.max(np.abs(ours - theirs))))

  source = convert.import_hf(str(tmp_path / 'hf'), str(tmp_path / 'back'))
  assert source['objective'] == 'classification'
  assert (source['num_labels'], source['head_activation'], source['id2label']) == (
      num_labels, activation, names)
  _, back, _ = model_dir.read(str(tmp_path / 'back'))
  expected, got = model_dir.flatten(params), model_dir.flatten(back)
  assert sorted(got) == sorted(expected)
  for name, value in expected.items():
    assert np.array_equal(got[name], value), name


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_an_hf_classifier_imports_with_its_labels_and_exports_back(hf, family, tmp_path):
  torch, transformers = hf
  model_config, activation, _, token_types = FAMILIES[family]
  torch.manual_seed(0)
  model = hf_classifier(transformers, family, 3)
  perturb_all(torch, model, seed=0)
  model.save_pretrained(str(tmp_path / 'hf'))

  source = convert.import_hf(str(tmp_path / 'hf'), str(tmp_path / 'ours'))
  assert source['objective'] == 'classification'
  assert source['heads'] == {'pooler': True, 'classifier': True}
  assert (source['num_labels'], source['head_activation'], source['id2label'],
          source['problem_type']) == (3, activation, LABELS, 'single_label_classification')
  saved_config, params, _ = model_dir.read(str(tmp_path / 'ours'))
  assert model_dir.model_fields(saved_config) == model_config
  batch = _batch(family)
  theirs = run_hf(torch, model, batch, token_types).logits.numpy()
  assert np.ptp(theirs, axis=0).min() > 0.05  # The inputs give different logits.
  ours = run_ours(model_config, 3, activation, params, batch)
  report(family, 'import K=3', float(np.max(np.abs(ours - theirs))))

  convert.export_hf(str(tmp_path / 'ours'), str(tmp_path / 'again'))
  original, again = _tensors(str(tmp_path / 'hf')), _tensors(str(tmp_path / 'again'))
  assert sorted(again) == sorted(original)
  for name, value in original.items():
    assert np.array_equal(again[name], value), name
  config = json.load(open(tmp_path / 'again' / 'config.json'))
  assert config['id2label'] == {str(i): n for i, n in enumerate(LABELS)}


# ----------------------------------------------------------------- encoders alone


def hf_base_model(transformers, family):
  model = hf_classifier(transformers, family, 2)
  return getattr(transformers, f'{ARCHITECTURES[family]}Model')(model.config)


def our_hidden(model_config, params, batch):
  """Our encoder's last hidden states from imported headless params."""
  encoder = params['encoder'] if 'encoder' in params else (
      electra_export.discriminator_params(params))
  model = encoder_lib.Encoder(ml_collections.ConfigDict(model_config))
  return np.asarray(model.apply({'params': encoder}, jnp.asarray(batch['input_ids']),
                                jnp.asarray(batch['segment_ids']),
                                jnp.asarray(batch['attention_mask'])))


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_an_encoder_without_heads_round_trips_as_the_base_model(hf, family, tmp_path):
  """The reported bug: a BertModel imported, then exported, asked for the MLM head."""
  torch, transformers = hf
  model_config, _, _, token_types = FAMILIES[family]
  torch.manual_seed(0)
  model = hf_base_model(transformers, family)
  perturb_all(torch, model, seed=0)
  model.save_pretrained(str(tmp_path / 'hf'))
  source = convert.import_hf(str(tmp_path / 'hf'), str(tmp_path / 'ours'))
  assert not any(source['heads'].get(h) for h in ('mlm', 'nsp', 'sop', 'rtd'))
  saved_config, params, _ = model_dir.read(str(tmp_path / 'ours'))
  assert hf_checkpoint.is_headless(params)

  result = convert.export_hf(str(tmp_path / 'ours'), str(tmp_path / 'again'))
  architecture = f'{ARCHITECTURES[family]}Model'
  assert result['architectures'] == {'.': architecture}
  original, again = _tensors(str(tmp_path / 'hf')), _tensors(str(tmp_path / 'again'))
  assert sorted(again) == sorted(original)  # Named as the base model saves them.
  for name, value in original.items():
    assert np.array_equal(again[name], value), name

  reloaded = getattr(transformers, architecture).from_pretrained(str(tmp_path / 'again'))
  batch = _batch(family)
  real = batch['attention_mask'].astype(bool)
  expected = run_hf(torch, model, batch, token_types)
  got = run_hf(torch, reloaded, batch, token_types)
  assert np.array_equal(got.last_hidden_state.numpy(), expected.last_hidden_state.numpy())
  if getattr(expected, 'pooler_output', None) is not None:
    assert np.array_equal(got.pooler_output.numpy(), expected.pooler_output.numpy())
  ours = our_hidden(model_dir.model_fields(saved_config), params, batch)
  report(family, 'base model hidden', float(np.max(np.abs(
      ours[real] - expected.last_hidden_state.numpy()[real]))))
