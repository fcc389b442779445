"""RetailModel's predictor: the model format, features, training and the hot-reloading FastAPI app.

This package never imports ``retail_operator``: a serving image needs nothing of the operator.
"""
