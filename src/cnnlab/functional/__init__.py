"""cnnlab's math: convolution and pooling as pure functions with ``torch.nn.functional``'s
signatures, built from tensor primitives only. Two parallel packages, :mod:`.conv` and
:mod:`.pool`, each with its public functions, one dispatch module and one module per
implementation."""

from . import conv, pool
from .conv import *  # noqa: F403 - the public functions, listed once in each package's __all__
from .pool import *  # noqa: F403

__all__ = sorted([*conv.__all__, *pool.__all__])
