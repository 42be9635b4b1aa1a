"""Old import path of `xpnet.io.file_checks`, kept so existing code runs."""

import sys

from .io import file_checks as _module

sys.modules[__name__] = _module
