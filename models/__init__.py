"""c2m models: the decisions, pure (no Faust, no Kafka, no asyncio)."""
