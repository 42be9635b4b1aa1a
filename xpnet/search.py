"""Old import path of `xpnet.apps.search`, kept so existing code runs."""

import sys

from .apps import search as _module

sys.modules[__name__] = _module
