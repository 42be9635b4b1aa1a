"""The course's 3-2-2-1 worked example, forward and backward, number by number.

    python scripts/trace_3221.py                   # x = (0.7, 0.3, 0.5), target y = 1.0, MSE
    python scripts/trace_3221.py --target 0.5 --gradcheck
    python scripts/trace_3221.py --json trace.json

ReLU hidden layers, linear output; the weights are the course's (see tests/test_course.py).
The slides print u(2) = (0.33, 1.217) and ŷ = 0.3764; the arithmetic, and this trace, give
0.2·0.43 + 0.3·0.44 + 0.1 = 0.317 and ŷ = 0.1·0.33 + 0.2·0.317 + 0.1 = 0.1964.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import xpnet
from xpnet.gradcheck import check_gradients
from xpnet.trace import trace

X = [0.7, 0.3, 0.5]
WEIGHTS = [
    np.array([[0.1, 0.3], [0.2, 0.1], [0.4, 0.2]]),  # W(1): column j holds unit j's weights
    np.array([0.1, 0.1]),
    np.array([[0.2, 0.3], [0.1, 0.2]]),
    np.array([0.2, 0.1]),
    np.array([[0.1], [0.2]]),
    np.array([0.1]),
]


def course_model(backend: str = "numpy") -> xpnet.Sequential:
    model = xpnet.Sequential(
        [xpnet.Dense(2, "relu", input_shape=(3,)), xpnet.Dense(2, "relu"), xpnet.Dense(1, "linear")],
        name="course_3221",
        seed=0,
        dtype="float64",
    )
    model.set_weights(WEIGHTS)
    model.compile("sgd", "mse", backend=backend)
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", type=float, default=1.0, help="the target y (default 1.0)")
    p.add_argument("--forward-only", action="store_true", help="no target: forward pass only")
    p.add_argument("--digits", type=int, default=6, help="significant digits printed (default 6)")
    p.add_argument("--backend", default="numpy", help="numpy, strict, cupy, auto (default numpy)")
    p.add_argument("--gradcheck", action="store_true", help="also compare the gradients with finite differences")
    p.add_argument("--json", metavar="PATH", help="write the trace as JSON")
    args = p.parse_args(argv)

    model = course_model(args.backend)
    t = trace(model, X) if args.forward_only else trace(model, X, args.target)
    print(t.format(digits=args.digits))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(t.to_dict(), f, indent=1)
        print(f"\nwrote {args.json}")
    if args.gradcheck and not args.forward_only:
        print()
        result = check_gradients(model, np.array([X]), np.array([[args.target]]))
        print(result)
        return 0 if result.passed else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
