"""The shared kernel: what every app may import, and what imports none of them.

Pure crypto (`crypto`, no Django), the database vendors' differences (`vendor`), the choice
of servers or embedded mode (`backends`), structured events (`events`), the database roles
(`roles`), the management commands' argument helpers (`cli`) and the read-only admin base
(`admin`). The apps form a line above it: keyring, then records, then signing, then the site;
the import-linter contracts in pyproject.toml keep it that way.
"""
