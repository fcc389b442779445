"""``retailctl`` and everything it drives for people, in layers that only import downwards
(an import contract in pyproject.toml):

* ``cli``: the face, one module per command group;
* ``demo``: the whole story, step by step;
* ``onnode`` (the product on the real node), ``argocd``, ``images``: what the story composes;
* ``cluster`` (the local control plane and real node, with the one ``kubectl`` handle),
  ``ecr`` (ECR as code), ``standin`` (moto as ECR and S3): the services those stand on;
* ``processes``, ``gobuild``, ``load``, ``candidates``: plumbing;
* ``settings`` (the one settings object), ``polling``, ``terminal``, ``ports``: values and
  small helpers everything may use.

Tooling may import the runtimes; they never import it.
"""
