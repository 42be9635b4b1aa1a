"""Old import path of `xpnet.io.weights_io`, kept so existing code runs."""

import sys

from .io import weights_io as _module

sys.modules[__name__] = _module
