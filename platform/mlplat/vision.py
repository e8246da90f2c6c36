"""torchvision, imported so that its pure-Python parts work beside a CPU-only torch.

PyPI's x86_64 torchvision wheels are CUDA builds: their compiled ops (`torchvision._C`, `image.so`)
link against CUDA torch and cannot load beside the CPU torch build this project pins. torchvision's
`__init__` then fails while registering fake kernels for those missing ops. mlplat needs none of
them: models, `transforms.v2` and `datasets.ImageFolder` are pure Python on torch, and images are
decoded by PIL. So when the ops are missing, the fake-kernel module is skipped. With a matching torch
(e.g. on a CUDA machine) torchvision imports untouched.

Always import torchvision through `load()`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

_META = "torchvision._meta_registrations"


def load() -> Any:
    """The `torchvision` module (raises ImportError when it is not installed)."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules[_META] = types.ModuleType(_META)
        import torchvision
    return torchvision

