"""``python -m flowsamp run [CONFIG.toml]``: same as the ``flowsamp`` console script."""

import sys

from flowsamp.cli.main import main

sys.exit(main())
