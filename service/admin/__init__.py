"""Operations: model reload, liveness and readiness, Prometheus metrics."""
