"""Product logic, shared by the HTTP routes and the CLI.

Each service takes domain inputs (a ``Photo``, a ready ``LoadedModel``, paths) and returns
domain results (dataclasses); the routes map those to the pydantic schemas, the CLI prints
them. Nothing here knows about HTTP.
"""
