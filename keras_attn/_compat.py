"""Backend compatibility: the only place library code imports a backend.

Everything else in keras-attn is written on `keras.ops`. What lives here is
needed because one backend behaves differently enough that the generic code
would be slow or wrong; each helper says why, and each is tested against
the generic path.
"""

import contextlib
import contextvars

import keras
import numpy as np
from keras import ops


def inference_mode():
    """A context without gradient tracking, for generation loops.

    PyTorch records the autograd graph of every op on trainable weights, so
    eager decoding would keep the graph of all steps (and their caches)
    alive and pay for it at each step; keras-hub's `generate` runs under
    `torch.no_grad()` for the same reason. The other backends record nothing
    outside a gradient tape or transform.
    """
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


# Set inside `decoding_owns_caches()`; see there.
_CACHES_OWNED = contextvars.ContextVar("keras_attn_caches_owned", default=False)


@contextlib.contextmanager
def decoding_owns_caches():
    """A decoding loop's context: its caches are nobody else's.

    `keras.ops.slice_update` is functional, so on eager PyTorch each cache
    write copies the whole cache `(B, 2, S_max, K, H)` into a fresh buffer
    to change one position: a small model's step spends as long on these
    copies as on everything else. Under XLA (JAX, TensorFlow) the compiled
    loop already updates its carried buffers in place. `generate()` makes
    its caches itself and drops each one once the step that got it has
    returned the next (the samplers reorder or repeat caches into new
    tensors, never reuse an old one), so inside it cache writes may update
    the cache itself (`slice_update_owned`). Outside it, a user's own loop
    over `call_with_cache` may keep an old cache (to branch from it), and
    writes stay functional.
    """
    token = _CACHES_OWNED.set(True)
    try:
        yield
    finally:
        _CACHES_OWNED.reset(token)


def slice_update_owned(x, start_indices, updates):
    """`ops.slice_update(x, start_indices, updates)`, in place if it may be.

    In place (`x` itself is changed and returned) inside
    `decoding_owns_caches()` on eager PyTorch with Python int starts and
    no gradient recorded (an in-place write would break the autograd
    graph); a new tensor everywhere else, as `ops.slice_update` gives.
    """
    if _CACHES_OWNED.get() and keras.backend.backend() == "torch":
        import torch

        if (
            not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
            and isinstance(x, torch.Tensor)
            and all(type(start) is int for start in start_indices)
        ):
            # (B, ...) region of `x` the size of `updates`, from the starts.
            region = tuple(
                slice(start, start + size)
                for start, size in zip(start_indices, updates.shape)
            )
            x[region] = updates
            return x
    return ops.slice_update(x, start_indices, updates)


def dot_product_attention(query, key, value, bias, mask, scale, is_causal):
    """`keras.ops.dot_product_attention`, without copies on PyTorch.

    Keras' PyTorch version moves the heads axis first and then makes each
    input contiguous (and repeats grouped key/value heads): a copy of the
    keys and values at every call. A decoding step attends a slice of its
    cache, so the copy grows with the cache and, past a few hundred
    positions, costs more than the attention. PyTorch's kernel takes the
    strided views and grouped heads (`enable_gqa`) itself. Same arguments
    and result as the Keras op: `(B, T, N, H)` inputs, a boolean mask
    (True: attend) or an additive bias, not both; rows with no key are the
    caller's (`fused_attention` gives them every key and zeros them after).
    """
    if keras.backend.backend() != "torch" or not (
        query.dtype == key.dtype == value.dtype
    ):
        return ops.dot_product_attention(
            query,
            key,
            value,
            bias=bias,
            mask=mask,
            scale=scale,
            is_causal=is_causal,
        )
    import torch

    attn_mask = None
    if mask is not None:
        attn_mask = ops.cast(mask, "bool")
    elif bias is not None:
        attn_mask = ops.cast(bias, query.dtype)
    # (B, T, N, H) -> (B, N, T, H), views.
    query, key, value = (torch.transpose(x, 1, 2) for x in (query, key, value))
    output = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attn_mask,
        is_causal=is_causal,
        scale=scale,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    # (B, N, T, Hv) -> (B, T, N, Hv)
    return torch.transpose(output, 1, 2)


def is_tracing(x):
    """Whether `x` is a symbolic tensor of a trace being compiled.

    A `stream` callback of the decoding loops needs concrete values at each
    step; under `jax.jit` or `tf.function` there are none, and keras.ops has
    no way to ask. Eager PyTorch tensors are always concrete.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return isinstance(x, jax.core.Tracer)
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly()
    return False


def loop_runs_in_python(x):
    """Whether a decoding loop over the concrete tensor `x` is Python's.

    `keras.ops.while_loop` is a plain Python loop on PyTorch (eager), so
    its index may as well be a Python int: PyTorch then slices and updates
    at it without building index tensors, and a step reads no value back
    from the device to know where it is. Under `torch.compile`, and on
    JAX and TensorFlow, the loop stays a `while_loop` over tensors.
    """
    if keras.backend.backend() != "torch":
        return False
    import torch

    return not torch.compiler.is_compiling() and not isinstance(
        x, keras.KerasTensor
    )


def loops_are_compiled():
    """Whether `keras.ops.fori_loop` builds a compiled loop over tensors.

    On JAX it always does, and on TensorFlow while a graph is traced
    (`tf.function`, with or without XLA): the body is traced once and a
    slice update of the carry can happen in place. Eager TensorFlow runs
    the body op by op at each iteration and copies the whole carry at each
    slice update, and PyTorch's loop is a Python `for`. The chunked
    attention picks its loop structure by this (see
    `keras_attn/ops/_chunked_plan.py`): its flat loops over block pairs
    write rows of an O(T) carry at every pair, which eagerly made
    TensorFlow's causal call at N=8,192 1.3x slower.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly()
    return backend == "jax"


def cache_prefix_length(index, query_length):
    """`index + T` as a Python int where attending a cache prefix pays.

    A decoding step attends the cache positions `< index + T`. With a
    static cache length, every backend can mask the rest (`T` by `S_max`
    logits); on PyTorch with a Python index, slicing the valid prefix
    instead is cheaper: its kernel takes the unmasked fast path and does
    no work for the empty tail. Under XLA the shape must stay static, so
    this is None there (and for tensor indices).
    """
    if (
        keras.backend.backend() != "torch"
        or isinstance(index, bool)
        or not isinstance(index, int)
        or not isinstance(query_length, int)
    ):
        return None
    return index + query_length


def retrack_variables(layer):
    """Updates PyTorch's parameter registry after a layer was quantized.

    The torch backend keeps each layer's variables in a `torch_params`
    registry; quantization replaces the float kernels, and the registry
    would keep the old ones alive (and list them as parameters).
    `keras.Model.quantize` re-registers them in its `_post_quantize`; a
    layer's `quantize` has no such step, so keras-attn's does it here.
    The other backends have no registry.
    """
    if keras.backend.backend() == "torch":
        for sub in layer._flatten_layers():
            sub._track_variables()


def known_min_max(x):
    """`(min, max)` of `x` as Python numbers when its values are known now.

    Returns None while tracing (inside `jax.jit`, a `tf.function`, a
    functional model's symbolic call or `torch.compile`), where the values
    do not exist yet. Used to check token ids in eager calls; each backend
    spells "is this a traced tensor" differently, hence this module.
    """
    if isinstance(x, keras.KerasTensor):
        return None
    if isinstance(x, np.ndarray):
        return (x.min(), x.max()) if x.size else None
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
    elif backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly() or not hasattr(x, "numpy"):
            return None
    elif backend == "torch":
        import torch

        if torch.compiler.is_compiling():
            return None
    if not all(x.shape):  # an empty tensor has neither
        return None
    low, high = ops.min(x), ops.max(x)
    return ops.convert_to_numpy(low).item(), ops.convert_to_numpy(high).item()


class TokenModelSaveSignature:
    """Lets `model.export()` save a model whose inputs are token ids (TF).

    On the TensorFlow backend, Keras gives every subclassed model a default
    SavedModel signature (`_default_save_signature`) typed with the model's
    float compute dtype, and TensorFlow traces it whenever the model is
    saved, `model.export()` included. A model that takes int token ids
    rejects float ids (a `ValueError` naming the argument), so the export
    failed. `model.export()` writes its own signature from the model's
    `input_signature`, so these models need no default one: None is what
    Keras gives every layer that is not a model. Other backends never
    read this property.
    """

    @property
    def _default_save_signature(self):
        return None


def custom_vjp(forward, backward):
    """A function of tensors whose gradient is given by `backward`.

    `forward(*tensors)` returns `(output, residuals)`, a tensor and a tuple
    of tensors; `backward(tensors, residuals, d_output)` returns one
    gradient per input tensor (None for a boolean one). Autodiff keeps only
    the inputs and the residuals alive, not what `forward` computes on the
    way: the chunked attention uses this to recompute its blocks in the
    backward pass (see `keras_attn/ops/_chunked_blocks.py` for the maths).

    `keras.ops.custom_gradient` does not fit: on PyTorch it saves the
    inputs only, passes them to the gradient function under a different
    signature than JAX and TensorFlow, and turns any error of the forward
    into NaN gradients. Each backend's own mechanism is used instead.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        @jax.custom_vjp
        def fn(*tensors):
            return forward(*tensors)[0]

        def fn_forward(*tensors):
            output, residuals = forward(*tensors)
            return output, (tensors, residuals)

        def fn_backward(saved, d_output):
            tensors, residuals = saved
            grads = backward(tensors, residuals, d_output)
            # JAX wants a cotangent per input: float0 zeros for booleans.
            return tuple(
                _jax_zero_cotangent(x) if g is None else g
                for x, g in zip(tensors, grads)
            )

        fn.defvjp(fn_forward, fn_backward)
        return fn
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.custom_gradient
        def fn(*tensors):
            output, residuals = forward(*tensors)

            def grad_fn(d_output):
                return backward(tensors, residuals, d_output)

            return output, grad_fn

        return fn
    import torch

    class Function(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            # Runs without recording a graph: nothing inside is kept.
            output, residuals = forward(*tensors)
            ctx.num_inputs = len(tensors)
            ctx.save_for_backward(*tensors, *residuals)
            return output

        @staticmethod
        def backward(ctx, d_output):
            saved = ctx.saved_tensors
            tensors, residuals = (
                saved[: ctx.num_inputs],
                saved[ctx.num_inputs :],
            )
            with torch.no_grad():
                return tuple(backward(tensors, residuals, d_output))

    return Function.apply


def _jax_zero_cotangent(x):
    """JAX's zero cotangent of `x`: float0 for an integer or boolean input."""
    import jax

    if jax.dtypes.issubdtype(x.dtype, np.inexact):
        return jax.numpy.zeros_like(x)
    return np.zeros(x.shape, jax.dtypes.float0)


def outside_jax_trace():
    """Whether this is the JAX backend, running eagerly (not being traced).

    `generate` then compiles its device part with `jax.jit` once per static
    configuration (see `CompiledGeneration`): `ops.while_loop` alone would
    trace and compile the loop again at every call. Inside a user's
    `jax.jit` the loop is part of their program already. A new array is a
    tracer exactly when a trace is active (what Keras asks, too).
    """
    if keras.backend.backend() != "jax":
        return False
    import jax

    return not isinstance(jax.numpy.zeros(()), jax.core.Tracer)


class CompiledGeneration:
    """`fn(*args)` under `jax.jit`, with variables passed in, not baked in.

    Tracing `fn` would capture every `keras.Variable` it reads as a
    constant of the program (so a new program after each weight update).
    Here the values of `variables_fn()` (the model's weights) and
    `states_fn()` (seed generator states the call advances) are arguments
    of the compiled function, mapped onto their variables by a
    `keras.StatelessScope`; the states' new values are returned and
    assigned back after the call. `jax.jit` retraces `fn` only for new
    argument shapes or structures (more variables after LoRA or
    quantization, say), calling `variables_fn` and `states_fn` again.

    `fn` must take every per-call tensor as an argument: a tensor it
    closes over would become a constant of the first program.
    """

    def __init__(self, fn, variables_fn, states_fn):
        import jax

        self.fn = fn
        self.variables_fn = variables_fn
        self.states_fn = states_fn
        self.compiled = jax.jit(self.stateless)

    def stateless(self, values, state_values, args):
        variables, states = self.variables_fn(), self.states_fn()
        mapping = list(zip(variables, values)) + list(zip(states, state_values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            outputs = self.fn(*args)
        return outputs, [scope.get_current_value(v) for v in states]

    def __call__(self, *args):
        variables, states = self.variables_fn(), self.states_fn()
        outputs, new_states = self.compiled(
            [v.value for v in variables], [v.value for v in states], args
        )
        for variable, value in zip(states, new_states):
            variable.assign(value)
        return outputs
