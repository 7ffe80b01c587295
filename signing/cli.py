"""Argument types shared by the management commands (argparse names them in its errors)."""

from collections.abc import Callable


def whole_number(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise ValueError(text)
        return value

    parse.__name__ = f"whole number (at least {minimum})"
    return parse
