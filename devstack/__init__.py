"""The local stack: template.yaml served in-process against moto, for `make dev` and the tests.

Nothing here ships to AWS. It reads the same template, builds the same API Gateway events and
calls the same handlers that run in Lambda.
"""
