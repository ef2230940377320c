"""python3 tests/fakes/salesforce: runs cli.main() (see cli.py)."""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from salesforce.cli import main
else:
    from .cli import main

sys.exit(main())
