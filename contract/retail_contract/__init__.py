"""What crosses from the operator to the predictor pods, defined once and imported by both.

The operator renders a model-source document into a ConfigMap and sets a few environment
variables on the predictor container; the predictor reads them. Neither side imports the
other, so the shape of what they exchange lives here: ``source`` (the document, the S3 URI
parser and the mount path), ``env`` (the variable names) and ``metrics`` (the metric names the
operator reads from the pods to judge a canary). Standard library only: both
images install it.
"""
