"""Real backends for the tests (Envoy, Redis, Kafka, OPA): how each is provisioned on a
fresh machine (``provision_*.sh``, run by ``make services``) and the fixtures that start
them on free 127.0.0.1 ports."""
