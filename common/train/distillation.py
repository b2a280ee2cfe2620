"""Distillation: DistilBERT and TinyBERT, one weighted loss against a frozen teacher.

The teacher is any MLM-style pretraining workdir or model directory (an HF import from
`launch.convert --from=hf`, an export, another distilled student), named by
`teacher.path`. It rides in the train state as frozen parameters
(common/train/frozen.py): loaded by name into a `DistillationModel` built from the
TEACHER's own model config, run inside the same jitted, sharded train step under
stop_gradient, recorded in `<workdir>/frozen.json` and checked on resume. The student
is `config.model` and reads the teacher's token ids: `configure` points
`tokenizer.path` at the teacher's tokenizer before the data are built.

Objective 'distillation' (every weight in `config.objective`; a term with weight 0 is
still reported when it is computed anyway):

  loss = alpha_ce  * T^2 KL(teacher/T || student/T)   soft targets, `ce_loss`
       + alpha_mlm * MLM cross-entropy                 hard targets, `mlm_loss`
       + alpha_cos * (1 - cos(h_student, h_teacher))  last hidden states, `cos_loss`
       + alpha_attention * sum_l MSE(A_student_l, A_teacher_map(l))    `attention_mse`
       + alpha_hidden * sum_l MSE(h_student_l W, h_teacher_map(l))     `embedding_mse`
                                                                     + `hidden_mse`

- DistilBERT (Sanh et al. 2019, arXiv:1910.01108; transformers
  examples/research_projects/distillation, `distiller.py` `Distiller.step`): alpha_ce
  5, alpha_mlm 2, alpha_cos 1 at T = 2 (its README's command). The KL is the
  reference's `KLDivLoss(reduction='batchmean')` of the temperature-softened
  distributions times T^2, averaged over every real token (the reference's default)
  or only the masked ones (`soft_target_positions='masked'`, its
  `--restrict_ce_to_mask`); the cosine loss is `CosineEmbeddingLoss` with target 1
  over real tokens. The student starts from the teacher (`teacher.init_student`,
  the reference's `scripts/extract_distilbert.py`): embeddings, MLM head and teacher
  layers `teacher.layer_map` ('spread': [0, 2, 4, 7, 9, 11] for 12 -> 6, first and
  last kept and the rest evenly between; the reference copies the MLM head's
  transform only with `--vocab_transform`, its README's extraction uses it).
- TinyBERT (Jiao et al. 2020, arXiv:1909.10351, section 3.1; huawei-noah
  Pretrained-Language-Model TinyBERT/general_distill.py): alpha_attention 1,
  alpha_hidden 1, the rest 0. Student layer i matches teacher layer map[i]
  ('block_last': the last of each of S equal blocks, i*k + k-1 for k = T/S, the
  reference's `layers_per_block`): its pre-softmax attention scores (MSE over real
  query-key pairs; the reference zeroes the masked keys but averages over every
  entry) and its output hidden states through the learned projection W (the
  reference's shared `fit_dense`; `teacher.hidden_projection='per_layer'` gives the
  paper's one per layer), plus the embedding outputs (the reference's
  `teacher_reps[0]`). Per-layer terms are summed over layers, as the reference does.
  Prediction-layer distillation is the alpha_ce term at `distill_temperature` (the
  reference's `soft_cross_entropy` differs from the KL by the teacher's entropy, a
  constant: same gradient).

Metrics also report the teacher's `teacher_mlm_loss` and `teacher_mlm_accuracy` on the
same batches, and `teacher_agreement` (the student's argmax equals the teacher's at the
masked positions), when the teacher's MLM logits are computed (alpha_ce > 0).
"""

import dataclasses
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from common.data import tokenizer as tokenizer_lib
from common.errors import UserError
from common.interop import model_dir
from common.model import distillation_model
from common.model import encoder as encoder_lib
from common.train import flops as flops_lib
from common.train import metrics as metrics_lib
from common.train import objectives
from common.train.frozen import FrozenParams

Array = jax.Array

# The command that makes the CPU demo's teacher (experiments/bert.py).
DEMO_TEACHER_COMMAND = ('python -m launch.train --config=experiments/bert.py:demo '
                        '--workdir=/tmp/bert_demo')
# Objectives whose params hold 'encoder' and 'mlm_head' as MaskedLMModel names them.
TEACHER_OBJECTIVES = ('mlm', 'mlm_nsp', 'mlm_sop', 'mlm_sbo', 'distillation')

# Defaults of the `objective` fields read here (experiments/base.py declares them at
# these values): DistilBERT's README command (alpha_ce 5, alpha_mlm 2, alpha_cos 1,
# T 2); TinyBERT's recipe turns on the attention and hidden-state terms.
ALPHA_CE, ALPHA_MLM, ALPHA_COS = 5.0, 2.0, 1.0
ALPHA_ATTENTION, ALPHA_HIDDEN = 0.0, 0.0
TEMPERATURE = 2.0
SOFT_TARGET_POSITIONS = ('all', 'masked')
LAYER_MAPS = ('spread', 'block_last')
HIDDEN_PROJECTIONS = ('none', 'shared', 'per_layer')

HF_EXPORT = dataclasses.replace(objectives.MLM_EXPORT, dropped={
    'hidden_projection': "TinyBERT's hidden projection (hidden_projection) is used only "
                         'in training: exported the encoder and MLM head'})


# ------------------------------------------------------------------- the teacher


@dataclasses.dataclass(frozen=True)
class Teacher:
  """A teacher source, read but not loaded.

  Attributes:
    path: absolute path of the workdir or model directory.
    model_config: the `config.model` fields that built its params.
    objective: the objective that trained it.
    tokenizer_path: its tokenizer file.
    has_mlm_head: False for an import without one (an HF BertModel).
  """
  path: str
  model_config: dict
  objective: str
  tokenizer_path: str
  has_mlm_head: bool = True


def read_teacher(teacher_config) -> Teacher:
  """The teacher named by `teacher.path`; UserError (one line) if it cannot be one."""
  path = teacher_config.path
  if not path:
    raise UserError('teacher.path is not set: distillation needs a teacher, e.g. the '
                    f'BERT demo made by `{DEMO_TEACHER_COMMAND}`, then '
                    '--config.teacher.path=/tmp/bert_demo')
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise UserError(f'teacher {path} does not exist (the BERT demo teacher is made by '
                    f'`{DEMO_TEACHER_COMMAND}`)')
  has_head = True
  if model_dir.is_model_dir(path):
    model_config = model_dir.model_fields(
        model_dir.read_json(os.path.join(path, model_dir.MODEL_CONFIG)))
    source_path = os.path.join(path, model_dir.SOURCE)
    source = model_dir.read_json(source_path) if os.path.exists(source_path) else {}
    objective = source.get('objective', '')
    has_head = source.get('heads', {}).get('mlm', True)
  elif os.path.isdir(os.path.join(path, 'checkpoints')):
    config_path = os.path.join(path, 'config.json')
    if not os.path.isfile(config_path):
      raise UserError(f'teacher {path} has checkpoints but no config.json')
    run_config = model_dir.read_json(config_path)
    model_config = run_config.get('model', {})
    objective = run_config.get('objective', {}).get('name', '')
    try:
      model_dir.checkpoint_state_dir(path, None)
    except UserError as e:
      raise UserError(f'teacher {path}: {e}') from e
  elif os.path.isfile(os.path.join(path, 'config.json')):
    raise UserError(f'teacher {path} is a Hugging Face directory: import it first with '
                    f'`python -m launch.convert --from=hf --src={path} --dst=DIR` and '
                    'use DIR')
  else:
    raise UserError(f'teacher {path} is neither a training workdir (checkpoints/) nor a '
                    'model directory (params/, model_config.json)')
  if objective not in TEACHER_OBJECTIVES:
    raise UserError(f'teacher {path} was trained by objective {objective!r}, whose '
                    'params are not an encoder with an MLM head; teachers: '
                    f'{", ".join(TEACHER_OBJECTIVES)}')
  tokenizer_path = tokenizer_lib.workdir_tokenizer(path)
  if not tokenizer_path:
    raise UserError(f'teacher {path} has no tokenizer file (tokenizer.model or '
                    'hf_tokenizer.json): the student must read its token ids')
  return Teacher(path, model_config, objective, tokenizer_path, has_head)


def tokenizer_bytes(path: str) -> bytes:
  """The serialized tokenizer at `path`, to compare two tokenizers by content."""
  tokenizer = tokenizer_lib.load_any(path)
  if isinstance(tokenizer, tokenizer_lib.Tokenizer):
    return tokenizer.model_proto
  return tokenizer.serialized


def configure(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The run's config with the teacher's tokenizer: called before the data are built.

  The student reads the teacher's token ids, so `tokenizer.path` becomes the teacher's
  tokenizer file; a different tokenizer given there, or a `model.vocab_size` that is
  not the teacher's, is a UserError. Returns a copy; `config` is not changed.
  """
  teacher = read_teacher(config.teacher)
  if config.teacher.get('init_student', False) and config.train.get('init_from', ''):
    raise UserError(f'train.init_from {config.train.init_from} and '
                    'teacher.init_student=true both choose where the student starts; '
                    'set one')
  config = config.copy_and_resolve_references()
  given = config.tokenizer.path
  if given and os.path.abspath(given) != teacher.tokenizer_path:
    if not os.path.exists(given) or (tokenizer_bytes(given)
                                     != tokenizer_bytes(teacher.tokenizer_path)):
      raise UserError(f'tokenizer.path {given} is not the tokenizer of teacher '
                      f'{teacher.path} ({teacher.tokenizer_path}); the student reads the '
                      "teacher's token ids: leave tokenizer.path empty")
  config.tokenizer.path = teacher.tokenizer_path
  _check_vocab(config.model, teacher)
  config.tokenizer.vocab_size = config.model.vocab_size
  return config


def _check_vocab(model_config, teacher: Teacher) -> None:
  ours, theirs = model_config.vocab_size, teacher.model_config.get('vocab_size')
  if ours != theirs:
    raise UserError(f"teacher {teacher.path} has a vocabulary of {theirs} tokens but "
                    f'model.vocab_size is {ours}; the student uses the teacher\'s '
                    f'tokenizer: set --config.model.vocab_size={theirs}')


def teacher_spec(teacher: Teacher, student_config) -> encoder_lib.EncoderSpec:
  """The teacher's encoder as it runs here: its own fields, the student's compute
  dtype and attention implementation, no remat (it is never differentiated)."""
  student = encoder_lib.EncoderSpec.from_config(student_config)
  try:
    spec = encoder_lib.EncoderSpec.from_config(ml_collections.ConfigDict(
        teacher.model_config))
  except UserError as e:
    raise UserError(f'teacher {teacher.path}: {e}') from e
  return dataclasses.replace(spec, dtype=student.dtype,
                             attention_impl=student.attention_impl, remat_policy='none')


# ------------------------------------------------------------------ layer maps


def layer_map(setting: str, student_layers: int, teacher_layers: int) -> tuple[int, ...]:
  """Teacher layer (0-based) for each student layer.

  Args:
    setting: 'spread' (first and last teacher layers, the rest evenly between:
      round(i (T-1) / (S-1)); DistilBERT's [0, 2, 4, 7, 9, 11] for 12 -> 6),
      'block_last' (the last layer of each of S equal blocks: round((i+1) T / S) - 1;
      TinyBERT's uniform strategy, [2, 5, 8, 11] for 12 -> 4), or S comma-separated
      indices ('0,2,4,7,9,11').
  """
  s, t = student_layers, teacher_layers
  if setting == 'spread':
    return tuple(round(i * (t - 1) / max(s - 1, 1)) for i in range(s))
  if setting == 'block_last':
    return tuple(round((i + 1) * t / s) - 1 for i in range(s))
  try:
    indices = tuple(int(x) for x in setting.split(',') if x.strip())
  except ValueError:
    raise UserError(f'teacher.layer_map {setting!r} is neither '
                    f'{" nor ".join(LAYER_MAPS)} nor comma-separated layer indices'
                    ) from None
  if len(indices) != s:
    raise UserError(f'teacher.layer_map {setting!r} names {len(indices)} teacher layers '
                    f'but the student has {s} (model.num_layers)')
  for index in indices:
    if not 0 <= index < t:
      raise UserError(f'teacher.layer_map {setting!r} names teacher layer {index}, but '
                      f'the teacher has {t} layers (0..{t - 1})')
  return indices


# ---------------------------------------------------------------- loss terms


def soft_target_loss(student_logits: Array, teacher_logits: Array, weights: Array,
                     temperature: float) -> tuple[Array, Array]:
  """T^2 KL(softmax(teacher/T) || softmax(student/T)) per position, as (sum, count).

  The T^2 keeps the gradient's size independent of T (Hinton et al. 2015, section
  2): d/d student_logits = T (p_student - p_teacher) at temperature T.
  """
  log_student = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, -1)
  log_teacher = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature, -1)
  kl = jnp.sum(jnp.exp(log_teacher) * (log_teacher - log_student), axis=-1)
  return metrics_lib.weighted(kl * temperature ** 2, weights)


def cosine_loss(student_BxLxH: Array, teacher_BxLxH: Array,
                mask_BxL: Array) -> tuple[Array, Array]:
  """1 - cos(student, teacher) per real token, as (sum, count) (torch's
  CosineEmbeddingLoss with target 1; eps 1e-8 on each norm)."""
  s = student_BxLxH.astype(jnp.float32)
  t = teacher_BxLxH.astype(jnp.float32)
  cos = jnp.sum(s * t, -1) / (jnp.maximum(jnp.linalg.norm(s, axis=-1), 1e-8) *
                              jnp.maximum(jnp.linalg.norm(t, axis=-1), 1e-8))
  return metrics_lib.weighted(1.0 - cos, mask_BxL)


def attention_mse(student_BxNxLxL: Array, teacher_BxNxLxL: Array,
                  mask_BxL: Array) -> Array:
  """Mean squared difference of attention scores over real (query, key) pairs: a
  padded query or key never counts, whatever its score."""
  mask = mask_BxL.astype(jnp.float32)
  pairs_Bx1xLxL = mask[:, None, :, None] * mask[:, None, None, :]
  diff = student_BxNxLxL.astype(jnp.float32) - teacher_BxNxLxL.astype(jnp.float32)
  total = jnp.sum(jnp.square(diff) * pairs_Bx1xLxL)
  return total / jnp.maximum(jnp.sum(pairs_Bx1xLxL) * diff.shape[1], 1.0)


def hidden_mse(student_BxLxH: Array, teacher_BxLxH: Array, mask_BxL: Array) -> Array:
  """Mean squared difference of hidden states over real tokens and features."""
  mask = mask_BxL.astype(jnp.float32)
  diff = student_BxLxH.astype(jnp.float32) - teacher_BxLxH.astype(jnp.float32)
  total = jnp.sum(jnp.square(diff) * mask[..., None])
  return total / jnp.maximum(jnp.sum(mask) * diff.shape[-1], 1.0)


def _states(variables, spec) -> tuple[list[Array], list[Array]]:
  """([embedding output, layer outputs...], [attention scores per layer])."""
  sown = variables['intermediates']['encoder']
  hidden = [sown['embedding_output'][0]] + encoder_lib.layer_intermediates(
      sown, spec, 'hidden_states')
  return hidden, encoder_lib.layer_intermediates(sown, spec, 'attention_logits')


def layer_losses(student_vars, teacher_vars, student_spec, teacher_spec,
                 mapping: tuple[int, ...], mask_BxL: Array, project=None,
                 attention: bool = True, hidden: bool = True) -> dict[str, Array]:
  """TinyBERT's Transformer-layer distillation terms (Jiao et al. 2020, eqs. 7-9).

  Args:
    student_vars, teacher_vars: the 'intermediates' each encoder sowed
      (`apply(..., mutable=['intermediates'])`; any module whose encoder scope is
      'encoder').
    mapping: the teacher layer of each student layer (`layer_map`).
    mask_BxL: real tokens.
    project: (stacked states [N, B, L, H_s], state indices) -> [N, B, L, H_t], the
      student's learned projection; None when the widths are equal.

  Returns:
    'attention_mse' (summed over student layers) and 'embedding_mse', 'hidden_mse'
    (summed over mapped layers), each where asked for.
  """
  s_hidden, s_attention = _states(student_vars, student_spec)
  t_hidden, t_attention = _states(teacher_vars, teacher_spec)
  out = {}
  if attention:
    out['attention_mse'] = sum(attention_mse(s_attention[i], t_attention[j], mask_BxL)
                               for i, j in enumerate(mapping))
  if hidden:
    stacked = jnp.stack(s_hidden)
    if project is not None:
      stacked = project(stacked, tuple(range(len(s_hidden))))
    targets = [t_hidden[0]] + [t_hidden[j + 1] for j in mapping]
    per_state = [hidden_mse(stacked[k], targets[k], mask_BxL)
                 for k in range(len(targets))]
    out['embedding_mse'], out['hidden_mse'] = per_state[0], sum(per_state[1:])
  return out


# ------------------------------------------------------------------ objective


@dataclasses.dataclass(frozen=True)
class Weights:
  """The `objective` fields this loss reads."""
  ce: float
  mlm: float
  cos: float
  attention: float
  hidden: float
  temperature: float
  positions: str

  @classmethod
  def from_config(cls, objective) -> 'Weights':
    get = objective.get
    weights = cls(get('alpha_ce', ALPHA_CE), get('alpha_mlm', ALPHA_MLM),
                  get('alpha_cos', ALPHA_COS), get('alpha_attention', ALPHA_ATTENTION),
                  get('alpha_hidden', ALPHA_HIDDEN),
                  get('distill_temperature', TEMPERATURE),
                  get('soft_target_positions', 'all'))
    alphas = ('ce', 'mlm', 'cos', 'attention', 'hidden')
    for name in alphas:
      if not getattr(weights, name) >= 0:
        raise UserError(f'objective.alpha_{name} must be >= 0, got '
                        f'{getattr(weights, name)!r}')
    if not any(getattr(weights, name) for name in alphas):
      raise UserError('every distillation weight (objective.alpha_ce, alpha_mlm, '
                      'alpha_cos, alpha_attention, alpha_hidden) is 0')
    if not weights.temperature > 0:
      raise UserError(f'objective.distill_temperature must be > 0, got '
                      f'{weights.temperature!r}')
    if weights.positions not in SOFT_TARGET_POSITIONS:
      raise UserError(f'objective.soft_target_positions {weights.positions!r} is '
                      f'unknown; choose {" or ".join(SOFT_TARGET_POSITIONS)}')
    return weights


def student_model(model_config, projection: str = 'none',
                  teacher_width: int = 0) -> distillation_model.DistillationModel:
  """The student of `model_config`, with the hidden projection `projection`
  (`teacher.hidden_projection`) to `teacher_width`."""
  spec = encoder_lib.EncoderSpec.from_config(model_config)
  if projection not in HIDDEN_PROJECTIONS:
    raise UserError(f'teacher.hidden_projection {projection!r} is unknown; choose one '
                    f'of {", ".join(HIDDEN_PROJECTIONS)}')
  if projection == 'none':
    return distillation_model.DistillationModel(spec)
  count = 1 if projection == 'shared' else spec.num_layers + 1
  return distillation_model.DistillationModel(
      spec, projection_width=teacher_width or spec.hidden_size, projection_count=count)


def check_pairing(student: encoder_lib.EncoderSpec, teacher: encoder_lib.EncoderSpec,
                   teacher_path: str, weights: Weights, projection: str,
                   seq_len: int) -> None:
  """UserError when the student and teacher cannot be compared as the loss asks."""
  positions = teacher.max_position_embeddings - teacher.position_offset
  if seq_len > positions:
    raise UserError(f'data.max_seq_length {seq_len} is longer than teacher '
                    f'{teacher_path} reads ({positions} positions)')
  if ((weights.cos or weights.hidden) and projection == 'none'
      and student.hidden_size != teacher.hidden_size):
    raise UserError(f'the student is {student.hidden_size} wide and teacher '
                    f'{teacher_path} {teacher.hidden_size}: comparing hidden states '
                    '(objective.alpha_cos, alpha_hidden) needs a learned projection, '
                    "--config.teacher.hidden_projection=shared (or 'per_layer')")
  if weights.attention and student.num_heads != teacher.num_heads:
    raise UserError(f'the student has {student.num_heads} attention heads and teacher '
                    f'{teacher_path} {teacher.num_heads}: attention scores '
                    '(objective.alpha_attention) are compared head by head; set '
                    f'--config.model.num_heads={teacher.num_heads}')


def distillation(config) -> objectives.Objective:
  """'distillation': the student `config.model` learns from `teacher.path`."""
  teacher = read_teacher(config.teacher)
  _check_vocab(config.model, teacher)
  weights = Weights.from_config(config.objective)
  student_spec = encoder_lib.EncoderSpec.from_config(config.model)
  t_spec = teacher_spec(teacher, config.model)
  projection = config.teacher.get('hidden_projection', 'none')
  check_pairing(student_spec, t_spec, teacher.path, weights, projection,
                 config.data.max_seq_length)
  mapping = layer_map(config.teacher.layer_map, student_spec.num_layers,
                      t_spec.num_layers)
  if weights.ce and not teacher.has_mlm_head:
    raise UserError(f'teacher {teacher.path} has no MLM head (an encoder without '
                    'heads): its soft targets cannot be computed; set '
                    '--config.objective.alpha_ce=0')
  student = student_model(config.model, projection, t_spec.hidden_size)
  teacher_module = distillation_model.DistillationModel(
      t_spec, with_mlm_head=bool(weights.ce))
  capture = bool(weights.attention or weights.hidden)

  def project(params, hidden_NxBxLxH, indices):
    return student.apply({'params': params}, hidden_NxBxLxH, indices, method='project')
  all_positions = weights.ce and weights.positions == 'all'

  def loss_fn(params, batch, rng, deterministic, frozen):
    mask_BxL = batch['attention_mask']
    positions = None
    if all_positions:
      length = batch['input_ids'].shape[1]
      positions = jnp.broadcast_to(jnp.arange(length), batch['input_ids'].shape)
    mutable = ['intermediates'] if capture else False
    s_out = student.apply({'params': params}, batch, deterministic=deterministic,
                          positions_BxP=positions, rngs={'dropout': rng},
                          mutable=mutable)
    t_out = teacher_module.apply({'params': frozen}, batch, deterministic=True,
                                 positions_BxP=positions, mutable=mutable)
    if capture:
      (s_out, s_vars), (t_out, t_vars) = s_out, t_out
    masked_positions = batch['masked_positions']
    s_logits = s_out['mlm_logits']
    s_masked = s_logits
    if all_positions:
      s_masked = jnp.take_along_axis(s_logits, masked_positions[..., None], axis=1)
    mlm, metrics = objectives.masked_lm_loss(s_masked, batch['masked_ids'],
                                             batch['masked_weights'])
    metrics = dict(metrics)
    loss = weights.mlm * mlm
    if weights.ce:
      t_logits = t_out['mlm_logits']
      soft_weights = mask_BxL if all_positions else batch['masked_weights']
      ce_sum, ce_count = soft_target_loss(s_logits, t_logits, soft_weights,
                                          weights.temperature)
      ce = ce_sum / jnp.maximum(ce_count, 1.0)
      loss += weights.ce * ce
      metrics['ce_loss'] = (ce_sum, ce_count)
      t_masked = t_logits
      if all_positions:
        t_masked = jnp.take_along_axis(t_logits, masked_positions[..., None], axis=1)
      t_pred = jnp.argmax(t_masked, -1)
      _, t_metrics = objectives.masked_lm_loss(t_masked, batch['masked_ids'],
                                               batch['masked_weights'])
      metrics['teacher_mlm_loss'] = t_metrics['mlm_loss']
      metrics['teacher_mlm_accuracy'] = t_metrics['mlm_accuracy']
      metrics['teacher_agreement'] = metrics_lib.weighted(
          jnp.argmax(s_masked, -1) == t_pred, batch['masked_weights'])
    last = student_spec.num_layers
    if projection != 'none' or student_spec.hidden_size == t_spec.hidden_size:
      s_last = s_out['hidden']
      if projection != 'none':  # Compared in the teacher's space, as TinyBERT does.
        s_last = project(params, s_last[None], (last,))[0]
      cos_sum, cos_count = cosine_loss(s_last, t_out['hidden'], mask_BxL)
      cos = cos_sum / jnp.maximum(cos_count, 1.0)
      loss += weights.cos * cos
      metrics['cos_loss'] = (cos_sum, cos_count)
    if capture:
      terms = layer_losses(
          s_vars, t_vars, student_spec, t_spec, mapping, mask_BxL,
          (lambda h, i: project(params, h, i)) if projection != 'none' else None,
          attention=bool(weights.attention), hidden=bool(weights.hidden))
      if weights.attention:
        loss += weights.attention * terms['attention_mse']
      if weights.hidden:
        loss += weights.hidden * (terms['embedding_mse'] + terms['hidden_mse'])
      metrics.update({k: metrics_lib.scalar(v) for k, v in terms.items()})
    metrics['loss'] = metrics_lib.scalar(loss)
    return loss, metrics

  init_params = None
  if config.teacher.get('init_student', False):
    init_params = StudentInit(teacher, mapping, student_spec.scan_layers
                              and student_spec.layer_sharing == 'none',
                              jax.process_index() == 0)
  return objectives.Objective(
      'distillation', student, loss_fn, objectives.MLM_KEYS,
      flops_per_token(config, t_spec, weights),
      frozen=FrozenParams('teacher', teacher.path, teacher_module),
      init_params=init_params)


def flops_per_token(config, t_spec, weights: Weights) -> float:
  """The student's training FLOPs and the teacher's forward pass (a third of its
  training FLOPs), each with its MLM head where it runs: every token for soft targets
  over the whole sequence, else the masked positions; and the hidden projection of
  every compared state (the embedding output and each layer's for alpha_hidden, the
  last for the cosine)."""
  seq_len = config.data.max_seq_length
  predictions = config.masking.max_predictions_per_seq
  student_head = seq_len if weights.ce and weights.positions == 'all' else predictions
  flops = (flops_lib.encoder_flops_per_token(config.model, seq_len) +
           flops_lib.mlm_head_flops_per_token(config.model, seq_len, student_head))
  teacher = ml_collections.ConfigDict(dataclasses.asdict(t_spec))
  flops += flops_lib.encoder_flops_per_token(teacher, seq_len) / 3
  if weights.ce:
    flops += flops_lib.mlm_head_flops_per_token(teacher, seq_len, student_head) / 3
  if config.teacher.get('hidden_projection', 'none') != 'none':
    projected = 1 + (config.model.num_layers + 1 if weights.hidden else 0)
    flops += 6.0 * projected * config.model.hidden_size * t_spec.hidden_size
  return flops


# ------------------------------------------------------------ student start


_LAYER = re.compile(r'layer_\d+')


@dataclasses.dataclass(frozen=True)
class StudentInit:
  """`Objective.init_params` of a student started from its teacher (DistilBERT,
  `scripts/extract_distilbert.py`): the teacher's embeddings and MLM head, and teacher
  layer map[i] as student layer i; what the teacher lacks (token types it has none
  of, TinyBERT's projection) stays freshly initialised."""
  teacher: Teacher
  mapping: tuple[int, ...]
  scanned: bool
  is_main: bool = True

  def source_values(self) -> dict[str, np.ndarray]:
    """Flat student param name (unrolled layers) -> the teacher's value."""
    from common.interop import hf_checkpoint  # pylint: disable=g-import-not-at-top
    _, params, _, _, _ = hf_checkpoint.load_ours(self.teacher.path)
    flat = model_dir.flatten(params)
    out = {name: value for name, value in flat.items()
           if name.split('/')[0] in ('encoder', 'mlm_head')
           and not _LAYER.fullmatch(name.split('/')[1])}
    for i, j in enumerate(self.mapping):
      prefix = f'encoder/layer_{j}/'
      layer = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
      if not layer:
        raise UserError(f'teacher.init_student: teacher {self.teacher.path} has no '
                        f'layer {j} of its own (layers shared?); set '
                        '--config.teacher.init_student=false')
      out.update({f'encoder/layer_{i}/{k}': v for k, v in layer.items()})
    return out

  def __call__(self, params, shardings):
    source = model_dir.flatten(model_dir.set_layer_layout(
        model_dir.unflatten(self.source_values()), self.scanned))
    fresh = model_dir.flatten(params)
    flat_shardings = model_dir.flatten(shardings)
    for name, leaf in fresh.items():
      if name in source and tuple(source[name].shape) != tuple(leaf.shape):
        raise UserError(f'teacher.init_student: the student\'s {name} has shape '
                        f'{tuple(leaf.shape)} but the teacher\'s '
                        f'{tuple(source[name].shape)}; a student started from its '
                        'teacher keeps its widths (or set '
                        '--config.teacher.init_student=false)')
    merged = {name: jax.make_array_from_callback(
        leaf.shape, flat_shardings[name],
        lambda index, v=np.asarray(source[name], leaf.dtype): v[index])
              if name in source else leaf for name, leaf in fresh.items()}
    if self.is_main:
      kept = sorted({n.split('/')[0] if n.split('/')[0] != 'encoder'
                     else '/'.join(n.split('/')[:2]) for n in fresh if n not in source})
      tqdm.write(f'student initialised from teacher {self.teacher.path}: embeddings, '
                 f'MLM head, teacher layers {list(self.mapping)}; fresh: '
                 f'{", ".join(kept) or "none"}')
    return jax.tree.unflatten(jax.tree.structure(params),
                              [merged[n] for n in model_dir.flatten(params)])
