"""Typed errors. Each message says what was wrong and what to change."""

from __future__ import annotations


class NTKSelectError(Exception):
    """Base class of every error raised on purpose by peft_ntk_select."""


class InvalidInputError(NTKSelectError, ValueError):
    """The data passed to the selector cannot be turned into a batch of samples."""


class NoCandidatesError(NTKSelectError, ValueError):
    """No module of the model matched the requested candidates."""


class InvalidConfigError(NTKSelectError, ValueError):
    """A selector argument or a field of the user's LoraConfig is not usable for kernel selection."""


class SearchSpaceTooLargeError(NTKSelectError, ValueError):
    """Exhaustive search would score more subsets than allowed."""


class KernelComputationError(NTKSelectError, RuntimeError):
    """The model could not be run to compute the kernels."""


class MissingExtraError(NTKSelectError, ImportError):
    """An optional extra is not installed (matplotlib, for plots: ``pip install 'peft-ntk-select[plot]'``)."""
