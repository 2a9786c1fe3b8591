"""The fit-time warning about training on a held-out-looking split (issue 22)."""

from mer_heads.experiments.fit import split_notes


def test_training_on_a_test_split_warns_with_the_flags_to_hold_it_out():
    notes = split_notes({"train": 40, "test": 12}, None, None)
    assert len(notes) == 1 and "'test' clips are predictions of training clips" in notes[0]
    assert "--train-split train --test-split test" in notes[0]
    assert "--test-split test1" in split_notes({"train": 40, "test1": 5, "test2": 5}, None, None)[0]


def test_splits_that_are_not_held_out_sets_say_nothing():
    actors = {f"actor{i:02d}": 44 for i in range(1, 13)}  # RAVDESS: the split is the actor
    assert split_notes(actors, None, None) == []
    assert split_notes({"train": 40, "testimony": 3, "tester": 2}, None, None) == []
    assert split_notes({"train": 40, "test": 12}, "train", None) == []  # a split was chosen
    assert split_notes({"test": 12}, None, None) == []  # one split: nothing else to confuse
