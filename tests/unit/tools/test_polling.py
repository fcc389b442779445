"""The one poll loop: the first true answer, or a timeout saying what was awaited and seen."""

from __future__ import annotations

import pytest

from retail_tools.polling import Timeout, wait_until


def test_the_first_true_answer_is_returned() -> None:
    answers = iter([None, 0, "", {"ready": True}])
    assert wait_until(lambda: next(answers), timeout=5, interval=0) == {"ready": True}


def test_a_timeout_names_what_was_awaited_and_the_last_answer() -> None:
    with pytest.raises(Timeout) as timed_out:
        wait_until(lambda: [], timeout=0.05, interval=0.01, what="the pods")
    assert isinstance(timed_out.value, TimeoutError)
    assert timed_out.value.last == []
    assert str(timed_out.value) == "timed out after 0s waiting for the pods (last: [])"


def test_ignored_failures_count_as_not_yet_and_others_end_the_wait() -> None:
    calls = iter([ConnectionError("refused"), ConnectionError("refused"), "up"])

    def probe() -> str:
        answer = next(calls)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_until(probe, timeout=5, interval=0, ignore=(ConnectionError,)) == "up"
    with pytest.raises(ValueError, match="broken"):
        wait_until(lambda: int("broken"), timeout=5, interval=0, ignore=(ConnectionError,))
