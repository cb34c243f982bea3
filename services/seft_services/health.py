"""`python -m seft_services.health HOST:PORT [SERVICE]`: exit 0 when the gRPC health service says
SERVING. The pods' readiness and liveness probe: it works on every Kubernetes version (native
gRPC probes need 1.24+) and imports only grpc, so it starts fast."""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: python -m seft_services.health HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    try:
        with grpc.insecure_channel(argv[0]) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=argv[1] if len(argv) > 1 else ""), timeout=5)
    except grpc.RpcError as exc:
        print(f"{argv[0]}: {exc.code().name}", file=sys.stderr)
        return 1
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    print(f"{argv[0]}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
