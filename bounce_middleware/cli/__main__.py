"""``python -m bounce_middleware.cli``: the ``bounce-middleware`` command."""

import sys

from . import main

sys.exit(main())
