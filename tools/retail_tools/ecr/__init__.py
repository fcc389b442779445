"""ECR as code and the image-side delivery commands.

``config`` models deploy/ecr/repositories.yaml; ``bootstrap`` makes real repositories match it
(creating what is missing, correcting drift, reporting what it changed); ``findings`` and
``usage`` answer the two questions asked of a registry in delivery (is this image clean? what
does storage cost?); ``tags`` names images from git branches; ``retail_tools.cli.ecr`` mounts
it under ``retailctl ecr``. Everything AWS goes through a boto3 ECR client passed in, so the
same code runs against ECR and against moto's server in tests.
"""
