"""RetailModel's predictor: the model format, features, the FastAPI app and hot reload.

``python -m retail_serving`` (``server``) is its one entry point. It never imports the
operator or the tooling, so the serving image carries only this package and the shared
``retail_contract``.
"""
