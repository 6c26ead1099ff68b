"""Progress bars (issue 17, item 6): drawn on a terminal, silent in a pipe."""

from __future__ import annotations

import io

from streams.runtime.progress import is_terminal, progress_bar, write


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_on_a_terminal_shows_count_rate_eta_and_postfix() -> None:
    stream = _Terminal()
    with progress_bar("publish", total=200, stream=stream) as bar:
        for n in range(200):
            bar.update(1)
            if n == 150:
                bar.set_postfix_str("rejected 1", refresh=False)
                write(bar, "line 151: MALFORMED: not UTF-8", stream)
        bar.refresh()
        drawn = stream.getvalue()
    assert "publish" in drawn and "200/200" in drawn and "rec/s" in drawn
    assert "rejected 1" in drawn and "line 151: MALFORMED: not UTF-8\n" in drawn
    assert "<00:00" in drawn  # the ETA column, known from the total


def test_nothing_is_drawn_in_a_pipe_but_messages_still_are() -> None:
    stream = io.StringIO()
    assert not is_terminal(stream)
    with progress_bar("publish", total=10, stream=stream) as bar:
        bar.update(10)
        write(bar, "line 3: MALFORMED: x", stream)
    assert stream.getvalue() == "line 3: MALFORMED: x\n"
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed)
