"""signing.audit.rules.replay_lru: rule 4 replayed from lease history alone, no database."""

from datetime import UTC, datetime, timedelta

from signing.audit.rules import KeyHistory, LeaseHistory, Period, replay_lru

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


KEYS = {
    1: ("k1", at(-10), True, []),
    2: ("k2", at(-10), True, []),
    3: ("k3", at(-10), True, []),
}


def breaches(leases, keys=KEYS, run_id=None) -> list[str]:
    """The tests write keys as (kid, created, enabled, [(since, until)]) and leases as
    (id, key id, acquired, released, run id): short enough to read as a timeline."""
    histories = {
        key_id: KeyHistory(kid, created, enabled, [Period(*period) for period in disabled])
        for key_id, (kid, created, enabled, disabled) in keys.items()
    }
    history = [LeaseHistory(*lease) for lease in leases]
    return list(replay_lru(histories, history, run_id=run_id))


def test_a_rotation_in_lru_order_passes():
    leases = [
        (1, 1, at(0), at(1), 7),
        (2, 2, at(2), at(3), 7),
        (3, 3, at(4), at(5), 7),
        (4, 1, at(6), at(7), 7),
        (5, 2, at(8), None, 7),
    ]
    assert breaches(leases) == []


def test_concurrent_leases_take_the_next_free_keys_in_order():
    leases = [
        (1, 1, at(0), at(10), 7),
        (2, 2, at(1), at(5), 7),
        (3, 3, at(2), at(6), 7),
        (4, 2, at(7), None, 7),  # 1 is held; 2 was released before 3
    ]
    assert breaches(leases) == []


def test_a_used_key_taken_while_a_never_used_one_was_free_is_a_breach():
    leases = [(1, 1, at(0), at(1), 7), (2, 1, at(2), None, 7)]
    [breach] = breaches(leases)
    assert "lease 2" in breach
    assert "took k1" in breach
    assert "while k2 (last used never) was free" in breach


def test_a_recently_released_key_taken_before_an_older_one_is_a_breach():
    leases = [
        (1, 1, at(0), at(1), 7),
        (2, 2, at(2), at(3), 7),
        (3, 3, at(4), at(5), 7),
        (4, 3, at(6), None, 7),
    ]
    assert len(breaches(leases)) == 1


def test_a_release_at_the_same_instant_comes_before_the_lease():
    keys = {1: KEYS[1]}
    assert breaches([(1, 1, at(0), at(1), 7), (2, 1, at(1), None, 7)], keys=keys) == []


def test_keys_disabled_before_that_was_recorded_are_not_candidates():
    keys = {**KEYS, 2: ("k2", at(-10), False, []), 3: ("k3", at(-10), False, [])}
    assert breaches([(1, 1, at(0), at(1), 7), (2, 1, at(2), None, 7)], keys=keys) == []


def test_keys_created_after_a_lease_were_not_candidates_for_it():
    keys = {**KEYS, 2: ("k2", at(5), True, []), 3: ("k3", at(5), True, [])}
    assert breaches([(1, 1, at(0), at(1), 7), (2, 1, at(2), None, 7)], keys=keys) == []


def test_only_the_audited_run_s_breaches_are_reported():
    leases = [(1, 1, at(0), at(1), 7), (2, 1, at(2), None, 8)]
    assert breaches(leases, run_id=7) == []
    assert len(breaches(leases, run_id=8)) == 1


def test_a_lease_of_a_key_disabled_at_an_unknown_time_is_not_judged():
    keys = {**KEYS, 1: ("k1", at(-10), False, [])}
    # k1 was the LRU key then (enabled at the time) and was taken; it is disabled today
    assert breaches([(1, 1, at(0), at(1), 7), (2, 2, at(2), None, 7)], keys=keys) == []


def test_a_key_stops_being_a_candidate_when_it_is_disabled():
    # k2 would be next after k1, but it was disabled at 1.5: k3 was the right pick at 2
    keys = {**KEYS, 2: ("k2", at(-10), False, [(at(1.5), None)])}
    assert breaches([(1, 1, at(0), at(1), 7), (2, 3, at(2), None, 7)], keys=keys) == []
    assert len(breaches([(1, 1, at(0), at(1), 7), (2, 1, at(2), None, 7)], keys=keys)) == 1


def test_a_key_disabled_later_was_a_candidate_before():
    keys = {**KEYS, 1: ("k1", at(-10), False, [(at(5), None)])}
    [breach] = breaches([(1, 2, at(0), None, 7)], keys=keys)
    assert "took k2" in breach
    assert "k1 (last used never) was free" in breach


def test_a_lease_of_a_disabled_key_is_a_breach():
    keys = {**KEYS, 2: ("k2", at(-10), False, [(at(1), None)])}
    [breach] = breaches([(1, 2, at(2), None, 7)], keys=keys)
    assert "took k2, disabled at" in breach


def test_a_key_enabled_again_is_a_candidate_again_and_not_while_it_was_out():
    # k1 was out of the keyring from 1 to 5: k2 and k3 were the right picks in between, and
    # k1, never used, was the right pick once it was back.
    keys = {**KEYS, 1: ("k1", at(-10), True, [(at(1), at(5))])}
    leases = [(1, 2, at(2), at(3), 7), (2, 3, at(4), None, 7), (3, 1, at(6), None, 7)]
    assert breaches(leases, keys=keys) == []
    [breach] = breaches([(1, 2, at(6), None, 7)], keys=keys)
    assert "while k1 (last used never) was free" in breach
    [breach] = breaches([(1, 1, at(2), None, 7)], keys=keys)
    assert "took k1, disabled at" in breach
