"""The one Transformer encoder every recipe shares (BERT, RoBERTa, ALBERT, ELECTRA, ...).

What differs between the BERT-family encoders is a handful of config switches, not a
different model: token-type embeddings or none (DistilBERT), a factorized V x E table
with an E -> H projection (ALBERT, ELECTRA), an activation, post-LN or pre-LN, and a
position offset (RoBERTa's checkpoints start positions at 2). So there is one encoder,
read from the `model` ConfigDict of the experiment file.

Layers are stacked with `nn.scan` (compile time does not grow with depth), optionally
under `nn.remat` with a named policy; `scan_layers=False` unrolls the same math into
`layer_0 .. layer_{L-1}`. Every parameter carries logical axis names (t5x style) so the
sharding module maps them onto a mesh with one rules table; `LOGICAL_AXIS_NAMES` lists
every name used here and in `common/model/heads.py`.

Cross-layer parameter sharing (ALBERT, Lan et al. 2020 section 3.1) is a switch any
encoder can turn on: `layer_sharing` 'all' applies ONE layer module L times (nn.scan
with the params broadcast, or the same module called in an unrolled loop), 'attention'
or 'ffn' applies one shared SelfAttention or FeedForward module in every layer beside
per-layer parts; `num_hidden_groups` G gives G such shared modules, layer i using group
i * G // L as the reference's `int(i / L * G)`. Shared weights exist once in the param
tree, so every application's gradient is summed into them; nothing is tied afterwards.

Hidden states of every layer are sown into the 'intermediates' collection (kept only
when the caller asks for it with `mutable=['intermediates']`, free otherwise); in that
case the attention also sows its pre-softmax scores (TinyBERT distils them).
`layer_intermediates` reads them back as one array per layer in every layout.
"""

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
from jax.ad_checkpoint import checkpoint_name
import jax.numpy as jnp
import numpy as np

from common.errors import UserError
from common.model import dropout as dropout_lib

Array = jax.Array

# Every logical axis name used by parameters and activation constraints of the encoder
# and of common/model/heads.py ('layers' is added by nn.scan). The sharding rules must cover all.
LOGICAL_AXIS_NAMES = (
    'batch',             # activations: batch
    'length',            # activations: sequence
    'vocab',             # token table rows, MLM output bias
    'embed',             # hidden size H (the residual stream)
    'factorized_embed',  # ALBERT/ELECTRA embedding size E when E != H
    'position',          # position table rows
    'type_vocab',        # token-type table rows
    'heads',             # attention heads
    'kv',                # per-head dimension
    'mlp',               # feed-forward intermediate size
    'layers',            # stacked layers under nn.scan
    'embed_out',         # output side of square H -> H/E dense layers (pooler, MLM head)
    'classes',           # classification head outputs
)

ACTIVATIONS = {
    'gelu': functools.partial(jax.nn.gelu, approximate=False),  # BERT: exact erf GeLU
    'gelu_new': functools.partial(jax.nn.gelu, approximate=True),  # tanh approx (GPT-2)
    'gelu_pytorch_tanh': functools.partial(jax.nn.gelu, approximate=True),
    'relu': jax.nn.relu,  # ERNIE 1.0
}

# Names tagged with `checkpoint_name` in the layer, for the name-based remat policies.
_QKV_NAMES = ('query_proj', 'key_proj', 'value_proj')
_MLP_NAMES = ('mlp_hidden',)

# What the backward pass may keep instead of recomputing ('none' = no remat at all).
REMAT_POLICIES = {
    'none': None,
    'full': jax.checkpoint_policies.nothing_saveable,
    'dots': jax.checkpoint_policies.checkpoint_dots,
    'dots_with_no_batch_dims':
        jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    'qkv': jax.checkpoint_policies.save_only_these_names(*_QKV_NAMES),
    'qkv_mlp': jax.checkpoint_policies.save_only_these_names(
        *_QKV_NAMES, *_MLP_NAMES),
}

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
ATTENTION_IMPLS = ('xla', 'cudnn')
# What is shared across layers: 'none' (BERT), 'all' (ALBERT), or only the attention
# or only the feed-forward sublayer (ALBERT's ablations, paper Table 4).
LAYER_SHARING = ('none', 'all', 'attention', 'ffn')


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
  """The model config, read, defaulted and checked once.

  Build it with `EncoderSpec.from_config(config.model)`; modules accept either the
  ConfigDict or an EncoderSpec as their `config`. Defaults are BERT-base's
  (google-research/bert bert_config.json: L12 H768 A12 I3072, 512 positions, 2 types).
  """
  vocab_size: int
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  embedding_size: int = 768  # resolved: hidden_size when the config says None or 0
  hidden_act: str = 'gelu'
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  layer_norm_eps: float = 1e-12
  initializer_range: float = 0.02
  pre_layer_norm: bool = False
  scan_layers: bool = True
  remat_policy: str = 'none'
  dtype: str = 'float32'
  attention_impl: str = 'xla'
  position_offset: int = 0
  layer_sharing: str = 'none'
  num_hidden_groups: int = 1

  @classmethod
  def from_config(cls, config: Any) -> 'EncoderSpec':
    """Reads a ConfigDict (or passes an EncoderSpec through); UserError if invalid."""
    if isinstance(config, cls):
      return config
    get = config.get
    if get('vocab_size') is None:
      raise UserError('model.vocab_size must be set')
    hidden = get('hidden_size', 768)
    embedding_size = get('embedding_size', None)
    spec = cls(
        vocab_size=get('vocab_size'),
        hidden_size=hidden,
        num_layers=get('num_layers', 12),
        num_heads=get('num_heads', 12),
        intermediate_size=get('intermediate_size', 4 * hidden),
        max_position_embeddings=get('max_position_embeddings', 512),
        type_vocab_size=get('type_vocab_size', 2),
        # None or 0 = no factorization (0 keeps the field an int for flag overrides).
        embedding_size=embedding_size or hidden,
        hidden_act=get('hidden_act', 'gelu'),
        dropout_rate=get('dropout_rate', 0.1),
        attention_dropout_rate=get('attention_dropout_rate', 0.1),
        layer_norm_eps=get('layer_norm_eps', 1e-12),
        initializer_range=get('initializer_range', 0.02),
        pre_layer_norm=get('pre_layer_norm', False),
        scan_layers=get('scan_layers', True),
        remat_policy=get('remat_policy', 'none'),
        dtype=get('dtype', 'float32'),
        attention_impl=get('attention_impl', 'xla'),
        position_offset=get('position_offset', 0),
        layer_sharing=get('layer_sharing', 'none'),
        num_hidden_groups=get('num_hidden_groups', 1),
    )
    spec.validate()
    return spec

  def validate(self) -> None:
    """Raises UserError naming the first bad field."""
    for name in ('vocab_size', 'hidden_size', 'num_layers', 'num_heads',
                 'intermediate_size', 'max_position_embeddings', 'embedding_size'):
      if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
        raise UserError(
            f'model.{name} must be a positive integer, got {getattr(self, name)!r}')
    if self.hidden_size % self.num_heads:
      raise UserError(
          f'model.hidden_size {self.hidden_size} is not divisible by '
          f'model.num_heads {self.num_heads}')
    if self.type_vocab_size < 0 or self.position_offset < 0:
      raise UserError('model.type_vocab_size and model.position_offset must be >= 0')
    if self.position_offset >= self.max_position_embeddings:
      raise UserError(
          f'model.position_offset {self.position_offset} leaves no room in '
          f'max_position_embeddings {self.max_position_embeddings}')
    for name in ('dropout_rate', 'attention_dropout_rate'):
      rate = getattr(self, name)
      if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise UserError(f'model.{name} must be in [0, 1), got {rate!r}')
    _check_choice('hidden_act', self.hidden_act, ACTIVATIONS)
    _check_choice('remat_policy', self.remat_policy, REMAT_POLICIES)
    _check_choice('dtype', self.dtype, DTYPES)
    _check_choice('attention_impl', self.attention_impl, ATTENTION_IMPLS)
    if self.attention_impl == 'cudnn' and self.dtype != 'bfloat16':
      raise UserError("model.attention_impl 'cudnn' needs model.dtype 'bfloat16'")
    _check_choice('layer_sharing', self.layer_sharing, LAYER_SHARING)
    groups = self.num_hidden_groups
    if not isinstance(groups, int) or not 1 <= groups <= self.num_layers:
      raise UserError(f'model.num_hidden_groups must be an integer in 1..num_layers '
                      f'({self.num_layers}), got {groups!r}')
    if groups != 1 and self.layer_sharing == 'none':
      raise UserError(f'model.num_hidden_groups {groups} needs model.layer_sharing '
                      "'all', 'attention' or 'ffn' (nothing is shared with 'none')")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def factorized(self) -> bool:
    """True when the token table is V x E with E != H (ALBERT, ELECTRA-small)."""
    return self.embedding_size != self.hidden_size

  @property
  def compute_dtype(self) -> Any:
    return DTYPES[self.dtype]

  @property
  def activation(self) -> Callable[[Array], Array]:
    return ACTIVATIONS[self.hidden_act]

  @property
  def layer_groups(self) -> tuple[tuple[int, ...], ...]:
    """Layer indices of each sharing group: layer i is in group i * G // L."""
    groups = [[] for _ in range(self.num_hidden_groups)]
    for i in range(self.num_layers):
      groups[i * self.num_hidden_groups // self.num_layers].append(i)
    return tuple(tuple(g) for g in groups)

  @property
  def embed_axis(self) -> str:
    """Logical name of the embedding-table feature axis (E or H)."""
    return 'factorized_embed' if self.factorized else 'embed'


def _check_choice(name: str, value: Any, choices: Any) -> None:
  if value not in choices:
    raise UserError(
        f'model.{name} {value!r} is unknown; choose one of {", ".join(choices)}')


def kernel_init(spec: EncoderSpec, axes: tuple[str, ...]) -> nn.initializers.Initializer:
  """BERT's truncated normal (TF truncated_normal_initializer: +-2 std, not rescaled)."""
  return nn.with_logical_partitioning(
      nn.initializers.truncated_normal(spec.initializer_range), axes)


def zeros_init(axes: tuple[str, ...]) -> nn.initializers.Initializer:
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def layer_norm(spec: EncoderSpec, axis: str, name: str) -> nn.LayerNorm:
  """LayerNorm with float32 statistics and parameters, output in the compute dtype."""
  return nn.LayerNorm(
      epsilon=spec.layer_norm_eps, dtype=spec.compute_dtype, param_dtype=jnp.float32,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), (axis,)),
      bias_init=zeros_init((axis,)), name=name)


def padding_mask(attention_mask_BxL: Array | None) -> Array | None:
  """[B, L] (1 = real token) -> boolean key mask [B, 1, 1, L] for every query row."""
  if attention_mask_BxL is None:
    return None
  return attention_mask_BxL.astype(bool)[:, None, None, :]


def _constrain(x: Array, axes: tuple[str, ...]) -> Array:
  return nn.with_logical_constraint(x, axes)


class Embeddings(nn.Module):
  """Token + absolute position (+ token-type) embeddings, LayerNorm, dropout.

  Output width is the table width E (= H unless factorized); the E -> H projection
  lives in `Encoder` so that ELECTRA's generator and discriminator can share these
  tables and LayerNorm while each keeps its own projection.
  """
  config: Any

  def setup(self):
    spec = EncoderSpec.from_config(self.config)
    e_axis = spec.embed_axis
    # Lookups and their sum stay float32; the LayerNorm casts to the compute dtype.
    self.token_embed = nn.Embed(
        spec.vocab_size, spec.embedding_size, dtype=jnp.float32,
        embedding_init=kernel_init(spec, ('vocab', e_axis)))
    self.position_embed = nn.Embed(
        spec.max_position_embeddings, spec.embedding_size, dtype=jnp.float32,
        embedding_init=kernel_init(spec, ('position', e_axis)))
    if spec.type_vocab_size:
      self.type_embed = nn.Embed(
          spec.type_vocab_size, spec.embedding_size, dtype=jnp.float32,
          embedding_init=kernel_init(spec, ('type_vocab', e_axis)))
    self.layer_norm = layer_norm(spec, e_axis, name=None)
    self.dropout = dropout_lib.Dropout(spec.dropout_rate)
    self.spec = spec

  def __call__(self, input_ids_BxL: Array, segment_ids_BxL: Array | None = None, *,
               deterministic: bool = True) -> Array:
    """Embeds ids; returns embedded_BxLxE in the compute dtype.

    segment_ids_BxL: token types (None = all 0); ignored when type_vocab_size is 0.
    Raises UserError when L + position_offset exceeds max_position_embeddings.
    """
    spec = self.spec
    length = input_ids_BxL.shape[1]
    if length + spec.position_offset > spec.max_position_embeddings:
      raise UserError(
          f'sequence length {length} (+ position offset {spec.position_offset}) is '
          f'longer than max_position_embeddings {spec.max_position_embeddings}')
    x_BxLxE = self.token_embed(input_ids_BxL)
    positions_L = jnp.arange(length) + spec.position_offset
    x_BxLxE += self.position_embed(positions_L)[None]
    if spec.type_vocab_size:
      if segment_ids_BxL is None:
        segment_ids_BxL = jnp.zeros_like(input_ids_BxL)
      x_BxLxE += self.type_embed(segment_ids_BxL)
    x_BxLxE = self.layer_norm(x_BxLxE)
    return self.dropout(x_BxLxE, deterministic=deterministic)

  def attend(self, x_BxPxE: Array) -> Array:
    """Logits against the token table, x @ table^T: [B, P, E] -> float32 [B, P, V].

    Like nn.Embed.attend, but accumulating and returning float32 (bf16 logits over a
    30k-50k vocabulary lose the precision the softmax needs).
    """
    table_VxE = self.token_embed.embedding
    return jnp.einsum('bpe,ve->bpv', x_BxPxE, table_VxE.astype(x_BxPxE.dtype),
                      preferred_element_type=jnp.float32)


class HeadsDense(nn.Module):
  """Dense layer with a multi-axis kernel: [H, heads, head_dim] in, or out of, heads.

  nn.DenseGeneral creates a flat 2-D kernel and reshapes it, which breaks 3-name
  logical partitioning under a mesh with rules (flax 0.12); this one creates the
  kernel in its final shape. Contracts the last `contract_ndim` input axes.
  """
  config: Any
  kernel_shape: tuple[int, ...]
  kernel_axes: tuple[str, ...]
  contract_ndim: int = 1

  @nn.compact
  def __call__(self, x: Array) -> Array:
    spec = EncoderSpec.from_config(self.config)
    n = self.contract_ndim
    kernel = self.param('kernel', kernel_init(spec, self.kernel_axes),
                        self.kernel_shape, jnp.float32)
    bias = self.param('bias', zeros_init(self.kernel_axes[n:]), self.kernel_shape[n:],
                      jnp.float32)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=spec.compute_dtype)
    x_axes = tuple(range(x.ndim - n, x.ndim))
    y = jax.lax.dot_general(x, kernel, ((x_axes, tuple(range(n))), ((), ())))
    return y + bias


class SelfAttention(nn.Module):
  """Multi-head self-attention with a key padding mask and attention dropout.

  Kernels are [H, heads, head_dim] (query/key/value) and [heads, head_dim, H] (out), the
  t5x/MaxText layout, so heads and head_dim carry their own logical axis names.
  """
  config: Any

  @nn.compact
  def __call__(self, x_BxLxH: Array, mask_Bx1x1xL: Array | None,
               deterministic: bool = True) -> Array:
    spec = EncoderSpec.from_config(self.config)
    dtype = spec.compute_dtype
    heads_shape = (spec.num_heads, spec.head_dim)

    def projection(name):
      return HeadsDense(spec, (spec.hidden_size, *heads_shape),
                        ('embed', 'heads', 'kv'), name=name)

    qkv_axes = ('batch', 'length', 'heads', 'kv')
    q_BxLxNxD = _constrain(projection('query')(x_BxLxH), qkv_axes)
    k_BxLxNxD = _constrain(projection('key')(x_BxLxH), qkv_axes)
    v_BxLxNxD = _constrain(projection('value')(x_BxLxH), qkv_axes)
    q_BxLxNxD = checkpoint_name(q_BxLxNxD, 'query_proj')
    k_BxLxNxD = checkpoint_name(k_BxLxNxD, 'key_proj')
    v_BxLxNxD = checkpoint_name(v_BxLxNxD, 'value_proj')

    capture = self.is_mutable_collection('intermediates')
    dropout = spec.attention_dropout_rate > 0 and not deterministic
    if dropout or capture:
      # jax.nn.dot_product_attention has no dropout and hides the scores: same math
      # written out (float32 logits and softmax, as its 'xla' implementation).
      scale = 1.0 / np.sqrt(spec.head_dim)
      logits_BxNxLxL = jnp.einsum(
          'btnd,bsnd->bnts', q_BxLxNxD, k_BxLxNxD,
          preferred_element_type=jnp.float32) * scale
      if capture:
        self.sow('intermediates', 'attention_logits', logits_BxNxLxL)
      if mask_Bx1x1xL is not None:
        big_neg = -0.7 * jnp.finfo(jnp.float32).max  # as jax.nn's masking
        logits_BxNxLxL = jnp.where(mask_Bx1x1xL, logits_BxNxLxL, big_neg)
      probs_BxNxLxL = jax.nn.softmax(logits_BxNxLxL, axis=-1).astype(dtype)
      probs_BxNxLxL = dropout_lib.Dropout(spec.attention_dropout_rate)(
          probs_BxNxLxL, deterministic=deterministic)
      out_BxLxNxD = jnp.einsum('bnts,bsnd->btnd', probs_BxNxLxL, v_BxLxNxD)
    else:
      out_BxLxNxD = jax.nn.dot_product_attention(
          q_BxLxNxD, k_BxLxNxD, v_BxLxNxD, mask=mask_Bx1x1xL,
          implementation=spec.attention_impl)

    return HeadsDense(spec, (*heads_shape, spec.hidden_size), ('heads', 'kv', 'embed'),
                      contract_ndim=2, name='out')(out_BxLxNxD)


class FeedForward(nn.Module):
  """Position-wise feed-forward: Dense H -> I, activation, Dense I -> H."""
  config: Any

  @nn.compact
  def __call__(self, x_BxLxH: Array) -> Array:
    spec = EncoderSpec.from_config(self.config)
    h_BxLxI = nn.Dense(
        spec.intermediate_size, dtype=spec.compute_dtype, param_dtype=jnp.float32,
        kernel_init=kernel_init(spec, ('embed', 'mlp')), bias_init=zeros_init(('mlp',)),
        name='wi')(x_BxLxH)
    h_BxLxI = spec.activation(h_BxLxI)
    h_BxLxI = checkpoint_name(
        _constrain(h_BxLxI, ('batch', 'length', 'mlp')), 'mlp_hidden')
    return nn.Dense(
        spec.hidden_size, dtype=spec.compute_dtype, param_dtype=jnp.float32,
        kernel_init=kernel_init(spec, ('mlp', 'embed')), bias_init=zeros_init(('embed',)),
        name='wo')(h_BxLxI)


class TransformerLayer(nn.Module):
  """One encoder layer: attention and feed-forward blocks, each with a residual.

  Post-LN (BERT): x = LN(x + drop(attn(x))); x = LN(x + drop(ffn(x))).
  Pre-LN:         x = x + drop(attn(LN(x))); x = x + drop(ffn(LN(x))).

  `shared_attention` / `shared_mlp`: a module owned by the encoder and applied in
  every layer of its group (ALBERT's attention-only or FFN-only sharing); None = the
  layer's own 'attention' / 'mlp'. LayerNorms always stay per layer.
  """
  config: Any
  shared_attention: nn.Module | None = None
  shared_mlp: nn.Module | None = None

  @nn.compact
  def __call__(self, x_BxLxH: Array, mask_Bx1x1xL: Array | None,
               deterministic: bool = True) -> Array:
    """hidden_BxLxH, key mask [B, 1, 1, L] (or None) -> hidden_BxLxH."""
    spec = EncoderSpec.from_config(self.config)

    def residual(x, sublayer, norm_name):
      norm = layer_norm(spec, 'embed', name=norm_name)
      y = sublayer(norm(x) if spec.pre_layer_norm else x)
      x = x + dropout_lib.Dropout(spec.dropout_rate)(y, deterministic=deterministic)
      return x if spec.pre_layer_norm else norm(x)

    attention, mlp = self.shared_attention, self.shared_mlp
    if attention is None:
      attention = SelfAttention(spec, name='attention')
    if mlp is None:
      mlp = FeedForward(spec, name='mlp')
    x_BxLxH = residual(x_BxLxH, lambda h: attention(h, mask_Bx1x1xL, deterministic),
                       'attention_layer_norm')
    x_BxLxH = residual(x_BxLxH, mlp, 'mlp_layer_norm')
    x_BxLxH = _constrain(x_BxLxH, ('batch', 'length', 'embed'))
    self.sow('intermediates', 'hidden_states', x_BxLxH)
    return x_BxLxH


# Encoder attribute name of the module a layer shares, by TransformerLayer field.
_SHARED_NAMES = {'shared_attention': 'attention', 'shared_mlp': 'mlp'}


def _scanned(spec: EncoderSpec) -> bool:
  """Whether the layers run under nn.scan (partial sharing always unrolls)."""
  return spec.scan_layers and spec.layer_sharing in ('none', 'all')


def _layer_calls(spec: EncoderSpec) -> list[str]:
  """Encoder attributes called in order: one per layer, or one per scanned stack."""
  if _scanned(spec):
    if spec.layer_sharing == 'none':
      return ['layers']
    return [f'layer_group_{g}' for g in range(spec.num_hidden_groups)]
  if spec.layer_sharing == 'all':
    return [f'layer_group_{g}' for g, layers in enumerate(spec.layer_groups)
            for _ in layers]
  return [f'layer_{i}' for i in range(spec.num_layers)]


def layer_intermediates(intermediates: Any, config: Any,
                        name: str = 'hidden_states') -> list[Array]:
  """One array per applied layer, in order, from an encoder's 'intermediates'.

  Args:
    intermediates: the encoder's 'intermediates' collection (from
      `apply(..., mutable=['intermediates'])`, at the encoder's own path).
    config: the encoder's model config or EncoderSpec.
    name: 'hidden_states' (each layer's output, [B, L, H]) or 'attention_logits'
      (pre-softmax scores, [B, heads, L, L]).

  Returns:
    A list of num_layers arrays, whatever the scan and sharing layout.
  """
  spec = EncoderSpec.from_config(config)
  path = ('attention', name) if name == 'attention_logits' else (name,)
  if name == 'attention_logits' and spec.layer_sharing == 'attention':
    # The shared module sows once per application, in layer order within a group.
    return [x for g in range(spec.num_hidden_groups)
            for x in intermediates[f'attention_group_{g}'][name]]
  out = []
  for module in dict.fromkeys(_layer_calls(spec)):  # Unique, in order.
    sown = intermediates[module]
    for key in path:
      sown = sown[key]
    out.extend(sown[0] if _scanned(spec) else sown)  # Stacked, or one per call.
  return list(out)


class _ScannedLayer(TransformerLayer):
  """TransformerLayer with the (carry, output) signature nn.scan wants."""

  def __call__(self, x_BxLxH, mask_Bx1x1xL, deterministic=True):
    return super().__call__(x_BxLxH, mask_Bx1x1xL, deterministic), None


class Encoder(nn.Module):
  """Embeddings, optional E -> H projection, L Transformer layers (+ final LN if pre-LN).

  Params: 'embeddings', 'embedding_projection' (factorized only; outside any sharing,
  as ALBERT's `embedding_hidden_mapping_in`), then by `layer_sharing`:
    'none':       'layers' (stacked, leading axis L) or 'layer_0' .. 'layer_{L-1}'
                  (scan_layers=False);
    'all':        'layer_group_0' .. 'layer_group_{G-1}', one layer each, no L axis
                  (the same tree scanned or unrolled);
    'attention':  'attention_group_{g}' (shared SelfAttention) and 'layer_i' holding
                  the per-layer 'mlp' and both LayerNorms;
    'ffn':        'mlp_group_{g}' (shared FeedForward) and 'layer_i' holding the
                  per-layer 'attention' and both LayerNorms;
  and 'final_layer_norm' (pre-LN only). Partial sharing always runs unrolled: nn.scan
  would stack the shared module's params too.
  """
  config: Any

  def setup(self):
    spec = EncoderSpec.from_config(self.config)
    self.spec = spec
    self.embeddings = Embeddings(spec)
    if spec.factorized:
      self.embedding_projection = nn.Dense(
          spec.hidden_size, dtype=spec.compute_dtype, param_dtype=jnp.float32,
          kernel_init=kernel_init(spec, ('factorized_embed', 'embed')),
          bias_init=zeros_init(('embed',)))

    sharing, groups = spec.layer_sharing, spec.layer_groups
    scanned = _scanned(spec)
    layer_cls = _ScannedLayer if scanned else TransformerLayer
    if spec.remat_policy != 'none':
      layer_cls = nn.remat(
          layer_cls, policy=REMAT_POLICIES[spec.remat_policy],
          # Inside scan the loop already stops XLA from merging recomputation away.
          prevent_cse=not scanned,
          static_argnums=(3,))  # (self, x, mask, deterministic)
    if sharing == 'none' and scanned:
      self.layers = nn.scan(
          layer_cls,
          variable_axes={'params': 0, 'intermediates': 0},
          split_rngs={'params': True, 'dropout': True},
          in_axes=(nn.broadcast, nn.broadcast),
          length=spec.num_layers,
          metadata_params={nn.PARTITION_NAME: 'layers'})(spec)
    elif sharing == 'all':
      for g, layers in enumerate(groups):
        if scanned:  # One set of params broadcast to every step: no 'layers' axis.
          setattr(self, f'layer_group_{g}', nn.scan(
              layer_cls,
              variable_broadcast='params',
              variable_axes={'intermediates': 0},
              split_rngs={'params': False, 'dropout': True},
              in_axes=(nn.broadcast, nn.broadcast),
              length=len(layers))(spec))
        else:
          setattr(self, f'layer_group_{g}', layer_cls(spec))
    else:
      shared = {}
      if sharing == 'attention':
        shared = {'shared_attention': [SelfAttention(spec) for _ in groups]}
      elif sharing == 'ffn':
        shared = {'shared_mlp': [FeedForward(spec) for _ in groups]}
      for key, modules in shared.items():
        for g, module in enumerate(modules):
          setattr(self, f'{_SHARED_NAMES[key]}_group_{g}', module)
      for g, layers in enumerate(groups):
        for i in layers:
          setattr(self, f'layer_{i}', layer_cls(
              spec, **{key: modules[g] for key, modules in shared.items()}))
    if spec.pre_layer_norm:
      self.final_layer_norm = layer_norm(spec, 'embed', name=None)

  def __call__(self, input_ids_BxL: Array, segment_ids_BxL: Array | None = None,
               attention_mask_BxL: Array | None = None, *,
               deterministic: bool = True) -> Array:
    """Encodes token ids.

    Args:
      input_ids_BxL: int token ids.
      segment_ids_BxL: token types (None = all segment 0).
      attention_mask_BxL: 1/True at real tokens, 0 at padding (None = all real).
        Padded keys are never attended to; outputs at padded rows are unspecified.
      deterministic: False enables dropout (needs a 'dropout' rng).

    Returns:
      hidden_BxLxH in the compute dtype.
    """
    embedded_BxLxE = self.embed(
        input_ids_BxL, segment_ids_BxL, deterministic=deterministic)
    return self.transform(embedded_BxLxE, attention_mask_BxL,
                          deterministic=deterministic)

  def embed(self, input_ids_BxL: Array, segment_ids_BxL: Array | None = None, *,
            deterministic: bool = True) -> Array:
    """The embedding layer alone: ids -> embedded_BxLxE (before any projection)."""
    return self.embeddings(input_ids_BxL, segment_ids_BxL, deterministic=deterministic)

  def transform(self, embedded_BxLxE: Array, attention_mask_BxL: Array | None = None,
                *, deterministic: bool = True) -> Array:
    """Everything after the embedding layer: [B, L, E] -> hidden_BxLxH.

    Lets a model feed embeddings it shares with another encoder (ELECTRA); this
    encoder's own 'embeddings' params are then never created.
    """
    spec = self.spec
    x_BxLxH = embedded_BxLxE
    if spec.factorized:
      x_BxLxH = self.embedding_projection(x_BxLxH)
    x_BxLxH = _constrain(x_BxLxH.astype(spec.compute_dtype), ('batch', 'length', 'embed'))
    self.sow('intermediates', 'embedding_output', x_BxLxH)
    mask_Bx1x1xL = padding_mask(attention_mask_BxL)
    for name in _layer_calls(spec):
      x_BxLxH = getattr(self, name)(x_BxLxH, mask_Bx1x1xL, deterministic)
      if _scanned(spec):
        x_BxLxH, _ = x_BxLxH
    if spec.pre_layer_norm:
      x_BxLxH = self.final_layer_norm(x_BxLxH)
    return x_BxLxH

  def attend(self, x_BxPxE: Array) -> Array:
    """Tied output projection onto the token table: [B, P, E] -> float32 [B, P, V]."""
    return self.embeddings.attend(x_BxPxE)
