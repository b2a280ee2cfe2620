"""HF BERT, RoBERTa and DistilBERT <-> our `MaskedLMModel` (common/model/mlm_model.py).

The three are our one encoder with switches: RoBERTa is BERT with positions starting
at pad_token_id + 1 (`position_offset` 2) and its own head names; DistilBERT has no
token types (`type_vocab_size` 0), no pooler and other tensor names. One converter
class covers them, configured per family:

| HF architecture        | objective | our params                                        |
|------------------------|-----------|---------------------------------------------------|
| BertForPreTraining     | mlm_nsp   | encoder, mlm_head, pooler, sentence_head          |
| BertForMaskedLM        | mlm       | encoder, mlm_head                                 |
| BertModel              | mlm       | encoder (+ pooler); mlm_head left to fresh init   |
| RobertaForMaskedLM     | mlm       | encoder, mlm_head (+ pooler when the file has it) |
| DistilBertForMaskedLM  | mlm       | encoder, mlm_head                                 |
| RobertaModel           | mlm       | encoder (+ pooler)                                |
| DistilBertModel        | mlm       | encoder                                           |
| *ForSequenceClassification | classification | encoder, pooler, classifier           |

The classifiers' heads (common/model/classifier.py `SequenceClassifier`): BERT's
bert.pooler.dense and classifier (tanh); RoBERTa's classifier.dense and
classifier.out_proj (tanh; RoBERTa's classifier has no roberta.pooler); DistilBERT's
pre_classifier and classifier (relu) are our 'pooler' and 'classifier'.

Exports go the other way, as the architecture the objective names
(common/train/objectives.py `HFExport`): BertForPreTraining for mlm_nsp; for an MLM model
RobertaForMaskedLM when position_offset > 0, DistilBertForMaskedLM without token types,
BertForMaskedLM otherwise (no family here represents a factorized or shared encoder);
for a classifier the family's *ForSequenceClassification when its head's activation is
the classifier's; for params without heads the base model (BertModel, ...), named as
the base model saves them (no 'bert.' prefix). A pooler in our params is written too
(the MLM architectures ignore it, a later BertModel load uses it).
"""

import dataclasses

from common.model import encoder as encoder_lib
from common.interop import hf_checkpoint as hf
from common.model import mlm_model
from common.interop import model_dir
from common.errors import UserError

# Our config.model field -> (HF config key, HF default) of BERT-like configs.
BERT_KEYS = {
    'vocab_size': ('vocab_size', 30522),
    'hidden_size': ('hidden_size', 768),
    'num_layers': ('num_hidden_layers', 12),
    'num_heads': ('num_attention_heads', 12),
    'intermediate_size': ('intermediate_size', 3072),
    'max_position_embeddings': ('max_position_embeddings', 512),
    'type_vocab_size': ('type_vocab_size', 2),
    'hidden_act': ('hidden_act', 'gelu'),
    'dropout_rate': ('hidden_dropout_prob', 0.1),
    'attention_dropout_rate': ('attention_probs_dropout_prob', 0.1),
    'layer_norm_eps': ('layer_norm_eps', 1e-12),
    'initializer_range': ('initializer_range', 0.02),
}
DISTILBERT_KEYS = {
    'vocab_size': ('vocab_size', 30522),
    'hidden_size': ('dim', 768),
    'num_layers': ('n_layers', 6),
    'num_heads': ('n_heads', 12),
    'intermediate_size': ('hidden_dim', 3072),
    'max_position_embeddings': ('max_position_embeddings', 512),
    'hidden_act': ('activation', 'gelu'),
    'dropout_rate': ('dropout', 0.1),
    'attention_dropout_rate': ('attention_dropout', 0.1),
    'initializer_range': ('initializer_range', 0.02),
}
# Fields an import always sets the same way (the recipes' values).
_RUNTIME = dict(embedding_size=0, pre_layer_norm=False, scan_layers=True,
                remat_policy='none', dtype='float32', attention_impl='xla')
DISTILBERT_LAYER_NORM_EPS = 1e-12  # Hard-coded in HF's DistilBERT.


def model_config_from_hf(hf_config: dict, keys: dict, src: str, **fixed) -> dict:
  """Our `config.model` fields from an HF config.json (UserError if unrepresentable)."""
  config = {ours: hf_config.get(key, default) for ours, (key, default) in keys.items()}
  config.update(_RUNTIME)
  config.update(fixed)
  hf.check_activation(config['hidden_act'], f'{src}/config.json')
  encoder_lib.EncoderSpec.from_config(config)
  return config


def hf_config_from_ours(model_config: dict, keys: dict, **extra) -> dict:
  """The HF config.json keys for our `config.model` fields (defaults as EncoderSpec)."""
  spec = encoder_lib.EncoderSpec.from_config(model_config)
  return {**{key: getattr(spec, ours) for ours, (key, _) in keys.items()},
          'tie_word_embeddings': True, 'torch_dtype': 'float32', **extra}


# Our layer's scopes -> the family's tensor names inside one layer.
BERT_LAYER = {
    'attention/query': 'attention.self.query', 'attention/key': 'attention.self.key',
    'attention/value': 'attention.self.value', 'attention/out': 'attention.output.dense',
    'attention_layer_norm': 'attention.output.LayerNorm',
    'mlp/wi': 'intermediate.dense', 'mlp/wo': 'output.dense',
    'mlp_layer_norm': 'output.LayerNorm'}
DISTILBERT_LAYER = {
    'attention/query': 'attention.q_lin', 'attention/key': 'attention.k_lin',
    'attention/value': 'attention.v_lin', 'attention/out': 'attention.out_lin',
    'attention_layer_norm': 'sa_layer_norm', 'mlp/wi': 'ffn.lin1', 'mlp/wo': 'ffn.lin2',
    'mlp_layer_norm': 'output_layer_norm'}


def layer_entries(hf_layer: str, ours: str, names: dict[str, str]) -> list[hf.Entry]:
  """One HF layer (names relative to `hf_layer`) <-> our `TransformerLayer` scope."""
  entries = []
  for scope, name in names.items():
    if scope.endswith('layer_norm'):
      entries += hf.norm(f'{hf_layer}{name}', f'{ours}/{scope}')
    else:  # The attention output kernel is [heads, head_dim, H]: 2 input axes.
      entries += hf.linear(f'{hf_layer}{name}', f'{ours}/{scope}',
                           in_axes=2 if scope == 'attention/out' else 1)
  return entries


def bert_layer_entries(prefix: str, ours: str, num_layers: int,
                       stack: str = 'encoder.layer.',
                       names: dict[str, str] = BERT_LAYER) -> list[hf.Entry]:
  """BERT's `encoder.layer.{i}` tensors (also RoBERTa's, ELECTRA's; DistilBERT's with
  its stack and names) <-> our unrolled layers `{ours}/layer_{i}`."""
  return [e for i in range(num_layers)
          for e in layer_entries(f'{prefix}{stack}{i}.', f'{ours}/layer_{i}', names)]


def embedding_entries(prefix: str, ours: str, token_types: bool = True) -> list[hf.Entry]:
  """`{prefix}embeddings.*` <-> our `Embeddings` scope."""
  types = f'{prefix}embeddings.token_type_embeddings'
  return (hf.embed(f'{prefix}embeddings.word_embeddings', f'{ours}/token_embed') +
          hf.embed(f'{prefix}embeddings.position_embeddings', f'{ours}/position_embed') +
          (hf.embed(types, f'{ours}/type_embed') if token_types else []) +
          hf.norm(f'{prefix}embeddings.LayerNorm', f'{ours}/layer_norm'))


def distilbert_layer_entries(prefix: str, ours: str, num_layers: int) -> list[hf.Entry]:
  return bert_layer_entries(prefix, ours, num_layers, 'transformer.layer.',
                            DISTILBERT_LAYER)


def mlm_head_entries(transform: str, layer_norm: str, bias: str, ours: str = 'mlm_head',
                     group: str = 'mlm') -> list[hf.Entry]:
  """An MLM head (dense, activation, LayerNorm, tied table, bias) <-> `MaskedLMHead`."""
  return (hf.linear(transform, f'{ours}/transform', group) +
          hf.norm(layer_norm, f'{ours}/transform_layer_norm', group) +
          [hf.Entry(bias, f'{ours}/output_bias', group)])


@dataclasses.dataclass(frozen=True)
class MaskedLMConverter(hf.Converter):
  """One BERT-like HF family <-> `MaskedLMModel`.

  Attributes:
    model_type, recipe: see `hf.Converter`.
    prefix: the base model's name prefix ('bert.').
    keys: config key table (BERT_KEYS or DISTILBERT_KEYS).
    layers: (prefix, our encoder scope, L) -> the layer entries.
    heads: head entries ('mlm', 'pooler', 'nsp' groups).
    tied: HF name -> the tensor it must equal (tied output layers).
    pooler: whether the family has BERT's pooler.
    architectures: HF architecture written by an export -> the head groups it holds.
    base_architecture: the base model (no heads; names without `prefix`).
    classifier: the *ForSequenceClassification head's entries (`hf.classifier_entries`).
    head_activations: {its architecture: the activation its head applies}.
  """
  model_type: str
  recipe: str
  prefix: str
  keys: dict
  layers: object
  heads: tuple
  tied: dict
  pooler: bool
  architectures: dict
  base_architecture: str
  classifier: tuple
  head_activations: dict

  def model_config(self, hf_config: dict, src: str) -> dict:
    if self.model_type == 'distilbert':
      if hf_config.get('sinusoidal_pos_embds'):
        raise UserError(f'{src}/config.json: sinusoidal_pos_embds=True cannot be '
                        'represented (our positions are learned)')
      return model_config_from_hf(hf_config, self.keys, src, type_vocab_size=0,
                                  layer_norm_eps=DISTILBERT_LAYER_NORM_EPS,
                                  position_offset=0)
    offset = 0
    if self.model_type == 'roberta':
      offset = hf_config.get('pad_token_id', 1) + 1
      if hf_config.get('hidden_act', 'gelu') != 'gelu':
        raise UserError(f'{src}/config.json: hidden_act {hf_config["hidden_act"]!r}: '
                        "RoBERTa's LM head always applies gelu, ours model.hidden_act")
    return model_config_from_hf(hf_config, self.keys, src, position_offset=offset)

  def encoder_entries(self, model_config: dict) -> list[hf.Entry]:
    p = self.prefix
    types = model_config.get('type_vocab_size', 2) > 0
    return (embedding_entries(p, 'encoder/embeddings', types) +
            self.layers(p, 'encoder', model_config['num_layers']))

  def entries(self, model_config: dict) -> list[hf.Entry]:
    return self.encoder_entries(model_config) + list(self.heads)

  def import_model(self, src, hf_config, weights):
    hf.check_common(hf_config, src)
    model_config = self.model_config(hf_config, src)
    weights = hf.with_prefix(weights, self.prefix, 'embeddings.word_embeddings.weight')
    if hf.is_classifier(weights, self.classifier):
      (activation,) = self.head_activations.values()
      return hf.import_classifier(
          src, hf_config, weights, model_config,
          self.encoder_entries(model_config) + list(self.classifier), activation)
    # With a sentence head: its pooler is in the shapes for files that have one.
    shapes = hf.param_shapes(mlm_model.MaskedLMModel(
        hf.unrolled(model_config), sentence_classes=2 if self.pooler else 0))
    flat, present, used = hf.convert_in(src, weights, self.entries(model_config), shapes)
    hf.check_rest(src, weights, used, self.tied)
    heads = {g: v for g, v in present.items() if g != 'encoder'}
    objective = 'mlm_nsp' if heads.get('nsp') else 'mlm'
    return hf.Imported(model_config, model_dir.unflatten(flat), objective, heads)

  def represents(self, model_config):
    spec = encoder_lib.EncoderSpec.from_config(model_config)
    if spec.factorized or spec.layer_sharing != 'none':
      return False
    if self.model_type == 'roberta':
      return spec.position_offset > 0
    if self.model_type == 'distilbert':
      return spec.position_offset == 0 and spec.type_vocab_size == 0
    return spec.position_offset == 0 and spec.type_vocab_size > 0

  def export_model(self, model_config, architecture, params):
    spec = encoder_lib.EncoderSpec.from_config(model_config)
    extra = {}
    if self.model_type == 'roberta':
      if spec.hidden_act != 'gelu':
        raise UserError(f'model.hidden_act {spec.hidden_act!r} cannot be exported as '
                        "RoBERTa: its LM head always applies gelu")
      extra['pad_token_id'] = spec.position_offset - 1
    if self.model_type == 'distilbert':
      if spec.layer_norm_eps != DISTILBERT_LAYER_NORM_EPS:
        raise UserError(f'model.layer_norm_eps {spec.layer_norm_eps} cannot be exported '
                        f'as DistilBERT (fixed at {DISTILBERT_LAYER_NORM_EPS})')
      extra['sinusoidal_pos_embds'] = False
    config = hf_config_from_ours(model_config, self.keys, architectures=[architecture],
                                 model_type=self.model_type, **extra)
    if architecture in self.head_activations:
      return [hf.HFModel(config, self.encoder_entries(model_config) +
                         list(self.classifier))]
    groups = {'encoder', *self.architectures[architecture]}
    if any(name.startswith('pooler/') for name in params):
      groups.add('pooler')
    model = hf.HFModel(config, [e for e in self.entries(model_config) if e.group in groups])
    if architecture == self.base_architecture:
      return [hf.base_model(model, self.prefix)]
    return [model]


BERT = MaskedLMConverter(
    model_type='bert', recipe='bert', prefix='bert.', keys=BERT_KEYS,
    layers=bert_layer_entries,
    heads=tuple(hf.linear('bert.pooler.dense', 'pooler/dense', 'pooler') +
                mlm_head_entries('cls.predictions.transform.dense',
                                 'cls.predictions.transform.LayerNorm',
                                 'cls.predictions.bias') +
                hf.linear('cls.seq_relationship', 'sentence_head/dense', 'nsp')),
    tied={'cls.predictions.decoder.weight': 'bert.embeddings.word_embeddings.weight',
          'cls.predictions.decoder.bias': 'cls.predictions.bias'}, pooler=True,
    architectures={'BertForPreTraining': ('mlm', 'pooler', 'nsp'),
                   'BertForMaskedLM': ('mlm',), 'BertModel': (),
                   'BertForSequenceClassification': ('pooler', 'classifier')},
    base_architecture='BertModel',
    classifier=tuple(hf.classifier_entries('bert.pooler.dense', 'classifier')),
    head_activations={'BertForSequenceClassification': 'tanh'})

ROBERTA = MaskedLMConverter(
    model_type='roberta', recipe='roberta', prefix='roberta.', keys=BERT_KEYS,
    layers=bert_layer_entries,
    heads=tuple(hf.linear('roberta.pooler.dense', 'pooler/dense', 'pooler') +
                mlm_head_entries('lm_head.dense', 'lm_head.layer_norm', 'lm_head.bias')),
    tied={'lm_head.decoder.weight': 'roberta.embeddings.word_embeddings.weight',
          'lm_head.decoder.bias': 'lm_head.bias'}, pooler=True,
    architectures={'RobertaForMaskedLM': ('mlm',), 'RobertaModel': (),
                   'RobertaForSequenceClassification': ('pooler', 'classifier')},
    base_architecture='RobertaModel',
    # RobertaForSequenceClassification has no roberta.pooler: its head's dense is ours.
    classifier=tuple(hf.classifier_entries('classifier.dense', 'classifier.out_proj')),
    head_activations={'RobertaForSequenceClassification': 'tanh'})

DISTILBERT = MaskedLMConverter(
    model_type='distilbert', recipe='roberta', prefix='distilbert.', keys=DISTILBERT_KEYS,
    layers=distilbert_layer_entries,
    heads=tuple(mlm_head_entries('vocab_transform', 'vocab_layer_norm',
                                 'vocab_projector.bias')),
    tied={'vocab_projector.weight': 'distilbert.embeddings.word_embeddings.weight'},
    pooler=False,
    architectures={'DistilBertForMaskedLM': ('mlm',), 'DistilBertModel': (),
                   'DistilBertForSequenceClassification': ('pooler', 'classifier')},
    base_architecture='DistilBertModel',
    classifier=tuple(hf.classifier_entries('pre_classifier', 'classifier')),
    head_activations={'DistilBertForSequenceClassification': 'relu'})
