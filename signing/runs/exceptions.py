"""Named failures of the signing executor, each safe to show to a user as it is."""


class InvalidBatchSize(ValueError):
    """The batch size is not a whole number from 1 to MAX_BATCH_SIZE."""


class RunAlreadyActive(Exception):
    """A run is pending or running; only one may be active at a time."""

    def __init__(self, run_id: int | None) -> None:
        self.run_id = run_id
        which = f"run {run_id}" if run_id is not None else "another run"
        super().__init__(f"{which} is still active: wait for it to finish or cancel it first")


class RunNotFound(LookupError):
    """No run has this id."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        super().__init__(f"no run has id {run_id}")


class RunNotFollowing(Exception):
    """A graceful stop was asked of a run that is not a follow run (cancel stops those)."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id} is not a follow run: it completes by itself (cancel stops it)"
        )


class RunNotActive(Exception):
    """The run has finished already: nothing to stop."""

    def __init__(self, run_id: int, status: str) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(f"run {run_id} is not active: it is {status}")


class NothingToSign(Exception):
    """Every record is signed already: a run asked not to be kept empty was not created."""

    def __init__(self) -> None:
        super().__init__("nothing to sign: every record is signed already")


class NotReadyToSign(Exception):
    """A run could not make progress: no usable key, or a KEK that does not open them."""


class LeaseLost(Exception):
    """The lease was released or expired, or its token changed: the holder must write nothing."""
