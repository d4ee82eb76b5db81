"""``python -m logitmlp_hf.cli``: the ``logitmlp`` console script."""

import sys

from .main import main


sys.exit(main())
