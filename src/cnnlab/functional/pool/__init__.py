"""Pooling: one module per family of pools (:mod:`.max_pool`, :mod:`.avg_pool`, :mod:`.adaptive`,
:mod:`.fractional`, :mod:`.unpool`, :mod:`.weighted`, :mod:`.maxout`), each describing its
implementations for the one dispatch (:mod:`.dispatch`) that picks eager kernel, traceable form
(:mod:`.traceable`) or Triton (:mod:`.triton`). Built from strided views, reductions,
``gather``/``scatter`` and ``matmul``: never torch's pooling ops. The public functions are
listed once, in each family module's ``__all__``."""

from . import adaptive, avg_pool, fractional, max_pool, maxout, unpool, weighted
from .adaptive import *  # noqa: F403
from .avg_pool import *  # noqa: F403
from .fractional import *  # noqa: F403
from .max_pool import *  # noqa: F403
from .maxout import *  # noqa: F403
from .unpool import *  # noqa: F403
from .weighted import *  # noqa: F403

__all__ = sorted(
    [
        *adaptive.__all__,
        *avg_pool.__all__,
        *fractional.__all__,
        *max_pool.__all__,
        *maxout.__all__,
        *unpool.__all__,
        *weighted.__all__,
    ]
)
