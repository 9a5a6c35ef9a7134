"""``python -m paperwire``: the same commands as the ``paperwire`` script."""

import sys

from paperwire.cli import main

sys.exit(main())
