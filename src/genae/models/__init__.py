"""The models. Importing this package registers every model class by name."""

from genae.models import aae, caae, classifier, convvae, dfcvae, m2, vae  # noqa: F401
from genae.models.base import Batch, GenerativeModel, Phase
from genae.models.registry import MODELS, build_model, model_class

__all__ = ["MODELS", "Batch", "GenerativeModel", "Phase", "build_model", "model_class"]
