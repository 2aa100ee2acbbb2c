"""A notebook user pickles the library's own results (to cache or send them): a real round trip.

The only file allowed to import pickle (tests/shell/test_library_purity.py names it): it pickles objects
the library made; nothing a user hands the pipeline is ever unpickled.
"""

from __future__ import annotations

import pickle

import pytest

from assimilate.report import decision_memo_markdown
from tests.lib.test_ergonomics import RESULTS, _assert_same, _read_only_arrays
from tests.lib.test_memo_readable import memo_inputs_for_copying


@pytest.mark.parametrize("name", list(RESULTS))
def test_every_result_survives_a_pickle_round_trip_read_only(name: str) -> None:
    original = RESULTS[name]()
    restored = pickle.loads(pickle.dumps(original, protocol=pickle.HIGHEST_PROTOCOL))
    _assert_same(original, restored)
    assert _read_only_arrays(restored) == _read_only_arrays(original)


def test_memo_inputs_survive_a_pickle_round_trip_and_write_the_same_memo() -> None:
    inputs = memo_inputs_for_copying()
    restored = pickle.loads(pickle.dumps(inputs, protocol=pickle.HIGHEST_PROTOCOL))
    assert decision_memo_markdown(restored) == decision_memo_markdown(inputs)
    assert restored.acknowledged_exclusions == inputs.acknowledged_exclusions


def test_an_event_study_survives_a_pickle_round_trip_read_only() -> None:
    from assimilate.estimators.did import event_study
    from tests.lib.test_did import COLUMNS, _staggered

    study = event_study(_staggered(), **COLUMNS, first_treated="first_treated")
    copy = pickle.loads(pickle.dumps(study))
    assert not copy.covariance.flags.writeable
    assert copy.to_frame().equals(study.to_frame())
