"""Old import path of `xpnet.io.h5_weights`, kept so existing code runs."""

import sys

from .io import h5_weights as _module

sys.modules[__name__] = _module
