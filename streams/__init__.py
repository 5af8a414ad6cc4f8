"""c2m streams: the data in motion (Kafka topics, Faust agents, SDKs, CLI)."""
