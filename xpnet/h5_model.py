"""Old import path of `xpnet.io.h5_model`, kept so existing code runs."""

import sys

from .io import h5_model as _module

sys.modules[__name__] = _module
