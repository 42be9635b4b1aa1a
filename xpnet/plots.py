"""Old import path of `xpnet.apps.plots`, kept so existing code runs."""

import sys

from .apps import plots as _module

sys.modules[__name__] = _module
