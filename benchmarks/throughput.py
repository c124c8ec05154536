"""Training throughput of every genae family: genae, a minimal loop, and the physical limit.

    python benchmarks/throughput.py [--families vae,m2,...] [--seconds 10] [--threads N]
                                    [--skip-pythae] [--json OUT]

Each family is measured in its own subprocess, started as the `genae` command starts (genae's
thread settings, OMP_WAIT_POLICY, denormals flushed: `genae.runtime.start_process`), and the
three ways are measured one after the other inside it, so they share those settings:

* genae: `genae.api.fit`, the trainer a user runs, for two epochs on a training subset sized to
  take about --seconds per epoch; the second epoch's samples/s (the first warms up).
* minimal: a hand-written loop over the same network and objective (the same modules, built from
  the same seed, and the model's own phase losses): the data as one float tensor indexed per
  step, default `torch.optim.Adam` per phase (the phase's lr and betas), zero_grad, backward,
  step, and one `.item()` per step.
* limit: the network's matrix products alone: every nn.Linear and convolution that one training
  step calls, with the input shapes it calls them with (recorded by a forward hook), run forward
  and backward (the gradients the step needs: weights that train, inputs that carry gradient)
  on random tensors, with no loss, activation, normalisation or optimiser. Its samples/s is what
  this machine's matmul/conv kernels allow for that network at that batch. Convolutions run in
  both memory layouts (NCHW and channels_last) and the faster counts.

pythae 0.1.2's BaseTrainer is the peer for the MLP VAE (its own process settings are genae's
here, as for the minimal loop). Families and their recipes are in FAMILIES; caae runs on random
64x64 RGB images with 5 random attributes (CelebA's shape), the others on Fashion-MNIST.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genae.api import fit
from genae.data.memory import stratified_indices
from genae.data.sources import load_dataset
from genae.data.types import Batch, DatasetSplits, ImageArrays, SealedSplit
from genae.models.dfcvae import FEATURE_NETWORK, FEATURE_ROLE
from genae.models.registry import build_model
from genae.runtime import THREADS_VARIABLE, configure_environment, start_process
from genae.training.trainer import make_optimizer


@dataclass(frozen=True)
class Family:
    """One model as its recipe trains it."""

    model: str
    model_config: dict[str, Any]
    data: str  # "fashion-mnist", or "faces64": random 64x64 RGB images with 5 attributes
    batch_size: int = 100
    lr: float = 1e-3
    train: dict[str, Any] = field(default_factory=dict)  # further TrainConfig options


FAMILIES: dict[str, Family] = {
    # The anchor: 784-500-500-16, Bernoulli.
    "vae": Family("vae", {"hidden": [500, 500], "latent_dim": 16}, "fashion-mnist"),
    "cvae": Family("cvae", {"hidden": [500, 500], "latent_dim": 16}, "fashion-mnist"),
    # The m2 run of the m2-vs-m1m2 experiment: 100 labels, binarised, cosine lr.
    "m2": Family(
        "m2",
        {},
        "fashion-mnist",
        train={
            "labels": 100,
            "labelled_batch_size": 100,
            "binarize": True,
            "lr_schedule": "cosine",
        },
    ),
    # The paper's networks (1000-1000 encoder, decoder and discriminator), three phases.
    "aae": Family("aae", {}, "fashion-mnist"),
    # The caae-attributes experiment: CelebA 64x64, 5 attributes, batch 64, lr 2e-4.
    "caae": Family("caae", {"latent_dim": 50}, "faces64", batch_size=64, lr=2e-4),
    # The vae-vs-dfc-fashion experiment's two runs.
    "convvae": Family("convvae", {"latent_dim": 100}, "fashion-mnist"),
    "dfcvae": Family(
        "dfcvae",
        {"latent_dim": 100, "features": "classifier", "feature_weight": 120.0},
        "fashion-mnist",
    ),
    "classifier": Family("classifier", {}, "fashion-mnist"),
}
WAYS = ("genae", "minimal", "limit", "adam")
WARMUP_STEPS = 3
# genae's validation (after each epoch) and test (at the end) examples: few, and never timed.
TEST_EXAMPLES = 200


# --- data ---------------------------------------------------------------------------------------


def family_data(family: Family) -> DatasetSplits:
    """The family's dataset: Fashion-MNIST, or random faces of CelebA's shape (speed only)."""
    if family.data == "faces64":
        generator = torch.Generator().manual_seed(0)
        train_examples = 2000

        def arrays(count: int) -> ImageArrays:
            images = torch.randint(
                0, 256, (count, 3, 64, 64), dtype=torch.uint8, generator=generator
            )
            attributes = torch.randint(0, 2, (count, 5), generator=generator).float() * 2 - 1
            return ImageArrays(images, attributes)

        names = ("Male", "Mustache", "Bald", "Young", "Smiling")
        return DatasetSplits(
            "faces64",
            arrays(train_examples),
            SealedSplit(arrays(TEST_EXAMPLES)),
            "random",
            attribute_names=names,
        )
    return load_dataset(family.data, download=False)


def subset(data: DatasetSplits, n: int) -> DatasetSplits:
    """The first n training examples (repeated if there are fewer) and a small test split (the
    run evaluates on it once, at the end, untimed)."""
    index = torch.arange(n) % len(data.train)
    train, test = data.train, data.test.unseal()
    labels = None if test.labels is None else test.labels[:TEST_EXAMPLES]
    return replace(
        data,
        train=ImageArrays(
            train.images[index], None if train.labels is None else train.labels[index]
        ),
        test=SealedSplit(ImageArrays(test.images[:TEST_EXAMPLES], labels)),
    )


# --- the three ways -----------------------------------------------------------------------------


def build(family: Family, data: DatasetSplits, helpers: dict[str, nn.Module]) -> nn.Module:
    """The family's network as genae.fit builds it (same seed, same helpers)."""
    torch.manual_seed(0)
    config = dict(family.model_config)
    labels = family.train.get("labels")
    if labels:  # what genae.fit derives from the data: M2 weights each bound by its share
        config.update(labelled_examples=labels, unlabelled_examples=len(data.train) - labels)
    model = build_model(family.model, config, data.spec)
    model.use_pretrained(helpers)
    return model.train()


def timed_steps(step: Callable[[], None], seconds: float) -> float:
    """Steps per second of `step`, after a warm-up, over about `seconds`."""
    for _ in range(WARMUP_STEPS):
        step()
    steps, start = 0, time.perf_counter()
    while True:
        step()
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps / elapsed


def minimal_step(family: Family, data: DatasetSplits, helpers: dict) -> Callable[[], None]:
    """One step of a hand-written loop over the same network and objective."""
    model = build(family, data, helpers)
    phases = model.phases()
    optimizers = [
        torch.optim.Adam(p.parameters, lr=p.lr or family.lr, betas=p.betas) for p in phases
    ]
    x = data.train.images.float().div(255)
    y = data.train.labels
    binarize = family.train.get("binarize", False)
    labelled = None
    if isinstance(family.train.get("labels"), int):
        labelled = stratified_indices(y, family.train["labels"], data.spec.num_classes, 0)
    order = iter(())

    def step() -> None:
        nonlocal order
        index = next(order, None)
        if index is None or len(index) < family.batch_size:
            order = iter(torch.randperm(len(x)).split(family.batch_size))
            index = next(order)
        xb = torch.bernoulli(x[index]) if binarize else x[index]
        if labelled is None:
            batch = Batch(xb, None if y is None else y[index])
        else:
            pick = labelled[torch.randperm(len(labelled))[: family.train["labelled_batch_size"]]]
            xl = torch.bernoulli(x[pick]) if binarize else x[pick]
            batch = Batch(xb, None, xl, y[pick])
        for phase, optimizer in zip(phases, optimizers):
            loss = phase.loss(batch)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        loss.item()

    return step


@dataclass
class LayerCall:
    module: nn.Module
    shape: tuple[int, ...]
    input_grad: bool  # the input carries gradient (so its gradient is computed)
    backward: bool  # the step's backward pass reaches the output


def record_layer_calls(family: Family, data: DatasetSplits, helpers: dict) -> list[LayerCall]:
    """Every Linear/convolution call of one training step (all phases, forward and backward)."""
    model = build(family, data, helpers)
    calls: list[LayerCall] = []

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        if not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            return
        call = LayerCall(module, tuple(inputs[0].shape), inputs[0].requires_grad, False)
        calls.append(call)
        if isinstance(output, torch.Tensor) and output.requires_grad:
            # Differentiated only if the phase's backward reaches it (not, e.g., the encoder
            # under a detached code in the discriminator's phase).
            def reached(grad: torch.Tensor) -> None:
                call.backward = True

            output.register_hook(reached)

    binarize = family.train.get("binarize", False)
    x = data.train.images[: family.batch_size].float().div(255)
    x = torch.bernoulli(x) if binarize else x
    y = None if data.train.labels is None else data.train.labels[: family.batch_size]
    batch = Batch(x, y) if "labels" not in family.train else Batch(x, None, x, y)
    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        for phase in model.phases():
            phase.loss(batch)["loss"].backward()
    finally:
        handle.remove()
    return calls


def layer_flops(call: LayerCall) -> float:
    """Multiply-adds x 2 of the call: forward, and backward for the gradients it needs."""
    module = call.module
    if isinstance(module, nn.Linear):
        forward = 2.0 * math.prod(call.shape[:-1]) * module.in_features * module.out_features
    elif isinstance(module, nn.modules.conv._ConvTransposeNd):  # each input pixel scatters
        kernel = math.prod(module.kernel_size) * module.out_channels // module.groups
        forward = 2.0 * math.prod(call.shape) * kernel
    else:  # each output pixel gathers
        with torch.no_grad():
            out = module(torch.zeros(call.shape))
        kernel = math.prod(module.kernel_size) * module.in_channels // module.groups
        forward = 2.0 * out.numel() * kernel
    if not call.backward:
        return forward
    weight_grad = forward if module.weight.requires_grad else 0.0
    return forward + weight_grad + (forward if call.input_grad else 0.0)


def limit_step(
    calls: list[LayerCall], memory_format: torch.memory_format = torch.contiguous_format
) -> Callable[[], None]:
    """One step of the network's matmuls and convolutions alone, on random tensors; 4-d
    weights and inputs in `memory_format` (oneDNN's convolutions are faster on channels_last,
    which genae's trainer uses on CPU, so the limit is the faster of the two layouts)."""
    prepared = []
    for call in calls:
        x = torch.randn(call.shape)
        if x.dim() == 4:
            x = x.contiguous(memory_format=memory_format)
            call.module.to(memory_format=memory_format)
        x.requires_grad_(call.input_grad)
        with torch.no_grad():
            grad_out = torch.randn_like(call.module(x))
        wrt = [p for p in call.module.parameters() if p.requires_grad] if call.backward else []
        prepared.append((call, x, grad_out, ([x] if call.input_grad else []) + wrt))

    def step() -> None:
        for call, x, grad_out, wrt in prepared:
            if wrt:
                torch.autograd.grad(call.module(x), wrt, grad_out)
            else:
                with torch.no_grad():
                    call.module(x)

    return step


def adam_step(family: Family, data: DatasetSplits, helpers: dict) -> Callable[[], None]:
    """One step of every phase's Adam alone (fused, as genae's trainer makes it), on random
    gradients: the optimiser's share of a training step, which the matmul limit leaves out."""
    model = build(family, data, helpers)
    optimizers = []
    for phase in model.phases():
        for parameter in phase.parameters:
            parameter.grad = torch.randn_like(parameter)
        lr = phase.lr or family.lr
        optimizers.append(make_optimizer(phase.parameters, lr, phase.betas, torch.device("cpu")))

    def step() -> None:
        for optimizer in optimizers:
            optimizer.step()

    return step


def genae_fit(family: Family, data: DatasetSplits, extra: dict, n: int) -> float:
    """samples/s of genae.api.fit's second epoch over n training examples."""
    train = {
        "epochs": 2,
        "batch_size": family.batch_size,
        "lr": family.lr,
        "seed": 0,
        "progress": False,
        "snapshot_epochs": [],
        "val_size": TEST_EXAMPLES,
        # Two short epochs (on random faces for caae) say nothing about a collapsed game.
        "stop_on_collapse": False,
        **family.train,
    }
    # The validation examples come out of the subset; the epoch trains on the other n.
    run = fit(
        family.model,
        model_config={**family.model_config, **extra},
        train_config=train,
        data=subset(data, n + TEST_EXAMPLES),
    )
    return float(run.history[1]["train_samples_per_s"])


def pythae_vae(data: DatasetSplits, n: int, workdir: Path) -> float:
    """samples/s of pythae 0.1.2's BaseTrainer on the same MLP VAE, second epoch over n."""
    # why: pythae is an optional peer (the `bench` extra)
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Flatten(), nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU()
            )
            self.mu, self.log_var = nn.Linear(500, 16), nn.Linear(500, 16)

        def forward(self, x: torch.Tensor) -> ModelOutput:
            h = self.body(x)
            return ModelOutput(embedding=self.mu(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Linear(16, 500),
                nn.ReLU(),
                nn.Linear(500, 500),
                nn.ReLU(),
                nn.Linear(500, 784),
                nn.Sigmoid(),
            )

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=self.body(z).view(-1, 1, 28, 28))

    class Clock(TrainingCallback):
        def __init__(self) -> None:
            self.speeds: list[float] = []

        def on_epoch_begin(self, training_config: Any, **kwargs: Any) -> None:
            self.start = time.perf_counter()

        def on_train_step_end(self, training_config: Any, **kwargs: Any) -> None:
            self.last = time.perf_counter()

        def on_epoch_end(self, training_config: Any, **kwargs: Any) -> None:
            self.speeds.append(n / (self.last - self.start))

    x = subset(data, n).train.images.float().div(255)
    torch.manual_seed(0)
    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce")
    model = VAE(config, encoder=Encoder(), decoder=Decoder())
    trainer_config = BaseTrainerConfig(
        output_dir=str(workdir / "pythae"),
        num_epochs=2,
        learning_rate=1e-3,
        per_device_train_batch_size=100,
        per_device_eval_batch_size=1000,
        no_cuda=True,
        steps_saving=None,
        seed=0,
    )
    clock = Clock()
    trainer = BaseTrainer(
        model=model,
        train_dataset=BaseDataset(x, torch.zeros(len(x))),
        eval_dataset=None,
        training_config=trainer_config,
        callbacks=[clock],
    )
    trainer.train()
    return clock.speeds[-1]


def measure_family(name: str, seconds: float, rounds: int, with_pythae: bool) -> dict[str, Any]:
    """All three ways (and the peer) for one family, in this process."""
    family = FAMILIES[name]
    data = family_data(family)
    with tempfile.TemporaryDirectory(prefix="genae-throughput-") as scratch:
        workdir = Path(scratch)
        helpers: dict[str, nn.Module] = {}
        extra: dict[str, Any] = {}
        if family.model == "dfcvae":  # its feature network: a small classifier run, untimed
            features = fit(
                "classifier",
                model_config=FEATURE_NETWORK,
                data=subset(data, 2000),
                train_config={
                    "epochs": 1,
                    "batch_size": 128,
                    "progress": False,
                    "snapshot_epochs": [],
                    "val_size": TEST_EXAMPLES,
                },
                run_dir=workdir / FEATURE_ROLE,
            )
            helpers[FEATURE_ROLE] = features.model
            extra["feature_weights"] = str(workdir / FEATURE_ROLE)
        calls = record_layer_calls(family, data, helpers)
        flops_per_step = sum(layer_flops(call) for call in calls)
        has_conv = any(isinstance(c.module, nn.modules.conv._ConvNd) for c in calls)
        layouts = [torch.contiguous_format] + ([torch.channels_last] if has_conv else [])
        minimal = minimal_step(family, data, helpers)
        adam = adam_step(family, data, helpers)
        speeds: dict[str, list[float]] = {way: [] for way in WAYS}
        per_round = seconds / rounds
        examples = 0
        # The ways take turns, round after round, so that a change in the machine's load
        # between them shows up in every way rather than in one; the best round of each counts.
        for _ in range(rounds):
            # the faster layout; each prepared afresh, since preparing converts the modules
            speeds["limit"].append(
                max(
                    family.batch_size * timed_steps(limit_step(calls, layout), per_round)
                    for layout in layouts
                )
            )
            speeds["minimal"].append(family.batch_size * timed_steps(minimal, per_round))
            speeds["adam"].append(family.batch_size * timed_steps(adam, per_round / 2))
            # One epoch of about `per_round` at the minimal loop's speed (at least 5 steps).
            steps = max(5, round(speeds["minimal"][0] * per_round / family.batch_size))
            examples = family.batch_size * steps
            speeds["genae"].append(genae_fit(family, data, extra, examples))
            if with_pythae and name == "vae":
                speeds.setdefault("pythae", []).append(pythae_vae(data, examples, workdir))
        result: dict[str, Any] = {
            "family": name,
            "batch_size": family.batch_size,
            "threads": torch.get_num_threads(),
            "genae_epoch_examples": examples,
            "limit_layer_calls": len(calls),
            "limit_gflops": flops_per_step * max(speeds["limit"]) / family.batch_size / 1e9,
            "rounds": speeds,
            **{way: max(values) for way, values in speeds.items()},
        }
        # The limit with the optimiser's step added: matmuls, then Adam, one after the other.
        result["limit_with_adam"] = 1 / (1 / result["limit"] + 1 / result["adam"])
    return result


# --- the driver ---------------------------------------------------------------------------------


def run_worker(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one family in a fresh process started with genae's environment."""
    environment = dict(os.environ)
    if args.threads:
        environment[THREADS_VARIABLE] = str(args.threads)
    configure_environment([], environment)  # before the worker's torch starts its OpenMP
    command = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--seconds",
        str(args.seconds),
        "--rounds",
        str(args.rounds),
    ]
    if args.skip_pythae:
        command.append("--skip-pythae")
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise SystemExit(f"throughput: family {name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


COLUMNS = (
    f"{'family':<11}{'batch':>6}{'genae':>9}{'minimal':>9}{'limit':>9}{'+Adam':>9}"
    f"{'g/min':>8}{'g/lim':>7}{'g/l+A':>7}{'m/lim':>7}{'GFLOP/s':>9}"
)


def table_row(result: dict[str, Any]) -> str:
    """samples/s of each way, genae / minimal, and fractions of the limit (without and with
    the optimiser's step)."""
    genae, minimal, ceiling = result["genae"], result["minimal"], result["limit"]
    with_adam = result["limit_with_adam"]
    return (
        f"{result['family']:<11}{result['batch_size']:>6}{genae:>9,.0f}{minimal:>9,.0f}"
        f"{ceiling:>9,.0f}{with_adam:>9,.0f}{genae / minimal:>7.2f}x{genae / ceiling:>7.0%}"
        f"{genae / with_adam:>7.0%}{minimal / ceiling:>7.0%}{result['limit_gflops']:>9.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help=f"comma-separated, from: {', '.join(FAMILIES)}",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="timed seconds per measurement (each way, each family)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="turns the ways take, each of seconds/rounds; the best counts",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="intra-op threads (GENAE_THREADS); 0: genae's default",
    )
    parser.add_argument("--skip-pythae", action="store_true", help="leave out the pythae peer")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        start_process([])  # as the `genae` command starts; torch's pool has not started yet
        with_pythae = not args.skip_pythae
        print(json.dumps(measure_family(args.worker, args.seconds, args.rounds, with_pythae)))
        return 0
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        parser.error(
            f"--families: unknown {', '.join(unknown)}; expected from {', '.join(FAMILIES)}"
        )
    load_before = os.getloadavg()[0]
    print(
        f"load average {load_before:.2f}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.seconds:g} s per way and family",
        flush=True,
    )
    print(f"{COLUMNS}   (samples/s; the best of {args.rounds} rounds each)", flush=True)
    results = []
    for name in names:
        result = run_worker(name, args)
        results.append(result)
        print(table_row(result), flush=True)
    for result in results:
        if "pythae" in result:
            peer = result["pythae"]
            ratio = result["genae"] / peer
            print(f"pythae 0.1.2 vae {peer:,.0f} samples/s; genae / pythae {ratio:.2f}x")
    load_after = os.getloadavg()[0]
    print(f"load average {load_after:.2f} at the end")
    if args.json:
        report = {
            "load_average": [load_before, load_after],
            "seconds": args.seconds,
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "families": results,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
