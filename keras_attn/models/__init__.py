"""Ready models built from keras-attn layers.

## The `generate` contract

One contract for `TransformerLM.generate`, `Transformer.generate` and
`RNNSeq2Seq.generate` (each model's docstring refers here):

```
generate(inputs, max_length, method="greedy", start_token=None,
         end_token=None, pad_token=0, use_cache=True,
         return_attention_scores=False, stop_sequences=None, stream=None,
         **options)
```

- `inputs`: for `TransformerLM`, the prompt `token_ids (B, P)` or a dict
  `{"token_ids", "padding_mask"}`; for the encoder-decoder models, the
  source `encoder_token_ids (B, S)` or a dict `{"encoder_token_ids",
  "encoder_padding_mask" (optional), "token_ids" (optional decoder
  prompt), "padding_mask" (optional)}`.
- Prompts of different lengths share a batch: right-pad them and pass
  `padding_mask`, True on the real prompt tokens. Generation starts at the
  shortest prompt; longer rows keep their prompt tokens (keras-hub's
  `generate` does the same).
- `start_token`: an int put before every prompt; required when an
  encoder-decoder model gets no decoder prompt (the prompt is then the
  start token alone).
- `max_length`: the TOTAL length of the returned sequences, prompt and
  start token included (keras-hub's meaning).
- Returns `(B, max_length)` int32 tokens, prompt included; the positions
  after a row's `end_token` hold `pad_token`. With
  `return_attention_scores=True`, returns `(tokens, scores)`: row `i` of
  `scores` is the attention when producing token `i` (zeros for prompt
  rows): for the encoder-decoder models `(B, max_length, S)` over the
  source (the last decoder block's cross-attention averaged over heads, or
  the RNN decoder's alignments); for `TransformerLM` `(B, max_length,
  max_length)` over the sequence (the last block's self-attention averaged
  over heads).
- `method`: a `keras_attn.generation.Sampler`, or a name with the
  sampler's arguments as `options`: `"greedy"`, `"beam"` (`beam_width`,
  `length_penalty`), `"sample"` (`temperature`, `top_k`, `top_p`, `min_p`,
  `seed`) or `"contrastive"` (`k`, `alpha`, `temperature`); every sampler
  also takes `repetition_penalty` and `no_repeat_ngram_size`. See
  `keras_attn.generation`.
- `stop_sequences`: lists of token ids; a row stops once its last tokens
  match one (kept, `pad_token` after), rows independently.
- `stream`: `fn(token_ids (B,), index)` called after each step; the loop
  then runs eagerly (not with beam search, nor under `jax.jit` /
  `tf.function`); without it the loop is a compiled `while_loop`.
- `use_cache`: decode one token per step against caches (key/value caches
  or the RNN state), or re-run the decoder on the whole prefix each step
  (the RNN always steps).
- Runs without gradient tracking (`torch.no_grad` on PyTorch).

Example:

```python
import numpy as np
from keras_attn.models import Transformer

model = Transformer(vocabulary_size=20, max_sequence_length=12, hidden_dim=32)
source = np.array([[5, 6, 7, 8], [9, 10, 11, 0]])
# Decoder prompts [1] and [1, 7]: right-padded, with a padding mask.
inputs = {
    "encoder_token_ids": source,
    "token_ids": np.array([[1, 0], [1, 7]]),
    "padding_mask": np.array([[True, False], [True, True]]),
}
tokens, scores = model.generate(
    inputs, max_length=8, end_token=2, return_attention_scores=True
)  # (2, 8) int32 tokens and (2, 8, 4) cross-attention rows
```
"""

from keras_attn.models.rnn_seq2seq import RNNSeq2Seq
from keras_attn.models.transformer import Transformer
from keras_attn.models.transformer_lm import TransformerLM
from keras_attn.models.vision_transformer import VisionTransformer

__all__ = ["RNNSeq2Seq", "Transformer", "TransformerLM", "VisionTransformer"]
