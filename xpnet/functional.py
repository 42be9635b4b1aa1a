"""Old import path of `xpnet.models.functional`, kept so existing code runs."""

import sys

from .models import functional as _module

sys.modules[__name__] = _module
