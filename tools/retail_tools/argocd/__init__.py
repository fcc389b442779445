"""A local Argo CD (repo-server and application controller, no API server or UI) for GitOps
against the local control plane: built from the Go module proxy, cached by version, started and
stopped like the cluster's own components."""
