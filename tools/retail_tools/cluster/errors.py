"""The one error the local cluster raises: it could not be brought to the asked state, or a
kubectl call against it failed; the message says why and where (a log, kubectl's words)."""


class ClusterError(RuntimeError):
    pass
