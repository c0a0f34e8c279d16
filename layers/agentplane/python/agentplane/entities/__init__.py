"""Entities: one pynamodb model per item kind of the one table (see `entities.base`), and the named
query of each access pattern beside the entity it reads (see `entities.patterns`)."""
