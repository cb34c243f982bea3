"""The SEFT Kubernetes operator: a SeftPipeline custom resource run stage by stage (kopf)."""

GROUP = "seft.dev"
VERSION = "v1alpha1"
KIND = "SeftPipeline"
PLURAL = "seftpipelines"
