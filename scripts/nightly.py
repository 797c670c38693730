"""Nightly retraining of every clone (see clonetrain/product/nightly.py):

    python scripts/nightly.py [--root data] [hydra overrides...]
"""

import sys

from clonetrain.product.nightly import main

if __name__ == "__main__":
    sys.exit(main())
