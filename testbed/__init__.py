"""Real processes on loopback (nats-server, ingest, query) and kryten-userstats 0.7.1 itself,
for the tests and the benchmarks alike: bench/ imports these, never tests/."""
