"""Tools beside the product: generators of what is built from template.yaml and the code
(functions/docs/openapi.json, the sample events for `sam local invoke`, docs/access-patterns.md),
and the reading of the functions' resolvers they share with the tests and the bench.

Nothing here is deployed or imported by a deployed function; tools import the local stack's
template reader and event builders (devstack), never the reverse.
"""
