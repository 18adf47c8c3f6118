"""The attention maps of every block of the sequence models (private).

`TransformerLM.attention_scores` and `Transformer.attention_scores` (as
`VisionTransformer.attention_scores`): one uncached pass in inference mode
that asks each block for its weights, for plots and attention rollout.
"""

from keras_attn._compat import inference_mode


def lm_attention_scores(model, token_ids):
    """`[(B, N, T, T)] * num_layers`, the self-attention of each block."""
    model._check_token_ids(token_ids)
    scores = []
    with inference_mode():
        x = model._embed(token_ids, training=False)
        for block in model.blocks:
            x, block_scores = block(x, return_attention_scores=True)
            scores.append(block_scores)
    return scores


def seq2seq_attention_scores(model, inputs):
    """The maps of the encoder, decoder and cross-attention of each block.

    Returns:
        `{"encoder": [(B, N, S, S)], "decoder": [(B, N, T, T)],
        "cross_attention": [(B, N, T, S)]}`, one entry per block.
    """
    source, token_ids, source_mask, target_mask = model._split(inputs)
    model._check_ids("encoder_token_ids", source)
    model._check_ids("token_ids", token_ids)
    maps = {"encoder": [], "decoder": [], "cross_attention": []}
    with inference_mode():
        memory_mask = model.encoder_padding_mask(source, source_mask)
        x = model.encoder_embedding(source)
        for block in model.encoder_blocks:
            x, scores = block(
                x, padding_mask=memory_mask, return_attention_scores=True
            )
            maps["encoder"].append(scores)
        memory = x if model.encoder_norm is None else model.encoder_norm(x)
        x = model.decoder_embedding(token_ids)
        for block in model.decoder_blocks:
            x, scores = block(
                x,
                memory,
                decoder_padding_mask=target_mask,
                encoder_padding_mask=memory_mask,
                return_attention_scores="all",
            )
            maps["decoder"].append(scores["self_attention"])
            maps["cross_attention"].append(scores["cross_attention"])
    return maps
