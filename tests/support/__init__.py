"""Helpers shared by the tests and the benchmarks in bench/, one implementation of each.

- ``process``: require a tool, start nats-server and the exporter, stop a process, wait until,
  GET a URL (bytes or JSON).
- ``natsclient``: the NATS CONNECT line, a raw blocking client, background traffic.
- ``crowd``: many connections held in this process or in helper processes.
- ``monitor``: a fake monitoring port that serves given bodies or fails on purpose.
- ``bodysource``: a source in this process that answers with a given body, and a collector
  refreshed from it on a simulated clock; a fake client with canned bodies per endpoint.
- ``faultproxy``: a TCP proxy in front of a real monitoring port that injects one fault.
- ``inprocess``: the exporter's collectors for one real server in the test's process, on a
  clock of their own.
- ``connzgen``, ``leafzgen``, ``jszgen``: seeded /connz, /leafz and /jsz bodies;
  ``sockdiaggen``: synthesized sock_diag replies and a seeded kernel that sends them.
- ``connzagg``: ConnzAggregator's implementations, hand-written bodies, snapshots as families,
  and the differential scenarios.
- ``series``: exposition text as series by sample name, sums over them, no repeated series;
  ``storedseries``: the same by the names Prometheus stores; ``refreshes``: an exporter
  process's refresh count, and a wait for its next refresh.
- ``cluster``: a real supercluster; ``jetstream``: its JetStream streams and consumers;
  ``leafcrowd``: fake leafnodes from helper processes.
- ``certs``: TLS certificates (trustme) in files or in memory, a server context, and a
  handshake in memory.
- ``liveserver``: the exporter's HTTP server on a loop thread of its own, the payloads it
  serves and a fake gate; ``httpclient``: a raw HTTP/1.1 client that checks every byte.

Nothing here imports at package level: ``crowd`` runs as a helper process that loads only the
standard library and ``natsclient``.
"""
