"""What resuming, evaluating and rerunning an ensemble must not change (`rnn_tasks.settings`)."""

from rnn_tasks.settings import changes, fixed_data_changes, flatten, with_legacy_defaults

LM = {"_target_": "rnn_tasks.data.LMDataModule", "name": "ptb", "seed": 1, "batch_size": 20}
SMS = {"_target_": "rnn_tasks.data.ClassificationDataModule", "seed": 1, "val_fraction": 0.1,
       "path": "a", "lowercase": True, "group_duplicates": True}  # fmt: skip


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


def test_a_resume_keeps_the_corpus_an_evaluation_may_change():
    demo = {"_target_": "rnn_tasks.data.TaggingDataModule", "builtin": True, "hub": None,
            "seed": 1}  # fmt: skip
    ewt = {**demo, "builtin": False, "hub": "commul/universal_dependencies"}
    assert fixed_data_changes(demo, ewt) == []  # evaluate a demo model on EWT: allowed
    assert fixed_data_changes(demo, ewt, resume=True) == [
        "data.hub=None (this run: 'commul/universal_dependencies')",
        "data.builtin=True (this run: False)",
    ]


def test_another_datamodule_class_is_a_change_however_it_is_spelled():
    same = {**SMS, "_target_": "rnn_tasks.data.classification.ClassificationDataModule"}
    assert fixed_data_changes(SMS, {**same, "seed": 7}) == ["data.seed=1 (this run: 7)"]
    assert fixed_data_changes(SMS, LM) == [
        "data._target_='rnn_tasks.data.ClassificationDataModule' "
        "(this run: 'rnn_tasks.data.LMDataModule')"
    ]


def test_a_checkpoint_from_before_grouping_keeps_its_ungrouped_split():
    # group_duplicates arrived with default true; older SMS splits cut message by message.
    old = {k: v for k, v in SMS.items() if k != "group_duplicates"}
    assert with_legacy_defaults(old)["group_duplicates"] is False
    assert with_legacy_defaults(SMS)["group_duplicates"] is True
    assert fixed_data_changes(old, SMS) == ["data.group_duplicates=False (this run: True)"]
