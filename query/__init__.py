"""userstats query: read-only replicas answering the kryten-userstats NATS contract."""
