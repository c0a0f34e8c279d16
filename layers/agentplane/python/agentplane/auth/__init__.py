"""Authentication and authorization: secrets, principals, roles and scopes."""
