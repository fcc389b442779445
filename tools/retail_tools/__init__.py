"""``retailctl`` and everything it drives for people: the local cluster (``cluster``), the AWS
stand-in (``standin``), ECR as code and image tags (``ecr``), the model commands (``models``)
and the demo (``demo``). Tooling may import the runtimes; they never import it.
"""
