"""Tools for the course: the perceptron, linear regression, traces, gradient checks, parity and experiments."""
