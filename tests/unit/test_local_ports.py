"""Each local stack gets Serve listener ports of its own (Serve binds with SO_REUSEPORT)."""

from cluster.local import private_serve_ports


def test_each_stack_gets_its_own_free_ports() -> None:
    first, second = private_serve_ports(), private_serve_ports()

    def ports(env: dict[str, str]) -> set[int]:
        http = range(int(env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"]), int(env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"]) + 1)
        grpc = range(int(env["RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT"]), int(env["RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT"]) + 1)
        single = {int(env[k]) for k in ("RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_HAPROXY_STATS_PORT",
                                         "RAY_SERVE_HAPROXY_METRICS_PORT")}
        assert len(http) == len(grpc) == 16 and not set(http) & set(grpc)
        return set(http) | set(grpc) | single

    for env in (first, second):
        chosen = ports(env)
        assert len(chosen) == 32 + 3  # nothing shared inside one stack
        assert all(20_000 <= p < 30_000 for p in chosen)  # below Serve's default and ephemeral ranges
