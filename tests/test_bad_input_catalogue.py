"""A catalogue of bad inputs to the entry points, each run as a user runs it.

Every case must end with exit status 2, exactly one line starting with `error:`
(containing the words that name the problem), no traceback, and every file under
the case's paths byte-identical (sha256) to before; a workdir that did not exist must
still not exist. The cases run through tests/cli_batch.py: one process per case,
forked from a driver that imported the entry point once (a fresh `python -m` per case
would spend minutes importing JAX).

Read-only filesystems and full disks need a mount: those cases are in
tests/test_reliability.py.
"""

import json
import os
import shutil
import tempfile

import pytest
from sentencepiece import sentencepiece_model_pb2

from tests.cli_batch import TINY
from tests.cli_batch import run_batch

# (id, extra flags, words the error line must contain). `WD` is replaced by a fresh
# workdir that must not exist afterwards; `TOK` by the trained run's tokenizer.
FRESH = [
    ('unknown_experiment_file', ['--config=experiments/nonexistent.py:demo'],
     'nonexistent.py'),
    ('unknown_size', ['--config=experiments/bert.py:huge'], "unknown size 'huge'"),
    ('misspelled_field', ['--config.train.stepz=5'], 'config.train.stepz'),
    ('misspelled_section', ['--config.trian.steps=5'], 'trian'),
    ('wrong_type', ['--config.train.steps=abc'], 'abc'),
    ('stray_argument', ['extra'], 'unexpected arguments'),
    ('no_workdir', ['--workdir='], '--workdir is required'),
    ('sequence_longer_than_positions', ['--config.data.max_seq_length=1024'],
     'position table'),
    ('sequence_too_short', ['--config.data.max_seq_length=8'], 'at least 16'),
    ('no_predictions', ['--config.masking.max_predictions_per_seq=0'],
     'max_predictions_per_seq'),
    ('more_predictions_than_tokens', ['--config.masking.max_predictions_per_seq=100'],
     'max_predictions_per_seq'),
    ('mask_prob_above_one', ['--config.masking.mask_prob=1.5'], 'mask_prob'),
    ('mask_prob_zero', ['--config.masking.mask_prob=0.0'], 'mask_prob'),
    ('unknown_masking_strategy', ['--config.masking.strategy=random_spans'],
     'masking.strategy'),
    ('unknown_packing', ['--config.data.packing=bags'], 'packing'),
    ('unknown_objective', ['--config.objective.name=mlm_xyz'], 'objective'),
    ('unknown_data_source', ['--config.data.source=wikipedia'], 'wikipedia'),
    ('missing_corpus_file', ['--config.data.source=text',
                             '--config.data.paths=/nonexistent/corpus.txt'],
     '/nonexistent/corpus.txt'),
    ('heldout_fraction_above_one', ['--config.data.heldout_fraction=1.5'],
     'heldout_fraction'),
    ('no_heldout_documents', ['--config.data.heldout_fraction=0.0'], 'held-out'),
    ('batch_size_zero', ['--config.train.batch_size=0'], 'train.batch_size'),
    ('batch_size_negative', ['--config.train.batch_size=-16'], 'train.batch_size'),
    ('log_every_zero', ['--config.train.log_every=0'], 'train.log_every'),
    ('checkpoint_every_zero', ['--config.train.checkpoint_every=0'],
     'train.checkpoint_every'),
    ('eval_every_zero', ['--config.train.eval_every=0'], 'train.eval_every'),
    ('keep_no_checkpoints', ['--config.train.keep_checkpoints=0'],
     'train.keep_checkpoints'),
    ('zero_steps', ['--config.train.steps=0'], 'train.steps'),
    ('accumulation_zero', ['--config.train.grad_accum_steps=0'], 'grad_accum_steps'),
    ('batch_not_divisible_by_accumulation', ['--config.train.grad_accum_steps=3'],
     'grad_accum_steps'),
    ('batch_not_divisible_by_devices', ['--config.train.batch_size=15'],
     'does not split over 2'),
    ('eval_batch_not_divisible_by_devices', ['--config.train.eval_batch_size=3'],
     'eval_batch_size 3 does not split over 2'),
    ('no_eval_batches', ['--config.train.eval_batches=0'], 'train.eval_batches'),
    ('negative_data_threads', ['--config.train.data_threads=-1'], 'data_threads'),
    ('b2_above_one', ['--config.optimizer.b2=1.5'], 'optimizer.b2'),
    ('b1_negative', ['--config.optimizer.b1=-0.1'], 'optimizer.b1'),
    ('eps_zero', ['--config.optimizer.eps=0.0'], 'optimizer.eps'),
    ('learning_rate_negative', ['--config.optimizer.learning_rate=-1.0'],
     'optimizer.learning_rate'),
    ('weight_decay_negative', ['--config.optimizer.weight_decay=-0.1'],
     'optimizer.weight_decay'),
    ('warmup_negative', ['--config.optimizer.warmup_steps=-5'], 'warmup_steps'),
    ('clip_norm_negative', ['--config.optimizer.clip_norm=-1.0'], 'clip_norm'),
    ('layer_decay_zero', ['--config.optimizer.layer_decay=0.0'], 'layer_decay'),
    ('unknown_optimizer', ['--config.optimizer.name=sgd'], "'sgd'"),
    ('unknown_schedule', ['--config.optimizer.schedule=cosine'], "'cosine'"),
    ('mesh_wider_than_devices', ['--config.mesh.shape.data=3'], 'mesh'),
    ('mesh_tensor_axis_too_big', ['--config.mesh.shape.tensor=4'], 'mesh'),
    ('dcn_data_not_dividing', ['--config.mesh.dcn_data=3'], 'dcn_data'),
    ('heads_not_dividing_width', ['--config.model.num_heads=3'], 'num_heads'),
    ('dropout_above_one', ['--config.model.dropout_rate=1.5'], 'dropout_rate'),
    ('zero_width', ['--config.model.hidden_size=0'], 'hidden_size'),
    ('stop_after_zero', ['--stop_after=0'], 'stop_after'),
    ('missing_init_from', ['--config.train.init_from=/nonexistent/model'],
     '/nonexistent/model'),
    ('missing_tokenizer', ['--config.tokenizer.path=/nonexistent/tok.model'],
     '/nonexistent/tok.model'),
    ('tokenizer_vocab_differs', ['--config.tokenizer.path=TOK',
                                 '--config.model.vocab_size=700'], 'vocab'),
]

# Cases on a copy of a run stopped at step 10 (its checkpoint), asked to go on: the
# copy must come out byte-identical.
RESUME = [
    ('resume_without_clipping', ['--config.optimizer.clip_norm=0.0'], 'clip_norm'),
    ('resume_with_lamb', ['--config.optimizer.name=lamb'], 'optimizer.name'),
    ('resume_with_layer_decay', ['--config.optimizer.layer_decay=0.8'], 'layer_decay'),
    ('resume_with_other_vocab', ['--config.model.vocab_size=700'], 'vocab'),
    ('resume_with_other_width', ['--config.model.hidden_size=128',
                                 '--config.model.num_heads=2'], 'shape'),
    ('resume_with_other_depth', ['--config.model.num_layers=3'], 'shape'),
    ('resume_with_other_tokenizer', ['--config.tokenizer.path=OTHER_TOK'], 'differs'),
]


def _write(path: str, data: bytes | str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb' if isinstance(data, bytes) else 'w') as f:
    f.write(data)
  return path


@pytest.fixture(scope='module')
def catalogue(tmp_path_factory, request):
  """Runs every case once; returns ({id: result}, {id: (expected words, paths)})."""
  tmp = str(tmp_path_factory.mktemp('catalogue'))
  # The runs resumed below: trained once by the CLI, then copied per case.
  trained = os.path.join(tmp, 'trained')
  prepared = run_batch('launch.train', [
      {'id': 'train', 'argv': [*TINY, '--stop_after=10', f'--workdir={trained}']}], tmp)
  assert prepared['train']['status'] == 0, prepared['train']['stderr'][-3000:]
  tok = os.path.join(trained, 'tokenizer.model')
  # Another tokenizer of the same size: one piece's score changed.
  model = sentencepiece_model_pb2.ModelProto.FromString(open(tok, 'rb').read())
  model.pieces[100].score += 1.0
  other_tok = _write(os.path.join(tmp, 'other', 'tokenizer.model'),
                     model.SerializeToString())

  expected, train_cases = {}, []

  def add(cases, case_id, argv, words, paths):
    expected[case_id] = (words, paths)
    cases.append({'id': case_id, 'argv': argv, 'snapshot': paths})

  def sub(args, **names):
    return [a.replace('OTHER_TOK', names['other']).replace('TOK', names['tok'])
            for a in args]

  for case_id, args, words in FRESH:
    case_dir = os.path.join(tmp, case_id)
    os.makedirs(case_dir)
    workdir = os.path.join(case_dir, 'wd')
    argv = [*TINY, f'--workdir={workdir}', *sub(args, tok=tok, other=other_tok)]
    if case_id == 'no_workdir':
      argv = [*TINY, *args]
    add(train_cases, case_id, argv, words, [case_dir])

  for case_id, args, words in RESUME:
    workdir = os.path.join(tmp, case_id)
    shutil.copytree(trained, workdir)
    add(train_cases, case_id, [*TINY, f'--workdir={workdir}',
                               *sub(args, tok=tok, other=other_tok)], words, [workdir])

  # Inputs that are files on disk.
  case_dir = os.path.join(tmp, 'empty_corpus')
  empty = _write(os.path.join(case_dir, 'empty.txt'), '\n\n')
  add(train_cases, 'empty_corpus', [*TINY, '--config.data.source=text',
                                    f'--config.data.paths={empty}',
                                    f'--workdir={case_dir}/wd'], 'empty', [case_dir])
  case_dir = os.path.join(tmp, 'workdir_is_a_file')
  a_file = _write(os.path.join(case_dir, 'wd'), 'not a directory\n')
  add(train_cases, 'workdir_is_a_file', [*TINY, f'--workdir={a_file}'], 'is a file',
      [case_dir])
  case_dir = os.path.join(tmp, 'workdir_under_a_file')
  a_file = _write(os.path.join(case_dir, 'file'), 'not a directory\n')
  add(train_cases, 'workdir_under_a_file', [*TINY, f'--workdir={a_file}/sub/wd'],
      'is a file', [case_dir])
  case_dir = os.path.join(tmp, 'tokenizer_not_a_model')
  junk = _write(os.path.join(case_dir, 'junk.model'), b'\x00\x01 not sentencepiece')
  add(train_cases, 'tokenizer_not_a_model', [*TINY, f'--config.tokenizer.path={junk}',
                                             f'--workdir={case_dir}/wd'], 'junk.model',
      [case_dir])
  case_dir = os.path.join(tmp, 'every_checkpoint_damaged')
  shutil.copytree(trained, case_dir)
  _write(os.path.join(case_dir, 'checkpoints', '10', 'loop', 'metadata'), 'garbage')
  add(train_cases, 'every_checkpoint_damaged', [*TINY, f'--workdir={case_dir}'],
      'no usable checkpoint', [case_dir])
  # Permissions (as uid 'nobody' when the tests run as root, who may read anything).
  shared = tempfile.mkdtemp(prefix='catalogue-', dir='/tmp')  # Reachable by all.
  request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
  os.chmod(shared, 0o755)
  unreadable = _write(os.path.join(shared, 'secret.txt'), 'words\n' * 100)
  os.chmod(unreadable, 0)
  locked = os.path.join(shared, 'locked')
  os.makedirs(locked)
  os.chmod(locked, 0o555)
  open_dir = os.path.join(shared, 'open')
  os.makedirs(open_dir)
  os.chmod(open_dir, 0o777)
  for case_id, argv, words in (
      ('unreadable_corpus', ['--config.data.source=text',
                             f'--config.data.paths={unreadable}',
                             f'--workdir={open_dir}/wd'], 'secret.txt'),
      ('workdir_not_writable', [f'--workdir={locked}/wd'], 'permission denied')):
    expected[case_id] = (words, [shared])
    train_cases.append({'id': case_id, 'argv': [*TINY, *argv], 'snapshot': [shared],
                        'as_nobody': True})
  # --debug: the same refusal with its traceback.
  case_dir = os.path.join(tmp, 'debug')
  os.makedirs(case_dir)
  train_cases.append({'id': 'debug', 'snapshot': [case_dir], 'argv': [
      *TINY, '--debug', '--config.train.batch_size=0', f'--workdir={case_dir}/wd']})
  results = run_batch('launch.train', train_cases, tmp)

  # The other entry points.
  other_cases = {}
  data_dir = os.path.join(tmp, 'glue_task')
  _write(os.path.join(data_dir, 'train.tsv'), 'sentence\tlabel\nok\t1\n')
  glue = ['--config=experiments/glue.py:sst2', f'--config.data_dir={data_dir}']
  for case_id, argv, words in (
      ('finetune_no_data_dir', ['--config=experiments/glue.py:sst2',
                                '--config.init_from=random'], 'data_dir'),
      ('finetune_missing_data_dir', ['--config=experiments/glue.py:sst2',
                                     '--config.init_from=random',
                                     '--config.data_dir=/nonexistent/glue'],
       '/nonexistent/glue'),
      ('finetune_missing_start', [*glue, '--config.init_from=/nonexistent/start'],
       '/nonexistent/start'),
      ('finetune_no_start', glue, 'init_from'),
      ('finetune_zero_epochs', [*glue, '--config.init_from=random',
                                '--config.epochs=0.0'], 'epochs')):
    case_dir = os.path.join(tmp, case_id)
    os.makedirs(case_dir)
    expected[case_id] = (words, [case_dir, data_dir])
    other_cases.setdefault('launch.finetune', []).append(
        {'id': case_id, 'argv': [*argv, f'--workdir={case_dir}/wd'],
         'snapshot': [case_dir, data_dir]})
  case_dir = os.path.join(tmp, 'evaluate_not_a_train_workdir')
  _write(os.path.join(case_dir, 'notes.txt'), 'hello\n')
  expected['evaluate_not_a_train_workdir'] = ('not a launch.train workdir', [case_dir])
  other_cases['launch.evaluate'] = [{'id': 'evaluate_not_a_train_workdir',
                                     'argv': [f'--workdir={case_dir}'],
                                     'snapshot': [case_dir]}]
  hf = os.path.join(tmp, 'corrupt_safetensors')
  _write(os.path.join(hf, 'config.json'), json.dumps({
      'model_type': 'bert', 'architectures': ['BertForMaskedLM'], 'vocab_size': 100,
      'hidden_size': 32, 'num_hidden_layers': 1, 'num_attention_heads': 2,
      'intermediate_size': 64, 'max_position_embeddings': 64, 'type_vocab_size': 2,
      'hidden_act': 'gelu', 'layer_norm_eps': 1e-12}))
  _write(os.path.join(hf, 'model.safetensors'),  # A header cut short.
         b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": trunc')
  expected['convert_corrupt_safetensors'] = ('cannot read weights', [hf])
  expected['convert_no_direction'] = ('--from is required', [hf])
  other_cases['launch.convert'] = [
      {'id': 'convert_corrupt_safetensors',
       'argv': ['--from=hf', f'--src={hf}', f'--dst={hf}/out'], 'snapshot': [hf]},
      {'id': 'convert_no_direction', 'argv': [f'--src={hf}', f'--dst={hf}/out'],
       'snapshot': [hf]}]
  for module, cases in other_cases.items():
    results.update(run_batch(module, cases, tmp))
  return results, expected


CASE_IDS = ([c[0] for c in FRESH] + [c[0] for c in RESUME]
            + ['empty_corpus', 'workdir_is_a_file', 'workdir_under_a_file',
               'tokenizer_not_a_model', 'every_checkpoint_damaged', 'unreadable_corpus',
               'workdir_not_writable', 'finetune_no_data_dir', 'finetune_missing_data_dir',
               'finetune_missing_start', 'finetune_no_start', 'finetune_zero_epochs',
               'evaluate_not_a_train_workdir', 'convert_corrupt_safetensors',
               'convert_no_direction'])


def test_the_catalogue_has_at_least_40_bad_inputs():
  assert len(set(CASE_IDS)) == len(CASE_IDS) >= 40


@pytest.mark.parametrize('case_id', CASE_IDS)
def test_bad_input_is_one_line_and_leaves_nothing(catalogue, case_id):
  results, expected = catalogue
  result = results[case_id]
  words, _ = expected[case_id]
  stderr = result['stderr']
  assert result['status'] == 2, (result['status'], stderr[-3000:])
  errors = [l for l in stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1, stderr[-3000:]
  print(case_id, '->', errors[0])
  assert 'Traceback' not in stderr + result['stdout'], stderr[-3000:]
  assert words.lower() in errors[0].lower(), errors[0]
  assert '\\n' not in errors[0] and "\\'" not in errors[0], errors[0]
  changed = sorted(p for p in set(result['before']) | set(result['after'])
                   if result['before'].get(p) != result['after'].get(p))
  assert not changed, changed


def test_debug_shows_the_traceback_and_still_writes_nothing(catalogue):
  results, _ = catalogue
  result = results['debug']
  assert result['status'] != 0
  assert 'Traceback' in result['stderr'] and 'train.batch_size' in result['stderr']
  assert result['before'] == result['after']
