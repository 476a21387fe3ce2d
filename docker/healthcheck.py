"""Container health checks for docker-compose.yml: exit 0 when healthy, 1 when not.

python healthcheck.py http URL        healthy on a 2xx answer (the orchestrator's /healthz)
python healthcheck.py grpc HOST:PORT  healthy when grpc.health.v1.Health says SERVING
                                      (a TTS worker; NOT_SERVING while loading or draining)
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_S = 3.0


def http_healthy(url: str) -> bool:
    """GET url: any 2xx is healthy."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
            return 200 <= int(reply.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def grpc_healthy(address: str) -> bool:
    """The standard gRPC health service reports SERVING for the whole server."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str]) -> int:
    """Run one check; 2 on bad usage."""
    checks = {"http": http_healthy, "grpc": grpc_healthy}
    if len(argv) != 2 or argv[0] not in checks:
        print(__doc__, file=sys.stderr)
        return 2
    healthy = checks[argv[0]](argv[1])
    if not healthy:
        print(f"unhealthy: {argv[0]} {argv[1]}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
