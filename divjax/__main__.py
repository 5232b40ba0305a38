"""``python -m divjax``: the same as the ``divjax`` command."""

import sys

from divjax.cli import main

sys.exit(main())
