"""Nightly retraining of every clone (see clonetrain/nightly.py):

    python scripts/nightly.py [--root data] [hydra overrides...]
"""

import sys

from clonetrain.nightly import main

if __name__ == "__main__":
    sys.exit(main())
