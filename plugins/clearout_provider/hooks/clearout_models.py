"""The 0.1 import path of :mod:`clearout_provider.clearout.models`.

Clearout's wire rules now live in the vendor folder, as the design's layout says. The old name is the
same module object, so imports and ``mock.patch`` targets written against 0.1 keep working; it goes
in 0.3."""

import sys

from clearout_provider.clearout import models

sys.modules[__name__] = models
