"""lib/util/atomic.py: the one atomic write."""

import pytest

from lib.util.atomic import write_text_atomic


def test_the_file_is_ordinary_complete_and_nothing_is_left_when_the_write_fails(tmp_path):
    path = tmp_path / "sub" / "out.json"
    write_text_atomic(path, "old\n")
    assert path.read_text() == "old\n" and path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "new \ud800")  # cannot be encoded: the write fails half-way
    assert path.read_text() == "old\n" and sorted(p.name for p in path.parent.iterdir()) == ["out.json"]
