"""Hugging Face checkpoints <-> our parameters: reading, writing, the converter table.

A local HF model directory (config.json, model.safetensors or pytorch_model.bin, maybe
sharded with an index, and tokenizer files) becomes a model directory
(common/interop/model_dir.py) and back. `CONVERTERS` says where the `Converter` of each
HF `model_type` lives (common/interop/hf_bert.py: bert, roberta, distilbert;
albert_jax/hf_albert.py; electra_jax/hf_electra.py), imported when that type is
converted; a converter maps names: `Entry(hf name, our param path, head group)`.
An export writes the model as one of the HF architectures its objective names
(`HFExport` in common/train/objectives.py, electra_jax/objective.py): the first whose
converter represents the model config. Two cases pick otherwise:
- params without any head ('encoder' [+ 'pooler'], or an ELECTRA discriminator's
  'embeddings' + 'discriminator'; e.g. an imported BertModel) are written as the
  family's base model (BertModel, RobertaModel, DistilBertModel, ElectraModel,
  AlbertModel): the objective's families in its order, each's `base_architecture`;
- a fine-tuned classifier (objective 'classification', `common.model.classifier`) is
  written as the *ForSequenceClassification whose head applies the classifier's
  activation (`Converter.head_activations`); source.json says it ('head_activation',
  with 'num_labels' and 'id2label' for the HF config). Such a directory imports back as
  objective 'classification'.
How a tensor changes between the two is decided by our parameter alone:
- '.../kernel': torch Linear weights are [out, in], ours [in..., out...] with the
  attention kernels split by heads ([H, heads, head_dim] for query/key/value,
  [heads, head_dim, H] for the output): transpose, then reshape;
- '.../bias' of query/key/value: [heads * head_dim] <-> [heads, head_dim];
- everything else (tables, LayerNorm scale/bias, output biases) as is.

Safetensors are read with `safetensors.numpy` (no torch); only a pytorch_model.bin needs
torch, imported then. Everything is checked before anything is written: an unknown
model type, a missing or mis-shaped tensor, a tensor we do not model (named), or an
untied output layer is a UserError.
"""

import dataclasses
import json
import math
import os
from typing import Collection, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import ml_dtypes
import numpy as np
import safetensors
import safetensors.numpy

from common import registry
from common.data import tokenizer as tokenizer_lib
from common.errors import UserError
from common.interop import hf_tokenizer
from common.interop import model_dir
from common.model import classifier as classifier_lib
from common.train import objectives

SAFETENSORS, SAFETENSORS_INDEX = 'model.safetensors', 'model.safetensors.index.json'
TORCH_BIN, TORCH_BIN_INDEX = 'pytorch_model.bin', 'pytorch_model.bin.index.json'
# Buffers some checkpoints carry (older transformers saved them): not parameters.
_BUFFER_SUFFIXES = ('.position_ids', 'embeddings.token_type_ids')
# Activation names HF configs use that we compute identically (common/model/encoder.py).
HF_ACTIVATIONS = ('gelu', 'gelu_new', 'gelu_pytorch_tanh', 'relu')


@dataclasses.dataclass(frozen=True)
class Entry:
  """One tensor's two names.

  Attributes:
    hf: the HF state-dict name.
    ours: our param path, '/'-separated, in the unrolled layout ('layer_0', ...).
    group: 'encoder' (must be there) or a head ('mlm', 'pooler', 'nsp', ...) that a
      checkpoint has whole or not at all.
    in_axes: for kernels, how many leading axes of ours are the input (2 for the
      attention output [heads, head_dim, H]).
  """
  hf: str
  ours: str
  group: str = 'encoder'
  in_axes: int = 1


def linear(hf: str, ours: str, group: str = 'encoder', in_axes: int = 1) -> list[Entry]:
  """A torch Linear <-> a Dense (or HeadsDense) scope."""
  return [Entry(f'{hf}.weight', f'{ours}/kernel', group, in_axes),
          Entry(f'{hf}.bias', f'{ours}/bias', group)]


def norm(hf: str, ours: str, group: str = 'encoder') -> list[Entry]:
  return [Entry(f'{hf}.weight', f'{ours}/scale', group),
          Entry(f'{hf}.bias', f'{ours}/bias', group)]


def embed(hf: str, ours: str) -> list[Entry]:
  return [Entry(f'{hf}.weight', f'{ours}/embedding')]


def classifier_entries(pooler: str, out: str) -> list[Entry]:
  """An HF sequence-classification head <-> `SequenceClassifier`'s: the dense layer on
  the first token (BERT's pooler, RoBERTa's classifier.dense, DistilBERT's
  pre_classifier) and the output layer (classifier, classifier.out_proj)."""
  return (linear(pooler, 'pooler/dense', 'pooler') +
          linear(out, 'classifier/dense', 'classifier'))


@dataclasses.dataclass
class Imported:
  """What a converter makes of an HF directory.

  Attributes:
    model_config: our `config.model` fields.
    params: nested params, unrolled layer layout.
    objective: the objective these params belong to (mlm, mlm_nsp, electra, ...).
    heads: head group -> whether the checkpoint had it.
    recipe: the recipe that continues pretraining it, when not the converter's.
    overrides: other `--config.` flags that recipe needs ({'objective.name': 'mlm'}).
    source: more keys for source.json (a classifier's num_labels, head_activation,
      id2label, problem_type).
  """
  model_config: dict
  params: dict
  objective: str
  heads: dict[str, bool]
  recipe: str = ''
  overrides: dict = dataclasses.field(default_factory=dict)
  source: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class HFModel:
  """One HF model directory to write: `subdir` of the destination ('' = itself).

  Its tensors are our params named by `entries`, plus `constants` that the HF
  architecture has and ours computes without (e.g. an identity projection).
  """
  config: dict
  entries: list[Entry]
  subdir: str = ''
  constants: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def base_model(model: HFModel, prefix: str) -> HFModel:
  """`model` with its tensors named as the family's base model saves them (BertModel
  writes 'embeddings.*', BertFor* 'bert.embeddings.*'; imports accept both)."""
  def strip(name):
    return name[len(prefix):] if name.startswith(prefix) else name
  return dataclasses.replace(
      model, entries=[dataclasses.replace(e, hf=strip(e.hf)) for e in model.entries],
      constants={strip(k): v for k, v in model.constants.items()})


class Converter:
  """A family's mapping; subclasses set the attributes and implement the methods.

  Attributes:
    model_type: the HF `model_type` it reads and writes.
    recipe: experiments/<recipe>.py, the recipe that continues pretraining an import.
    architectures: the HF architectures `export_model` writes.
    base_architecture: the one without heads (BertModel), for headless params.
    head_activations: sequence-classification architecture -> the activation its
      head applies ('tanh', 'gelu', 'relu'; common/model/classifier.py).
  """
  model_type: str
  recipe: str
  architectures: Collection[str]
  base_architecture: str
  head_activations: dict[str, str]
  options = ()  # Keyword options of import_model ('generator' for ELECTRA).

  def import_model(self, src: str, hf_config: dict,
                   weights: dict[str, np.ndarray]) -> Imported:
    raise NotImplementedError

  def represents(self, model_config: dict) -> bool:
    """Whether this family's architectures hold a model of this config."""
    raise NotImplementedError

  def export_model(self, model_config: dict, architecture: str,
                   params: dict) -> list[HFModel]:
    """HF models holding every one of `params` (flat, unrolled) as `architecture`,
    refusing (UserError) settings the architecture cannot represent."""
    raise NotImplementedError


# HF model_type -> where its Converter lives, imported when used (common/registry.py).
CONVERTERS: dict[str, str] = {
    'albert': 'albert_jax.hf_albert:ALBERT',
    'bert': 'common.interop.hf_bert:BERT',
    'distilbert': 'common.interop.hf_bert:DISTILBERT',
    'electra': 'electra_jax.hf_electra:ELECTRA',
    'roberta': 'common.interop.hf_bert:ROBERTA',
}


def converter_for(model_type: str, src: str) -> Converter:
  if model_type not in CONVERTERS:
    raise UserError(f'{src}: model_type {model_type!r} cannot be converted; known types: '
                    f'{", ".join(sorted(CONVERTERS))}')
  return registry.resolve(CONVERTERS[model_type])


def converter_for_export(objective: str, model_config: dict, *,
                         head_activation: str | None = None,
                         headless: bool = False) -> tuple[Converter, str]:
  """The converter and HF architecture that write a model of this objective and config:
  the first of the objective's architectures whose converter represents the config.

  Args:
    objective: the objective the params belong to.
    model_config: our `config.model` fields.
    head_activation: a classifier's: only architectures whose head applies it.
    headless: params without heads: the base architecture of the objective's families.
  """
  export = objectives.hf_export(objective)
  for model_type, architecture in (export.architectures.items() if export else ()):
    converter = registry.resolve(CONVERTERS[model_type])
    if headless:
      architecture = converter.base_architecture
    elif (head_activation is not None and
          converter.head_activations.get(architecture) != head_activation):
      continue
    if converter.represents(model_config):
      return converter, architecture
  settings = ', '.join(f'{key}={model_config.get(key, default)!r}' for key, default in (
      ('position_offset', 0), ('type_vocab_size', 2), ('embedding_size', 0),
      ('layer_sharing', 'none')))
  if head_activation is not None:
    settings += f', head_activation={head_activation!r}'
  raise UserError(f'no HF architecture represents objective {objective!r} with model '
                  f'{settings}' + (' (params without heads)' if headless else ''))


# Top-level param scopes of an encoder without heads: ours (with BERT's pooler or not)
# and an ELECTRA discriminator's.
_HEADLESS = ({'encoder'}, {'encoder', 'pooler'}, {'embeddings', 'discriminator'})


def is_headless(params: dict) -> bool:
  """Whether nested params are an encoder alone (an imported BertModel, ...)."""
  return set(params) in _HEADLESS


# Sequence classifiers: the HF config keys and source.json keys of their labels.


def classifier_head(record: dict, params: dict[str, np.ndarray], where: str) -> dict:
  """A fine-tuned classifier's head settings, checked against its flat params.

  Args:
    record: source.json (or a workdir's objective config): 'head_activation'
      (required), 'num_labels', 'id2label' (K names, or {"i": name}), 'problem_type'.
    params: flat params; 'classifier/dense/kernel' gives num_labels when not recorded.
    where: for messages.

  Returns:
    {'num_labels', 'head_activation', 'id2label' (list of K names), 'problem_type'}.
  """
  kernel = params.get('classifier/dense/kernel')
  if kernel is None:
    raise UserError(f'{where}: objective classification but the params have no '
                    'classifier/dense/kernel')
  num_labels = record.get('num_labels', kernel.shape[-1])
  activation = record.get('head_activation')
  if activation is None:
    raise UserError(f"{where} does not say the classifier's head_activation (one of "
                    f'{", ".join(classifier_lib.HEAD_ACTIVATIONS)})')
  classifier_lib.check_head(num_labels, activation)
  if num_labels != kernel.shape[-1]:
    raise UserError(f'{where} says num_labels={num_labels} but the classifier has '
                    f'{kernel.shape[-1]} outputs')
  names = record.get('id2label') or [f'LABEL_{i}' for i in range(num_labels)]
  if isinstance(names, dict):
    try:
      by_id = {int(k): str(v) for k, v in names.items()}
    except ValueError as e:
      raise UserError(f'{where}: id2label keys must be label ids: {e}') from e
    names = [by_id.get(i) for i in range(num_labels)]
  if len(names) != num_labels or None in names:
    raise UserError(f'{where}: id2label must name labels 0..{num_labels - 1}, got '
                    f'{record.get("id2label")!r}')
  problem = record.get('problem_type') or (
      'regression' if num_labels == 1 else 'single_label_classification')
  return {'num_labels': num_labels, 'head_activation': activation,
          'id2label': [str(n) for n in names], 'problem_type': problem}


def classification_config(head: dict) -> dict:
  """The HF config.json keys of a classifier's labels (`classifier_head`'s record)."""
  return {'num_labels': head['num_labels'],
          'id2label': {str(i): name for i, name in enumerate(head['id2label'])},
          'label2id': {name: i for i, name in enumerate(head['id2label'])},
          'problem_type': head['problem_type']}


def is_classifier(weights: dict[str, np.ndarray], entries: Iterable[Entry]) -> bool:
  """Whether an HF state dict has the classification head's output layer."""
  return any(e.group == 'classifier' and e.hf in weights for e in entries)


def import_classifier(src: str, hf_config: dict, weights: dict[str, np.ndarray],
                      model_config: dict, entries: list[Entry], head_activation: str,
                      also_used: Collection[str] = ()) -> Imported:
  """An HF *ForSequenceClassification -> `SequenceClassifier` params.

  Args:
    entries: the encoder's and the head's (`classifier_entries`), all required.
    head_activation: what the family's head applies.
    also_used: HF names checked otherwise (ALBERT's identity projection).
  """
  out = next(e.hf for e in entries if e.ours == 'classifier/dense/kernel')
  if out not in weights or weights[out].ndim != 2:
    raise UserError(f'{src}: missing tensor {out}')
  num_labels = int(weights[out].shape[0])
  shapes = param_shapes(classifier_lib.SequenceClassifier(
      unrolled(model_config), num_labels, head_activation))
  flat, present, used = convert_in(src, weights, entries, shapes)
  for e in entries:
    if e.hf not in used:
      raise UserError(f'{src}: missing tensor {e.hf}')
  check_rest(src, weights, used | set(also_used), {})
  id2label = hf_config.get('id2label') or {}
  head = classifier_head({'head_activation': head_activation,
                          'problem_type': hf_config.get('problem_type'),
                          'id2label': id2label if len(id2label) == num_labels else None},
                         flat, src)
  heads = {g: v for g, v in present.items() if g != 'encoder'}
  return Imported(model_config, model_dir.unflatten(flat), 'classification', heads,
                  source=head)


# Reading and writing HF directories.


def read_config(src: str) -> dict:
  path = os.path.join(src, 'config.json')
  if not os.path.isfile(path):
    raise UserError(f'{src} is not an HF model directory: no config.json')
  config = model_dir.read_json(path)
  if 'model_type' not in config:
    raise UserError(f'{path} has no model_type')
  return config


def _shard_files(src: str, index_name: str) -> list[str]:
  index = model_dir.read_json(os.path.join(src, index_name))
  return sorted(set(index.get('weight_map', {}).values()))


def _read_torch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError(f'{path} is a PyTorch pickle and reading it needs torch; install the '
                    "'hf' extra (pip install -e '.[hf]') or convert it to safetensors") from e
  state = torch.load(path, map_location='cpu', weights_only=True)
  return {k: v.detach().to(torch.float32).numpy() if v.is_floating_point()
          else v.numpy() for k, v in state.items()}


# safetensors dtype names -> numpy (ml_dtypes, a JAX dependency, gives bfloat16).
_SAFETENSORS_DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16,
                       'BF16': ml_dtypes.bfloat16, 'I64': np.int64, 'I32': np.int32,
                       'I16': np.int16, 'I8': np.int8, 'U8': np.uint8, 'BOOL': np.bool_}


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  """safetensors.numpy.load_file, and the same by hand for dtypes numpy lacks (bf16).

  The format: an 8-byte little-endian header size, a JSON header naming each tensor's
  dtype, shape and byte range, then the bytes.
  """
  try:
    return safetensors.numpy.load_file(path)
  except TypeError:  # "data type 'bfloat16' not understood"
    pass
  with open(path, 'rb') as f:
    size = int.from_bytes(f.read(8), 'little')
    header = json.loads(f.read(size))
    data = f.read()
  out = {}
  for name, info in header.items():
    if name == '__metadata__':
      continue
    if info['dtype'] not in _SAFETENSORS_DTYPES:
      raise UserError(f'{path}: tensor {name} has dtype {info["dtype"]}, which cannot be '
                      'read')
    start, end = info['data_offsets']
    out[name] = np.frombuffer(data[start:end], _SAFETENSORS_DTYPES[info['dtype']]).reshape(
        info['shape'])
  return out


def read_weights(src: str) -> dict[str, np.ndarray]:
  """The state dict of an HF directory as float32 numpy arrays.

  model.safetensors (or its shards) is preferred and needs no torch; pytorch_model.bin
  (or its shards) is read with torch. LayerNorm 'gamma'/'beta' names of old
  checkpoints become 'weight'/'bias', as transformers renames them on load.
  """
  if os.path.isfile(os.path.join(src, SAFETENSORS)):
    files, reader = [SAFETENSORS], _read_safetensors
  elif os.path.isfile(os.path.join(src, SAFETENSORS_INDEX)):
    files, reader = _shard_files(src, SAFETENSORS_INDEX), _read_safetensors
  elif os.path.isfile(os.path.join(src, TORCH_BIN)):
    files, reader = [TORCH_BIN], _read_torch
  elif os.path.isfile(os.path.join(src, TORCH_BIN_INDEX)):
    files, reader = _shard_files(src, TORCH_BIN_INDEX), _read_torch
  else:
    raise UserError(f'{src} has no weights: expected {SAFETENSORS} or {TORCH_BIN} '
                    '(or a sharded index of either)')
  weights = {}
  for name in files:
    try:
      weights.update(reader(os.path.join(src, name)))
    except (OSError, RuntimeError, ValueError, KeyError,
            safetensors.SafetensorError) as e:  # A truncated or corrupted file.
      raise UserError(f'cannot read weights {os.path.join(src, name)}: '
                      f'{" ".join(str(e).split())}') from e
  out = {}
  for name, value in weights.items():
    if name.endswith('LayerNorm.gamma'):
      name = name[:-len('gamma')] + 'weight'
    elif name.endswith('LayerNorm.beta'):
      name = name[:-len('beta')] + 'bias'
    value = np.asarray(value)
    floating = np.issubdtype(value.dtype, np.floating) or value.dtype == ml_dtypes.bfloat16
    out[name] = value.astype(np.float32) if floating else value
  return out


def with_prefix(weights: dict[str, np.ndarray], prefix: str,
                first: str) -> dict[str, np.ndarray]:
  """Adds `prefix` to a base-model checkpoint's names (BertModel saves 'embeddings...',
  BertForMaskedLM 'bert.embeddings...'); `first` is a name every checkpoint has."""
  if prefix + first in weights or first not in weights:
    return weights
  return {prefix + k: v for k, v in weights.items()}


def write_hf(directory: str, config: dict, tensors: dict[str, np.ndarray]) -> None:
  """config.json and model.safetensors of one HF model (into `directory`)."""
  os.makedirs(directory, exist_ok=True)
  model_dir.write_json(os.path.join(directory, 'config.json'), config)
  safetensors.numpy.save_file(
      {k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()},
      os.path.join(directory, SAFETENSORS), metadata={'format': 'pt'})


# Name mapping, both ways.


def param_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
  """Flat param name -> shape of a pretraining model, computed without allocating."""
  batch = {k: jnp.ones((1, 4), jnp.int32)
           for k in ('input_ids', 'segment_ids', 'attention_mask')}
  batch['masked_positions'] = jnp.zeros((1, 1), jnp.int32)
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), batch)
  return {k: tuple(v.shape) for k, v in model_dir.flatten(nn.unbox(shapes)['params']).items()}


def unrolled(model_config: dict) -> ml_collections.ConfigDict:
  """The model config with scan_layers off: the layout names are mapped in."""
  return ml_collections.ConfigDict({**model_config, 'scan_layers': False})


def _hf_shape(entry: Entry, shape: tuple[int, ...]) -> tuple[int, ...]:
  if entry.ours.endswith('/kernel'):
    return (math.prod(shape[entry.in_axes:]), math.prod(shape[:entry.in_axes]))
  if entry.ours.endswith('/bias'):
    return (math.prod(shape),)
  return shape


def to_ours(entry: Entry, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  if entry.ours.endswith('/kernel'):
    value = value.T
  return np.ascontiguousarray(value.reshape(shape), np.float32)


def to_hf(entry: Entry, value: np.ndarray) -> np.ndarray:
  value = np.asarray(value, np.float32)
  if entry.ours.endswith('/kernel'):
    shape = value.shape
    return value.reshape(math.prod(shape[:entry.in_axes]), -1).T
  if entry.ours.endswith('/bias'):
    return value.reshape(-1)
  return value


def convert_in(src: str, weights: dict[str, np.ndarray], entries: Iterable[Entry],
               shapes: dict[str, tuple[int, ...]]) -> tuple[dict, dict[str, bool], set]:
  """Maps HF tensors onto our params, checking every shape.

  Entries whose param our model does not have are skipped (their HF tensors then count
  as unmodelled). A head group is taken whole or not at all.

  Returns:
    (flat params, group -> present, the HF names used).
  """
  entries = [e for e in entries if e.ours in shapes]
  present = {}
  for e in entries:
    present[e.group] = present.get(e.group, False) or e.hf in weights
  present['encoder'] = True
  flat, used = {}, set()
  for e in entries:
    if not present[e.group]:
      continue
    if e.hf not in weights:
      raise UserError(f'{src}: missing tensor {e.hf}')
    value, shape = weights[e.hf], shapes[e.ours]
    if value.shape != _hf_shape(e, shape):
      raise UserError(f'{src}: tensor {e.hf} has shape {tuple(value.shape)} but config.json '
                      f'describes {_hf_shape(e, shape)}')
    flat[e.ours] = to_ours(e, value, shape)
    used.add(e.hf)
  return flat, present, used


def check_rest(src: str, weights: dict[str, np.ndarray], used: set[str],
               tied: dict[str, str]) -> None:
  """Every HF tensor not used must be a buffer or an exact tied copy; else UserError.

  Args:
    tied: HF name -> the name of the tensor it must equal (an output layer tied to the
      token table: our MLM heads always tie).
  """
  rest = []
  for name in sorted(set(weights) - used):
    if name.endswith(_BUFFER_SUFFIXES):
      continue
    if name in tied:
      source = weights.get(tied[name])
      if source is None or source.shape != weights[name].shape or not np.array_equal(
          source, weights[name]):
        raise UserError(f'{src}: {name} is not tied to {tied[name]}; our output layers '
                        'always share the token table (tie_word_embeddings)')
      continue
    rest.append(name)
  if rest:
    shown = ', '.join(rest[:6]) + (f' and {len(rest) - 6} more' if len(rest) > 6 else '')
    raise UserError(f'{src}: tensors that no model here has: {shown} (a task head '
                    'other than sequence classification? import the pretraining '
                    'checkpoint)')


def convert_out(params: dict, entries: Iterable[Entry]) -> dict[str, np.ndarray]:
  """Our flat params -> HF tensors for every entry; UserError naming a missing param."""
  tensors = {}
  for e in entries:
    if e.ours not in params:
      raise UserError(f'the model has no parameter {e.ours}, which {e.hf} needs')
    tensors[e.hf] = to_hf(e, params[e.ours])
  return tensors


def check_activation(name: str, where: str) -> str:
  if name not in HF_ACTIVATIONS:
    raise UserError(f'{where}: hidden_act {name!r} is not supported; supported: '
                    f'{", ".join(HF_ACTIVATIONS)}')
  return name


def check_common(hf: dict, src: str) -> None:
  """Settings of BERT-like HF configs that our encoder cannot represent."""
  for key, ok in (('is_decoder', False), ('add_cross_attention', False),
                  ('tie_word_embeddings', True)):
    if hf.get(key, ok) != ok:
      raise UserError(f'{src}/config.json: {key}={hf[key]!r} cannot be represented '
                      f'(needs {ok})')
  if hf.get('position_embedding_type', 'absolute') != 'absolute':
    raise UserError(f'{src}/config.json: position_embedding_type '
                    f'{hf["position_embedding_type"]!r} cannot be represented (only '
                    "'absolute' positions)")


# The two directions, end to end.


def _import_tokenizer(src: str, out_dir: str, vocab_size: int) -> str | None:
  """Saves the HF directory's tokenizer into out_dir; its file name (None: no files)."""
  if not any(os.path.isfile(os.path.join(src, name))
             for name in hf_tokenizer.TOKENIZER_FILES):
    return None
  tokenizer = hf_tokenizer.load_hf_tokenizer(src)
  if tokenizer.vocab_size > vocab_size:
    raise UserError(f'{src}: the tokenizer has {tokenizer.vocab_size} ids but the model '
                    f'only {vocab_size} token embeddings')
  tokenizer.save(os.path.join(out_dir, hf_tokenizer.WORKDIR_FILE))
  return hf_tokenizer.WORKDIR_FILE


def _export_tokenizer(our_dir: str, out_dir: str, model_type: str,
                      model_config: dict) -> list[str]:
  """Writes the HF tokenizer files of our dir's tokenizer (imported or sentencepiece)."""
  for name, load in ((hf_tokenizer.WORKDIR_FILE, hf_tokenizer.HFTokenizer.load),
                     ('tokenizer.model', tokenizer_lib.Tokenizer.load)):
    path = os.path.join(our_dir, name)
    if os.path.isfile(path):
      positions = (model_config.get('max_position_embeddings', 512) -
                   model_config.get('position_offset', 0))
      return hf_tokenizer.export_hf_tokenizer(load(path), out_dir, model_type,
                                              model_max_length=positions)
  return []


def import_dir(src: str, dst: str, **options) -> dict:
  """Converts an HF model directory into a model directory at `dst`.

  Args:
    src: HF directory (config.json, weights and, optionally, tokenizer files).
    dst: created; must not exist or be empty.
    **options: for the converter (ELECTRA: generator=DIR).

  Returns:
    source.json's record (model_type, objective, heads, recipe, tokenizer file, ...).
  """
  src = os.path.abspath(src)
  model_dir.check_new_directory(dst)  # Before the work; checked again when writing.
  hf_config = read_config(src)
  converter = converter_for(hf_config['model_type'], src)
  unknown = set(options) - set(converter.options)
  if unknown:
    raise UserError(f'{", ".join(sorted(unknown))} does not apply to model_type '
                    f'{converter.model_type!r}')
  imported = converter.import_model(src, hf_config, read_weights(src), **options)
  scanned = imported.model_config.get('scan_layers', True)
  source = {'from': 'hf', 'path': src, 'model_type': converter.model_type,
            'architectures': hf_config.get('architectures') or [],
            'objective': imported.objective, 'heads': imported.heads,
            'recipe': imported.recipe or converter.recipe,
            'overrides': imported.overrides, **imported.source}
  with model_dir.atomic_directory(dst) as tmp:
    source['tokenizer'] = _import_tokenizer(src, tmp, imported.model_config['vocab_size'])
    model_dir.write_contents(tmp, model_dir.set_layer_layout(imported.params, scanned),
                             imported.model_config, source)
  return source


def load_ours(src: str, step: int | None = None) -> tuple[dict, dict, str, str, dict]:
  """A model directory or training workdir -> (model fields, unrolled params, objective,
  directory holding its tokenizer, record: source.json or the workdir's objective
  config, where a classifier's head settings are)."""
  src = os.path.abspath(src)
  if model_dir.is_model_dir(src):
    if step is not None:
      raise UserError(f'--step applies to training workdirs; {src} is a model directory')
    model_config, params, source = model_dir.read(src)
    objective = source.get('objective')
    if not objective:
      raise UserError(f'{src}/{model_dir.SOURCE} does not say which objective the params '
                      'belong to')
    model_config, record = model_dir.model_fields(model_config), source
  elif os.path.isfile(os.path.join(src, 'config.json')) and os.path.isdir(
      os.path.join(src, 'checkpoints')):
    config = model_dir.read_json(os.path.join(src, 'config.json'))
    params, _ = model_dir.restore_params(src, step)
    model_config, objective = config['model'], config['objective']['name']
    record = config['objective']
    params = jax.tree.map(np.asarray, params)
  else:
    raise UserError(f'{src} is neither a model directory (params/, model_config.json) nor '
                    'a training workdir (config.json, checkpoints/)')
  return (model_config, model_dir.set_layer_layout(params, False), objective, src,
          record)


def export_dir(src: str, dst: str, *, step: int | None = None) -> dict:
  """Writes our model (model directory or training workdir) as HF directories at `dst`.

  Args:
    src: a model directory or a `launch.train` workdir.
    dst: created; must not exist or be empty.
    step: a workdir's checkpoint (default: the latest).

  Returns:
    {'architectures': per written subdir, 'notes': [...]} for the caller to report.
  """
  model_dir.check_new_directory(dst)  # Before the work; checked again when writing.
  model_config, params, objective, tok_dir, record = load_ours(src, step)
  if model_config.get('pre_layer_norm'):
    raise UserError('model.pre_layer_norm=True cannot be exported: every HF BERT-family '
                    'architecture is post-LayerNorm')
  export = objectives.hf_export(objective)
  dropped = export.dropped if export else {}  # Groups no HF architecture has.
  notes = [note for group, note in dropped.items() if group in params]
  params = {k: v for k, v in params.items() if k not in dropped}
  headless = is_headless(params)
  params = model_dir.flatten(params)
  head = None
  if objective == 'classification' and not headless:
    head = classifier_head(record, params, src)
  converter, architecture = converter_for_export(
      objective, model_config, headless=headless,
      head_activation=head and head['head_activation'])
  models = converter.export_model(model_config, architecture, params)
  if head:
    for model in models:
      model.config.update(classification_config(head))
  left = set(params) - {e.ours for m in models for e in m.entries}
  if left:
    raise UserError('parameters that the HF architecture has no place for: '
                    f'{", ".join(sorted(left)[:6])}')
  tensors = [{**convert_out(params, m.entries), **m.constants} for m in models]
  missing_tokenizer = False
  with model_dir.atomic_directory(dst) as tmp:
    for model, model_tensors in zip(models, tensors):
      out = os.path.join(tmp, model.subdir)
      write_hf(out, model.config, model_tensors)
      if not _export_tokenizer(tok_dir, out, converter.model_type, model_config):
        missing_tokenizer = True
  if missing_tokenizer:
    notes.append(f'{src} has no tokenizer: wrote no tokenizer files')
  return {'architectures': {m.subdir or '.': m.config['architectures'][0] for m in models},
          'model_type': converter.model_type, 'notes': notes}
