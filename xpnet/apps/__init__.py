"""Applications built on the library: the command line, hyperparameter search, plots."""
