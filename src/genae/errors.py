"""The library's own exception types.

Every error a user can cause (bad data, bad config, bad checkpoint) is one of these, so the CLI
can turn it into a one-line message with exit code 2 instead of a traceback.
"""


class GenaeError(Exception):
    """Base class: a problem the user can act on; the message is one line."""


class DataError(GenaeError):
    """A dataset file or array is missing, corrupt or of the wrong shape."""


class SealedSplitError(DataError):
    """Code read the test split before the run's final evaluation (see `SealedSplit`)."""


class ConfigError(GenaeError):
    """A configuration value or option is unknown, of the wrong type or out of range."""


class CheckpointError(GenaeError):
    """A checkpoint or run directory is missing, corrupt, unsafe or from another model."""


class TrainingError(GenaeError):
    """Training could not continue (for example a non-finite loss)."""


class NonFiniteLossError(TrainingError):
    """A loss term became NaN or infinite; names the step and the term."""

    def __init__(self, step: int, term: str, checkpoint: str | None = None) -> None:
        where = f"; last good checkpoint kept at {checkpoint}" if checkpoint else ""
        super().__init__(f"non-finite loss term '{term}' at step {step}{where}")
        self.step = step
        self.term = term
