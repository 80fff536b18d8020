"""What resuming, evaluating and rerunning an ensemble must not change (`rnn_tasks.settings`)."""

from rnn_tasks.settings import changes, fixed_data_changes, flatten

LM = {"_target_": "rnn_tasks.data.LMDataModule", "name": "ptb", "seed": 1, "batch_size": 20}
SMS = {"_target_": "rnn_tasks.data.ClassificationDataModule", "seed": 1, "val_fraction": 0.1,
       "path": "a", "lowercase": True}  # fmt: skip


def test_only_the_settings_a_datamodule_fixes_count():
    # The LM never shuffles its windows: its seed splits nothing. The SMS split is seeded.
    assert fixed_data_changes(LM, {**LM, "seed": 2, "batch_size": 5}) == []
    moved = {**SMS, "path": "b", "seed": 2, "lowercase": False}
    assert fixed_data_changes(SMS, moved) == [
        "data.seed=1 (this run: 2)",
        "data.lowercase=True (this run: False)",
    ]


def test_a_setting_the_checkpoint_lacks_is_not_a_change():
    assert changes({"a": 1}, {"a": 1, "b": 2}, ["a", "b"]) == []
    assert changes({"a": 1}, {"a": 3}, ["a"], prefix="x.") == ["x.a=1 (this run: 3)"]


def test_flatten_joins_nested_keys_with_dots():
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e": [1]}) == {
        "a.b": 1,
        "a.c.d": None,
        "e": [1],
    }
