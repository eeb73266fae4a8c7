"""`python -m sparsecod ...` = the `sparsecod` console script."""

import sys

from .cli import main

sys.exit(main())
