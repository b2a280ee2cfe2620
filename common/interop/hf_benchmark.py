"""The same pretraining step in Hugging Face transformers (PyTorch), timed for comparison.

`launch.benchmark --compare=hf` times our jitted step, then runs this module in a
subprocess (`run_subprocess`), so each framework has the machine to itself, one after
the other, and torch is imported only there. The subprocess builds the model that
`launch.convert` would export for the config (common/interop/hf_*.py: the objective's
architecture, its HF config), feeds it the same synthetic batch (same ids, masked
positions and labels, written to a file) and times forward, backward, gradient
clipping and AdamW, as our step does, with as many torch threads as cores.

| objective | HF model(s)                                                      |
|-----------|------------------------------------------------------------------|
| mlm_nsp   | BertForPreTraining (MLM + NSP)                                   |
| mlm_sop   | AlbertForPreTraining (MLM + SOP)                                 |
| mlm       | RobertaForMaskedLM, BertForMaskedLM, AlbertForMaskedLM, ...      |
| electra   | ElectraForMaskedLM generator + ElectraForPreTraining, embeddings |
|           | shared, Gumbel sample without gradient, loss MLM + 50 x RTD      |

What differs is listed by `differences` (e.g. HF projects every position onto the
vocabulary, we project only the masked ones).
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import peak_memory
from common.errors import UserError

# Objective -> what the HF side trains: 'pretraining' (MLM + a sentence head, the
# architecture's own loss), 'mlm', or 'electra' (two models).
KINDS = {'mlm_nsp': 'pretraining', 'mlm_sop': 'pretraining', 'mlm': 'mlm',
         'electra': 'electra'}
SENTENCE_LABELS = {'mlm_nsp': 'next_sentence_label', 'mlm_sop': 'sentence_order_label'}
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check_available() -> None:
  """UserError unless torch and transformers can be imported (the 'hf' extra)."""
  missing = [m for m in ('torch', 'transformers') if importlib.util.find_spec(m) is None]
  if missing:
    raise UserError(f"--compare=hf needs {' and '.join(missing)} (the 'hf' extra: "
                    "pip install -e '.[hf]')")


def hf_models(config, model) -> list[dict]:
  """[{'architecture', 'config', 'role'}] of the HF models holding `model` (a flax
  module of `config`), from the converter `launch.convert` exports with."""
  from common.interop import hf_checkpoint as hf  # pylint: disable=g-import-not-at-top
  objective = config.objective.name
  if objective not in KINDS:
    raise UserError(f'--compare=hf has no Hugging Face counterpart for objective '
                    f'{objective!r}; it compares {", ".join(KINDS)}')
  model_config = config.model.to_dict()
  if model_config.get('pre_layer_norm'):
    raise UserError('--compare=hf: model.pre_layer_norm=True has no HF architecture')
  converter, architecture = hf.converter_for_export(objective, model_config)
  exported = converter.export_model(model_config, architecture, hf.param_shapes(model))
  return [{'architecture': m.config['architectures'][0], 'config': m.config,
           'role': m.subdir or 'model'} for m in exported]


def unpredicted_vocab_flops_per_token(config, models: list[dict]) -> float:
  """Training FLOPs per token of the MLM head at the positions HF projects and we do
  not: the H -> E transform and the E -> V projection at L - P of the L positions.
  Sizes from the HF config of the model holding the MLM head (`hf_models`; ELECTRA's
  generator)."""
  roles = {m['role']: m['config'] for m in models}
  mlm = roles.get('generator', roles.get('model'))
  hidden, vocab = mlm['hidden_size'], mlm['vocab_size']
  embedding = mlm.get('embedding_size') or hidden
  length = config.data.max_seq_length
  skipped = length - config.masking.max_predictions_per_seq
  return 6.0 * (hidden * embedding + embedding * vocab) * skipped / length


def differences(config, models: list[dict]) -> list[str]:
  """What the HF step does differently from ours, one line each."""
  kind = KINDS[config.objective.name]
  notes = []
  flops_per_token_extra = unpredicted_vocab_flops_per_token(config, models)
  if flops_per_token_extra:
    where = "the generator's" if kind == 'electra' else 'the'
    notes.append(f'HF projects every position onto the vocabulary in {where} MLM head '
                 f'(we project only the {config.masking.max_predictions_per_seq} masked '
                 f'ones): +{flops_per_token_extra / 1e6:.1f} MFLOP/token it does and '
                 'model FLOPs do not count')
  notes.append('HF: eager PyTorch, attention as transformers picks it; AdamW with '
               "clipping and ours' decay mask, no learning-rate schedule, no non-finite "
               'guard, no gradient or parameter norms')
  if config.model.dtype == 'bfloat16':
    notes.append('HF runs under torch.autocast(bfloat16); ours keeps f32 params and '
                 'LayerNorm statistics')
  return notes


def subprocess_env() -> dict[str, str]:
  """Our environment, with OpenMP's idle threads sleeping unless the caller chose.

  torch's OpenMP threads spin while they wait by default; on a machine whose cores
  are busy with other work that made a 2-thread HF step 10x slower here (a spinning
  thread holds the core the other one needs), so the subprocess gets PASSIVE.
  """
  return {'OMP_WAIT_POLICY': 'PASSIVE', **os.environ}


def run_subprocess(config, batch: dict[str, np.ndarray], models: list[dict], *,
                   steps: int, warmup: int, threads: int, roofline_size: int = 2048,
                   timeout: float | None = None) -> dict:
  """Runs `python -m common.interop.hf_benchmark` on this batch; its result dict."""
  opt = config.optimizer
  spec = {
      'kind': KINDS[config.objective.name], 'models': models, 'steps': steps,
      'warmup': warmup, 'threads': threads, 'seed': config.seed,
      'roofline_size': roofline_size,
      'sentence_label': SENTENCE_LABELS.get(config.objective.name),
      'bfloat16': config.model.dtype == 'bfloat16',
      'optimizer': {'lr': opt.learning_rate, 'betas': [opt.b1, opt.b2], 'eps': opt.eps,
                    'weight_decay': opt.weight_decay, 'clip_norm': opt.clip_norm or 0.0},
      'generator_weight': config.objective.generator_weight,
      'discriminator_weight': config.objective.discriminator_weight,
      'temperature': config.objective.temperature,
  }
  with tempfile.TemporaryDirectory() as tmp:
    np.savez(os.path.join(tmp, 'batch.npz'), **batch)
    with open(os.path.join(tmp, 'spec.json'), 'w') as f:
      json.dump(spec, f)
    result = subprocess.run(
        [sys.executable, '-m', 'common.interop.hf_benchmark', tmp], cwd=_REPO,
        env=subprocess_env(), capture_output=True, text=True, timeout=timeout,
        check=False)
    out_path = os.path.join(tmp, 'result.json')
    if result.returncode or not os.path.exists(out_path):
      lines = [l for l in (result.stderr or '').strip().splitlines() if l.strip()]
      raise UserError(f'the Hugging Face run failed: {lines[-1] if lines else "no output"}')
    with open(out_path) as f:
      return json.load(f)


# ------------------------------------------------- the subprocess (torch from here)


def _no_decay(name: str) -> bool:
  return name.endswith('bias') or 'layernorm' in name.lower().replace('_', '')


def _build(spec):
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  models = {}
  for entry in spec['models']:
    config = dict(entry['config'])
    config_cls = transformers.CONFIG_MAPPING[config.pop('model_type')]
    config.pop('architectures', None)
    config.pop('torch_dtype', None)
    models[entry['role']] = getattr(transformers, entry['architecture'])(
        config_cls(**config))
  if spec['kind'] == 'electra':  # One embedding layer, as ElectraModel shares ours.
    disc, gen = models['model'], models['generator']
    gen.electra.embeddings = disc.electra.embeddings
    gen.generator_lm_head.weight = disc.electra.embeddings.word_embeddings.weight
  named = {id(p): (n, p) for m in models.values() for n, p in m.named_parameters()}
  for m in models.values():
    m.train()
  # Weight decay as ours (common/train/optimizers.py): not on biases and LayerNorm.
  plain = [p for n, p in named.values() if _no_decay(n)]
  decayed = [p for n, p in named.values() if not _no_decay(n)]
  opt = spec['optimizer']
  optimizer = torch.optim.AdamW(
      [{'params': decayed, 'weight_decay': opt['weight_decay']},
       {'params': plain, 'weight_decay': 0.0}],
      lr=opt['lr'], betas=tuple(opt['betas']), eps=opt['eps'])
  return models, decayed + plain, optimizer


def _tensors(batch):
  """Our batch -> torch tensors, with the HF-style MLM labels (-100 = not predicted)."""
  import torch  # pylint: disable=g-import-not-at-top
  ids = batch['input_ids'].astype(np.int64)
  rows = np.arange(ids.shape[0])[:, None]
  real = batch['masked_weights'] > 0
  original = ids.copy()
  original[np.broadcast_to(rows, real.shape)[real], batch['masked_positions'][real]] = (
      batch['masked_ids'][real])
  labels = np.full_like(ids, -100)
  labels[np.broadcast_to(rows, real.shape)[real], batch['masked_positions'][real]] = (
      batch['masked_ids'][real])
  out = {'input_ids': ids, 'attention_mask': batch['attention_mask'].astype(np.int64),
         'token_type_ids': batch['segment_ids'].astype(np.int64), 'labels': labels,
         'original': original, 'masked_positions': batch['masked_positions'].astype(np.int64),
         'masked_real': real}
  for key in SENTENCE_LABELS.values():
    if key in batch:
      out[key] = batch[key].astype(np.int64)
  return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


def _electra_loss(spec, models, t):
  """Generator MLM, Gumbel-max sample at the masked positions, discriminator."""
  import torch  # pylint: disable=g-import-not-at-top
  inputs = {k: t[k] for k in ('attention_mask', 'token_type_ids')}
  gen = models['generator'](input_ids=t['input_ids'], labels=t['labels'], **inputs)
  with torch.no_grad():
    rows = torch.arange(t['input_ids'].shape[0])[:, None]
    logits = gen.logits[rows, t['masked_positions']].float() / spec['temperature']
    uniform = torch.rand_like(logits).clamp_(1e-9, 1.0)
    sampled = torch.argmax(logits - torch.log(-torch.log(uniform)), dim=-1)
    corrupted = t['original'].clone()
    real = t['masked_real']
    corrupted[rows.expand_as(real)[real], t['masked_positions'][real]] = sampled[real]
    labels = ((corrupted != t['original']) & t['attention_mask'].bool()).long()
  disc = models['model'](input_ids=corrupted, labels=labels, **inputs)
  return spec['generator_weight'] * gen.loss + spec['discriminator_weight'] * disc.loss


def _loss(spec, models, t):
  if spec['kind'] == 'electra':
    return _electra_loss(spec, models, t)
  kwargs = {k: t[k] for k in ('input_ids', 'attention_mask', 'token_type_ids', 'labels')}
  if spec['kind'] == 'pretraining':
    kwargs[spec['sentence_label']] = t[spec['sentence_label']]
  return models['model'](**kwargs).loss


def matmul_flops_per_sec(size: int = 2048, repeats: int = 5) -> float:
  """torch's [size, size] x [size, size] float32 matmul FLOP/s, best of `repeats`."""
  import torch  # pylint: disable=g-import-not-at-top
  a, b = torch.randn(size, size), torch.randn(size, size)
  a @ b
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - start)
  return 2.0 * size ** 3 / best


def run(spec: dict, batch: dict[str, np.ndarray]) -> dict:
  """Times `spec['steps']` HF training steps after `warmup`; returns the timings."""
  import contextlib  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(spec['threads'])
  torch.manual_seed(spec['seed'])
  models, params, optimizer = _build(spec)
  t = _tensors(batch)
  clip = spec['optimizer']['clip_norm']
  autocast = (torch.autocast('cpu', dtype=torch.bfloat16) if spec['bfloat16']
              else contextlib.nullcontext())
  times, cpu_times = [], []
  for i in range(spec['warmup'] + spec['steps']):
    start, cpu_start = time.perf_counter(), time.process_time()
    optimizer.zero_grad(set_to_none=True)
    with autocast:
      loss = _loss(spec, models, t)
    loss.backward()
    if clip:
      torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu_start)
    if not torch.isfinite(loss):
      raise RuntimeError(f'non-finite HF loss at step {i}')
  first = next(iter(models.values()))
  return {
      'step_seconds': times[spec['warmup']:], 'cpu_seconds': cpu_times[spec['warmup']:],
      'peak_bytes': peak_memory.peak_rss_bytes(),
      'parameters': sum(p.numel() for p in params), 'threads': torch.get_num_threads(),
      'attention': getattr(first.config, '_attn_implementation', None) or 'default',
      'torch': torch.__version__, 'transformers': transformers.__version__,
      'loss': float(loss.detach()),
      'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY', ''),
      'matmul_flops_per_sec': matmul_flops_per_sec(spec['roofline_size']),
  }


def main(argv: list[str]) -> None:
  """`python -m common.interop.hf_benchmark DIR`: DIR/spec.json, DIR/batch.npz ->
  DIR/result.json."""
  directory = argv[1]
  with open(os.path.join(directory, 'spec.json')) as f:
    spec = json.load(f)
  with np.load(os.path.join(directory, 'batch.npz')) as data:
    batch = dict(data)
  result = run(spec, batch)
  with open(os.path.join(directory, 'result.json'), 'w') as f:
    json.dump(result, f)


if __name__ == '__main__':
  main(sys.argv)
