"""A Docker build context as Docker makes it: the files under a folder, less `.dockerignore`.

A port of Docker's own matcher (github.com/moby/patternmatcher: `ignorefile.ReadAll` reads
the file, `PatternMatcher.MatchesOrParentMatches` decides each path), because a gitignore
library would be wrong here: Docker anchors every pattern at the context's root (`*.pyc`
excludes ./x.pyc only, not ./app/x.pyc), `**` is its own extension of Go's filepath.Match,
and a path is excluded when the pattern matches it or any of its parent folders. No PyPI
package ports it (pathspec speaks gitignore; the dockerignore ones are unmaintained).
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

_UTF8_BOM = "\ufeff"
# Regular-expression characters that mean nothing in filepath.Match (patternmatcher's
# shouldEscape); `[`, `]`, `?`, `*` and `\` are handled on their own.
_ESCAPED = set(".+()|{}$")


def read_patterns(text: str) -> list[str]:
    """`ignorefile.ReadAll`: drop comments and blanks, clean each pattern, strip a leading /."""
    patterns = []
    for number, line in enumerate(text.splitlines()):
        if number == 0:
            line = line.removeprefix(_UTF8_BOM)
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = _clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


@dataclass(frozen=True)
class _Pattern:
    exclusion: bool
    cleaned: str
    kind: str  # exact, prefix, suffix or regexp, as patternmatcher's matchType
    regexp: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.cleaned
        if self.kind == "prefix":
            return path.startswith(self.cleaned[:-2])
        if self.kind == "suffix":
            suffix = self.cleaned[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regexp is not None
        return self.regexp.fullmatch(path) is not None


class PatternMatcher:
    """`patternmatcher.New` and `MatchesOrParentMatches`, for slash-separated paths."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            pattern = raw.strip()
            if not pattern:
                continue
            pattern = _clean(pattern)
            exclusion = pattern.startswith("!")
            if exclusion:
                if len(pattern) == 1:
                    raise ValueError('illegal exclusion pattern: "!"')
                pattern = pattern[1:]
            self.patterns.append(_compile(pattern, exclusion=exclusion))

    def excludes(self, path: str) -> bool:
        """Whether Docker leaves `path` (relative, slash-separated) out of the context."""
        matched = False
        parent = posixpath.dirname(path) or "."
        parent_dirs = parent.split("/")
        for pattern in self.patterns:
            # An inclusion is only tried while nothing matched, an exception only after.
            if pattern.exclusion != matched:
                continue
            match = pattern.match(path)
            if not match and parent != ".":
                match = any(
                    pattern.match("/".join(parent_dirs[: i + 1])) for i in range(len(parent_dirs))
                )
            if match:
                matched = not pattern.exclusion
        return matched


def context_files(root: Path) -> list[str]:
    """Every file Docker would send as the build context of `root`, relative, sorted."""
    ignore = root / ".dockerignore"
    matcher = PatternMatcher(read_patterns(ignore.read_text()) if ignore.exists() else [])
    kept = []
    for folder, dirs, files in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        for name in files:
            path = name if relative == "." else f"{relative}/{name}"
            if not matcher.excludes(path):
                kept.append(path)
        # Docker skips an excluded folder unless an exception could reach inside it;
        # checking every file under it gives the same list, so walk on.
        dirs.sort()
    return sorted(kept)


def _compile(pattern: str, *, exclusion: bool) -> _Pattern:
    """`Pattern.compile`: turn a filepath.Match pattern with `**` into a regular expression."""
    regexp, kind, i, n = "", "exact", 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                start = i
                i += 2
                if i < n and pattern[i] == "/":  # "**/" is "**"
                    i += 1
                if i >= n:  # "**" at the end accepts everything, as in .gitignore
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        regexp += ".*"
                        kind = "regexp"
                else:
                    regexp += "(.*/)?"
                    kind = "regexp"
                if start == 0:
                    kind = "suffix"
                continue
            regexp += "[^/]*"
            kind = "regexp"
        elif ch == "?":
            regexp += "[^/]"
            kind = "regexp"
        elif ch in _ESCAPED:
            regexp += "\\" + ch
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                regexp += "\\" + pattern[i]
                kind = "regexp"
            else:
                regexp += "\\"
        elif ch in "[]":
            regexp += ch
            kind = "regexp"
        else:
            regexp += ch
        i += 1
    compiled = None
    if kind == "regexp":
        try:
            compiled = re.compile(regexp)
        except re.error as error:
            raise ValueError(f"bad pattern {pattern!r}: {error}") from None
    return _Pattern(exclusion=exclusion, cleaned=pattern, kind=kind, regexp=compiled)


def _clean(path: str) -> str:
    """Go's filepath.Clean on a slash-separated path (POSIX normpath keeps a leading //)."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned
