"""Entry points that run the service on scale-out engines (Ray Serve); the Kubernetes and
KServe manifests are in ``deploy/`` at the repository root."""
