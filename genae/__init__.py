"""genae: generative autoencoders in PyTorch — train, evaluate, compare, and look at them."""

import os as _os

import torch as _torch

__version__ = "0.1.0"

# Adam moments of rarely active units decay into subnormal floats, which x86 CPUs process
# ~10x slower; measured here, that halves training speed after the first ~800 steps. Flushing
# them to zero must happen before torch starts its worker threads (they inherit the setting
# from the thread that creates them), hence at import. GENAE_KEEP_DENORMALS=1 opts out.
if _os.environ.get("GENAE_KEEP_DENORMALS", "") != "1":
    _torch.set_flush_denormal(True)

from genae import models as _models  # noqa: E402,F401  (registers the model classes)
from genae.training.rundir import load  # noqa: E402

__all__ = ["__version__", "load"]
