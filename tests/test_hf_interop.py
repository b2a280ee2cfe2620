"""HF interop: every family's import and export against transformers, round trips, errors.

Each family: a random HF PyTorch model (seeded; biases and LayerNorm parameters moved
away from their 0/1 init so they are checked) is imported and run by our model on
right-padded inputs; our randomly initialised model is exported and run by
transformers; ours -> HF -> ours gives back exactly the same parameters. Outputs are
compared in float32 at real tokens to 1e-4: last and per-layer hidden states, MLM
logits (at our masked positions), NSP/SOP and ELECTRA discriminator logits, the
ELECTRA generator's MLM logits.
`pytest -s` prints the largest difference per family and direction.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy

from common.model import encoder as encoder_lib
from common.interop import hf_checkpoint
from common.train import metrics as metrics_lib
from common.model import mlm_model
from common.interop import model_dir
from common.train import objectives
from common.data import pipeline
from common.train import pretraining
from common.errors import UserError
from electra_jax import model as electra_model
from launch import convert
from tests import conftest
from tests.conftest import tiny_config

V, B, T = 120, 3, 12
TOL = 1e-4
REAL = (12, 9, 5)  # Real tokens per row; the rest is right padding.
POSITIONS = np.array([[1, 3, 5, 7], [0, 4, 6, 8], [1, 2, 3, 4]], np.int32)
BERT_SIZE = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=40, hidden_act='gelu')
# Our model config of the same size: exactly what importing BERT_SIZE gives.
OURS = dict(vocab_size=V, hidden_size=32, num_layers=2, num_heads=2,
            intermediate_size=64, max_position_embeddings=40, type_vocab_size=2,
            embedding_size=0, hidden_act='gelu', dropout_rate=0.1,
            attention_dropout_rate=0.1, layer_norm_eps=1e-12, initializer_range=0.02,
            pre_layer_norm=False, scan_layers=True, remat_policy='none',
            dtype='float32', attention_impl='xla', position_offset=0)


@pytest.fixture(scope='module')
def hf():
  return conftest.import_hf()


# ----------------------------------------------------------------- the families


def _bert(transformers):
  return [('', transformers.BertForPreTraining(transformers.BertConfig(**BERT_SIZE)))]


def _roberta(transformers):
  config = transformers.RobertaConfig(**{**BERT_SIZE, 'max_position_embeddings': 42},
                                      type_vocab_size=1, layer_norm_eps=1e-5)
  return [('', transformers.RobertaForMaskedLM(config))]


def _distilbert(transformers):
  config = transformers.DistilBertConfig(vocab_size=V, dim=32, n_layers=2, n_heads=2,
                                         hidden_dim=64, max_position_embeddings=40)
  return [('', transformers.DistilBertForMaskedLM(config))]


def _electra(transformers):
  disc = transformers.ElectraForPreTraining(
      transformers.ElectraConfig(**BERT_SIZE, embedding_size=16))
  # Generator hidden 16 = 0.5 x 32 with max(1, 16 // 64) heads and FFN 4 x 16, as
  # ElectraModel derives it; its embeddings are the discriminator's (shared).
  gen = transformers.ElectraForMaskedLM(transformers.ElectraConfig(
      **{**BERT_SIZE, 'hidden_size': 16, 'num_attention_heads': 1,
         'intermediate_size': 64}, embedding_size=16))
  gen.electra.embeddings.load_state_dict(disc.electra.embeddings.state_dict())
  return [('', disc), ('generator', gen)]


def _albert(transformers):
  # 3 layers in 2 sharing groups (layers 0, 1 share group 0), factorized E = 16.
  config = transformers.AlbertConfig(
      **{**BERT_SIZE, 'num_hidden_layers': 3, 'hidden_act': 'gelu_new'},
      embedding_size=16, num_hidden_groups=2)
  return [('', transformers.AlbertForPreTraining(config))]


FAMILIES = {
    'albert': (_albert, dict(OURS, num_layers=3, embedding_size=16, hidden_act='gelu_new',
                             layer_sharing='all', num_hidden_groups=2, dropout_rate=0.0,
                             attention_dropout_rate=0.0), 'mlm_sop', 0, True),
    # family: (HF models, our model config, objective, pad id, token types)
    'bert': (_bert, OURS, 'mlm_nsp', 0, True),
    'roberta': (_roberta, dict(OURS, max_position_embeddings=42, type_vocab_size=1,
                               position_offset=2, layer_norm_eps=1e-5), 'mlm', 1, False),
    'distilbert': (_distilbert, dict(OURS, type_vocab_size=0), 'mlm', 0, False),
    'electra': (_electra, dict(OURS, embedding_size=16, generator_hidden_fraction=0.5),
                'electra', 0, True),
}


# Heads each family's HF model has (RobertaForMaskedLM has no pooler).
HEADS = {'albert': {'mlm', 'pooler', 'sop'}, 'bert': {'mlm', 'pooler', 'nsp'}, 'roberta': {'mlm'}, 'distilbert': {'mlm'},
         'electra': {'rtd', 'generator'}}


def perturb_torch(torch, model, seed):
  """Biases and LayerNorm params away from 0 / 1 (random init leaves them there)."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for _, p in sorted(model.named_parameters()):
      if p.dim() == 1:
        p.add_(0.2 * torch.randn(p.shape, generator=generator))


def make_batch(pad_id, token_types):
  rng = np.random.default_rng(0)
  ids = rng.integers(5, V, size=(B, T)).astype(np.int32)
  mask = (np.arange(T)[None] < np.array(REAL)[:, None]).astype(np.int32)
  ids = np.where(mask == 1, ids, pad_id)
  segments = ((np.arange(T)[None] >= 6) & (mask == 1)).astype(np.int32) if token_types \
      else np.zeros_like(ids)
  return {'input_ids': ids, 'attention_mask': mask, 'segment_ids': segments,
          'masked_positions': POSITIONS}


# ----------------------------------------------------------------- running both


def our_model(model_config, objective):
  config = ml_collections.ConfigDict(model_config)
  if objective == 'electra':
    return electra_model.ElectraModel(config)
  return mlm_model.MaskedLMModel(
      config, sentence_classes=2 * (objective in ('mlm_nsp', 'mlm_sop')))


_COMPILED = {}  # One compile per family, shared by its import and export tests.


def run_ours(model_config, objective, params, batch):
  """Our model's outputs: hidden states (last, per layer) and every head's logits."""
  key = (json.dumps(model_config, sort_keys=True), objective)
  if key not in _COMPILED:
    model = our_model(model_config, objective)

    def apply(params, batch):
      if objective == 'electra':
        out, state = model.apply(
            {'params': params}, batch['input_ids'], batch['segment_ids'],
            batch['attention_mask'], method=model.discriminate,
            mutable=['intermediates'])
        out['generator_logits'] = model.apply({'params': params}, batch,
                                              method=model.generate)
        scope = 'discriminator'
      else:
        out, state = model.apply({'params': params}, batch, mutable=['intermediates'])
        scope = 'encoder'
      return {**out, 'layers': jnp.stack(encoder_lib.layer_intermediates(
          state['intermediates'][scope], model_config))}

    _COMPILED[key] = jax.jit(apply)
  out = _COMPILED[key](params, {k: jnp.asarray(v) for k, v in batch.items()})
  return {k: np.asarray(v) for k, v in out.items()}


def random_params(model_config, objective, seed):
  """Random values for every parameter of our model (LayerNorm scales around 1)."""
  rng = np.random.default_rng(seed)
  shapes = hf_checkpoint.param_shapes(our_model(model_config, objective))
  return model_dir.unflatten({
      name: (name.endswith('/scale') + 0.2 * rng.standard_normal(shape)).astype(
          np.float32) for name, shape in shapes.items()})


def run_hf(torch, models, batch, token_types):
  """Outputs of the HF models under our names ({'': main, 'generator': ...})."""
  def call(model):
    kwargs = dict(input_ids=torch.tensor(batch['input_ids'], dtype=torch.long),
                  attention_mask=torch.tensor(batch['attention_mask'], dtype=torch.long),
                  output_hidden_states=True)
    if token_types:
      kwargs['token_type_ids'] = torch.tensor(batch['segment_ids'], dtype=torch.long)
    with torch.no_grad():
      return model.eval()(**kwargs)

  def gather(logits_BxTxV):
    return np.take_along_axis(logits_BxTxV.numpy(), POSITIONS[:, :, None], axis=1)

  main = models['']
  result = call(main)
  out = {'hidden': result.hidden_states[-1].numpy(),
         'layers': np.stack([h.numpy() for h in result.hidden_states[1:]])}
  name = type(main).__name__
  if name == 'ElectraForPreTraining':
    out['rtd_logits'] = result.logits.numpy()
  elif name == 'BertForPreTraining':
    out['mlm_logits'] = gather(result.prediction_logits)
    out['sentence_logits'] = result.seq_relationship_logits.numpy()
  elif name == 'AlbertForPreTraining':
    out['mlm_logits'] = gather(result.prediction_logits)
    out['sentence_logits'] = result.sop_logits.numpy()
  else:
    out['mlm_logits'] = gather(result.logits)
  if 'generator' in models:
    out['generator_logits'] = gather(call(models['generator']).logits)
  return out


def max_differences(ours, theirs, batch):
  """Largest |ours - theirs| per output, at real tokens (logits at masked positions)."""
  real = batch['attention_mask'].astype(bool)
  diffs = {}
  for key, value in theirs.items():
    mine = ours[key]
    assert mine.shape == value.shape, key
    if key in ('hidden', 'rtd_logits'):
      mine, value = mine[real], value[real]
    elif key == 'layers':
      mine, value = mine[:, real], value[:, real]
    diffs[key] = float(np.max(np.abs(mine - value)))
  return diffs


def report(family, direction, diffs):
  print(f'\n[hf-parity] {family:10s} {direction:6s} max |diff| {max(diffs.values()):.2e} '
        + ', '.join(f'{k} {v:.1e}' for k, v in sorted(diffs.items())))
  assert max(diffs.values()) <= TOL, diffs


def save_hf(torch, transformers, family, root):
  """Random HF models of the family saved under root; returns {subdir: model}."""
  torch.manual_seed(0)
  models = dict(FAMILIES[family][0](transformers))
  for i, (subdir, model) in enumerate(sorted(models.items())):
    perturb_torch(torch, model, seed=i)
    if subdir == 'generator':  # Keep the tables shared after the perturbation.
      model.electra.embeddings.load_state_dict(
          models[''].electra.embeddings.state_dict())
    model.save_pretrained(os.path.join(root, subdir))
  return models


# ----------------------------------------------------------------- parity tests


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_import_matches_transformers(hf, family, tmp_path):
  torch, transformers = hf
  _, expected_config, objective, pad_id, token_types = FAMILIES[family]
  models = save_hf(torch, transformers, family, str(tmp_path / 'hf'))
  source = convert.import_hf(str(tmp_path / 'hf'), str(tmp_path / 'ours'))
  assert source['objective'] == objective
  assert {h for h, found in source['heads'].items() if found} == HEADS[family]
  model_config, params, _ = model_dir.read(str(tmp_path / 'ours'))
  assert model_dir.model_fields(model_config) == expected_config
  batch = make_batch(pad_id, token_types)
  ours = run_ours(expected_config, objective, params, batch)
  report(family, 'import', max_differences(
      ours, run_hf(torch, models, batch, token_types), batch))


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_export_loads_in_transformers_and_round_trips(hf, family, tmp_path):
  torch, transformers = hf
  _, model_config, objective, pad_id, token_types = FAMILIES[family]
  batch = make_batch(pad_id, token_types)
  params = random_params(model_config, objective, seed=2)
  ours_dir = str(tmp_path / 'ours')
  with model_dir.atomic_directory(ours_dir) as tmp:
    model_dir.write_contents(tmp, params, model_config, {'objective': objective})

  result = convert.export_hf(ours_dir, str(tmp_path / 'hf'))
  models = {}
  for subdir, architecture in result['architectures'].items():
    path = str(tmp_path / 'hf' / subdir)
    models['' if subdir == '.' else subdir] = getattr(
        transformers, architecture).from_pretrained(path)
  ours = run_ours(model_config, objective, params, batch)
  report(family, 'export', max_differences(
      ours, run_hf(torch, models, batch, token_types), batch))

  convert.import_hf(str(tmp_path / 'hf'), str(tmp_path / 'back'))
  back_config, back, _ = model_dir.read(str(tmp_path / 'back'))
  expected = model_dir.flatten(params)
  got = model_dir.flatten(back)
  assert sorted(got) == sorted(expected)
  for name, value in expected.items():
    assert np.array_equal(got[name], value), name
  for key, value in model_config.items():
    if key not in model_dir.RUNTIME_FIELDS:
      assert back_config[key] == value, key


# ----------------------------------------------------------------- refusals


@pytest.fixture(scope='module')
def bert_dir(hf, tmp_path_factory):
  """A random BertForPreTraining with a WordPiece vocab.txt of V entries."""
  torch, transformers = hf
  root = str(tmp_path_factory.mktemp('bert_hf'))
  save_hf(torch, transformers, 'bert', root)
  words = ['the', 'cat', 'sat', 'on', 'mat', 'dog', 'ran', '##s', '##ed', '.', ',']
  vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + words
  vocab += [f'[unused{i}]' for i in range(V - len(vocab))]
  with open(os.path.join(root, 'vocab.txt'), 'w') as f:
    f.write('\n'.join(vocab) + '\n')
  return root


def _copy_with(src, dst, tensors=None, config=None):
  os.makedirs(dst)
  hf_config = json.load(open(os.path.join(src, 'config.json')))
  model_dir.write_json(os.path.join(dst, 'config.json'), {**hf_config, **(config or {})})
  weights = safetensors.numpy.load_file(os.path.join(src, 'model.safetensors'))
  if tensors is not None:
    weights = tensors(weights)
  safetensors.numpy.save_file(weights, os.path.join(dst, 'model.safetensors'))
  return dst


def _no_leftovers(parent, name):
  assert not os.path.exists(os.path.join(parent, name))
  assert not [f for f in os.listdir(parent) if f.startswith(f'.{name}.tmp')]


def test_import_refuses_what_it_cannot_convert(bert_dir, tmp_path):
  dst = str(tmp_path / 'dst')
  bad = _copy_with(bert_dir, str(tmp_path / 'gpt2'), config={'model_type': 'gpt2'})
  with pytest.raises(UserError, match="model_type 'gpt2' cannot be converted"):
    convert.import_hf(bad, dst)
  os.makedirs(tmp_path / 'empty')
  model_dir.write_json(str(tmp_path / 'empty' / 'config.json'), {'model_type': 'bert'})
  with pytest.raises(UserError, match='has no weights'):
    convert.import_hf(str(tmp_path / 'empty'), dst)
  name = 'bert.encoder.layer.1.attention.self.query.weight'
  bad = _copy_with(bert_dir, str(tmp_path / 'shape'),
                   lambda w: {**w, name: w[name][:, :30].copy()})
  with pytest.raises(UserError, match=f'{name} has shape \\(32, 30\\)'):
    convert.import_hf(bad, dst)
  bad = _copy_with(bert_dir, str(tmp_path / 'missing'),
                   lambda w: {k: v for k, v in w.items() if 'layer.1.output.dense' not in k})
  with pytest.raises(UserError, match='missing tensor bert.encoder.layer.1.output.dense'):
    convert.import_hf(bad, dst)
  bad = _copy_with(bert_dir, str(tmp_path / 'task'),
                   lambda w: {**w, 'qa_outputs.weight': np.zeros((2, 32), np.float32)})
  with pytest.raises(UserError, match='tensors that no model here has: qa_outputs.weight'):
    convert.import_hf(bad, dst)
  # A classifier's output layer beside pretraining heads: not a classifier either.
  bad = _copy_with(bert_dir, str(tmp_path / 'mixed'), lambda w: {
      **w, 'classifier.weight': np.zeros((3, 32), np.float32),
      'classifier.bias': np.zeros(3, np.float32)})
  with pytest.raises(UserError, match='tensors that no model here has: cls.predictions'):
    convert.import_hf(bad, dst)
  bad = _copy_with(bert_dir, str(tmp_path / 'untied'), lambda w: {
      **w, 'cls.predictions.decoder.weight': np.ones((V, 32), np.float32)})
  with pytest.raises(UserError, match='cls.predictions.decoder.weight is not tied'):
    convert.import_hf(bad, dst)
  bad = _copy_with(bert_dir, str(tmp_path / 'relative'),
                   config={'position_embedding_type': 'relative_key'})
  with pytest.raises(UserError, match='position_embedding_type'):
    convert.import_hf(bad, dst)
  _no_leftovers(str(tmp_path), 'dst')


def test_pytorch_bin_sharded_files_and_old_names_import_the_same(hf, bert_dir, tmp_path):
  torch, _ = hf
  weights = safetensors.numpy.load_file(os.path.join(bert_dir, 'model.safetensors'))
  # An older transformers' pickle: LayerNorm gamma/beta, a position_ids buffer and the
  # tied decoder copies.
  old = {k.replace('embeddings.LayerNorm.weight', 'embeddings.LayerNorm.gamma'):
         torch.from_numpy(v) for k, v in weights.items()}
  old['bert.embeddings.position_ids'] = torch.arange(40)[None]
  old['cls.predictions.decoder.weight'] = old['bert.embeddings.word_embeddings.weight']
  old['cls.predictions.decoder.bias'] = old['cls.predictions.bias']
  pickled = _copy_with(bert_dir, str(tmp_path / 'bin'))
  os.remove(os.path.join(pickled, 'model.safetensors'))
  torch.save(old, os.path.join(pickled, 'pytorch_model.bin'))
  # Two safetensors shards with an index.
  sharded = _copy_with(bert_dir, str(tmp_path / 'sharded'))
  os.remove(os.path.join(sharded, 'model.safetensors'))
  names = sorted(weights)
  weight_map = {}
  for i, part in enumerate((names[::2], names[1::2])):
    shard = f'model-{i + 1:05d}-of-00002.safetensors'
    safetensors.numpy.save_file({k: weights[k] for k in part},
                                os.path.join(sharded, shard))
    weight_map.update({k: shard for k in part})
  model_dir.write_json(os.path.join(sharded, 'model.safetensors.index.json'),
                       {'metadata': {}, 'weight_map': weight_map})

  # bfloat16 safetensors (numpy has no bfloat16: read by hand) -> float32.
  from safetensors import torch as safetensors_torch  # pylint: disable=g-import-not-at-top
  half = _copy_with(bert_dir, str(tmp_path / 'bf16'))
  safetensors_torch.save_file({k: v.to(torch.bfloat16) for k, v in old.items()
                               if 'decoder' not in k and 'position_ids' not in k},
                              os.path.join(half, 'model.safetensors'))
  convert.import_hf(half, str(tmp_path / 'ours_bf16'))
  rounded = model_dir.flatten(model_dir.read(str(tmp_path / 'ours_bf16'))[1])

  results = []
  for name, src in (('plain', bert_dir), ('bin', pickled), ('sharded', sharded)):
    convert.import_hf(src, str(tmp_path / f'ours_{name}'))
    results.append(model_dir.flatten(model_dir.read(str(tmp_path / f'ours_{name}'))[1]))
  for other in results[1:]:
    assert sorted(other) == sorted(results[0])
    for key, value in results[0].items():
      assert np.array_equal(other[key], value), key
  for key, value in results[0].items():
    assert np.array_equal(rounded[key], value.astype(ml_dtypes.bfloat16).astype(
        np.float32)), key


def test_import_never_overwrites_or_leaves_half_a_directory(bert_dir, tmp_path,
                                                            monkeypatch):
  dst = tmp_path / 'dst'
  dst.mkdir()
  (dst / 'keep.txt').write_bytes(b'mine')
  with pytest.raises(UserError, match='already exists and is not empty'):
    convert.import_hf(bert_dir, str(dst))
  assert os.listdir(dst) == ['keep.txt'] and (dst / 'keep.txt').read_bytes() == b'mine'

  def fail_late(directory, *args):
    os.makedirs(os.path.join(directory, 'params'))
    raise OSError('disk full')

  monkeypatch.setattr(model_dir, 'write_contents', fail_late)
  with pytest.raises(OSError, match='disk full'):
    convert.import_hf(bert_dir, str(tmp_path / 'new'))
  _no_leftovers(str(tmp_path), 'new')


def test_export_refuses_what_hf_cannot_represent(tmp_path):
  config = dict(OURS, pre_layer_norm=True)
  with model_dir.atomic_directory(str(tmp_path / 'pre_ln')) as tmp:
    model_dir.write_contents(tmp, {'x': np.zeros(1)}, config, {'objective': 'mlm'})
  with pytest.raises(UserError, match='pre_layer_norm'):
    convert.export_hf(str(tmp_path / 'pre_ln'), str(tmp_path / 'hf'))
  _no_leftovers(str(tmp_path), 'hf')


def test_every_converter_and_hf_architecture_in_the_tables_resolves():
  for model_type in hf_checkpoint.CONVERTERS:
    assert hf_checkpoint.converter_for(model_type, 'src').model_type == model_type
  # 'classification' is built by fine-tuning (a head sized to the task), not by name.
  assert set(objectives.HF_EXPORTS) <= set(objectives.OBJECTIVES) | {'classification'}
  for name in objectives.HF_EXPORTS:
    for model_type, architecture in objectives.hf_export(name).architectures.items():
      assert architecture in hf_checkpoint.converter_for(model_type, name).architectures
  for model_type in hf_checkpoint.CONVERTERS:
    converter = hf_checkpoint.converter_for(model_type, 'src')
    assert converter.base_architecture in converter.architectures
    assert set(converter.head_activations) <= set(converter.architectures)
    assert len(converter.head_activations) == 1  # One classifier class per family.


@pytest.mark.parametrize('objective, model, architecture', [
    ('mlm_nsp', {}, 'BertForPreTraining'),
    ('mlm', {}, 'BertForMaskedLM'),
    ('mlm_sbo', {}, 'BertForMaskedLM'),
    ('mlm', {'position_offset': 2, 'type_vocab_size': 1}, 'RobertaForMaskedLM'),
    ('mlm', {'type_vocab_size': 0}, 'DistilBertForMaskedLM'),
    ('mlm', {'embedding_size': 16}, 'ElectraForMaskedLM'),
    ('mlm', {'layer_sharing': 'all'}, 'AlbertForMaskedLM'),
    ('mlm_sop', {}, 'AlbertForPreTraining'),
    ('mlm_sop', {'embedding_size': 16, 'layer_sharing': 'all'}, 'AlbertForPreTraining'),
    ('electra', {'embedding_size': 16}, 'ElectraForPreTraining'),
])
def test_the_objective_names_the_architecture_and_the_config_picks_one(
    objective, model, architecture):
  converter, chosen = hf_checkpoint.converter_for_export(objective, dict(OURS, **model))
  assert chosen == architecture and architecture in converter.architectures


@pytest.mark.parametrize('objective, model, architecture', [
    ('mlm', {}, 'BertModel'),
    ('mlm_nsp', {}, 'BertModel'),
    ('mlm', {'position_offset': 2, 'type_vocab_size': 1}, 'RobertaModel'),
    ('mlm', {'type_vocab_size': 0}, 'DistilBertModel'),
    ('mlm', {'embedding_size': 16}, 'ElectraModel'),
    ('electra', {}, 'ElectraModel'),
    ('mlm', {'layer_sharing': 'all'}, 'AlbertModel'),
    ('mlm_sop', {}, 'AlbertModel'),
    ('classification', {'embedding_size': 16}, 'ElectraModel'),
])
def test_params_without_heads_pick_the_base_model(objective, model, architecture):
  converter, chosen = hf_checkpoint.converter_for_export(
      objective, dict(OURS, **model), headless=True)
  assert chosen == architecture == converter.base_architecture


def test_which_params_are_an_encoder_without_heads():
  leaf = {'kernel': np.zeros(1)}
  for params, headless in (({'encoder': leaf}, True), ({'encoder': leaf, 'pooler': leaf},
                                                       True),
                           ({'embeddings': leaf, 'discriminator': leaf}, True),
                           ({'encoder': leaf, 'mlm_head': leaf}, False),
                           ({'encoder': leaf, 'pooler': leaf, 'classifier': leaf}, False),
                           ({'embeddings': leaf, 'discriminator': leaf,
                             'discriminator_head': leaf}, False)):
    assert hf_checkpoint.is_headless(params) == headless, params


def test_an_encoder_without_heads_exports_from_the_command_line(hf, tmp_path):
  """The reported bug: `launch.convert --from=ours --to=hf` of an imported BertModel
  asked for the MLM head (cls.predictions.transform.dense.weight)."""
  torch, transformers = hf
  torch.manual_seed(0)
  transformers.BertModel(transformers.BertConfig(**BERT_SIZE)).save_pretrained(
      str(tmp_path / 'hf'))
  source = convert.import_hf(str(tmp_path / 'hf'), str(tmp_path / 'ours'))
  assert source['objective'] == 'mlm'
  assert source['heads'] == {'pooler': True, 'mlm': False, 'nsp': False}
  done = subprocess.run([sys.executable, '-m', 'launch.convert', '--from=ours',
                         '--to=hf', f'--src={tmp_path / "ours"}',
                         f'--dst={tmp_path / "back"}'],
                        cwd=conftest.REPO, capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr
  assert f'wrote {tmp_path / "back"}: BertModel' in done.stdout
  assert transformers.AutoConfig.from_pretrained(
      str(tmp_path / 'back')).architectures == ['BertModel']


@pytest.mark.parametrize('objective, model', [
    ('mlm_nsp', {'position_offset': 2}),
    ('mlm_sop', {'type_vocab_size': 0}),
    ('mlm', {'embedding_size': 16, 'position_offset': 2}),
    ('electra', {'layer_sharing': 'all'}),
    ('nope', {}),
])
def test_no_architecture_for_the_objective_and_config_is_named(objective, model):
  with pytest.raises(UserError, match=f'no HF architecture represents objective '
                     f"'{objective}' with model position_offset="):
    hf_checkpoint.converter_for_export(objective, dict(OURS, **model))


def test_export_leaves_out_the_span_boundary_head_with_a_note(tmp_path):
  params = random_params(OURS, 'mlm', seed=3)
  params['sbo_head'] = {'dense_0': {'kernel': np.ones((96, 32), np.float32)}}
  with model_dir.atomic_directory(str(tmp_path / 'spanbert')) as tmp:
    model_dir.write_contents(tmp, params, OURS, {'objective': 'mlm_sbo'})
  result = convert.export_hf(str(tmp_path / 'spanbert'), str(tmp_path / 'hf'))
  assert result['architectures'] == {'.': 'BertForMaskedLM'}
  assert result['notes'][0] == (
      'the span-boundary head (sbo_head) is not part of any HF architecture: exported '
      'the encoder and MLM head only')
  written = safetensors.numpy.load_file(str(tmp_path / 'hf' / 'model.safetensors'))
  assert not [name for name in written if 'sbo' in name]


def test_reading_safetensors_needs_no_torch_and_the_command_line(bert_dir, tmp_path):
  # sitecustomize runs before launch.convert: any `import torch` then fails.
  site = tmp_path / 'site'
  site.mkdir()
  (site / 'sitecustomize.py').write_text("import sys\nsys.modules['torch'] = None\n")
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
      [str(site), conftest.REPO, os.environ.get('PYTHONPATH', '')])}
  command = [sys.executable, '-m', 'launch.convert', '--from=hf', f'--src={bert_dir}']
  done = subprocess.run(command + [f'--dst={tmp_path / "ours"}'], env=env,
                        cwd=conftest.REPO, capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr
  assert 'objective mlm_nsp' in done.stdout and 'tokenizer: hf_tokenizer.json' in done.stdout
  assert f'--config.train.init_from={tmp_path / "ours"} --config.tokenizer.path=' \
      f'{tmp_path / "ours" / "hf_tokenizer.json"}' in done.stdout
  assert model_dir.is_model_dir(str(tmp_path / 'ours'))

  done = subprocess.run(command + [f'--dst={tmp_path / "ours"}'], env=env,
                        cwd=conftest.REPO, capture_output=True, text=True, check=False)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == [
      f'error: {tmp_path / "ours"} already exists and is not empty; choose a new '
      'directory']

  # Exporting needs no torch either; each run is a fresh interpreter, so the converter
  # and the objective's architectures are found from their tables alone.
  done = subprocess.run([sys.executable, '-m', 'launch.convert', '--from=ours',
                         f'--src={tmp_path / "ours"}', f'--dst={tmp_path / "hf"}'],
                        env=env, cwd=conftest.REPO, capture_output=True, text=True,
                        check=False)
  assert done.returncode == 0, done.stderr
  assert f'wrote {tmp_path / "hf"}: BertForPreTraining' in done.stdout


def test_tokenizer_travels_with_the_weights(hf, bert_dir, tmp_path):
  _, transformers = hf
  convert.import_hf(bert_dir, str(tmp_path / 'ours'))
  assert os.path.isfile(tmp_path / 'ours' / 'hf_tokenizer.json')
  convert.export_hf(str(tmp_path / 'ours'), str(tmp_path / 'hf'))
  text = 'the cats sat on the mat.'
  original = transformers.AutoTokenizer.from_pretrained(bert_dir)(text)['input_ids']
  exported = transformers.AutoTokenizer.from_pretrained(str(tmp_path / 'hf'))(text)
  assert exported['input_ids'] == original and len(original) > 4


# ----------------------------------------------------------------- init_from


def test_init_from_continues_pretraining_from_an_import(hf, tmp_path, capsys):
  torch, transformers = hf
  config = tiny_config('roberta')
  config.data.update(max_documents=60, max_seq_length=32)
  config.train.update(steps=1, eval_every=1, eval_batches=1, batch_size=4,
                      eval_batch_size=4, checkpoint_every=1)
  model = config.model
  torch.manual_seed(0)
  transformers.RobertaForMaskedLM(transformers.RobertaConfig(
      vocab_size=model.vocab_size, hidden_size=model.hidden_size,
      num_hidden_layers=model.num_layers, num_attention_heads=model.num_heads,
      intermediate_size=model.intermediate_size, type_vocab_size=1,
      max_position_embeddings=model.max_position_embeddings,
      layer_norm_eps=model.layer_norm_eps)).save_pretrained(str(tmp_path / 'hf'))
  imported = str(tmp_path / 'imported')
  convert.import_hf(str(tmp_path / 'hf'), imported)
  config.train.init_from = imported
  workdir = str(tmp_path / 'run')
  summary = pretraining.pretrain(config, workdir)
  assert f'initialised from {imported}; fresh: none' in capsys.readouterr().out

  # The step-0 held-out evaluation is the imported model's own.
  _, params, _ = model_dir.read(imported)
  objective = objectives.get_objective(config)
  loss = jax.jit(lambda p, b: objective.loss_fn(p, b, jax.random.key(0), True)[1])
  total = None
  for batch in pipeline.build_data(config, workdir).eval_batches:
    total = metrics_lib.add(total, loss(params, {
        k: jnp.asarray(batch[k]) for k in objective.batch_keys}))
  direct = metrics_lib.average(total)
  assert summary['first_eval']['eval_loss'] == pytest.approx(direct['loss'], rel=1e-5)

  # The trained workdir exports (latest checkpoint, its sentencepiece tokenizer).
  result = convert.export_hf(workdir, str(tmp_path / 'hf_out'))
  assert result['architectures'] == {'.': 'RobertaForMaskedLM'}
  reloaded = transformers.RobertaForMaskedLM.from_pretrained(str(tmp_path / 'hf_out'))
  trained, step = model_dir.restore_params(workdir)
  assert step == 1
  batch = make_batch(pad_id=0, token_types=False)
  model_config = config.model.to_dict()
  ours = run_ours(model_config, 'mlm', jax.tree.map(np.asarray, trained), batch)
  theirs = run_hf(torch, {'': reloaded}, batch, token_types=False)
  assert max(max_differences(ours, theirs, batch).values()) <= TOL
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / 'hf_out'))
  assert tokenizer('print the value')['input_ids'][0] == 2  # Our [CLS].

  config.model.hidden_size = 32
  with pytest.raises(UserError, match='model.hidden_size=64 but the config has 32'):
    model_dir.check_model_config(model_dir.read_json(
        os.path.join(imported, model_dir.MODEL_CONFIG)), config.model, imported)


def test_init_from_names_a_mismatching_tensor(tmp_path):
  config = ml_collections.ConfigDict(OURS)
  with model_dir.atomic_directory(str(tmp_path / 'dir')) as tmp:
    model_dir.write_contents(tmp, {'encoder': {'w': np.zeros((2, 3), np.float32)}},
                             config.to_dict(), {'objective': 'mlm'})
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  params = {'encoder': {'w': jnp.zeros((2, 4))}, 'mlm_head': {'b': jnp.zeros(3)}}
  with pytest.raises(UserError, match=r'encoder/w has shape \(2, 3\) but the config '
                     r'builds \(2, 4\)'):
    model_dir.overlay(str(tmp_path / 'dir'), config, params,
                      jax.tree.map(lambda _: device, params))
  params['encoder']['w'] = jnp.ones((2, 3))
  merged, fresh, unused = model_dir.overlay(str(tmp_path / 'dir'), config, params,
                                            jax.tree.map(lambda _: device, params))
  assert np.array_equal(merged['encoder']['w'], np.zeros((2, 3)))
  assert fresh == ['mlm_head'] and unused == []
