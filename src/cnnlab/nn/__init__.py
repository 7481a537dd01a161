"""cnnlab layers: drop-in replacements for ``torch.nn`` convolution and pooling modules (each
subclasses its torch twin), and the layers torch lacks. Each module lists its layers once, in its
``__all__``."""

from . import conv, deformable, global_pool, maxout, pool, separable, weighted_pool
from .conv import *  # noqa: F403
from .deformable import *  # noqa: F403
from .global_pool import *  # noqa: F403
from .maxout import *  # noqa: F403
from .pool import *  # noqa: F403
from .separable import *  # noqa: F403
from .weighted_pool import *  # noqa: F403

__all__ = sorted(
    [
        *conv.__all__,
        *deformable.__all__,
        *global_pool.__all__,
        *maxout.__all__,
        *pool.__all__,
        *separable.__all__,
        *weighted_pool.__all__,
    ]
)
