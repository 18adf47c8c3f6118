"""Pure functions on `keras.ops`: the attention core, masks, the masked
softmax and positions."""

from keras_attn.ops.attention import scaled_dot_product_attention
from keras_attn.ops.attention_axes import fold_attention_axes
from keras_attn.ops.attention_axes import fold_attention_mask
from keras_attn.ops.attention_axes import unfold_attention_axes
from keras_attn.ops.attention_axes import unfold_attention_scores
from keras_attn.ops.masked_softmax import masked_softmax
from keras_attn.ops.masks import attention_mask_from
from keras_attn.ops.masks import cache_mask_from_step
from keras_attn.ops.masks import causal_mask
from keras_attn.ops.masks import combine_masks
from keras_attn.ops.masks import sliding_window_mask
from keras_attn.ops.positions import alibi_bias
from keras_attn.ops.positions import alibi_slopes
from keras_attn.ops.positions import apply_rotary
from keras_attn.ops.positions import relative_position_buckets
from keras_attn.ops.positions import rotary_cos_sin
from keras_attn.ops.positions import sequence_positions
from keras_attn.ops.positions import sincos_1d
from keras_attn.ops.positions import sincos_2d_positions
from keras_attn.ops.positions import sine_position_encoding
from keras_attn.ops.positions import t5_relative_position_bucket
from keras_attn.ops.rope import grid_positions
from keras_attn.ops.rope import rope_attention_factor
from keras_attn.ops.rope import rope_cos_sin
from keras_attn.ops.rope import rope_inverse_frequencies
from keras_attn.ops.score_mods import AlibiScoreMod
from keras_attn.ops.score_mods import ScoreMod
from keras_attn.ops.score_mods import relative_position_score_mod
from keras_attn.ops.sparse_probabilities import hardmax
from keras_attn.ops.sparse_probabilities import sparsemax

__all__ = [
    "AlibiScoreMod",
    "ScoreMod",
    "alibi_bias",
    "alibi_slopes",
    "apply_rotary",
    "attention_mask_from",
    "cache_mask_from_step",
    "causal_mask",
    "combine_masks",
    "fold_attention_axes",
    "fold_attention_mask",
    "grid_positions",
    "hardmax",
    "masked_softmax",
    "relative_position_buckets",
    "relative_position_score_mod",
    "rope_attention_factor",
    "rope_cos_sin",
    "rope_inverse_frequencies",
    "rotary_cos_sin",
    "scaled_dot_product_attention",
    "sequence_positions",
    "sincos_1d",
    "sincos_2d_positions",
    "sine_position_encoding",
    "sliding_window_mask",
    "sparsemax",
    "t5_relative_position_bucket",
    "unfold_attention_axes",
    "unfold_attention_scores",
]
