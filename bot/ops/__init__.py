"""Operations: Prometheus metrics (bot/ops/metrics.py) and structured JSON logs (bot/ops/logs.py)."""
