"""The course's exercise: Dense 128 relu → Dropout 20% → Dense 10 softmax, Adam, batch 1000, 15 epochs.

    python scripts/exercise_dropout.py                    # = xpnet train --model B
    python scripts/exercise_dropout.py --epochs 30 --out runs/B30

Other options as in `xpnet train --help`.
"""

from __future__ import annotations

import sys

from xpnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--model", "B", *sys.argv[1:]]))
