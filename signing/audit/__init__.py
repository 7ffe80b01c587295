"""The audit: the five rules proved afterwards from the tables alone (`rules`), with the
named SQL it reads them with (`sql`)."""
