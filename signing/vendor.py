"""Where the applied migrations find `RunSQLFor`, the vendor names and the exclusion
constraint: they were written when these lived here, and an applied migration is never
edited. New code imports `kernel.vendor`."""

from kernel.vendor import POSTGRESQL, SQLITE, PostgresExclusionConstraint, RunSQLFor

__all__ = ["POSTGRESQL", "SQLITE", "PostgresExclusionConstraint", "RunSQLFor"]
