"""Reading and writing models and weights: .keras, .weights.h5, legacy .h5, configs, file checks."""
