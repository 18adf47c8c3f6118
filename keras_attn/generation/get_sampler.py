"""`get_sampler`: a sampler from a name and options, or an instance."""

from keras_attn.generation.beam_sampler import BeamSampler
from keras_attn.generation.contrastive_sampler import ContrastiveSampler
from keras_attn.generation.greedy_sampler import GreedySampler
from keras_attn.generation.random_sampler import RandomSampler
from keras_attn.generation.sampler import Sampler

SAMPLERS = {
    "greedy": GreedySampler,
    "sample": RandomSampler,
    "random": RandomSampler,
    "beam": BeamSampler,
    "contrastive": ContrastiveSampler,
}


def get_sampler(method, **options):
    """Returns the sampler that `generate(method=..., **options)` runs.

    Args:
        method: a `Sampler` instance (then `options` must be empty), or one
            of the names `"greedy"` (`GreedySampler`), `"sample"` or
            `"random"` (`RandomSampler`), `"beam"` (`BeamSampler`) and
            `"contrastive"` (`ContrastiveSampler`).
        **options: the constructor arguments of the named sampler.

    Returns:
        A `Sampler`.

    Example:

    ```python
    from keras_attn.generation import get_sampler

    sampler = get_sampler("sample", top_p=0.9, min_p=0.05, seed=0)
    type(sampler).__name__  # "RandomSampler"
    ```
    """
    if isinstance(method, Sampler):
        if options:
            raise ValueError(
                "Options go to the sampler's constructor when `method` is a "
                f"Sampler instance. Received: method={method!r} and options "
                f"{sorted(options)}"
            )
        return method
    if not isinstance(method, str) or method not in SAMPLERS:
        raise ValueError(
            f"`method` must be a Sampler or one of {sorted(SAMPLERS)}. "
            f"Received: method={method!r}"
        )
    cls = SAMPLERS[method]
    try:
        return cls(**options)
    except TypeError as error:
        raise TypeError(
            f"Unknown option for method={method!r} ({cls.__name__}): "
            f"{error}. Received options: {sorted(options)}"
        ) from None


__all__ = ["get_sampler"]
