"""The guide's points and bands, the clamping and the per-tenant settings (pure, no I/O)."""

import pytest
from tistis_common.events import Signal
from tistis_scorer.config import InvalidScoringSettings, ScoringConfig
from tistis_scorer.engagement import EngagementFacts, owed, rule_values
from tistis_scorer.scoring import apply, set_to, signal_points

GUIDE_TABLE = [
    (Signal.INTERESTED, 10),
    (Signal.URGENT, 15),
    (Signal.BUDGET_MENTIONED, 20),
    (Signal.DECISION_MAKER, 15),
    (Signal.COMPARING, 5),
    (Signal.NOT_INTERESTED, -20),
    (Signal.SPAM, -50),
]


class TestDefaults:
    @pytest.mark.parametrize(("signal", "points"), GUIDE_TABLE)
    def test_points_are_the_guide_table(self, signal, points):
        assert ScoringConfig.from_settings(None).points[signal] == points

    @pytest.mark.parametrize(
        ("score", "band"),
        [(0, "cold"), (39, "cold"), (40, "warm"), (69, "warm"), (70, "hot"), (100, "hot")],
    )
    def test_bands_are_hot_from_70_warm_from_40(self, score, band):
        assert ScoringConfig.from_settings({}).band(score) == band

    def test_range_is_0_to_100_and_start_is_0(self):
        config = ScoringConfig.from_settings(None)
        assert (config.min, config.max, config.start) == (0, 100, 0)
        assert (config.clamp(-30), config.clamp(130), config.clamp(55)) == (0, 100, 55)


class TestTenantSettings:
    def test_points_given_for_some_signals_keep_the_guide_for_the_others(self):
        config = ScoringConfig.from_settings({"points": {"interested": 3}})
        assert config.points[Signal.INTERESTED] == 3
        assert config.points[Signal.SPAM] == -50

    def test_legacy_rule_set_starts_at_50_and_is_hot_from_80(self):
        config = ScoringConfig.from_settings({"rule_set": "legacy"})
        assert (config.start, config.bands.hot, config.bands.warm) == (50, 80, 40)
        assert config.engagement_on
        assert (config.band(79), config.band(80)) == ("warm", "hot")

    def test_explicit_keys_win_over_the_legacy_preset(self):
        config = ScoringConfig.from_settings({"rule_set": "legacy", "start": 30, "bands": {"hot": 90}})
        assert (config.start, config.bands.hot, config.bands.warm) == (30, 90, 40)

    @pytest.mark.parametrize(
        "raw",
        [
            {"start": 150},
            {"bands": {"hot": 30, "warm": 40}},
            {"points": {"no_such_signal": 5}},
            {"rule_set": "magic"},
            {"typo": 1},
        ],
    )
    def test_incoherent_settings_are_refused(self, raw):
        with pytest.raises(InvalidScoringSettings):
            ScoringConfig.from_settings(raw)


class TestApply:
    def test_each_signal_is_one_change_in_order(self):
        config = ScoringConfig.from_settings(None)
        items = signal_points([Signal.INTERESTED, Signal.URGENT, Signal.INTERESTED], config)
        changes = apply(0, items, config)
        assert [(c.signal, c.points, c.before, c.after) for c in changes] == [
            ("interested", 10, 0, 10), ("urgent", 15, 10, 25)
        ]

    def test_clamping_records_what_the_score_really_moved(self):
        config = ScoringConfig.from_settings(None)
        [change] = apply(20, signal_points([Signal.SPAM], config), config)
        assert (change.rule_points, change.points, change.after) == (-50, -20, 0)

    def test_an_absolute_score_is_one_change_clamped(self):
        change = set_to(40, 120, ScoringConfig.from_settings(None))
        assert (change.signal, change.before, change.after, change.points) == ("score_set", 40, 100, 60)


class TestEngagement:
    def test_each_rule_is_worth_the_legacy_points(self):
        config = ScoringConfig.from_settings({"rule_set": "legacy"})
        values = rule_values(EngagementFacts(3, True, True, True), config.engagement)
        assert values == {
            "engagement.messages": 6,
            "engagement.high_value_service": 15,
            "engagement.booked_appointment": 20,
            "engagement.quick_response": 10,
        }

    def test_only_what_changed_since_the_last_evaluation_is_owed(self):
        now = {"engagement.messages": 8, "engagement.booked_appointment": 0, "engagement.quick_response": 10}
        credited = {"engagement.messages": 6, "engagement.booked_appointment": 20,
                    "engagement.quick_response": 10}
        assert owed(now, credited) == [("engagement.messages", 2), ("engagement.booked_appointment", -20)]
