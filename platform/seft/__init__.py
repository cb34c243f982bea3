"""SEFT: alignment of LLMs by self-evolution, on one machine or on Kubernetes."""

import os

# Before gRPC loads: its fork handlers let a child that Popen forks (for a service or a training)
# crash before exec while channels are open (grpc/grpc#43055; 13 in 300 spawns here, with them
# off none). Nothing here forks a process that goes on using gRPC.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
