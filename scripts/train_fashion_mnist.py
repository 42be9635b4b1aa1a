"""Train the course's Fashion-MNIST model (A by default); same options as `xpnet train`.

python scripts/train_fashion_mnist.py                 # model A: 300-100-10, SGD lr 0.01, batch 32, 30 epochs
python scripts/train_fashion_mnist.py --quick         # smoke test
python scripts/train_fashion_mnist.py --help
"""

from __future__ import annotations

import sys

from xpnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
