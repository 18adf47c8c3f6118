"""Benchmark: training throughput of keras-attn models against their peers.

Two training steps (forward, backward, optimizer update) per backend, each
against peers of the same architecture and sizes, all in the same run:

- a decoder-only language model: `keras_attn.models.TransformerLM` (pre-norm,
  GELU, learned positions, tied output), against the same model built from
  `keras_hub.layers` (`TokenAndPositionEmbedding`, `TransformerDecoder`) and,
  on PyTorch, `torch.nn.TransformerEncoder` with a causal mask;
- a ViT image classifier: `keras_attn.models.VisionTransformer`, against
  `keras_hub.models.ViTBackbone` with a dense head on the class token and,
  on PyTorch, a `torch.nn.TransformerEncoder` ViT.

The step is the same for every contender on a backend. On JAX and
TensorFlow: `model.compile(AdamW, sparse cross-entropy, jit_compile=True)`
and `train_on_batch` (XLA). On PyTorch: Keras' eager `train_on_batch` for
ours against keras-hub, and for all three contenders a plain PyTorch loop
(forward, `cross_entropy`, `backward`, `torch.optim.AdamW`), which is how a
`torch.nn` model trains. Each run times `--steps` steps after a warm-up
(compilation), the contenders alternate, and the table gives the median of
`--runs` runs: throughput and the time ratio ours / peer (lower is better).

    python benchmarks/training.py                     # all three backends
    python benchmarks/training.py --backends torch --models lm
    python benchmarks/training.py --quick             # tiny smoke run
    python benchmarks/training.py --json out.json     # also write the results

Each backend runs in its own subprocess (Keras picks its backend at import).
One CPU thread per backend by default (`BENCH_THREADS`). On a GPU (PyTorch
with CUDA, JAX with a GPU as its default device) every contender and its
inputs live there, the clock is read after the device is done, and the
tables name the device.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _device import gpu_name
from _device import torch_device

# The checkout's keras_attn, also when run as `python benchmarks/training.py`.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BACKENDS = ("jax", "tensorflow", "torch")
MODELS = ("lm", "vit")
# The sizes of the issue: 4 blocks, width 256, 4 heads, T=256, B=8.
FULL = dict(
    layers=4,
    width=256,
    heads=4,
    ff=1024,
    vocab=512,
    length=256,
    batch=8,
    image=64,
    patch=4,
    classes=10,
)
QUICK = dict(
    layers=1,
    width=32,
    heads=2,
    ff=64,
    vocab=64,
    length=16,
    batch=2,
    image=16,
    patch=4,
    classes=4,
)


# ---------------------------------------------------------------- child --


def _setup_threads(threads):
    # Before any backend import: XLA reads its flags when it loads.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault(
        "XLA_FLAGS",
        "--xla_cpu_multi_thread_eigen="
        f"{'true' if threads > 1 else 'false'}",
    )


def _keras_lm(size):
    from keras_attn.models import TransformerLM

    model = TransformerLM(
        size["vocab"],
        size["length"],
        num_layers=size["layers"],
        num_heads=size["heads"],
        hidden_dim=size["width"],
        intermediate_dim=size["ff"],
    )
    model.build((None, size["length"]))
    return model


def _hub_lm(size):
    import keras
    import keras_hub

    class HubLM(keras.Model):
        """The same LM from keras_hub.layers (pre-norm, GELU, tied)."""

        def __init__(self):
            super().__init__()
            self.embedding = keras_hub.layers.TokenAndPositionEmbedding(
                size["vocab"], size["length"], size["width"], tie_weights=True
            )
            self.blocks = [
                keras_hub.layers.TransformerDecoder(
                    size["ff"],
                    size["heads"],
                    activation="gelu",
                    layer_norm_epsilon=1e-5,
                    normalize_first=True,
                )
                for _ in range(size["layers"])
            ]
            self.norm = keras.layers.LayerNormalization(epsilon=1e-5)

        def call(self, token_ids, training=None):
            x = self.embedding(token_ids)  # (B, T, D)
            for block in self.blocks:
                # Causal self-attention only.
                x = block(x, training=training)
            x = self.norm(x)
            return self.embedding.token_embedding(x, reverse=True)

    model = HubLM()
    # A symbolic call builds the variables without running eager ops.
    model(keras.Input((size["length"],), dtype="int32"))
    return model


def _keras_vit(size):
    from keras_attn.models import VisionTransformer

    return VisionTransformer(
        image_size=size["image"],
        patch_size=size["patch"],
        num_layers=size["layers"],
        num_heads=size["heads"],
        hidden_dim=size["width"],
        intermediate_dim=size["ff"],
        num_classes=size["classes"],
    )


def _hub_vit(size):
    import keras
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(size["image"], size["image"], 3),
        patch_size=size["patch"],
        num_layers=size["layers"],
        num_heads=size["heads"],
        hidden_dim=size["width"],
        mlp_dim=size["ff"],
    )
    images = keras.Input((size["image"], size["image"], 3))
    cls = backbone(images)[:, 0, :]  # (B, D): the class token
    outputs = keras.layers.Dense(size["classes"])(cls)
    return keras.Model(images, outputs)


def _torch_models(size):
    """The two torch.nn peers: `(lm, vit)`."""
    import torch
    from torch import nn

    def encoder(epsilon):
        layer = nn.TransformerEncoderLayer(
            size["width"],
            size["heads"],
            size["ff"],
            dropout=0.0,
            activation="gelu",
            layer_norm_eps=epsilon,
            batch_first=True,
            norm_first=True,
        )
        # Without the nested-tensor fast path, which pre-norm cannot use.
        return nn.TransformerEncoder(
            layer, size["layers"], enable_nested_tensor=False
        )

    class TorchLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = nn.Embedding(size["vocab"], size["width"])
            self.positions = nn.Parameter(
                torch.randn(size["length"], size["width"]) * 0.02
            )
            self.encoder = encoder(1e-5)
            self.norm = nn.LayerNorm(size["width"], eps=1e-5)
            mask = nn.Transformer.generate_square_subsequent_mask(
                size["length"]
            )
            self.register_buffer("mask", mask)

        def forward(self, token_ids):
            length = token_ids.shape[1]
            x = self.tokens(token_ids) + self.positions[:length]
            x = self.encoder(
                x, mask=self.mask[:length, :length], is_causal=True
            )
            # Tied output projection: (B, T, D) -> (B, T, V)
            return nn.functional.linear(self.norm(x), self.tokens.weight)

    class TorchViT(nn.Module):
        def __init__(self):
            super().__init__()
            grid = size["image"] // size["patch"]
            self.patches = nn.Conv2d(
                3, size["width"], size["patch"], stride=size["patch"]
            )
            self.cls = nn.Parameter(torch.zeros(1, 1, size["width"]))
            self.positions = nn.Parameter(
                torch.randn(1, grid * grid + 1, size["width"]) * 0.02
            )
            self.encoder = encoder(1e-6)
            self.norm = nn.LayerNorm(size["width"], eps=1e-6)
            self.head = nn.Linear(size["width"], size["classes"])

        def forward(self, images):
            # (B, H, W, C) as the Keras models take them -> (B, C, H, W)
            x = self.patches(images.permute(0, 3, 1, 2))
            x = x.flatten(2).transpose(1, 2)  # (B, N, D)
            cls = self.cls.expand(x.shape[0], -1, -1)
            x = torch.cat([cls, x], dim=1) + self.positions
            x = self.norm(self.encoder(x))
            return self.head(x[:, 0])

    device = torch_device()
    return TorchLM().to(device), TorchViT().to(device)


def _data(kind, size):
    import numpy as np

    rng = np.random.default_rng(0)
    if kind == "lm":
        ids = rng.integers(0, size["vocab"], (size["batch"], size["length"]))
        return ids.astype("int32"), np.roll(ids, -1, axis=1).astype("int32")
    images = rng.random((size["batch"], size["image"], size["image"], 3))
    labels = rng.integers(0, size["classes"], (size["batch"],))
    return images.astype("float32"), labels.astype("int32")


def _keras_step(model, x, y, jit_compile):
    """`train_on_batch` of a compiled Keras model."""
    import keras

    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return lambda: model.train_on_batch(x, y)


def _torch_step(model, x, y):
    """A plain PyTorch training step (forward, loss, backward, AdamW)."""
    import torch

    if isinstance(model, torch.nn.Module) and not hasattr(
        model, "trainable_variables"
    ):
        params = list(model.parameters())
        model.train()
    else:  # a Keras model: its variables hold torch Parameters
        params = [v.value for v in model.trainable_variables]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    x = torch.as_tensor(x, device=torch_device())
    y = torch.as_tensor(y, device=torch_device()).long()
    keras_model = hasattr(model, "trainable_variables")

    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = model(x, training=True) if keras_model else model(x)
        # (B, [T,] V) -> (B [* T], V)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
        )
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def _count(model):
    if hasattr(model, "count_params"):
        return int(model.count_params())
    return sum(p.numel() for p in model.parameters())


def _time(contenders, steps, runs, warmup, sync=lambda: None):
    """Median wall and CPU seconds per step of each contender.

    The runs alternate the contenders, so that a shared machine favours
    none. CPU time (of this process, all its threads) is less disturbed
    than wall time by other jobs on the cores.
    """
    for step in contenders.values():
        for _ in range(warmup):
            step()
    wall = {name: [] for name in contenders}
    cpu = {name: [] for name in contenders}
    for _ in range(runs):
        for name, step in contenders.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step()
            # Each step reads its loss on the host, which waits for the
            # device already; `sync` makes sure on a GPU.
            sync()
            wall[name].append((time.perf_counter() - start) / steps)
            cpu[name].append((time.process_time() - start_cpu) / steps)
    return (
        {name: statistics.median(s) for name, s in wall.items()},
        {name: statistics.median(s) for name, s in cpu.items()},
    )


def child(backend, models, quick, steps, runs, warmup):
    """Measures one backend in this process; returns the results dict."""
    import keras

    size = QUICK if quick else FULL
    keras.utils.set_random_seed(0)
    threads = int(os.environ.get("BENCH_THREADS", "1"))
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(0)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    device = gpu_name(backend) or "CPU"
    sync = lambda: None  # noqa: E731
    if backend == "torch" and device != "CPU":
        sync = torch.cuda.synchronize
    build = {"lm": (_keras_lm, _hub_lm), "vit": (_keras_vit, _hub_vit)}
    results = []
    for kind in models:
        x, y = _data(kind, size)
        ours, hub = (make(size) for make in build[kind])
        built = {"ours": ours, "keras-hub": hub}
        methods = {}
        if backend == "torch":
            torch_peer = dict(zip(MODELS, _torch_models(size)))[kind]
            built["torch.nn"] = torch_peer
            methods["keras train_on_batch (eager)"] = {
                name: _keras_step(m, x, y, False)
                for name, m in (("ours", ours), ("keras-hub", hub))
            }
            methods["torch loop (eager)"] = {
                name: _torch_step(m, x, y)
                for name, m in (("ours", ours), ("torch.nn", torch_peer))
            }
        else:
            methods["keras train_on_batch (XLA)"] = {
                name: _keras_step(m, x, y, True)
                for name, m in (("ours", ours), ("keras-hub", hub))
            }
        params = {name: _count(m) for name, m in built.items()}
        if kind == "lm":
            per_step, unit = size["batch"] * size["length"], "tokens/s"
        else:
            per_step, unit = size["batch"], "images/s"
        for method, contenders in methods.items():
            seconds, cpu_seconds = _time(contenders, steps, runs, warmup, sync)
            results.append(
                {
                    "model": kind,
                    "method": method,
                    "unit": unit,
                    "seconds": seconds,
                    "cpu_seconds": cpu_seconds,
                    "rate": {n: per_step / s for n, s in seconds.items()},
                    "params": {n: params[n] for n in contenders},
                }
            )
    return {
        "backend": backend,
        "device": device,
        "threads": threads,
        "quick": quick,
        "sizes": size,
        "steps": steps,
        "runs": runs,
        "results": results,
    }


# --------------------------------------------------------------- parent --


def run_backend(backend, args):
    env = dict(os.environ, KERAS_BACKEND=backend)
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        backend,
        "--models",
        *args.models,
        "--steps",
        str(args.steps),
        "--runs",
        str(args.runs),
        "--warmup",
        str(args.warmup),
    ]
    if args.quick:
        command.append("--quick")
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
    return {"backend": backend, "error": tail}


def ratio_rows(result):
    """`(model, method, peer, wall ratio, CPU ratio)`: ours / peer time."""
    rows = []
    for entry in result.get("results", []):
        wall, cpu = entry["seconds"], entry["cpu_seconds"]
        for peer in ("keras-hub", "torch.nn"):
            if peer in wall:
                rows.append(
                    (
                        entry["model"],
                        entry["method"],
                        peer,
                        wall["ours"] / wall[peer],
                        cpu["ours"] / cpu[peer],
                    )
                )
    return rows


def print_tables(report):
    print(
        f"Training step throughput (median of {report['runs']} alternating "
        f"runs of {report['steps']} steps); ratio = ours / peer step time, "
        "lower is better."
    )
    for result in report["backends"]:
        backend = result["backend"]
        print(f"\n### {backend}\n")
        if "error" in result:
            print(f"error: {result['error']}")
            continue
        device = result.get("device", "CPU")
        on = f"device {device}; " if device != "CPU" else ""
        print(f"{on}{result['threads']} thread(s); sizes {result['sizes']}\n")
        print(
            "| model | step | contender | params | step ms | CPU ms | "
            "throughput |"
        )
        print("|---|---|---|---:|---:|---:|---:|")
        for entry in result["results"]:
            for name, seconds in entry["seconds"].items():
                print(
                    f"| {entry['model']} | {entry['method']} | {name} | "
                    f"{entry['params'][name]:,} | {seconds * 1e3:.1f} | "
                    f"{entry['cpu_seconds'][name] * 1e3:.1f} | "
                    f"{entry['rate'][name]:,.1f} {entry['unit']} |"
                )
        print("\n| model | step | ours / peer | time ratio | CPU-time ratio |")
        print("|---|---|---|---:|---:|")
        for model, method, peer, ratio, cpu_ratio in ratio_rows(result):
            print(
                f"| {model} | {method} | ours / {peer} | {ratio:.2f} | "
                f"{cpu_ratio:.2f} |"
            )
        sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in args.backends + ([args.child] if args.child else []):
        if name not in BACKENDS:
            parser.error(f"unknown backend {name!r}; one of {BACKENDS}")
    for name in args.models:
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; one of {MODELS}")
    # --quick: one step, one run, one warm-up (the compilation) by default.
    if args.steps is None:
        args.steps = 1 if args.quick else 5
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.child:
        _setup_threads(int(os.environ.get("BENCH_THREADS", "1")))
        result = child(
            args.child,
            args.models,
            args.quick,
            args.steps,
            args.runs,
            args.warmup,
        )
        print("RESULT " + json.dumps(result))
        return
    report = {
        "benchmark": "training",
        "steps": args.steps,
        "runs": args.runs,
        "backends": [],
    }
    for backend in args.backends:
        report["backends"].append(run_backend(backend, args))
    print_tables(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
