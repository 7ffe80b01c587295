"""tests.dockerignore decides as Docker does: moby/patternmatcher's own cases, and its reader."""

import pytest

from tests.dockerignore import PatternMatcher, read_patterns

# patternmatcher_test.go, TestMatches (pattern, path, excluded), run there through
# MatchesOrParentMatches as here.
DOCKER_CASES = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),
    ("**/", "file/", True),
    ("**", "/", True),
    ("**/", "/", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**", "dir/file/", True),
    ("**/", "dir/file/", True),
    ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\*b", "a*b", True),
]
DOCKER_MULTI_PATTERN_CASES = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
]


@pytest.mark.parametrize(("pattern", "path", "excluded"), DOCKER_CASES)
def test_one_pattern_decides_as_docker_does(pattern, path, excluded):
    assert PatternMatcher([pattern]).excludes(path) is excluded


@pytest.mark.parametrize(("patterns", "path", "excluded"), DOCKER_MULTI_PATTERN_CASES)
def test_later_exceptions_and_patterns_decide_as_docker_does(patterns, path, excluded):
    assert PatternMatcher(patterns).excludes(path) is excluded


def test_patterns_are_anchored_at_the_root_unlike_gitignore():
    matcher = PatternMatcher(["*.pyc", ".env"])
    assert matcher.excludes("x.pyc")
    assert matcher.excludes(".env")
    assert not matcher.excludes("app/x.pyc")
    assert not matcher.excludes("app/.env")


def test_a_lone_exclamation_mark_and_a_broken_class_are_errors():
    with pytest.raises(ValueError, match="illegal exclusion"):
        PatternMatcher(["!"])
    with pytest.raises(ValueError, match="bad pattern"):
        PatternMatcher(["a[b"])


def test_the_reader_drops_comments_blanks_and_a_leading_slash():
    text = "\ufeff# secrets\n\n  /.env  \n!/keep/me\n #not a comment\n./a/../b/\n"
    assert read_patterns(text) == [".env", "!keep/me", "#not a comment", "b"]
