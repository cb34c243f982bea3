"""The operator's own configuration: what a pipeline's author may not choose.

Anyone allowed to create a SeftPipeline would otherwise pick the image its pods run and the Secret
they read store credentials from (a confused deputy: the operator's rights, the author's
choice). So the allowed images, the store Secret, the pods' ServiceAccount and any pod defaults
come from this file, named by $SEFT_OPERATOR_CONFIG (a ConfigMap in manifests/base/operator.yaml);
a pipeline that names another image or Secret is Failed before anything is created.

    images: [ghcr.io/seft-platform/seft:0.1.0]     # the platform images allowed; the first is the default
    vllm_images: [vllm/vllm-openai:v0.11.0]        # the same for the vLLM sidecar
    store_secret: seft-store                       # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for s3:// stores
    service_account: seft-workload                 # every pod's: no RBAC, no mounted token
    pod_defaults: {volumes: [], volume_mounts: [], env: []}   # added to every pod and container"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from seft.errors import SpecError
from seft.spec import Cluster
from seft.specfile import load_yaml, validate

PLATFORM_IMAGE, VLLM_IMAGE = "ghcr.io/seft-platform/seft:0.1.0", "vllm/vllm-openai:v0.11.0"
DNS_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


class PodDefaults(BaseModel):
    """Kubernetes objects (camelCase) added to every pod (volumes) and container (the rest)."""

    model_config = ConfigDict(extra="forbid")
    volumes: list[dict] = []
    volume_mounts: list[dict] = []
    env: list[dict] = []


class OperatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field([PLATFORM_IMAGE], min_length=1)
    vllm_images: list[str] = Field([VLLM_IMAGE], min_length=1)
    store_secret: str = Field("seft-store", pattern=DNS_NAME)
    service_account: str = Field("seft-workload", pattern=DNS_NAME)
    pod_defaults: PodDefaults = PodDefaults()

    def admit(self, cluster: Cluster) -> Cluster:
        """The pipeline's cluster settings with the operator's choices filled in; a SpecError
        naming the field when the pipeline asks for what this configuration does not allow."""
        for field, allowed in (("image", self.images), ("vllm_image", self.vllm_images),
                               ("store_secret", [self.store_secret])):
            value = getattr(cluster, field)
            if value is not None and value not in allowed:
                raise SpecError(f"spec.cluster.{field}: {value!r} is not allowed by the operator's configuration "
                                f"(allowed: {', '.join(allowed)})")
        return cluster.model_copy(update={"image": cluster.image or self.images[0],
                                          "vllm_image": cluster.vllm_image or self.vllm_images[0],
                                          "store_secret": self.store_secret})


@functools.cache
def load() -> OperatorConfig:
    """$SEFT_OPERATOR_CONFIG, or the defaults above when it is unset."""
    path = os.environ.get("SEFT_OPERATOR_CONFIG")
    if not path:
        return OperatorConfig()
    return validate(OperatorConfig, load_yaml(Path(path)) or {}, path)
