"""Training the price-sensitivity model on synthetic dunnhumby-shaped baskets.

Its own package, beside the predictor rather than inside it: the serving image has no use for
the data generator or the training loop, and training writes the model file through the
predictor's own format (``retail_serving.artifact``), so the two cannot drift apart.
"""
